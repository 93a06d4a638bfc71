// `ipsrt store copy`: a SQLite database populated by a real ipsrtd moves to
// PostgreSQL, verifies, and serves from there; copying into a non-empty
// database and copying a tampered event log are refused. One test, so that
// PostgreSQL and the populated source are set up once.
#include <openssl/evp.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "postgres_e2e.h"
#include "store/blob_codec.h"
#include "tests/testing/postgres_server.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;

constexpr int kEnrollments = 5;
constexpr int kEventsEach = 3;
// Audit records added behind ipsrtd's back: more than the copy's cursor
// fetches at once (1000).
constexpr int kExtraAudit = 1100;

// AuditHash is the audit chain's hash as engine/store/audit_chain.h
// documents it, computed here independently of the engine: SHA-256, in
// lowercase hex, over prev_hash followed by each field as
// "<decimal length>:<bytes>".
std::string AuditHash(const std::string& prev_hash,
                      const std::vector<std::string>& fields) {
  std::string data = prev_hash;
  for (const std::string& f : fields) absl::StrAppend(&data, f.size(), ":", f);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

class StoreCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
        testing::PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = *std::move(pg);
    // Populate SQLite through a real ipsrtd.
    const std::string config = WriteConfig(sqlite_dir_);
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = EnrollmentStub((*server)->address());
    for (int i = 0; i < kEnrollments; ++i) {
      grpc::ClientContext ctx;
      v1::Enrollment e;
      ASSERT_TRUE(stub->CreateEnrollment(
                          &ctx,
                          NewEnrollment(absl::StrCat("create-", i),
                                        absl::StrCat("Patient/copy-", i)),
                          &e)
                      .ok());
      for (int k = 0; k < kEventsEach; ++k) {
        grpc::ClientContext ectx;
        v1::SubmitEventResponse r;
        ASSERT_TRUE(
            stub->SubmitEvent(
                    &ectx,
                    SessionHeld(e.name(), absl::StrCat("ev-", i, "-", k),
                                e.revision() + k),
                    &r)
                .ok());
        revisions_[e.name()] = r.enrollment().revision();
      }
    }
    stub.reset();
    absl::StatusOr<int> exit_status = (*server)->Terminate();
    ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  }

  std::string SqlitePath() const { return sqlite_dir_.File("ipsrt.db"); }

  ProcessResult Copy(const std::string& database) {
    return RunCliNoServer(
        {"store", "copy", absl::StrCat("--from=sqlite:", SqlitePath()),
         absl::StrCat("--to=postgres:", pg_->Conninfo(database))});
  }

  TempDir sqlite_dir_;
  std::unique_ptr<testing::PostgresServer> pg_;
  std::map<std::string, int64_t> revisions_;  // enrollment name -> revision
};

