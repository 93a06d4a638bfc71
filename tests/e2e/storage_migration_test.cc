// Schema 4 (docs/storage.md) on a database that a schema-3 ipsrtd wrote:
// a kill -9 in the middle of the migration leaves the old layout whole, and
// the next start moves it to the new one and serves every enrollment.
#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "nlohmann/json.hpp"
#include "postgres_e2e.h"
#include "store/migrations.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/sqlite_db.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using Db = testing::SqliteDb;

// The tables whose rows move, with their columns (the same in schemas 3
// and 4).
const char* const kCopied[][2] = {
    {"enrollments",
     "tenant, id, patient_ref, workflow_id, workflow_version, stage, "
     "clinician_ref, state, revision, snapshot, create_time_us, "
     "update_time_us"},
    {"events",
     "tenant, enrollment_id, sequence, type, actor, request_id, "
     "record_time_us, payload, prev_hash, hash"},
    {"requests",
     "tenant, request_id, method, payload_hash, response, create_time_us"},
    {"outbox",
     "id, tenant, enrollment_id, kind, due_time_us, payload, idempotency_key, "
     "status, attempts, lease_owner, lease_expiry_us, create_time_us, "
     "change_seq, last_error"},
    {"audit",
     "seq, tenant, subject, role, rpc, resource, outcome, time_us, "
     "request_id, prev_hash, hash"},
};

std::string Counts(Db& db) {
  std::string out;
  for (const auto& t : kCopied) {
    absl::StrAppend(&out, t[0], "=",
                    db.Scalar(absl::StrCat("SELECT COUNT(*) FROM ", t[0])),
                    " ");
  }
  return out;
}

// Enroll makes three enrollments through an ipsrtd on `config`.
void Enroll(const std::string& config, std::vector<std::string>& names) {
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  for (int i = 0; i < 3; ++i) {
    ProcessResult r =
        RunCli((*server)->address(),
               {"enroll", absl::StrCat("--patient=Patient/", i),
                "--workflow=ipsrt-standard", "--time_zone=Europe/London",
                "--clinician=Practitioner/42", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    names.push_back(nlohmann::json::parse(r.out)["name"]);
  }
  ASSERT_TRUE((*server)->Terminate().ok());
}

// KillInMigration starts ipsrtd on `config` with the test hook that stops
// it inside migration 4's transaction, and kills it -9 there.
void KillInMigration(const TempDir& dir, const std::string& config) {
  const std::string marker = dir.File("paused");
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Spawn(
      {"/usr/bin/env", absl::StrCat("IPSRT_TEST_PAUSE_MIGRATION=4:", marker),
       IPSRTD_BIN, "--config=" + config, "--listen=127.0.0.1:0"},
      dir.File("paused.log"));
  ASSERT_TRUE(child.ok()) << child.status();
  absl::Time deadline = absl::Now() + kServerDeadline;
  while (!std::filesystem::exists(marker) && absl::Now() < deadline &&
         !(*child)->Exited()) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(std::filesystem::exists(marker)) << (*child)->Log();
  (*child)->Signal(SIGKILL);
  ASSERT_TRUE((*child)->WaitForExit(kServerDeadline).has_value());
}

// ServesAll starts ipsrtd on `config` and reads every enrollment.
void ServesAll(const std::string& config,
               const std::vector<std::string>& names) {
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  for (const std::string& name : names) {
    ProcessResult r = RunCli((*server)->address(), {"get", name, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["name"], name);
  }
  ASSERT_TRUE((*server)->Terminate().ok());
}

TEST(StorageMigrationTest, KillDuringTheMigrationLeavesTheOldLayoutWhole) {
  // Enrollments made by ipsrtd itself.
  TempDir made;
  std::vector<std::string> names;
  ASSERT_NO_FATAL_FAILURE(Enroll(WriteConfig(made), names));

  // The same rows in a database laid out by schema 3's migrations.
  TempDir dir;
  const std::string config = WriteConfig(dir);
  const std::string path = dir.File("ipsrt.db");
  std::string before;
  {
    Db db(path);
    testing::LayOutSchema(db, 3);
    db.Exec(absl::StrCat("ATTACH '", made.File("ipsrt.db"), "' AS made"));
    for (const auto& t : kCopied) {
      db.Exec(absl::StrCat("INSERT INTO main.", t[0], " (", t[1], ") SELECT ",
                           t[1], " FROM made.", t[0]));
    }
    db.Exec("DETACH made");
    before = Counts(db);
    ASSERT_THAT(before, HasSubstr("enrollments=3 "));
  }

  // ipsrtd stops inside migration 4's transaction; kill -9 it there.
  ASSERT_NO_FATAL_FAILURE(KillInMigration(dir, config));
  {
    Db db(path);
    EXPECT_EQ(db.Scalar("SELECT MAX(version) FROM schema_migrations"), "3");
    EXPECT_EQ(db.Scalar("PRAGMA integrity_check"), "ok");
    EXPECT_THAT(
        db.Scalar("SELECT sql FROM sqlite_master WHERE name = 'enrollments'"),
        HasSubstr("WITHOUT ROWID"));
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM sqlite_master WHERE name IN "
                        "('request_keys', 'enrollments_v4', 'events_v4', "
                        "'requests_v4')"),
              "0");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = "
                        "'audit_by_subject'"),
              "1");
    EXPECT_EQ(Counts(db), before);
  }

  // The next start migrates and serves every enrollment.
  ASSERT_NO_FATAL_FAILURE(ServesAll(config, names));
  Db db(path);
  EXPECT_EQ(db.Scalar("SELECT MAX(version) FROM schema_migrations"), "4");
  EXPECT_THAT(
      db.Scalar("SELECT sql FROM sqlite_master WHERE name = 'enrollments'"),
      Not(HasSubstr("WITHOUT ROWID")));
  EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM request_keys"), "3");
  // Every row is still there; the three reads added their audit records.
  EXPECT_EQ(Counts(db),
            absl::StrReplaceAll(before, {{"audit=3 ", "audit=6 "}}));
}

