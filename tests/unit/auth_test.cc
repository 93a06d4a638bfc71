// Authentication: JWTs (HS256, RS256) and static API tokens, through the
// gRPC-free Authenticator, with key files in a temporary directory.
#include <fstream>

#include "absl/strings/str_cat.h"
#include "auth/authenticator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/jwt_signer.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::ipsrt::testing::Hs256;
using ::ipsrt::testing::RsaKey;
using ::ipsrt::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-test-secret";
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

nlohmann::json Claims(const std::string& role = "clinician") {
  return {{"iss", "https://idp.example"},
          {"aud", "ipsrtd"},
          {"sub", "dr-lee"},
          {"role", role},
          {"tenant", "clinic-a"},
          {"exp", absl::ToUnixSeconds(kNow) + 300}};
}

Metadata Bearer(const std::string& token) {
  return {{"authorization", absl::StrCat("Bearer ", token)}};
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Write(dir_.File("hs.secret"), absl::StrCat(kSecret, "\n"));
    if (WithRsa()) {
      rsa_ = std::make_unique<RsaKey>();
      Write(dir_.File("rs.pem"), rsa_->PublicPem());
    }
    config_.mode = AuthMode::kRequired;
    config_.leeway = absl::Seconds(30);
    config_.jwt = JwtConfig{
        .issuer = "https://idp.example",
        .audience = "ipsrtd",
        .hs256_secret_file = dir_.File("hs.secret"),
        .rs256_public_key_file = WithRsa() ? dir_.File("rs.pem") : ""};
    config_.api_tokens.push_back(
        ApiTokenConfig{.sha256 = HashApiToken("tok-integration-1"),
                       .subject = "ehr-bridge",
                       .role = "integration",
                       .tenant = "clinic-a"});
    config_.api_tokens.push_back(
        ApiTokenConfig{.sha256 = HashApiToken("tok-patient-7"),
                       .subject = "app-user-7",
                       .role = "patient",
                       .tenant = "clinic-a",
                       .patient_ref = "Patient/7"});
    absl::StatusOr<std::unique_ptr<Authenticator>> a =
        Authenticator::Create(config_);
    ASSERT_TRUE(a.ok()) << a.status();
    auth_ = *std::move(a);
  }

  absl::Status Check(const std::string& token, absl::Time now = kNow) {
    return auth_->Authenticate(Bearer(token), now).status();
  }

  // RSA key generation takes a while: only the RS256 tests make a key.
  virtual bool WithRsa() const { return false; }

  TempDir dir_;
  std::unique_ptr<RsaKey> rsa_;
  AuthConfig config_;
  std::unique_ptr<Authenticator> auth_;
};

class AuthRs256Test : public AuthTest {
 protected:
  bool WithRsa() const override { return true; }
};

TEST_F(AuthTest, Hs256TokenGivesItsPrincipal) {
  absl::StatusOr<Principal> p =
      auth_->Authenticate(Bearer(Hs256(kSecret, Claims())), kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "dr-lee");
  EXPECT_EQ(p->role, Role::kClinician);
  EXPECT_EQ(p->tenant, "clinic-a");
}

TEST_F(AuthRs256Test, Rs256TokenFromAnOpenSslKeyVerifies) {
  nlohmann::json c = Claims("patient");
  c["patient_ref"] = "Patient/9";
  absl::StatusOr<Principal> p =
      auth_->Authenticate(Bearer(rsa_->Rs256(c)), kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->role, Role::kPatient);
  EXPECT_EQ(p->patient_ref, "Patient/9");
}

TEST_F(AuthRs256Test, Rs256SignedByAnotherKeyIsRefused) {
  RsaKey other;
  EXPECT_EQ(Check(other.Rs256(Claims())),
            absl::UnauthenticatedError(
                "authentication: bearer token signature does not verify"));
}

TEST_F(AuthTest, BadHs256SignatureIsRefused) {
  std::string token = Hs256("another-secret-of-at-least-32-bytes!!", Claims());
  EXPECT_EQ(Check(token),
            absl::UnauthenticatedError(
                "authentication: bearer token signature does not verify"));
}

TEST_F(AuthTest, TamperedPayloadIsRefused) {
  std::string token = Hs256(kSecret, Claims());
  nlohmann::json admin = Claims("admin");
  std::string forged = absl::StrCat(token.substr(0, token.find('.')), ".",
                                    ::ipsrt::testing::B64Url(admin.dump()),
                                    token.substr(token.rfind('.')));
  EXPECT_EQ(Check(forged),
            absl::UnauthenticatedError(
                "authentication: bearer token signature does not verify"));
}

