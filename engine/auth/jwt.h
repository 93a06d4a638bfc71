// JwtVerifier: checks a compact JWS (RFC 7515/7519) signed HS256 or RS256.
//
// Verification order: structure, header `alg` (only the algorithms whose key
// is configured; `none` and every other value are refused), signature with
// OpenSSL, then the registered claims: `iss` equals the configured issuer,
// `aud` is (or contains) the configured audience, `exp` is required and not
// passed, `nbf` if present has been reached; both times allow `leeway`.
// Every failure is UNAUTHENTICATED, and no message repeats the token, a
// claim value or a key.
//
// Example:
//   JwtVerifier::Keys keys{.hs256_secret = secret};
//   auto verifier = JwtVerifier::Create({.issuer = "https://idp", ...}, keys);
//   absl::StatusOr<nlohmann::json> claims = (*verifier)->Verify(token, now);
//
// Thread safety: Verify may be called from any thread at once.
#ifndef IPSRT_AUTH_JWT_H_
#define IPSRT_AUTH_JWT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace ipsrt {

class JwtVerifier {
 public:
  struct Options {
    std::string issuer;
    std::string audience;
    absl::Duration leeway = absl::Seconds(30);
  };
  struct Keys {
    // Shared secret for HS256; empty disables HS256.
    std::string hs256_secret;
    // PEM public key (SubjectPublicKeyInfo, RSA) for RS256; empty disables
    // RS256.
    std::string rs256_public_key_pem;
  };

  // Create checks the keys: INVALID_ARGUMENT when neither is set, the
  // secret is shorter than 32 bytes, or the PEM is not an RSA public key.
  static absl::StatusOr<std::unique_ptr<JwtVerifier>> Create(Options options,
                                                             const Keys& keys);
  ~JwtVerifier();

  // Verify returns the claims of a valid token at time `now`.
  absl::StatusOr<nlohmann::json> Verify(absl::string_view token,
                                        absl::Time now) const;

 private:
  struct Impl;
  explicit JwtVerifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// LooksLikeJwt is true for three dot-separated parts (header.payload.sig).
bool LooksLikeJwt(absl::string_view token);

}  // namespace ipsrt

#endif  // IPSRT_AUTH_JWT_H_