// The same on PostgreSQL: the rows of a schema-4 database, dumped into one
// that schema 3's migrations laid out.
TEST(StorageMigrationTest, PostgresKillDuringTheMigrationLeavesTheOldLayout) {
  absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
      testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)->CreateDatabase("made").ok());
  ASSERT_TRUE((*pg)->CreateDatabase("old").ok());
  TempDir made;
  std::vector<std::string> names;
  ASSERT_NO_FATAL_FAILURE(
      Enroll(WritePostgresConfig(made, (*pg)->Conninfo("made"), ""), names));

  std::string sql =
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
      "description TEXT NOT NULL, applied_time_us BIGINT NOT NULL);\n";
  for (const Migration& m : PostgresMigrations()) {
    if (m.version > 3) break;
    absl::StrAppend(&sql, m.sql, "\nINSERT INTO schema_migrations VALUES (",
                    m.version, ", 'm', 1);\n");
  }
  ASSERT_TRUE((*pg)->Psql("old", sql).ok());
  std::vector<std::string> dump = {
      absl::StrCat(testing::kPostgresBinDir, "/pg_dump"), "--data-only",
      "--column-inserts", "--file=" + made.File("rows.sql")};
  for (const auto& t : kCopied) dump.push_back(absl::StrCat("--table=", t[0]));
  dump.push_back((*pg)->Conninfo("made"));
  absl::StatusOr<std::unique_ptr<ChildProcess>> dumped =
      ChildProcess::Spawn(dump, made.File("pg_dump.log"));
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  std::optional<int> status = (*dumped)->WaitForExit(kServerDeadline);
  ASSERT_TRUE(status.has_value() && WIFEXITED(*status) &&
              WEXITSTATUS(*status) == 0)
      << (*dumped)->Log();
  absl::StatusOr<std::string> rows = ReadFile(made.File("rows.sql"));
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_TRUE((*pg)->Psql("old", *rows).ok());
  auto counts = [&] {
    std::string out;
    for (const auto& t : kCopied) {
      absl::StatusOr<std::string> n =
          (*pg)->Psql("old", absl::StrCat("SELECT COUNT(*) FROM ", t[0]));
      absl::StrAppend(&out, t[0], "=", n.ok() ? *n : n.status().ToString(),
                      " ");
    }
    return out;
  };
  const std::string before = counts();
  ASSERT_THAT(before, HasSubstr("enrollments=3 "));

  TempDir dir;
  const std::string config =
      WritePostgresConfig(dir, (*pg)->Conninfo("old"), "");
  ASSERT_NO_FATAL_FAILURE(KillInMigration(dir, config));
  auto scalar = [&](const std::string& q) {
    absl::StatusOr<std::string> r = (*pg)->Psql("old", q);
    return r.ok() ? *r : r.status().ToString();
  };
  EXPECT_EQ(scalar("SELECT MAX(version) FROM schema_migrations"), "3");
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM pg_tables WHERE tablename = "
                   "'request_keys'"),
            "0");
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM pg_indexes WHERE indexname = "
                   "'audit_by_subject'"),
            "1");
  EXPECT_EQ(counts(), before);

  ASSERT_NO_FATAL_FAILURE(ServesAll(config, names));
  EXPECT_EQ(scalar("SELECT MAX(version) FROM schema_migrations"), "4");
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM request_keys"), "3");
}

}  // namespace
}  // namespace ipsrt::e2e
