// Schema 4 (docs/storage.md) on a database that a schema-3 ipsrtd wrote:
// a kill -9 in the middle of the migration leaves the old layout whole, and
// the next start moves it to the new one and serves every enrollment.
#include <signal.h>
#include <sqlite3.h>

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
#include "store/migrations.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class Db {
 public:
  explicit Db(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
  }
  ~Db() { sqlite3_close(db_); }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "") << " in " << sql;
    sqlite3_free(err);
  }
  std::string Scalar(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

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

TEST(StorageMigrationTest, KillDuringTheMigrationLeavesTheOldLayoutWhole) {
  // Enrollments made by ipsrtd itself.
  TempDir made;
  std::vector<std::string> names;
  {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
        Ipsrtd::Start(WriteConfig(made));
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

  // The same rows in a database laid out by schema 3's migrations.
  TempDir dir;
  const std::string config = WriteConfig(dir);
  const std::string path = dir.File("ipsrt.db");
  std::string before;
  {
    Db db(path);
    db.Exec("PRAGMA journal_mode=WAL");
    db.Exec(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
        "description TEXT NOT NULL, applied_time_us INTEGER NOT NULL)");
    for (const Migration& m : SqliteMigrations()) {
      if (m.version > 3) break;
      db.Exec(m.sql);
      db.Exec(absl::StrCat("INSERT INTO schema_migrations VALUES (", m.version,
                           ", '", m.description, "', 1)"));
    }
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
  {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    for (const std::string& name : names) {
      ProcessResult r = RunCli((*server)->address(), {"get", name, "--json"});
      ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
      EXPECT_EQ(nlohmann::json::parse(r.out)["name"], name);
    }
    ASSERT_TRUE((*server)->Terminate().ok());
  }
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

}  // namespace
}  // namespace ipsrt::e2e
