// `ipsrt store copy`: a SQLite database populated by a real ipsrtd moves to
// PostgreSQL, verifies, and serves from there; copying into a non-empty
// database and copying a tampered event log are refused. One test, so that
// PostgreSQL and the populated source are set up once.
#include <sys/wait.h>

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "postgres_e2e.h"
#include "tests/testing/postgres_server.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;

constexpr int kEnrollments = 5;
constexpr int kEventsEach = 3;

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
  // Rows ipsrtd does not write yet must move too: a linked audit chain and
  // a claimed outbox row with its lease (nullable columns set).
  absl::StatusOr<ProcessResult> extra = RunProcess(
      {"/usr/bin/sqlite3", SqlitePath(),
       "INSERT INTO audit VALUES "
       "(1, 'default', 'alice', 'clinician', 'GetEnrollment', 'r1', 'OK', 1, "
       "'', 'a1'), "
       "(2, 'default', 'bob', 'admin', 'ListEnrollments', 'r2', 'OK', 2, "
       "'a1', 'a2'), "
       "(3, 'default', 'alice', 'clinician', 'SubmitEvent', 'r3', "
       "'ABORTED', 3, 'a2', 'a3'); "
       // More rows than the copy's cursor fetches at once (1000).
       "INSERT INTO audit WITH RECURSIVE n(i) AS (SELECT 4 UNION ALL SELECT "
       "i + 1 FROM n WHERE i < 1100) SELECT i, 'default', 'carol', "
       "'clinician', 'GetEnrollment', 'r', 'OK', i, 'a' || (i - 1), 'a' || i "
       "FROM n; "
       "UPDATE outbox SET status = 1, attempts = 1, lease_owner = 'replica-a', "
       "lease_expiry_us = 1790000000000000 WHERE id = (SELECT MIN(id) FROM "
       "outbox);"});
  ASSERT_TRUE(extra.ok() && extra->exit_code == 0) << extra->err;
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
                         " hash chains recomputed and linked; 1100 audit rows "
                         "linked")));
  EXPECT_THAT(r.out, HasSubstr("ok: schema version 1"));
  // The outbox rows (reminders the runtime planned) came along with their
  // ids, and new rows continue after them.
  std::string outbox_sqlite_count =
      RunProcess(
          {"/usr/bin/sqlite3", SqlitePath(), "SELECT COUNT(*) FROM outbox"})
          ->out;
  EXPECT_EQ(*pg_->Psql("copied", "SELECT COUNT(*) FROM outbox") + "\n",
            outbox_sqlite_count);
  EXPECT_EQ(*pg_->Psql("copied",
                       "SELECT lease_owner || ' ' || lease_expiry_us FROM "
                       "outbox WHERE status = 1"),
            "replica-a 1790000000000000");
  EXPECT_EQ(*pg_->Psql("copied",
                       "SELECT string_agg(hash, ',' ORDER BY seq) FROM audit "
                       "WHERE seq <= 4"),
            "a1,a2,a3,a4");

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
  }
  ASSERT_TRUE((*server)->Terminate().ok());

  // A second copy into the now non-empty database is refused.
  ProcessResult again = Copy("copied");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(
      again.err,
      absl::StrCat("error: FAILED_PRECONDITION: store copy: the "
                   "destination's enrollments table holds ",
                   kEnrollments, " rows; copy only into an empty database\n"));

  // The same source with one event's hash forged fails verification.
  absl::StatusOr<ProcessResult> tamper =
      RunProcess({"/usr/bin/sqlite3", SqlitePath(),
                  "UPDATE events SET hash = 'forged' WHERE sequence = 3 AND "
                  "enrollment_id = (SELECT MIN(enrollment_id) FROM events)"});
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
  EXPECT_EQ(r.err, "ipsrt store: unknown subcommand \"move\" (known: copy)\n");
}

}  // namespace
}  // namespace ipsrt::e2e
