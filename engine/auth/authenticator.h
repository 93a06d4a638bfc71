// Authenticator: turns a call's metadata into a Principal.
//
// A call carries `authorization: Bearer <token>`. A token of three
// dot-separated parts is a JWT (jwt.h): its claims `sub`, `role`, `tenant`
// and, for patients, `patient_ref` name the principal. Any other token is a
// static API token: its SHA-256 is compared, in constant time, with every
// configured hash. With `auth.mode: none` (loopback only) every caller is
// the local administrator. The core is gRPC-free so it is tested directly.
//
// Failures are UNAUTHENTICATED with a message that never contains the
// token, a claim value or a secret.
//
// Example:
//   absl::StatusOr<std::unique_ptr<Authenticator>> auth =
//       Authenticator::Create(config.auth);
//   absl::StatusOr<Principal> who =
//       (*auth)->Authenticate({{"authorization", "Bearer ..."}}, clock->Now());
//
// Thread safety: Authenticate may be called from any thread at once.
#ifndef IPSRT_AUTH_AUTHENTICATOR_H_
#define IPSRT_AUTH_AUTHENTICATOR_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "auth/jwt.h"
#include "auth/principal.h"
#include "ipsrt/config.h"

namespace ipsrt {

// Call metadata as gRPC delivers it: lowercase keys, possibly repeated.
using Metadata = std::multimap<std::string, std::string>;

class Authenticator {
 public:
  // Create reads the key files named in `config` (INVALID_ARGUMENT naming
  // the setting when a file is unreadable or its key unusable).
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(
      const AuthConfig& config);

  // LocalOnly is the authenticator of `auth.mode: none`.
  static std::unique_ptr<Authenticator> LocalOnly();

  // Authenticate returns the principal of the call's bearer token at time
  // `now`.
  absl::StatusOr<Principal> Authenticate(const Metadata& metadata,
                                         absl::Time now) const;

  // Required is false for `auth.mode: none`.
  bool required() const { return required_; }

 private:
  struct ApiToken {
    std::string sha256;  // 32 raw bytes
    Principal principal;
  };
  Authenticator() = default;
  absl::StatusOr<Principal> FromJwt(absl::string_view token,
                                    absl::Time now) const;
  absl::StatusOr<Principal> FromApiToken(absl::string_view token) const;

  bool required_ = false;
  // auth.integration_clinical_tenants.
  std::set<std::string> clinical_tenants_;
  std::unique_ptr<JwtVerifier> jwt_;
  std::vector<ApiToken> api_tokens_;
};

// LocalAdmin is the principal of every call with `auth.mode: none`.
Principal LocalAdmin();

// HashApiToken is the SHA-256 of a token as 64 lowercase hex digits, the
// form stored in `auth.api_tokens[].sha256`.
std::string HashApiToken(absl::string_view token);

}  // namespace ipsrt

#endif  // IPSRT_AUTH_AUTHENTICATOR_H_
