#include "auth/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ipsrt {
namespace {

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(
      absl::StrCat("authentication: bearer token ", why));
}

// Base64UrlDecode accepts unpadded base64url (RFC 7515 section 2) only.
bool Base64UrlDecode(absl::string_view in, std::string* out) {
  if (in.find('=') != absl::string_view::npos) return false;
  return absl::WebSafeBase64Unescape(in, out);
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

}  // namespace

bool LooksLikeJwt(absl::string_view token) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  return parts.size() == 3;
}

struct JwtVerifier::Impl {
  Options options;
  std::string hs256_secret;
  std::unique_ptr<EVP_PKEY, PkeyFree> rs256_key;

  bool VerifyHs256(absl::string_view signing_input,
                   const std::string& signature) const {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), hs256_secret.data(),
             static_cast<int>(hs256_secret.size()),
             reinterpret_cast<const unsigned char*>(signing_input.data()),
             signing_input.size(), mac, &mac_len) == nullptr) {
      return false;
    }
    return signature.size() == mac_len &&
           CRYPTO_memcmp(mac, signature.data(), mac_len) == 0;
  }

  bool VerifyRs256(absl::string_view signing_input,
                   const std::string& signature) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (ctx == nullptr) return false;
    bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr,
                                   rs256_key.get()) == 1 &&
              EVP_DigestVerify(
                  ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                  signature.size(),
                  reinterpret_cast<const unsigned char*>(signing_input.data()),
                  signing_input.size()) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
  }
};

JwtVerifier::JwtVerifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JwtVerifier::~JwtVerifier() = default;

absl::StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(
    Options options, const Keys& keys) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  if (keys.hs256_secret.empty() && keys.rs256_public_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "auth.jwt: needs hs256_secret_file or rs256_public_key_file");
  }
  if (!keys.hs256_secret.empty()) {
    // RFC 7518 section 3.2: the key must be at least the hash's size.
    if (keys.hs256_secret.size() < 32) {
      return absl::InvalidArgumentError(
          "auth.jwt.hs256_secret_file: the secret must be at least 32 bytes");
    }
    impl->hs256_secret = keys.hs256_secret;
  }
  if (!keys.rs256_public_key_pem.empty()) {
    BIO* bio =
        BIO_new_mem_buf(keys.rs256_public_key_pem.data(),
                        static_cast<int>(keys.rs256_public_key_pem.size()));
    EVP_PKEY* key =
        bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(bio);
    impl->rs256_key.reset(key);
    if (key == nullptr || !EVP_PKEY_is_a(key, "RSA") ||
        EVP_PKEY_get_bits(key) < 2048) {
      return absl::InvalidArgumentError(
          "auth.jwt.rs256_public_key_file: not a PEM RSA public key of at "
          "least 2048 bits");
    }
  }
  return std::unique_ptr<JwtVerifier>(new JwtVerifier(std::move(impl)));
}

absl::StatusOr<nlohmann::json> JwtVerifier::Verify(absl::string_view token,
                                                   absl::Time now) const {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return Unauthenticated("is not a JWT");
  std::string header_text, payload_text, signature;
  if (!Base64UrlDecode(parts[0], &header_text) ||
      !Base64UrlDecode(parts[1], &payload_text) ||
      !Base64UrlDecode(parts[2], &signature)) {
    return Unauthenticated("is not valid base64url");
  }
  nlohmann::json header = nlohmann::json::parse(header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object() || !header.contains("alg") ||
      !header["alg"].is_string()) {
    return Unauthenticated("has no valid JOSE header");
  }
  if (header.contains("crit")) {
    return Unauthenticated("has critical header extensions (unsupported)");
  }
  const std::string alg = header["alg"].get<std::string>();
  absl::string_view signing_input(parts[0].data(),
                                  parts[0].size() + 1 + parts[1].size());
  bool verified = false;
  if (alg == "HS256" && !impl_->hs256_secret.empty()) {
    verified = impl_->VerifyHs256(signing_input, signature);
  } else if (alg == "RS256" && impl_->rs256_key != nullptr) {
    verified = impl_->VerifyRs256(signing_input, signature);
  } else {
    // `alg` is a short name from a fixed set when valid; an attacker's value
    // is not echoed.
    return Unauthenticated("uses an algorithm this server does not accept");
  }
  if (!verified) return Unauthenticated("signature does not verify");

  nlohmann::json claims = nlohmann::json::parse(payload_text, nullptr, false);
  if (claims.is_discarded() || !claims.is_object()) {
    return Unauthenticated("payload is not a JSON object");
  }
  const Options& o = impl_->options;
  if (!claims.contains("iss") || !claims["iss"].is_string() ||
      claims["iss"].get<std::string>() != o.issuer) {
    return Unauthenticated("issuer (iss) is not the configured issuer");
  }
  bool audience_ok = false;
  if (claims.contains("aud")) {
    const nlohmann::json& aud = claims["aud"];
    if (aud.is_string()) {
      audience_ok = aud.get<std::string>() == o.audience;
    } else if (aud.is_array()) {
      for (const nlohmann::json& a : aud) {
        if (a.is_string() && a.get<std::string>() == o.audience) {
          audience_ok = true;
        }
      }
    }
  }
  if (!audience_ok) {
    return Unauthenticated("audience (aud) does not include this server");
  }
  double now_s = absl::ToDoubleSeconds(now - absl::UnixEpoch());
  double leeway_s = absl::ToDoubleSeconds(o.leeway);
  if (!claims.contains("exp") || !claims["exp"].is_number() ||
      !std::isfinite(claims["exp"].get<double>())) {
    return Unauthenticated("has no expiry (exp)");
  }
  if (now_s > claims["exp"].get<double>() + leeway_s) {
    return Unauthenticated("has expired");
  }
  if (claims.contains("nbf")) {
    if (!claims["nbf"].is_number() ||
        !std::isfinite(claims["nbf"].get<double>())) {
      return Unauthenticated("has an invalid not-before (nbf)");
    }
    if (now_s + leeway_s < claims["nbf"].get<double>()) {
      return Unauthenticated("is not valid yet (nbf)");
    }
  }
  return claims;
}

}  // namespace ipsrt
