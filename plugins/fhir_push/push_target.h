// The delivery targets of the fhir-push plugin, read from its `config`
// block (README.md in this directory lists the keys).
//
// Example:
//   absl::StatusOr<PushTargets> targets = ReadPushTargets(request);
//   if (!targets.ok()) return targets.status();  // "config.targets.ehr..."
//   const PushTarget* t = targets->Find("");      // the default target
//
// Errors are INVALID_ARGUMENT naming the key path from the config block's
// root, e.g. "config.targets.ehr.timeout: must be a positive duration ...".
// A bearer token never appears in an error: only the variable's or file's
// name does.
#ifndef IPSRT_PLUGINS_FHIR_PUSH_PUSH_TARGET_H_
#define IPSRT_PLUGINS_FHIR_PUSH_PUSH_TARGET_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ipsrt/plugin/http.h"
#include "ipsrt/plugin/v1/plugin.pb.h"

namespace ipsrt::fhir_push {

// PushTarget is one FHIR server's base URL and how to talk to it.
struct PushTarget {
  std::string name;
  // "config.targets.<name>", for messages.
  std::string key_path;
  // The FHIR base; a transaction is POSTed to it (no trailing '/').
  std::string base_url;
  // Where the bearer token comes from: at most one is set; none means no
  // Authorization header.
  std::string bearer_token_env;
  std::string bearer_token_file;  // resolved against the config's directory
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration timeout = absl::Seconds(30);
  int max_attempts = 3;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(10);
  // 0: no limit of our own (the server may still answer 413).
  int64_t max_bundle_bytes = 0;
  // A private CA for https; empty: the system's.
  std::string ca_file;

  // The retry policy of one delivery: max_attempts POSTs, the backoff
  // doubling from initial_backoff up to max_backoff.
  plugin::RetryPolicy Retries() const;

  // BearerToken reads the token now (so a rotated file is picked up).
  // Empty when the target has no token source. FAILED_PRECONDITION naming
  // the variable or file, never the token, when it is unset, unreadable,
  // empty or not a single line of visible ASCII.
  absl::StatusOr<std::string> BearerToken() const;
};

class PushTargets {
 public:
  // Find returns the target named `name`, or the default target for an
  // empty name; nullptr when there is none.
  const PushTarget* Find(absl::string_view name) const;
  // "ehr, registry", for messages.
  std::string Names() const;

 private:
  friend absl::StatusOr<PushTargets> ReadPushTargets(
      const plugin::v1::ConfigureRequest& request);
  std::map<std::string, PushTarget, std::less<>> targets_;
  std::string default_target_;
};

// ReadPushTargets validates the whole config block: unknown keys, types,
// ranges, URL schemes, and that each token source is readable now.
absl::StatusOr<PushTargets> ReadPushTargets(
    const plugin::v1::ConfigureRequest& request);

}  // namespace ipsrt::fhir_push

#endif  // IPSRT_PLUGINS_FHIR_PUSH_PUSH_TARGET_H_
