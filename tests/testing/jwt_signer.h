// Test-only JWT minting with OpenSSL: HS256 with a shared secret, RS256
// with a freshly generated RSA key, and `alg: none` / arbitrary headers
// for negative tests. The engine only verifies; tokens come from here.
#ifndef IPSRT_TESTS_TESTING_JWT_SIGNER_H_
#define IPSRT_TESTS_TESTING_JWT_SIGNER_H_

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ipsrt::testing {

inline std::string B64Url(const std::string& bytes) {
  std::string out;
  absl::WebSafeBase64Escape(bytes, &out);  // unpadded
  return out;
}

// SigningInput is base64url(header).base64url(claims).
inline std::string SigningInput(const nlohmann::json& header,
                                const nlohmann::json& claims) {
  return absl::StrCat(B64Url(header.dump()), ".", B64Url(claims.dump()));
}

inline std::string Hs256(const std::string& secret,
                         const nlohmann::json& claims,
                         nlohmann::json header = {{"alg", "HS256"},
                                                  {"typ", "JWT"}}) {
  std::string input = SigningInput(header, claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
       &len);
  return absl::StrCat(input, ".",
                      B64Url(std::string(reinterpret_cast<char*>(mac), len)));
}

// RsaKey is a 2048-bit RSA key pair made by OpenSSL for one test.
class RsaKey {
 public:
  RsaKey() : key_(EVP_RSA_gen(2048)) {}
  ~RsaKey() { EVP_PKEY_free(key_); }
  RsaKey(const RsaKey&) = delete;
  RsaKey& operator=(const RsaKey&) = delete;

  std::string PublicPem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, key_);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string pem(data, n);
    BIO_free(bio);
    return pem;
  }

  std::string Rs256(const nlohmann::json& claims,
                    nlohmann::json header = {{"alg", "RS256"},
                                             {"typ", "JWT"}}) const {
    std::string input = SigningInput(header, claims);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_);
    EVP_DigestSign(ctx, nullptr, &len,
                   reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    return absl::StrCat(input, ".", B64Url(sig));
  }

 private:
  EVP_PKEY* key_;
};

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_TESTING_JWT_SIGNER_H_
