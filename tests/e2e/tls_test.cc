// TLS and mutual TLS with the real binaries and certificates made by the
// test with OpenSSL; and the rule that a plaintext listener stays on
// loopback.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;

std::string TlsConfig(const TempDir& dir, bool mutual) {
  std::string path = dir.File("ipsrtd.yaml");
  std::string yaml = absl::StrCat(
      "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert_file: server.crt\n"
      "    key_file: server.key\n",
      mutual ? "    client_ca_file: ca.crt\n" : "",
      "store:\n  sqlite:\n    path: ipsrt.db\n"
      "workflows:\n  directories: [",
      IPSRT_WORKFLOWS_DIR, "]\n",
      "plugins:\n  - path: libipsrt_core_instruments.so\n");
  EXPECT_TRUE(WriteFile(path, yaml).ok());
  return path;
}

TEST(TlsTest, ServerAuthenticatedTls) {
  TempDir dir;
  MakeCertificates(dir);
  if (HasFailure()) return;
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
      Ipsrtd::Start(TlsConfig(dir, /*mutual=*/false));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  ProcessResult ok =
      RunCli(address, {"health", "--tls_ca=" + dir.File("ca.crt")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("status: SERVING"));
  // A plaintext client cannot talk to a TLS listener.
  ProcessResult plain = RunCli(address, {"health"});
  EXPECT_EQ(plain.exit_code, 1);
  // Nor can one that trusts another CA.
  Openssl(dir, {"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                dir.File("other.key"), "-out", dir.File("other.crt"), "-days",
                "2", "-subj", "/CN=another CA"});
  ProcessResult wrong_ca =
      RunCli(address, {"health", "--tls_ca=" + dir.File("other.crt")});
  EXPECT_EQ(wrong_ca.exit_code, 1);
  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);
}

TEST(TlsTest, MutualTlsRequiresAClientCertificate) {
  TempDir dir;
  MakeCertificates(dir);
  if (HasFailure()) return;
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
      Ipsrtd::Start(TlsConfig(dir, /*mutual=*/true));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  const std::string ca = "--tls_ca=" + dir.File("ca.crt");
  ProcessResult anonymous = RunCli(address, {"health", ca});
  EXPECT_EQ(anonymous.exit_code, 1);
  ProcessResult with_cert = RunCli(
      address, {"enroll", ca, "--tls_cert=" + dir.File("client.crt"),
                "--tls_key=" + dir.File("client.key"), "--patient=Patient/t",
                "--workflow=ipsrt-standard", "--time_zone=UTC",
                "--clinician=Practitioner/t", "--request_id=tls-1"});
  EXPECT_EQ(with_cert.exit_code, 0) << with_cert.err;
  EXPECT_THAT(with_cert.out, HasSubstr("stage: initial"));
  ProcessResult half =
      RunCli(address, {"health", ca, "--tls_cert=" + dir.File("client.crt")});
  EXPECT_EQ(half.exit_code, 2);
  EXPECT_THAT(half.err, HasSubstr("--tls_cert and --tls_key go together"));
  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);
}

TEST(TlsTest, PlaintextListenerMustBeLoopback) {
  TempDir dir;
  ASSERT_TRUE(
      WriteFile(
          dir.File("ipsrtd.yaml"),
          absl::StrCat("server:\n  listen: 0.0.0.0:0\n"
                       "store:\n  sqlite:\n    path: x.db\n"
                       "workflows:\n  directories: [",
                       IPSRT_WORKFLOWS_DIR, "]\n",
                       "plugins:\n  - path: libipsrt_core_instruments.so\n"))
          .ok());
  absl::StatusOr<ProcessResult> r = RunProcess(
      {IPSRTD_BIN, "--config=" + dir.File("ipsrtd.yaml")}, absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(r->err,
              HasSubstr("ipsrtd.yaml:2:11: error: server.listen: \"0.0.0.0:0\" "
                        "is not a loopback address; listening beyond this "
                        "machine needs server.tls"));
}

}  // namespace
}  // namespace ipsrt::e2e
