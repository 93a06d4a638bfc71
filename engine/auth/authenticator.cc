#include "auth/authenticator.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/hash.h"
#include "ipsrt/status_macros.h"

namespace ipsrt {
namespace {

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("authentication: ", why));
}

std::string Sha256Raw(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// ClaimString reads an optional string claim; "" when absent or not a
// string.
std::string ClaimString(const nlohmann::json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

}  // namespace

Principal LocalAdmin() {
  return Principal{.subject = "local", .role = Role::kAdmin};
}

std::string HashApiToken(absl::string_view token) { return Sha256Hex(token); }

std::unique_ptr<Authenticator> Authenticator::LocalOnly() {
  return std::unique_ptr<Authenticator>(new Authenticator());
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(
    const AuthConfig& config) {
  std::unique_ptr<Authenticator> a(new Authenticator());
  if (config.mode == AuthMode::kNone) return a;
  a->required_ = true;
  a->clinical_tenants_.insert(config.integration_clinical_tenants.begin(),
                              config.integration_clinical_tenants.end());
  if (config.jwt.has_value()) {
    JwtVerifier::Keys keys;
    if (!config.jwt->hs256_secret_file.empty()) {
      absl::StatusOr<std::string> secret =
          ReadFileToString(config.jwt->hs256_secret_file);
      if (!secret.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("auth.jwt.hs256_secret_file: cannot read ",
                         config.jwt->hs256_secret_file));
      }
      keys.hs256_secret = std::string(absl::StripSuffix(*secret, "\n"));
    }
    if (!config.jwt->rs256_public_key_file.empty()) {
      absl::StatusOr<std::string> pem =
          ReadFileToString(config.jwt->rs256_public_key_file);
      if (!pem.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("auth.jwt.rs256_public_key_file: cannot read ",
                         config.jwt->rs256_public_key_file));
      }
      keys.rs256_public_key_pem = *pem;
    }
    IPSRT_ASSIGN_OR_RETURN(
        a->jwt_, JwtVerifier::Create({.issuer = config.jwt->issuer,
                                      .audience = config.jwt->audience,
                                      .leeway = config.leeway},
                                     keys));
  }
  for (size_t i = 0; i < config.api_tokens.size(); ++i) {
    const ApiTokenConfig& t = config.api_tokens[i];
    std::optional<Role> role = ParseRole(t.role);
    bool hex =
        t.sha256.size() == 64 &&
        t.sha256.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (!hex || !role.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth.api_tokens[", i, "]: invalid sha256 or role"));
    }
    a->api_tokens_.push_back(
        ApiToken{.sha256 = absl::HexStringToBytes(t.sha256),
                 .principal = {.subject = t.subject,
                               .role = *role,
                               .tenant = t.tenant,
                               .patient_ref = t.patient_ref}});
  }
  return a;
}

absl::StatusOr<Principal> Authenticator::Authenticate(const Metadata& metadata,
                                                      absl::Time now) const {
  if (!required_) return LocalAdmin();
  auto [begin, end] = metadata.equal_range("authorization");
  if (begin == end) {
    return Unauthenticated(
        "this server requires a bearer token (metadata \"authorization: "
        "Bearer <token>\")");
  }
  if (std::next(begin) != end) {
    return Unauthenticated("more than one authorization header");
  }
  absl::string_view value = begin->second;
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return Unauthenticated("the authorization header is not a Bearer token");
  }
  absl::string_view token =
      absl::StripAsciiWhitespace(value.substr(kScheme.size()));
  if (token.empty()) return Unauthenticated("the bearer token is empty");
  absl::StatusOr<Principal> p =
      LooksLikeJwt(token) ? FromJwt(token, now) : FromApiToken(token);
  if (p.ok() && p->role == Role::kIntegration) {
    p->clinical_integration = clinical_tenants_.count(p->tenant) > 0;
  }
  return p;
}

absl::StatusOr<Principal> Authenticator::FromJwt(absl::string_view token,
                                                 absl::Time now) const {
  if (jwt_ == nullptr) {
    return Unauthenticated("this server accepts no JWTs (no auth.jwt)");
  }
  IPSRT_ASSIGN_OR_RETURN(nlohmann::json claims, jwt_->Verify(token, now));
  Principal p;
  p.subject = ClaimString(claims, "sub");
  if (p.subject.empty()) {
    return Unauthenticated("bearer token has no subject (sub)");
  }
  std::optional<Role> role = ParseRole(ClaimString(claims, "role"));
  if (!role.has_value()) {
    return Unauthenticated(
        "bearer token has no valid role claim (admin, clinician, patient or "
        "integration)");
  }
  p.role = *role;
  p.tenant = ClaimString(claims, "tenant");
  if (p.tenant.empty() && p.role != Role::kAdmin) {
    return Unauthenticated("bearer token has no tenant claim");
  }
  if (p.role == Role::kPatient) {
    p.patient_ref = ClaimString(claims, "patient_ref");
    if (p.patient_ref.empty()) {
      return Unauthenticated("patient bearer token has no patient_ref claim");
    }
  }
  return p;
}

absl::StatusOr<Principal> Authenticator::FromApiToken(
    absl::string_view token) const {
  const std::string digest = Sha256Raw(token);
  // Every configured hash is compared, in constant time, so the time taken
  // does not tell which entry (or how much of one) matched.
  const ApiToken* match = nullptr;
  for (const ApiToken& t : api_tokens_) {
    if (CRYPTO_memcmp(t.sha256.data(), digest.data(), digest.size()) == 0) {
      match = &t;
    }
  }
  if (match == nullptr) return Unauthenticated("bearer token is not valid");
  return match->principal;
}

}  // namespace ipsrt
