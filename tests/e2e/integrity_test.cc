// `ipsrt store verify` with the real binaries: a store populated by ipsrtd
// is intact offline (SQLite file, PostgreSQL database) and over gRPC, also
// against the anchor ipsrtd writes; one byte of a stored PHQ-9 (item 9:
// 1 -> 0) edited with SQL is then named by every path, and ipsrtd with
// integrity.verify_on_start refuses to start on it.

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "postgres_e2e.h"
#include "store/blob_codec.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/sqlite_db.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;

v1::SubmitEventRequest Phq9(const std::string& name,
                            const std::string& request_id, int item9) {
  v1::SubmitEventRequest r;
  r.set_name(name);
  r.set_request_id(request_id);
  v1::QuestionnaireResponse* q =
      r.mutable_event()->mutable_questionnaire_response();
  q->set_questionnaire_id("phq9");
  for (int i = 1; i <= 9; ++i) (*q->mutable_answers())[absl::StrCat(i)] = 1;
  (*q->mutable_answers())["9"] = item9;
  return r;
}

// Populate creates two enrollments with two PHQ-9 responses each (events 2
// and 3, item 9 = 1) and returns the first one's name.
std::string Populate(const std::string& address) {
  auto stub = EnrollmentStub(address);
  std::string first;
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    v1::Enrollment e;
    grpc::Status s = stub->CreateEnrollment(
        &ctx,
        NewEnrollment(absl::StrCat("create-", i), absl::StrCat("Patient/", i)),
        &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (first.empty()) first = e.name();
    for (int k = 0; k < 2; ++k) {
      grpc::ClientContext ectx;
      v1::SubmitEventResponse r;
      s = stub->SubmitEvent(
          &ectx, Phq9(e.name(), absl::StrCat("phq9-", i, "-", k), 1), &r);
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
  }
  return first;
}

// The map entry {"9": 1} of a serialized PHQ-9 response.
const std::string kItem9Is1("\x0a\x01\x39\x10\x01", 5);

// WithItem9Cleared is a stored event payload (store/blob_codec.h: 0x00 0x02,
// then the packed event without its hash field) with PHQ-9 item 9 changed
// from 1 to 0 and stored again the same way: the coherent edit of someone
// who writes the database. Empty when the column is not in that form.
std::string WithItem9Cleared(const std::string& column) {
  if (column.substr(0, 2) != std::string("\0\2", 2)) return "";
  absl::StatusOr<std::string> payload =
      UnpackBlob(column.substr(2), "the payload");
  if (!payload.ok()) return "";
  const size_t at = payload->find(kItem9Is1);
  if (at == std::string::npos) return "";
  (*payload)[at + 4] = '\0';
  return absl::StrCat(column.substr(0, 2), PackBlob(*payload));
}

std::string Id(const std::string& name) {
  return name.substr(name.rfind('/') + 1);
}

TEST(IntegrityE2eTest, SqliteVerifyOfflineOnlineAndAtStart) {
  TempDir dir;
  std::string config = WriteConfig(dir);
  ASSERT_TRUE(WriteFile(dir.File("anchor.key"),
                        "8f2d0c5e9b7a41e3a6c1f0d2b4e8a7c91d3f5b6a\n")
                  .ok());
  std::ofstream(config, std::ios::app)
      << "integrity:\n  anchor_path: anchors/anchor.txt\n"
         "  anchor_key_file: anchor.key\n  anchor_interval: 1h\n";
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string name = Populate((*server)->address());
  ProcessResult online = RunCli((*server)->address(), {"store", "verify"});
  EXPECT_EQ(online.exit_code, 0) << online.out << online.err;
  EXPECT_THAT(online.out, HasSubstr("verified 2 enrollment(s), 6 event(s)"));
  EXPECT_THAT(online.out, HasSubstr("checked against the anchor"));
  EXPECT_THAT(online.out, HasSubstr("store intact"));
  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);

  const std::vector<std::string> offline = {
      "store", "verify", "--db=" + dir.File("ipsrt.db"),
      "--anchor=" + dir.File("anchors/anchor.txt"),
      "--key=" + dir.File("anchor.key")};
  ProcessResult intact = RunCliNoServer(offline);
  EXPECT_EQ(intact.exit_code, 0) << intact.out << intact.err;
  EXPECT_THAT(intact.out, HasSubstr("store intact"));

  // Edit one byte of event 2 of the first enrollment: item 9 from 1 to 0.
  {
    testing::SqliteDb db(dir.File("ipsrt.db"));
    // The stored form (store/blob_codec.h): 0x00 0x02, then the packed event
    // without its hash field.
    const std::string payload = WithItem9Cleared(db.EventPayload(Id(name), 2));
    ASSERT_FALSE(payload.empty());
    db.SetEventPayload(Id(name), 2, payload);
  }

  const std::string finding = absl::StrCat(
      "BROKEN ", name,
      " at 2: event 2 does not match its hash (its payload was modified)");
  ProcessResult broken = RunCliNoServer(offline);
  EXPECT_EQ(broken.exit_code, 1) << broken.out << broken.err;
  EXPECT_THAT(broken.out, HasSubstr(finding));

  // verify_on_start refuses to serve the edited store.
  std::ofstream(config, std::ios::app) << "  verify_on_start: true\n";
  absl::StatusOr<std::unique_ptr<Ipsrtd>> refused = Ipsrtd::Start(config);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr(absl::StrCat("integrity.verify_on_start: 1 broken "
                                     "chain(s)")));
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr(absl::StrCat(name, " at 2: event 2 does not match")));
}

TEST(IntegrityE2eTest, PostgresVerifyOffline) {
  absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
      testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)->CreateDatabase("verify").ok());
  TempDir dir;
  const std::string config =
      WritePostgresConfig(dir, (*pg)->Conninfo("verify"), "");
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string name = Populate((*server)->address());
  ASSERT_TRUE((*server)->Terminate().ok());

  const std::vector<std::string> verify = {
      "store", "verify", "--postgres=" + (*pg)->Conninfo("verify")};
  ProcessResult intact = RunCliNoServer(verify);
  EXPECT_EQ(intact.exit_code, 0) << intact.out << intact.err;
  EXPECT_THAT(intact.out, HasSubstr("verified 2 enrollment(s), 6 event(s)"));

  // The same one-byte edit: read the stored payload, edit its content and
  // store it again packed, with SQL.
  const std::string where = absl::StrCat(
      " WHERE enrollment_key = (SELECT key FROM enrollments WHERE "
      "id = '",
      Id(name), "') AND sequence = 2");
  absl::StatusOr<std::string> hex = (*pg)->Psql(
      "verify",
      absl::StrCat("SELECT encode(payload, 'hex') FROM events", where));
  ASSERT_TRUE(hex.ok()) << hex.status();
  const std::string payload = WithItem9Cleared(
      absl::HexStringToBytes(absl::StripAsciiWhitespace(*hex)));
  ASSERT_FALSE(payload.empty());
  absl::StatusOr<std::string> edited =
      (*pg)->Psql("verify", absl::StrCat("UPDATE events SET payload = decode('",
                                         absl::BytesToHexString(payload),
                                         "', 'hex')", where));
  ASSERT_TRUE(edited.ok()) << edited.status();
  ProcessResult broken = RunCliNoServer(verify);
  EXPECT_EQ(broken.exit_code, 1) << broken.out << broken.err;
  EXPECT_THAT(broken.out,
              HasSubstr(absl::StrCat("BROKEN ", name,
                                     " at 2: event 2 does not match its hash "
                                     "(its payload was modified)")));
}

}  // namespace
}  // namespace ipsrt::e2e
