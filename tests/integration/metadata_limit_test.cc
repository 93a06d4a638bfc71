// Bearer token size against server.max_metadata_bytes: a real ~8 KB RS256
// JWT (an identity provider's token with many group claims) is accepted
// with the default limit; a larger one is UNAUTHENTICATED naming the
// setting; one beyond gRPC's own limit (4 times ours) is refused by gRPC
// before any handler, as the README documents. Real loopback gRPC, real
// JWT verification with OpenSSL.
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "auth/authenticator.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ipsrt/config.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "service/server.h"
#include "tests/testing/jwt_signer.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1790000000);

class MetadataLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStore::Options o;
    o.path = dir_.File("ipsrt.db");
    store_ = *SqliteStore::Open(o);
    workflows_ = std::make_unique<WorkflowRegistry>(
        *WorkflowCatalog::LoadDirectories({}));
    std::ofstream(dir_.File("idp.pem")) << key_.PublicPem();
    AuthConfig auth;
    auth.mode = AuthMode::kRequired;
    auth.jwt = JwtConfig{.issuer = "https://idp.example.org",
                         .audience = "ipsrtd",
                         .rs256_public_key_file = dir_.File("idp.pem")};
    authenticator_ = *Authenticator::Create(auth);
    ServerDeps deps{store_.get(), &clock_, &ids_, workflows_.get(), {}};
    deps.authenticator = authenticator_.get();
    // The defaults ipsrtd starts with (config.h, ServerConfig).
    ServerOptions options;
    options.max_metadata_bytes =
        static_cast<int>(ServerConfig().max_metadata_bytes);
    server_ = *IpsrtServer::Start(options, deps);
    stub_ = v1::DiagnosticsService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                            grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
    if (store_) store_->Close();
  }

  // A clinician's RS256 JWT padded with group claims to about `bytes`.
  std::string Token(size_t bytes) {
    nlohmann::json groups = nlohmann::json::array();
    nlohmann::json claims = {{"iss", "https://idp.example.org"},
                             {"aud", "ipsrtd"},
                             {"sub", "clinician-1"},
                             {"role", "clinician"},
                             {"tenant", "a"},
                             {"exp", absl::ToUnixSeconds(kNow) + 600}};
    std::string token = key_.Rs256(claims);
    for (int i = 0; token.size() < bytes; ++i) {
      groups.push_back(absl::StrCat("/clinic-a/teams/ward-", i, "/members"));
      claims["groups"] = groups;
      token = key_.Rs256(claims);
    }
    return token;
  }

  grpc::Status Call(const std::string& token) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::ServerInfo info;
    return stub_->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info);
  }

  testing::TempDir dir_;
  FakeClock clock_{kNow};
  RandomIdGenerator ids_;
  testing::RsaKey key_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<WorkflowRegistry> workflows_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<IpsrtServer> server_;
  std::unique_ptr<v1::DiagnosticsService::Stub> stub_;
};

TEST_F(MetadataLimitTest, DefaultIsAtLeast16KiB) {
  EXPECT_GE(ServerConfig().max_metadata_bytes, 16 * 1024);
}

TEST_F(MetadataLimitTest, An8KiBRs256JwtIsAccepted) {
  const std::string token = Token(8 * 1024);
  ASSERT_GE(token.size(), 8u * 1024);
  ASSERT_LT(token.size(), 9u * 1024);
  grpc::Status s = Call(token);
  EXPECT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
}

TEST_F(MetadataLimitTest, ATokenOverTheLimitIsUnauthenticatedWithTheSetting) {
  const std::string token = Token(20 * 1024);
  grpc::Status s = Call(token);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("server.max_metadata_bytes"));
  EXPECT_THAT(s.error_message(), HasSubstr("limit of 16384 bytes"));
  // The message never repeats the token.
  EXPECT_THAT(s.error_message(),
              ::testing::Not(HasSubstr(token.substr(0, 40))));
}

// Beyond 4 times the limit gRPC refuses the header block itself, before
// ipsrtd sees the call: RESOURCE_EXHAUSTED (README, "Security model").
TEST_F(MetadataLimitTest, BeyondGrpcsOwnLimitGrpcRefuses) {
  grpc::Status s = Call(std::string(80 * 1024, 'x'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  // The server is unharmed.
  EXPECT_TRUE(Call(Token(1024)).ok());
}

}  // namespace
}  // namespace ipsrt