TEST_F(AuthRs256Test, AlgNoneAndOtherAlgorithmsAreRefused) {
  const absl::Status refused = absl::UnauthenticatedError(
      "authentication: bearer token uses an algorithm this server does not "
      "accept");
  std::string none = absl::StrCat(
      ::ipsrt::testing::SigningInput({{"alg", "none"}}, Claims()), ".");
  EXPECT_EQ(Check(none), refused);
  // HS512 and RS512 are valid JOSE names but not accepted here.
  EXPECT_EQ(Check(Hs256(kSecret, Claims(), {{"alg", "HS512"}})), refused);
  EXPECT_EQ(Check(rsa_->Rs256(Claims(), {{"alg", "RS512"}})), refused);
}

TEST_F(AuthRs256Test, Hs256SignedWithThePublicKeyIsRefused) {
  // Algorithm confusion: the RSA public key used as an HMAC secret.
  std::string token = Hs256(rsa_->PublicPem(), Claims());
  EXPECT_EQ(Check(token),
            absl::UnauthenticatedError(
                "authentication: bearer token signature does not verify"));
}

TEST_F(AuthTest, ExpiryAndNotBeforeAllowTheLeewayOnly) {
  nlohmann::json c = Claims();
  c["exp"] = absl::ToUnixSeconds(kNow) - 10;  // inside the 30 s leeway
  EXPECT_TRUE(Check(Hs256(kSecret, c)).ok());
  c["exp"] = absl::ToUnixSeconds(kNow) - 31;
  EXPECT_EQ(
      Check(Hs256(kSecret, c)),
      absl::UnauthenticatedError("authentication: bearer token has expired"));
  c = Claims();
  c.erase("exp");
  EXPECT_EQ(Check(Hs256(kSecret, c)),
            absl::UnauthenticatedError(
                "authentication: bearer token has no expiry (exp)"));
  c = Claims();
  c["nbf"] = absl::ToUnixSeconds(kNow) + 20;
  EXPECT_TRUE(Check(Hs256(kSecret, c)).ok());
  c["nbf"] = absl::ToUnixSeconds(kNow) + 31;
  EXPECT_EQ(Check(Hs256(kSecret, c)),
            absl::UnauthenticatedError(
                "authentication: bearer token is not valid yet (nbf)"));
}

TEST_F(AuthTest, WrongIssuerOrAudienceIsRefused) {
  nlohmann::json c = Claims();
  c["iss"] = "https://evil.example";
  EXPECT_EQ(Check(Hs256(kSecret, c)),
            absl::UnauthenticatedError(
                "authentication: bearer token issuer (iss) is not the "
                "configured issuer"));
  c = Claims();
  c["aud"] = "another-service";
  const absl::Status wrong_aud = absl::UnauthenticatedError(
      "authentication: bearer token audience (aud) does not include this "
      "server");
  EXPECT_EQ(Check(Hs256(kSecret, c)), wrong_aud);
  c["aud"] = {"another-service", "ipsrtd"};
  EXPECT_TRUE(Check(Hs256(kSecret, c)).ok());
  c.erase("aud");
  EXPECT_EQ(Check(Hs256(kSecret, c)), wrong_aud);
}

TEST_F(AuthTest, ClaimsMustNameAValidPrincipal) {
  nlohmann::json c = Claims("superuser");
  EXPECT_EQ(Check(Hs256(kSecret, c)),
            absl::UnauthenticatedError(
                "authentication: bearer token has no valid role claim (admin, "
                "clinician, patient or integration)"));
  c = Claims("patient");  // no patient_ref
  EXPECT_EQ(Check(Hs256(kSecret, c)),
            absl::UnauthenticatedError(
                "authentication: patient bearer token has no patient_ref "
                "claim"));
  c = Claims();
  c.erase("tenant");
  EXPECT_EQ(Check(Hs256(kSecret, c)),
            absl::UnauthenticatedError(
                "authentication: bearer token has no tenant claim"));
  c = Claims("admin");
  c.erase("tenant");  // a deployment admin
  absl::StatusOr<Principal> p =
      auth_->Authenticate(Bearer(Hs256(kSecret, c)), kNow);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tenant, "");
}

TEST_F(AuthTest, ApiTokensMatchByHash) {
  absl::StatusOr<Principal> p =
      auth_->Authenticate(Bearer("tok-patient-7"), kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "app-user-7");
  EXPECT_EQ(p->role, Role::kPatient);
  EXPECT_EQ(p->patient_ref, "Patient/7");
  EXPECT_EQ(auth_->Authenticate(Bearer("tok-integration-1"), kNow)->role,
            Role::kIntegration);
  EXPECT_EQ(
      Check("tok-integration-2"),
      absl::UnauthenticatedError("authentication: bearer token is not valid"));
  // The hash itself is not a token.
  EXPECT_EQ(
      Check(HashApiToken("tok-integration-1")),
      absl::UnauthenticatedError("authentication: bearer token is not valid"));
}

