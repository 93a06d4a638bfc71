// Security end to end with the real binaries: TLS plus JWT (RS256, key made
// by OpenSSL) and a hashed API token, through the ipsrt CLI's --token_file
// and --token; the audit trail listed and verified over gRPC, then tampered
// in the SQLite file and caught by `ipsrt audit verify --db` offline.
#include <openssl/sha.h>
#include <sqlite3.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"
#include "tests/testing/jwt_signer.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Sha256Hex(const std::string& s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  std::string out;
  for (unsigned char c : d) absl::StrAppendFormat(&out, "%02x", c);
  return out;
}

nlohmann::json Claims(const std::string& sub, const std::string& role,
                      const std::string& patient = "") {
  nlohmann::json c = {{"iss", "https://idp.test"},
                      {"aud", "ipsrtd"},
                      {"sub", sub},
                      {"role", role},
                      {"tenant", "clinic-a"},
                      {"exp", absl::ToUnixSeconds(absl::Now()) + 600}};
  if (!patient.empty()) c["patient_ref"] = patient;
  return c;
}

TEST(SecurityTest, TlsAndJwtThroughTheCli) {
  TempDir dir;
  MakeCertificates(dir);
  if (HasFailure()) return;
  ::ipsrt::testing::RsaKey idp;
  ASSERT_TRUE(WriteFile(dir.File("idp.pem"), idp.PublicPem()).ok());
  const std::string admin_token = "tok-e2e-admin-5c1f";
  // `ipsrt token hash` makes the config's form of the token.
  absl::StatusOr<ProcessResult> hashed = RunProcess(
      {"/bin/sh", "-c",
       absl::StrCat("echo ", admin_token, " | ", IPSRT_BIN, " token hash")});
  ASSERT_TRUE(hashed.ok());
  ASSERT_EQ(hashed->exit_code, 0) << hashed->err;
  EXPECT_EQ(hashed->out, Sha256Hex(admin_token) + "\n");
  ASSERT_TRUE(
      WriteFile(dir.File("ipsrtd.yaml"),
                absl::StrCat(
                    "server:\n  listen: 127.0.0.1:0\n  tls:\n"
                    "    cert_file: server.crt\n    key_file: server.key\n"
                    "auth:\n  jwt:\n    issuer: https://idp.test\n"
                    "    audience: ipsrtd\n    rs256_public_key_file: idp.pem\n"
                    "  api_tokens:\n    - sha256: ",
                    Sha256Hex(admin_token),
                    "\n      subject: ops\n      role: admin\n"
                    "store:\n  sqlite:\n    path: ipsrt.db\n"
                    "workflows:\n  directories: [",
                    IPSRT_WORKFLOWS_DIR, "]\n",
                    "plugins:\n  - path: libipsrt_core_instruments.so\n"))
          .ok());
  const std::string clinician_jwt = idp.Rs256(Claims("dr-lee", "clinician"));
  const std::string patient_jwt =
      idp.Rs256(Claims("app-9", "patient", "Patient/other"));
  ASSERT_TRUE(WriteFile(dir.File("clinician.jwt"), clinician_jwt + "\n").ok());
  ASSERT_TRUE(WriteFile(dir.File("patient.jwt"), patient_jwt + "\n").ok());

  absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
      Ipsrtd::Start(dir.File("ipsrtd.yaml"));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  const std::string ca = "--tls_ca=" + dir.File("ca.crt");
  const std::vector<std::string> enroll = {"enroll",
                                           ca,
                                           "--tenant=clinic-a",
                                           "--patient=Patient/e2e",
                                           "--workflow=ipsrt-standard",
                                           "--time_zone=UTC",
                                           "--clinician=Practitioner/e2e",
                                           "--request_id=sec-1"};

  // Health needs no token; the server's details are left out without one.
  ProcessResult health = RunCli(address, {"health", ca});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_THAT(health.out, HasSubstr("status: SERVING"));
  EXPECT_THAT(health.err, HasSubstr("server info not shown: authentication: "
                                    "this server requires a bearer token"));

  // No token: refused, and the message names what is missing.
  ProcessResult anonymous = RunCli(address, enroll);
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err,
              HasSubstr("error: UNAUTHENTICATED: authentication: this server "
                        "requires a bearer token"));
  // A forged token is refused without being echoed.
  std::vector<std::string> forged = enroll;
  forged.push_back("--token=" +
                   ::ipsrt::testing::Hs256(std::string(40, 'k'),
                                           Claims("dr-lee", "clinician")));
  ProcessResult bad = RunCli(address, forged);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(bad.err, Not(HasSubstr(forged.back().substr(8))));

  std::vector<std::string> as_clinician = enroll;
  as_clinician.push_back("--token_file=" + dir.File("clinician.jwt"));
  ProcessResult created = RunCli(address, as_clinician);
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("stage: initial"));
  std::string name = created.out.substr(created.out.find("tenants/"));
  name = name.substr(0, name.find_first_of(" \n"));

  // Another patient's token cannot see it: the answer of a missing one.
  ProcessResult other = RunCli(
      address, {"get", name, ca, "--token_file=" + dir.File("patient.jwt")});
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_THAT(other.err, HasSubstr(absl::StrCat("error: NOT_FOUND: enrollment ",
                                                name, " not found")));
  // A clinician may not read the audit trail.
  ProcessResult denied = RunCli(
      address,
      {"audit", "list", ca, "--token_file=" + dir.File("clinician.jwt")});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("error: PERMISSION_DENIED: permission "
                                    "denied: clinician may not call "
                                    "/ipsrt.v1.AuditService/ListAuditRecords"));

  const std::string admin = "--token=" + admin_token;
  ProcessResult listed = RunCli(address, {"audit", "list", ca, admin});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr(absl::StrCat(
                              "clinic-a dr-lee/clinician "
                              "/ipsrt.v1.EnrollmentService/CreateEnrollment ",
                              name, " OK")));
  EXPECT_THAT(listed.out, HasSubstr(absl::StrCat("clinic-a app-9/patient "
                                                 "/ipsrt.v1.EnrollmentService/"
                                                 "GetEnrollment ",
                                                 name, " NOT_FOUND")));
  EXPECT_THAT(listed.out, HasSubstr("clinic-a -/- /ipsrt.v1.EnrollmentService/"
                                    "CreateEnrollment tenants/clinic-a "
                                    "UNAUTHENTICATED"));
  ProcessResult verified = RunCli(address, {"audit", "verify", ca, admin});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("audit chain intact: 6 record(s)"));
  // The token from the environment.
  absl::StatusOr<ProcessResult> from_env =
      RunProcess({"/bin/sh", "-c",
                  absl::StrCat("IPSRT_TOKEN=", admin_token, " ", IPSRT_BIN,
                               " audit verify --server=", address, " ", ca)});
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->exit_code, 0) << from_env->err;
  EXPECT_THAT(from_env->out, HasSubstr("audit chain intact: 6 record(s)"));

  // The load generator sends a token too; without one every call fails.
  std::vector<std::string> loadgen = {
      IPSRT_LOADGEN_BIN, "--server=" + address, ca,
      "--rpc=ping",      "--duration=300ms",    "--warmup=0s",
      "--concurrency=2"};
  absl::StatusOr<ProcessResult> refused_load = RunProcess(loadgen);
  ASSERT_TRUE(refused_load.ok());
  EXPECT_EQ(refused_load->exit_code, 1) << refused_load->err;
  loadgen.push_back("--token=" + admin_token);
  absl::StatusOr<ProcessResult> load = RunProcess(loadgen);
  ASSERT_TRUE(load.ok());
  EXPECT_EQ(load->exit_code, 0) << load->err;

  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);
  const std::string log = (*server)->process().Log();
  EXPECT_THAT(log, HasSubstr("authentication required: JWT, 1 API token(s)"));
  for (const std::string& secret : {admin_token, clinician_jwt, patient_jwt}) {
    EXPECT_THAT(log, Not(HasSubstr(secret)));
  }

  // Offline: intact (refused loadgen calls are records too), then a
  // modified record is caught.
  const std::string db = "--db=" + dir.File("ipsrt.db");
  ProcessResult offline = RunCliNoServer({"audit", "verify", db});
  EXPECT_EQ(offline.exit_code, 0) << offline.err;
  EXPECT_THAT(offline.out, HasSubstr("audit chain intact: "));
  sqlite3* handle = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("ipsrt.db").c_str(), &handle), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(handle, "UPDATE audit SET outcome = 'OK' WHERE seq = 5",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(handle);
  ProcessResult broken = RunCliNoServer({"audit", "verify", db});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_THAT(broken.out,
              HasSubstr("audit chain BROKEN at seq 5: record 5 does not match "
                        "its hash (modified or moved"));
}

}  // namespace
}  // namespace ipsrt::e2e