TEST_F(StoreCopyTest, CopiesVerifiesServesAndRefusesBadCopies) {
  // Rows ipsrtd does not write yet must move too: audit records chained
  // after those ipsrtd appended (digests kept as their bytes, as ipsrtd
  // keeps them), and a claimed outbox row with its lease,
  // last error and change-feed position (nullable columns set).
  absl::StatusOr<ProcessResult> head = RunProcess(
      {"/usr/bin/sqlite3", SqlitePath(),
       "SELECT seq || ' ' || lower(hex(hash)) FROM audit ORDER BY seq DESC "
       "LIMIT 1"});
  ASSERT_TRUE(head.ok() && head->exit_code == 0) << head->err;
  int64_t seq = 0;
  std::string prev_hash;
  std::string head_line(absl::StripAsciiWhitespace(head->out));
  if (!head_line.empty()) {
    std::vector<std::string> parts = absl::StrSplit(head_line, ' ');
    ASSERT_EQ(parts.size(), 2u) << head_line;
    ASSERT_TRUE(absl::SimpleAtoi(parts[0], &seq)) << head_line;
    prev_hash = parts[1];
  }
  const int64_t audit_total = seq + kExtraAudit;
  std::string sql = "BEGIN;\n";
  for (int i = 0; i < kExtraAudit; ++i) {
    ++seq;
    std::vector<std::string> fields = {
        absl::StrCat(seq),
        "default",
        "carol",
        "clinician",
        "/ipsrt.v1.EnrollmentService/GetEnrollment",
        absl::StrCat("tenants/default/enrollments/e", i),
        i % 7 == 0 ? "PERMISSION_DENIED" : "OK",
        absl::StrCat(1790000000000000 + i),
        i % 2 == 0 ? absl::StrCat("req-", i) : ""};
    std::string hash = AuditHash(prev_hash, fields);
    absl::StrAppend(&sql,
                    "INSERT INTO audit (seq, tenant, subject, role, rpc, "
                    "resource, outcome, time_us, request_id, hash) "
                    "VALUES (",
                    fields[0], ", '", fields[1], "', '", fields[2], "', '",
                    fields[3], "', '", StoredAuditRpc(fields[4]), "', '",
                    StoredAuditResource(fields[1], fields[5]), "', '",
                    fields[6], "', ", fields[7], ", '", fields[8], "', X'",
                    hash, "');\n");
    prev_hash = hash;
  }
  absl::StrAppend(
      &sql,
      "UPDATE outbox SET status = 1, attempts = 2, lease_owner = 'replica-a', "
      "lease_expiry_us = 1790000000000000, change_seq = 1, last_error = "
      "'UNAVAILABLE: gateway busy' WHERE id = (SELECT MIN(id) FROM outbox);\n"
      "UPDATE outbox_feed SET last_seq = 1;\nCOMMIT;\n");
  const std::string sql_file = sqlite_dir_.File("extra.sql");
  {
    std::ofstream out(sql_file);
    out << sql;
    ASSERT_TRUE(out.good());
  }
  absl::StatusOr<ProcessResult> extra = RunProcess(
      {"/usr/bin/sqlite3", SqlitePath(), absl::StrCat(".read ", sql_file)});
  ASSERT_TRUE(extra.ok() && extra->exit_code == 0) << extra->err;

  // One audit record changed behind the chain's back fails verification,
  // and nothing of that copy stays in PostgreSQL.
  const int64_t forged_seq = audit_total - 5;
  ASSERT_EQ(
      RunProcess({"/usr/bin/sqlite3", SqlitePath(),
                  absl::StrCat("UPDATE audit SET subject = 'mallory' WHERE "
                               "seq = ",
                               forged_seq)})
          ->exit_code,
      0);
  ASSERT_TRUE(pg_->CreateDatabase("audit_forged").ok());
  ProcessResult audit_forged = Copy("audit_forged");
  EXPECT_EQ(audit_forged.exit_code, 1);
  EXPECT_EQ(
      audit_forged.err,
      absl::StrCat("error: DATA_LOSS: store copy: audit record ", forged_seq,
                   " does not match its hash (modified or moved, or the "
                   "record before it was replaced)\n"));
  EXPECT_EQ(*pg_->Psql("audit_forged", "SELECT COUNT(*) FROM audit"), "0");
  ASSERT_EQ(RunProcess(
                {"/usr/bin/sqlite3", SqlitePath(),
                 absl::StrCat("UPDATE audit SET subject = 'carol' WHERE seq = ",
                              forged_seq)})
                ->exit_code,
            0);
  ASSERT_TRUE(pg_->CreateDatabase("copied").ok());
  ProcessResult r = Copy("copied");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const int events = kEnrollments * (1 + kEventsEach);
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("enrollments  ", kEnrollments,
                                            " rows copied, ", kEnrollments,
                                            " in PostgreSQL")));
  EXPECT_THAT(r.out,
              HasSubstr(absl::StrCat("events       ", events, " rows copied, ",
                                     events, " in PostgreSQL")));
  EXPECT_THAT(r.out,
              HasSubstr(absl::StrCat("requests     ", events, " rows copied, ",
                                     events, " in PostgreSQL")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                         "verified: row counts and content digests equal; ",
                         events, " events in ", kEnrollments,
                         " hash chains recomputed and linked; ", audit_total,
                         " audit records recomputed and linked")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("audit        ", audit_total,
                                            " rows copied, ", audit_total,
                                            " in PostgreSQL")));
  EXPECT_THAT(r.out, HasSubstr("ok: schema version 10"));
  // The outbox rows (reminders the runtime planned) came along with their
  // ids, and new rows continue after them.
  std::string outbox_sqlite_count =
      RunProcess(
          {"/usr/bin/sqlite3", SqlitePath(), "SELECT COUNT(*) FROM outbox"})
          ->out;
  EXPECT_EQ(*pg_->Psql("copied", "SELECT COUNT(*) FROM outbox") + "\n",
            outbox_sqlite_count);
  EXPECT_EQ(*pg_->Psql("copied",
                       "SELECT lease_owner || ' ' || lease_expiry_us || ' ' || "
                       "change_seq || ' ' || last_error FROM outbox WHERE "
                       "status = 1"),
            "replica-a 1790000000000000 1 UNAVAILABLE: gateway busy");
  EXPECT_EQ(*pg_->Psql("copied", "SELECT last_seq FROM outbox_feed"), "1");
  // The audit chain arrives record for record.
  absl::StatusOr<ProcessResult> sqlite_hashes =
      RunProcess({"/usr/bin/sqlite3", SqlitePath(),
                  "SELECT group_concat(lower(hex(hash)) || request_id, ',') "
                  "FROM (SELECT hash, request_id FROM audit ORDER BY seq)"});
  ASSERT_TRUE(sqlite_hashes.ok() && sqlite_hashes->exit_code == 0);
  EXPECT_EQ(*pg_->Psql("copied",
                       "SELECT string_agg(encode(hash, 'hex') || request_id, "
                       "',' ORDER BY seq) FROM audit") +
                "\n",
            sqlite_hashes->out);

  // ipsrtd serves the copy: every enrollment at its revision, and the
  // next event continues the log.
  TempDir pg_dir;
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
      Ipsrtd::Start(WritePostgresConfig(pg_dir, pg_->Conninfo("copied"), ""));
  ASSERT_TRUE(server.ok()) << server.status();
  {
    // Scoped: a client context or channel left open slows ipsrtd's drain.
    auto stub = EnrollmentStub((*server)->address());
    for (const auto& [name, revision] : revisions_) {
      grpc::ClientContext ctx;
      v1::GetEnrollmentRequest get;
      get.set_name(name);
      v1::Enrollment got;
      ASSERT_TRUE(stub->GetEnrollment(&ctx, get, &got).ok()) << name;
      EXPECT_EQ(got.revision(), revision);
    }
    const auto& [name, revision] = *revisions_.begin();
    grpc::ClientContext ctx;
    v1::SubmitEventResponse next;
    grpc::Status s = stub->SubmitEvent(
        &ctx, SessionHeld(name, "after-copy", revision), &next);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(next.event().sequence(), 1 + kEventsEach + 1);
    // A request made before the copy replays from the copied record.
    grpc::ClientContext rctx;
    v1::Enrollment replayed;
    ASSERT_TRUE(
        stub->CreateEnrollment(
                &rctx, NewEnrollment("create-0", "Patient/copy-0"), &replayed)
            .ok());
    EXPECT_TRUE(revisions_.count(replayed.name()));
    // A new enrollment after the copy gets a number after the copied ones
    // (the identity sequence moved with them), and its events follow it.
    grpc::ClientContext nctx;
    v1::Enrollment fresh;
    s = stub->CreateEnrollment(
        &nctx, NewEnrollment("after-copy-create", "Patient/after-copy"),
        &fresh);
    ASSERT_TRUE(s.ok()) << s.error_message();
    grpc::ClientContext fctx;
    v1::SubmitEventResponse first_event;
    s = stub->SubmitEvent(
        &fctx, SessionHeld(fresh.name(), "after-copy-event", 1), &first_event);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(first_event.event().sequence(), 2);
  }
  ASSERT_TRUE((*server)->Terminate().ok());

  // A second copy into the now non-empty database is refused.
  ProcessResult again = Copy("copied");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.err,
            absl::StrCat("error: FAILED_PRECONDITION: store copy: the "
                         "destination's enrollments table holds ",
                         kEnrollments + 1,
                         " rows; copy only into an empty database\n"));

  // The same source with one event's hash forged fails verification.
  absl::StatusOr<ProcessResult> tamper =
      RunProcess({"/usr/bin/sqlite3", SqlitePath(),
                  "UPDATE events SET hash = 'forged' WHERE sequence = 3 AND "
                  "enrollment_key = (SELECT MIN(enrollment_key) FROM events)"});
  ASSERT_TRUE(tamper.ok() && tamper->exit_code == 0) << tamper->err;
  ASSERT_TRUE(pg_->CreateDatabase("tampered").ok());
  ProcessResult forged = Copy("tampered");
  EXPECT_EQ(forged.exit_code, 1);
  EXPECT_THAT(forged.err,
              HasSubstr("error: DATA_LOSS: store copy: tenants/default/"
                        "enrollments/"));
  EXPECT_THAT(forged.err,
              HasSubstr(" event 3: hash does not match its content"));
  // The failed copy was rolled back: nothing of it is in PostgreSQL.
  EXPECT_EQ(*pg_->Psql("tampered", "SELECT COUNT(*) FROM events"), "0");
  EXPECT_EQ(*pg_->Psql("tampered", "SELECT COUNT(*) FROM enrollments"), "0");
}

TEST(StoreCopyCliTest, BadArgumentsAreUsageErrors) {
  ProcessResult r = RunCliNoServer(
      {"store", "copy", "--from=mysql:x", "--to=postgres:dbname=x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "ipsrt store copy: --from must be sqlite:PATH\n");
  r = RunCliNoServer({"store", "move", "--from=sqlite:x", "--to=postgres:x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "ipsrt store: unknown subcommand \"move\" (known: copy, verify, "
            "init, check)\n");
}

}  // namespace
}  // namespace ipsrt::e2e