// Integration callers of the tenants in auth.integration_clinical_tenants
// may record clinical events; the flag follows the tenant of the token, JWT
// or API token alike, and only for the integration role.
TEST_F(AuthTest, ClinicalIntegrationFollowsTheConfiguredTenants) {
  EXPECT_FALSE(auth_->Authenticate(Bearer("tok-integration-1"), kNow)
                   ->clinical_integration);
  config_.integration_clinical_tenants = {"clinic-a"};
  std::unique_ptr<Authenticator> listed = *Authenticator::Create(config_);
  EXPECT_TRUE(listed->Authenticate(Bearer("tok-integration-1"), kNow)
                  ->clinical_integration);
  EXPECT_TRUE(
      listed->Authenticate(Bearer(Hs256(kSecret, Claims("integration"))), kNow)
          ->clinical_integration);
  EXPECT_FALSE(
      listed->Authenticate(Bearer(Hs256(kSecret, Claims("clinician"))), kNow)
          ->clinical_integration);
  EXPECT_FALSE(listed->Authenticate(Bearer("tok-patient-7"), kNow)
                   ->clinical_integration);
}

TEST_F(AuthTest, MissingOrMalformedHeaderIsUnauthenticated) {
  EXPECT_EQ(auth_->Authenticate({}, kNow).status(),
            absl::UnauthenticatedError(
                "authentication: this server requires a bearer token "
                "(metadata \"authorization: Bearer <token>\")"));
  EXPECT_EQ(
      auth_->Authenticate({{"authorization", "Basic dXNlcjpwdw=="}}, kNow)
          .status(),
      absl::UnauthenticatedError(
          "authentication: the authorization header is not a Bearer token"));
  EXPECT_EQ(auth_
                ->Authenticate({{"authorization", "bearer tok-integration-1"},
                                {"authorization", "Bearer x"}},
                               kNow)
                .status(),
            absl::UnauthenticatedError(
                "authentication: more than one authorization header"));
  // The scheme is case-insensitive (RFC 7235).
  EXPECT_TRUE(
      auth_->Authenticate({{"authorization", "bearer tok-integration-1"}}, kNow)
          .ok());
}

TEST_F(AuthTest, MessagesNeverRepeatTheTokenOrTheSecret) {
  const std::string api = "tok-secret-looking-value-123";
  nlohmann::json c = Claims();
  c["iss"] = "issuer-marker-xyz";
  const std::string jwt = Hs256(kSecret, c);
  for (const std::string& token : {api, jwt, std::string("a.b.c")}) {
    absl::Status s = Check(token);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr(token)));
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr(kSecret)));
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("issuer-marker")));
  }
}

TEST_F(AuthTest, ModeNoneIsTheLocalAdmin) {
  std::unique_ptr<Authenticator> local = Authenticator::LocalOnly();
  absl::StatusOr<Principal> p = local->Authenticate({}, kNow);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->subject, "local");
  EXPECT_EQ(p->role, Role::kAdmin);
  EXPECT_EQ(p->tenant, "");
}

TEST(AuthCreateTest, KeyProblemsNameTheSetting) {
  TempDir dir;
  Write(dir.File("short.secret"), "too-short");
  Write(dir.File("not.pem"), "-----BEGIN NOTHING-----\n");
  AuthConfig c;
  c.mode = AuthMode::kRequired;
  c.jwt = JwtConfig{.issuer = "i",
                    .audience = "a",
                    .hs256_secret_file = dir.File("short.secret")};
  EXPECT_EQ(Authenticator::Create(c).status(),
            absl::InvalidArgumentError("auth.jwt.hs256_secret_file: the secret "
                                       "must be at least 32 bytes"));
  c.jwt = JwtConfig{.issuer = "i",
                    .audience = "a",
                    .rs256_public_key_file = dir.File("not.pem")};
  EXPECT_EQ(Authenticator::Create(c).status(),
            absl::InvalidArgumentError(
                "auth.jwt.rs256_public_key_file: not a PEM RSA public key of "
                "at least 2048 bits"));
  c.jwt = JwtConfig{.issuer = "i",
                    .audience = "a",
                    .rs256_public_key_file = dir.File("missing.pem")};
  EXPECT_EQ(Authenticator::Create(c).status(),
            absl::InvalidArgumentError(
                absl::StrCat("auth.jwt.rs256_public_key_file: cannot read ",
                             dir.File("missing.pem"))));
}

}  // namespace
}  // namespace ipsrt
