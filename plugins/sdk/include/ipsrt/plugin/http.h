// HttpPost: one HTTP(S) POST over libcurl, and PostWithRetries: up to N of
// them with doubling backoff, for plugins that deliver to a remote endpoint
// (webhooks, FHIR servers). Redirects are never followed; only http and
// https URLs are used; no signals (safe in ipsrtd's threads).
//
// Example:
//   ipsrt::plugin::HttpRequest post{.url = url_, .body = body,
//                                   .headers = {"Content-Type: text/plain"}};
//   ipsrt::plugin::HttpResult r = ipsrt::plugin::PostWithRetries(
//       post, {.max_attempts = 3, .initial_backoff = absl::Milliseconds(200)},
//       [](const ipsrt::plugin::HttpResult& r, int attempt) {
//         return r.Retryable();
//       });
//   if (r.answered() && r.http_status / 100 == 2) ...
#ifndef IPSRT_PLUGIN_HTTP_H_
#define IPSRT_PLUGIN_HTTP_H_

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ipsrt::plugin {

struct HttpRequest {
  std::string url;
  absl::string_view body;  // must outlive the call
  // Whole header lines, "Name: value"; empty ones are skipped. The helper
  // adds "Expect:" (no 100-continue round trip).
  std::vector<std::string> headers;
  std::string user_agent = "ipsrt-plugin/1.0";
  absl::Duration connect_timeout = absl::Seconds(2);
  // Bounds the whole POST, connecting included.
  absl::Duration timeout = absl::Seconds(5);
  // CA bundle for https; empty: the system's.
  std::string ca_file;
  // The answer's body is kept up to this many bytes (0: not kept); a longer
  // one stops the POST with Network::kResponseTooLarge.
  size_t max_response_bytes = 0;
};

struct HttpResult {
  // Why no answer was read.
  enum class Network {
    kNone,              // the server answered: see http_status
    kTimeout,           // no complete answer in time (see connected)
    kConnection,        // cannot resolve, connect, send or receive
    kBadUrl,            // malformed URL or a protocol other than http(s)
    kResponseTooLarge,  // more than max_response_bytes answered
    kOther,             // TLS verification and the like
  };
  Network network = Network::kNone;
  long http_status = 0;
  std::string body;
  // The connection was made (a timeout after it means the server may be
  // working on the request).
  bool connected = false;
  // libcurl's words for a network problem; empty when answered.
  std::string error;

  bool answered() const { return network == Network::kNone; }
  bool success() const { return answered() && http_status / 100 == 2; }
  // A problem another POST soon may not have: a connection problem, a
  // timeout before connecting, 429 or 5xx.
  bool Retryable() const;
};

// HttpPost makes one POST. Never throws; every failure is in the result.
HttpResult HttpPost(const HttpRequest& request);

struct RetryPolicy {
  int max_attempts = 3;
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::InfiniteDuration();
};

// BackoffBefore is the pause before attempt `attempt` (2, 3, ...): the
// initial backoff, doubled for each later attempt, at most max_backoff.
absl::Duration BackoffBefore(const RetryPolicy& policy, int attempt);

// PostWithRetries posts up to policy.max_attempts times, pausing
// BackoffBefore each retry, while `retry(result, attempt)` says to go on
// (it is not asked after the last attempt). Returns the last result.
HttpResult PostWithRetries(
    const HttpRequest& request, const RetryPolicy& policy,
    const std::function<bool(const HttpResult&, int attempt)>& retry);

}  // namespace ipsrt::plugin

#endif  // IPSRT_PLUGIN_HTTP_H_
