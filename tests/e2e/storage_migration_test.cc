// Schema migrations (docs/storage.md) on databases holding rows that a
// schema-4, schema-5 or schema-6 ipsrtd wrote (tests/e2e/data, laid out by
// the old migrations): a kill -9 in the middle of migration 4, 5, 6 or 7
// leaves the old layout whole, and the next start moves it to the newest one,
// serves every enrollment, and `ipsrt store verify` finds every hash chain
// intact.
#include <signal.h>

#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "nlohmann/json.hpp"
#include "postgres_e2e.h"
#include "store/blob_codec.h"
#include "store/migrations.h"
#include "store/request_window.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/sqlite_db.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using Db = testing::SqliteDb;

// Each outbox row of a PostgreSQL store as tenant|enrollment|key|digest
// (psql's unaligned output), for OutboxDigestsMatch.
const char* const kPgOutboxDigests =
    "SELECT tenant, enrollment_id, idempotency_key, encode(key_digest, "
    "'hex') FROM outbox";

// The tables whose rows move, with their columns in schemas 3 to 5
// (migration 6 drops some of events' and audit's).
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

// The fixture: rows of two enrollments as a schema-4 ipsrtd wrote them
// (`dialect` "sqlite" or "postgres"), as SQL INSERTs, and their names.
// Without request_keys' rows for a layout older than schema 4.
// FixtureFile is the fixture of rows for a layout at schema `version`: the
// schema-7 one from 7 on, the schema-6 one at 6, the schema-5 one at 5, the
// schema-4 one before.
std::string FixtureFile(const std::string& dialect, int version,
                        const char* suffix) {
  return absl::StrCat(IPSRT_FIXTURE_DIR,
                      version >= 7   ? "/schema7-"
                      : version == 6 ? "/schema6-"
                      : version == 5 ? "/schema5-"
                                     : "/schema4-",
                      dialect, suffix);
}

// RowsMatching is how many of `rows` (one row per line, fields split by
// `sep`, as psql -At and the group_concat queries below give them) satisfy
// `matches`, out of how many: "5/5".
std::string RowsMatching(
    const std::string& rows, char sep,
    const std::function<bool(const std::vector<std::string>&)>& matches) {
  int matched = 0, total = 0;
  for (absl::string_view line :
       absl::StrSplit(rows, '\n', absl::SkipWhitespace())) {
    ++total;
    if (matches(absl::StrSplit(line, sep))) ++matched;
  }
  return absl::StrCat(matched, "/", total);
}

// OutboxDigestsMatch counts the outbox rows (tenant, enrollment_id,
// idempotency_key, hex(key_digest)) that hold the digest OutboxKeyDigest
// gives with a prefix of `prefix_bytes` (schema 10's unless told).
std::string OutboxDigestsMatch(const std::string& rows, char sep,
                               size_t prefix_bytes = kOutboxKeyPrefixBytes) {
  return RowsMatching(rows, sep, [&](const std::vector<std::string>& f) {
    return f.size() == 4 && absl::AsciiStrToLower(f[3]) ==
                                absl::BytesToHexString(OutboxKeyDigest(
                                    f[0], f[1], f[2], prefix_bytes));
  });
}

// RequestKeysMatch counts the request records (tenant, request_id, key)
// that hold their request id's key (RequestKey).
std::string RequestKeysMatch(const std::string& rows, char sep) {
  return RowsMatching(rows, sep, [](const std::vector<std::string>& f) {
    return f.size() == 3 && f[2] == absl::StrCat(RequestKey(f[0], f[1]));
  });
}

std::string FixtureRows(const std::string& dialect, int version) {
  absl::StatusOr<std::string> sql =
      ReadFile(FixtureFile(dialect, version, ".sql"));
  EXPECT_TRUE(sql.ok()) << sql.status();
  if (!sql.ok()) return "";
  std::string out;
  for (absl::string_view line : absl::StrSplit(*sql, '\n')) {
    if (version < 4 && absl::StrContains(line, "INTO request_keys")) continue;
    if (version < 4 && absl::StrContains(line, "INTO public.request_keys")) {
      continue;
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::vector<std::string> FixtureNames(const std::string& dialect,
                                      int version = 4) {
  absl::StatusOr<std::string> names =
      ReadFile(FixtureFile(dialect, version, ".names"));
  EXPECT_TRUE(names.ok()) << names.status();
  if (!names.ok()) return {};
  return absl::StrSplit(absl::StripAsciiWhitespace(*names), '\n');
}

// OldSqlite writes `path`: the layout of schema `version` and the fixture.
void OldSqlite(const std::string& path, int version) {
  Db db(path);
  testing::LayOutSchema(db, version);
  db.Exec(absl::StrCat("BEGIN;\n", FixtureRows("sqlite", version), "COMMIT;"));
}

// OldPostgres lays out schema `version` in `database` with the fixture,
// then, when `migrate_to` is later, runs the migrations up to it in one
// transaction (the store runs every pending migration in one, so a kill
// could not stop it between them).
void OldPostgres(testing::PostgresServer& pg, const std::string& database,
                 int version, int migrate_to = 0) {
  ASSERT_TRUE(pg.CreateDatabase(database).ok());
  // migrations_sql: migrations (from, to] as the store runs them, each
  // recorded.
  auto migrations_sql = [](int from, int to) {
    std::string sql;
    for (const Migration& m : PostgresMigrations()) {
      if (m.version <= from || m.version > to) continue;
      absl::StrAppend(&sql, m.sql, "\nINSERT INTO schema_migrations VALUES (",
                      m.version, ", 'm', 1);\n");
    }
    return sql;
  };
  absl::StatusOr<std::string> laid =
      pg.Psql(database,
              "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
              "description TEXT NOT NULL, applied_time_us BIGINT NOT NULL);\n" +
                  migrations_sql(0, version));
  ASSERT_TRUE(laid.ok()) << laid.status();
  absl::StatusOr<std::string> rows =
      pg.Psql(database, FixtureRows("postgres", version));
  ASSERT_TRUE(rows.ok()) << rows.status();
  if (migrate_to > version) {
    absl::StatusOr<std::string> migrated = pg.Psql(
        database, absl::StrCat("BEGIN;\n", migrations_sql(version, migrate_to),
                               "COMMIT;\n"));
    ASSERT_TRUE(migrated.ok()) << migrated.status();
  }
}

// PgScalar is the answer of `query` on `database`, or the error's text.
std::string PgScalar(testing::PostgresServer& pg, const std::string& database,
                     const std::string& query) {
  absl::StatusOr<std::string> r = pg.Psql(database, query);
  return r.ok() ? *r : r.status().ToString();
}

// Verify runs `ipsrt store verify` offline with `target` (--db=... or
// --postgres=...): every event chain and the audit chain intact.
void Verify(const std::string& target) {
  ProcessResult r = RunCliNoServer({"store", "verify", target});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("verified 2 enrollment(s), 8 event(s)"));
}

// KillInMigration starts ipsrtd on `config` with the test hook that stops
// it inside migration `version`'s transaction, and kills it -9 there.
void KillInMigration(const TempDir& dir, const std::string& config,
                     int version) {
  const std::string marker = dir.File("paused");
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Spawn(
      {"/usr/bin/env",
       absl::StrCat("IPSRT_TEST_PAUSE_MIGRATION=", version, ":", marker),
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

// ServesAll starts ipsrtd on `config` and reads every enrollment; `log`,
// when given, receives the server's log up to then.
void ServesAll(const std::string& config, const std::vector<std::string>& names,
               std::string* log = nullptr) {
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  if (log != nullptr) *log = (*server)->process().Log();
  for (const std::string& name : names) {
    ProcessResult r = RunCli((*server)->address(), {"get", name, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["name"], name);
  }
  ASSERT_TRUE((*server)->Terminate().ok());
}

// ExpectLatestSchemaIntact: `db` is at kSchemaVersion and passes SQLite's
// integrity check.
void ExpectLatestSchemaIntact(Db& db) {
  EXPECT_EQ(db.Scalar("SELECT MAX(version) FROM schema_migrations"),
            absl::StrCat(kSchemaVersion));
  EXPECT_EQ(db.Scalar("PRAGMA integrity_check"), "ok");
}

// OldSqliteKilledInMigration writes `path` at schema `old_version` with
// the fixture, starts ipsrtd on `config`, kills it -9 inside the next
// migration, and checks that the file is still at `old_version`, intact
// and with every row. Returns the row counts (Counts).
std::string OldSqliteKilledInMigration(const TempDir& dir,
                                       const std::string& config,
                                       const std::string& path,
                                       int old_version) {
  OldSqlite(path, old_version);
  std::string before;
  {
    Db db(path);
    before = Counts(db);
    EXPECT_THAT(before, HasSubstr("enrollments=2 "));
  }
  KillInMigration(dir, config, old_version + 1);
  Db db(path);
  EXPECT_EQ(db.Scalar("SELECT MAX(version) FROM schema_migrations"),
            absl::StrCat(old_version));
  EXPECT_EQ(db.Scalar("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(Counts(db), before);
  return before;
}

TEST(StorageMigrationTest, KillDuringTheMigrationLeavesTheOldLayoutWhole) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
  const std::string path = dir.File("ipsrt.db");
  // ipsrtd stops inside migration 4's transaction; kill -9 it there.
  std::string before;
  ASSERT_NO_FATAL_FAILURE(before =
                              OldSqliteKilledInMigration(dir, config, path, 3));
  {
    Db db(path);
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
  }

  // The next start migrates (4, then 5) and serves every enrollment.
  ASSERT_NO_FATAL_FAILURE(ServesAll(config, FixtureNames("sqlite")));
  Db db(path);
  EXPECT_EQ(db.Scalar("SELECT MAX(version) FROM schema_migrations"),
            absl::StrCat(kSchemaVersion));
  EXPECT_THAT(
      db.Scalar("SELECT sql FROM sqlite_master WHERE name = 'enrollments'"),
      Not(HasSubstr("WITHOUT ROWID")));
  EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM request_keys"),
            db.Scalar("SELECT COUNT(*) FROM requests"));
  // Every row is still there; the two reads added their audit records.
  EXPECT_EQ(Counts(db),
            absl::StrReplaceAll(before, {{"audit=9 ", "audit=11 "}}));
  ASSERT_NO_FATAL_FAILURE(Verify("--db=" + path));
}

// Migration 5 on rows of a schema-4 database: a kill -9 inside it leaves
// schema 4 whole; the next start converts every digest to its bytes and
// every outbox key to the part after its enrollment's name, and the chains
// still verify.
TEST(StorageMigrationTest, KillDuringMigration5LeavesSchema4Whole) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
  const std::string path = dir.File("ipsrt.db");
  std::string before;
  ASSERT_NO_FATAL_FAILURE(before =
                              OldSqliteKilledInMigration(dir, config, path, 4));
  {
    Db db(path);
    EXPECT_THAT(
        db.Scalar("SELECT sql FROM sqlite_master WHERE name = 'events'"),
        HasSubstr("hash TEXT NOT NULL"));
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE "
                        "'%_v5'"),
              "0");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM events WHERE length(hash) = 64"),
              "8");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM outbox WHERE idempotency_key "
                        "LIKE 'tenants/%'"),
              "5");
  }

  ASSERT_NO_FATAL_FAILURE(ServesAll(config, FixtureNames("sqlite")));
  {
    Db db(path);
    ExpectLatestSchemaIntact(db);
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM events WHERE typeof(hash) = "
                        "'blob' AND length(hash) = 32"),
              "8");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM audit WHERE length(hash) = 32"),
              "11");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM requests WHERE "
                        "length(payload_hash) = 32"),
              "8");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM outbox WHERE idempotency_key "
                        "LIKE 'reminder/%'"),
              "5");
    EXPECT_EQ(Counts(db),
              absl::StrReplaceAll(before, {{"audit=9 ", "audit=11 "}}));
  }
  ASSERT_NO_FATAL_FAILURE(Verify("--db=" + path));
}

// Migration 6 on rows a schema-5 ipsrtd wrote: a kill -9 inside it leaves
// schema 5 whole; the next start rebuilds events and audit without the
// columns the payload or the row before holds, and the chains, which reads
// now link through the row before, still verify.
TEST(StorageMigrationTest, KillDuringMigration6LeavesSchema5Whole) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
  const std::string path = dir.File("ipsrt.db");
  std::string before;
  ASSERT_NO_FATAL_FAILURE(before =
                              OldSqliteKilledInMigration(dir, config, path, 5));
  {
    Db db(path);
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM pragma_table_info('events') "
                        "WHERE name IN ('type', 'actor', 'request_id', "
                        "'record_time_us', 'prev_hash')"),
              "5");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM pragma_table_info('audit') "
                        "WHERE name = 'prev_hash'"),
              "1");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE "
                        "'%_v6'"),
              "0");
  }

  ASSERT_NO_FATAL_FAILURE(
      ServesAll(config, FixtureNames("sqlite", /*version=*/5)));
  {
    Db db(path);
    ExpectLatestSchemaIntact(db);
    EXPECT_EQ(db.Scalar("SELECT group_concat(name, ',') FROM "
                        "pragma_table_info('events')"),
              "enrollment_key,sequence,payload,hash");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM pragma_table_info('audit') "
                        "WHERE name = 'prev_hash'"),
              "0");
    // Every audit record's rpc and resource in their short forms, those
    // written from schema 8 on coded (the verify below recomputes each
    // record's hash from them).
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM audit WHERE rpc LIKE "
                        "'EnrollmentService/%' AND resource LIKE "
                        "'enrollments/%'"),
              "9");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM audit WHERE rpc LIKE '/e%' AND "
                        "resource LIKE '/e%'"),
              "2");
    // The payloads a schema-5 ipsrtd wrote keep their hash field and read
    // as they are.
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM events WHERE "
                        "hex(substr(payload, 1, 2)) = '0001'"),
              "8");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM pragma_foreign_key_check"), "0");
    EXPECT_EQ(Counts(db),
              absl::StrReplaceAll(before, {{"audit=9 ", "audit=11 "}}));
  }
  ASSERT_NO_FATAL_FAILURE(Verify("--db=" + path));
}

// Migration 7 on rows a schema-6 ipsrtd wrote: a kill -9 inside it leaves
// schema 6 whole (its outbox unique over tenant, enrollment and key); the
// next start rebuilds the outbox unique over each key's digest, which is
// the one the store computes for every row.
TEST(StorageMigrationTest, KillDuringMigration7LeavesSchema6Whole) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
  const std::string path = dir.File("ipsrt.db");
  std::string before;
  ASSERT_NO_FATAL_FAILURE(before =
                              OldSqliteKilledInMigration(dir, config, path, 6));
  const char* const kUniqueColumns =
      "SELECT group_concat(c.name, ',') FROM pragma_index_list('outbox') l, "
      "pragma_index_info(l.name) c WHERE l.\"unique\" = 1";
  {
    Db db(path);
    EXPECT_EQ(db.Scalar(kUniqueColumns),
              "tenant,enrollment_id,idempotency_key");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM pragma_table_info('outbox') "
                        "WHERE name = 'key_digest'"),
              "0");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE "
                        "'%_v7'"),
              "0");
  }

  ASSERT_NO_FATAL_FAILURE(
      ServesAll(config, FixtureNames("sqlite", /*version=*/6)));
  {
    Db db(path);
    ExpectLatestSchemaIntact(db);
    EXPECT_EQ(db.Scalar(kUniqueColumns), "key_digest");
    EXPECT_EQ(
        OutboxDigestsMatch(
            db.Scalar("SELECT group_concat(tenant || '|' || enrollment_id || "
                      "'|' || idempotency_key || '|' || hex(key_digest), "
                      "char(10)) FROM outbox"),
            '|'),
        "5/5");
    // Request records by their request id's key, kept in the order they
    // were written.
    EXPECT_EQ(db.Scalar("SELECT group_concat(c.name, ',') FROM "
                        "pragma_index_list('requests') l, "
                        "pragma_index_info(l.name) c WHERE l.\"unique\" = 1"),
              "key");
    EXPECT_EQ(RequestKeysMatch(
                  db.Scalar("SELECT group_concat(tenant || '|' || request_id "
                            "|| '|' || key, char(10)) FROM requests"),
                  '|'),
              "8/8");
    EXPECT_EQ(db.Scalar("SELECT group_concat(request_id, ',') FROM (SELECT "
                        "request_id FROM requests ORDER BY rowid)"),
              "fixture-enroll-1,fixture-enroll-2,fp-fixture-ev-0,"
              "fp-fixture-ev-1,fp-fixture-ev-2,fp-fixture-ev-3,"
              "fp-fixture-ev-4,fp-fixture-ev-5");
    // The four other indexes are back.
    EXPECT_EQ(db.Scalar("SELECT group_concat(name, ',') FROM (SELECT name "
                        "FROM sqlite_master WHERE type = 'index' AND tbl_name "
                        "= 'outbox' AND sql IS NOT NULL ORDER BY name)"),
              "outbox_by_tenant_due,outbox_changes,outbox_due,outbox_lease");
    // Outbox ids go on from the highest (AUTOINCREMENT's sequence moved with
    // the table).
    EXPECT_EQ(db.Scalar("SELECT seq FROM sqlite_sequence WHERE name = "
                        "'outbox'"),
              db.Scalar("SELECT MAX(id) FROM outbox"));
    EXPECT_EQ(Counts(db),
              absl::StrReplaceAll(before, {{"audit=9 ", "audit=11 "}}));
  }
  ASSERT_NO_FATAL_FAILURE(Verify("--db=" + path));
}

// Migration 8 on rows a schema-7 ipsrtd wrote: a kill -9 inside it leaves
// schema 7 whole (events keep the tenant and enrollment id); the next start
// numbers every enrollment, keeping its rowid, and each event names its own
// enrollment's number.
TEST(StorageMigrationTest, KillDuringMigration8LeavesSchema7Whole) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
  const std::string path = dir.File("ipsrt.db");
  std::string before;
  std::string events_before;
  {
    const std::string copy = dir.File("before.db");
    OldSqlite(copy, 7);
    Db db(copy);
    // Each event as (its enrollment's rowid, sequence, hash), to compare
    // with the migrated rows.
    events_before = db.Scalar(
        "SELECT group_concat(k, ',') FROM (SELECT e.rowid || ':' || "
        "v.sequence || ':' || hex(v.hash) AS k FROM events v JOIN enrollments "
        "e ON e.tenant = v.tenant AND e.id = v.enrollment_id ORDER BY e.rowid, "
        "v.sequence)");
  }
  ASSERT_NO_FATAL_FAILURE(before =
                              OldSqliteKilledInMigration(dir, config, path, 7));
  {
    Db db(path);
    EXPECT_EQ(db.Scalar("SELECT group_concat(name, ',') FROM "
                        "pragma_table_info('events')"),
              "tenant,enrollment_id,sequence,payload,hash");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM pragma_table_info('enrollments') "
                        "WHERE name = 'key'"),
              "0");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE "
                        "'%_v8'"),
              "0");
  }

  ASSERT_NO_FATAL_FAILURE(
      ServesAll(config, FixtureNames("sqlite", /*version=*/7)));
  {
    Db db(path);
    ExpectLatestSchemaIntact(db);
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM pragma_foreign_key_check"), "0");
    EXPECT_EQ(db.Scalar("SELECT group_concat(name, ',') FROM "
                        "pragma_table_info('events')"),
              "enrollment_key,sequence,payload,hash");
    EXPECT_EQ(db.Scalar("SELECT group_concat(k, ',') FROM (SELECT "
                        "v.enrollment_key || ':' || v.sequence || ':' || "
                        "hex(v.hash) AS k FROM events v ORDER BY "
                        "v.enrollment_key, v.sequence)"),
              events_before);
    // The enrollments' key is their rowid, and their indexes are back.
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM enrollments WHERE key = rowid"),
              "2");
    EXPECT_EQ(db.Scalar("SELECT group_concat(name, ',') FROM (SELECT name "
                        "FROM sqlite_master WHERE type = 'index' AND tbl_name "
                        "= 'enrollments' ORDER BY name)"),
              "enrollments_by_clinician,enrollments_by_create_time,"
              "enrollments_by_patient,enrollments_by_stage,"
              "sqlite_autoindex_enrollments_1");
    EXPECT_EQ(Counts(db),
              absl::StrReplaceAll(before, {{"audit=9 ", "audit=11 "}}));
  }
  ASSERT_NO_FATAL_FAILURE(Verify("--db=" + path));
}

// Migration 10 on rows a schema-7 ipsrtd wrote, carried to schema 9 by
// migrations 8 and 9: a kill -9 inside it leaves schema 9 whole with schema
// 7's digests (a 6-byte prefix); the next start rewrites every digest to
// lead with the whole time part of its enrollment id (OutboxKeyDigest).
TEST(StorageMigrationTest, KillDuringMigration10LeavesSchema9Whole) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
  const std::string path = dir.File("ipsrt.db");
  OldSqlite(path, 7);
  std::string before;
  {
    Db db(path);
    before = Counts(db);
    ASSERT_THAT(before, HasSubstr("enrollments=2 "));
    // Ids handed out and since removed stay used: the rebuilt table must
    // go on from the old table's position, not from its highest id.
    db.Exec("UPDATE sqlite_sequence SET seq = 1000 WHERE name = 'outbox'");
    ASSERT_EQ(db.Scalar("SELECT group_concat(seq) FROM sqlite_sequence WHERE "
                        "name = 'outbox'"),
              "1000");
  }
  ASSERT_NO_FATAL_FAILURE(KillInMigration(dir, config, 10));
  const char* const kDigests =
      "SELECT group_concat(tenant || '|' || enrollment_id || '|' || "
      "idempotency_key || '|' || hex(key_digest), char(10)) FROM outbox";
  {
    Db db(path);
    EXPECT_EQ(db.Scalar("SELECT MAX(version) FROM schema_migrations"), "9");
    EXPECT_EQ(db.Scalar("PRAGMA integrity_check"), "ok");
    EXPECT_EQ(Counts(db), before);
    EXPECT_EQ(OutboxDigestsMatch(db.Scalar(kDigests), '|',
                                 kOutboxKeyPrefixBytesSchema7),
              "5/5");
    EXPECT_EQ(OutboxDigestsMatch(db.Scalar(kDigests), '|'), "0/5");
  }

  std::string log;
  ASSERT_NO_FATAL_FAILURE(
      ServesAll(config, FixtureNames("sqlite", /*version=*/7), &log));
  // The operator sees what the start is doing.
  EXPECT_THAT(log, HasSubstr("store: applying migration 10 (outbox key "
                             "digests led by their enrollment's creation "
                             "time)"));
  EXPECT_THAT(log, HasSubstr("store: schema 9 -> 10 in "));
  {
    Db db(path);
    ExpectLatestSchemaIntact(db);
    EXPECT_EQ(OutboxDigestsMatch(db.Scalar(kDigests), '|'), "5/5");
    // 10 bytes of the id's time, 10 of the hash.
    EXPECT_EQ(db.Scalar("SELECT group_concat(DISTINCT length(key_digest)) "
                        "FROM outbox"),
              "20");
    // The rebuilt table has its indexes back, no leftover, and goes on
    // from its old AUTOINCREMENT position.
    EXPECT_EQ(db.Scalar("SELECT group_concat(name, ',') FROM (SELECT name "
                        "FROM sqlite_master WHERE tbl_name = 'outbox' AND "
                        "type = 'index' ORDER BY name)"),
              "outbox_by_tenant_due,outbox_changes,outbox_due,outbox_lease,"
              "sqlite_autoindex_outbox_1");
    EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE "
                        "'%_v10%'"),
              "0");
    EXPECT_EQ(db.Scalar("SELECT group_concat(name || '=' || seq, ',') FROM "
                        "sqlite_sequence WHERE name LIKE 'outbox%'"),
              "outbox=1000");
    // Each enrollment's rows sort together, in the order of the ids' time
    // parts. Under schema 7's digest they interleaved: the fixture's two ids
    // share their first 6 bytes ("01m97c"), so the hash ordered the rows.
    EXPECT_EQ(db.Scalar("SELECT group_concat(substr(enrollment_id, 1, 10), "
                        "',') FROM (SELECT enrollment_id FROM outbox ORDER "
                        "BY key_digest)"),
              db.Scalar("SELECT group_concat(substr(enrollment_id, 1, 10), "
                        "',') FROM (SELECT enrollment_id FROM outbox ORDER "
                        "BY enrollment_id)"));
    EXPECT_EQ(Counts(db),
              absl::StrReplaceAll(before, {{"audit=9 ", "audit=11 "}}));
  }
  ASSERT_NO_FATAL_FAILURE(Verify("--db=" + path));
}

// The same on PostgreSQL, from schema 3 (migration 4, then 5 to 8), from
// schema 4 (migration 5), from schema 5 (migration 6), from schema 6
// (migration 7) and from schema 7 (migration 8).
TEST(StorageMigrationTest, PostgresKillDuringTheMigrationLeavesTheOldLayout) {
  absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
      testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  for (int old_version : {3, 4, 5, 6, 7}) {
    SCOPED_TRACE(absl::StrCat("from schema ", old_version));
    const std::string database = absl::StrCat("old", old_version);
    ASSERT_NO_FATAL_FAILURE(OldPostgres(**pg, database, old_version));
    auto scalar = [&](const std::string& q) {
      return PgScalar(**pg, database, q);
    };
    auto counts = [&] {
      std::string out;
      for (const auto& t : kCopied) {
        absl::StrAppend(&out, t[0], "=",
                        scalar(absl::StrCat("SELECT COUNT(*) FROM ", t[0])),
                        " ");
      }
      return out;
    };
    const std::string before = counts();
    ASSERT_THAT(before, HasSubstr("enrollments=2 "));

    TempDir dir;
    const std::string config =
        WritePostgresConfig(dir, (*pg)->Conninfo(database), "");
    ASSERT_NO_FATAL_FAILURE(KillInMigration(dir, config, old_version + 1));
    EXPECT_EQ(scalar("SELECT MAX(version) FROM schema_migrations"),
              absl::StrCat(old_version));
    if (old_version == 3) {
      EXPECT_EQ(scalar("SELECT COUNT(*) FROM pg_tables WHERE tablename = "
                       "'request_keys'"),
                "0");
      EXPECT_EQ(scalar("SELECT COUNT(*) FROM pg_indexes WHERE indexname = "
                       "'audit_by_subject'"),
                "1");
    } else if (old_version == 4) {
      EXPECT_EQ(scalar("SELECT data_type FROM information_schema.columns "
                       "WHERE table_name = 'events' AND column_name = "
                       "'hash'"),
                "text");
      EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox WHERE idempotency_key "
                       "LIKE 'tenants/%'"),
                "5");
    } else if (old_version == 5) {
      EXPECT_EQ(scalar("SELECT COUNT(*) FROM information_schema.columns "
                       "WHERE table_name IN ('events', 'audit') AND "
                       "column_name = 'prev_hash'"),
                "2");
    } else if (old_version == 6) {
      EXPECT_EQ(scalar("SELECT COUNT(*) FROM information_schema.columns "
                       "WHERE table_name = 'outbox' AND column_name = "
                       "'key_digest'"),
                "0");
    } else {
      EXPECT_EQ(scalar("SELECT COUNT(*) FROM information_schema.columns "
                       "WHERE table_name = 'enrollments' AND column_name = "
                       "'key'"),
                "0");
      EXPECT_EQ(scalar("SELECT COUNT(*) FROM pg_tables WHERE tablename = "
                       "'events_v8'"),
                "0");
    }
    EXPECT_EQ(counts(), before);

    ASSERT_NO_FATAL_FAILURE(
        ServesAll(config, FixtureNames("postgres", old_version)));
    EXPECT_EQ(scalar("SELECT MAX(version) FROM schema_migrations"),
              absl::StrCat(kSchemaVersion));
    EXPECT_EQ(scalar("SELECT string_agg(column_name, ',' ORDER BY "
                     "ordinal_position) FROM information_schema.columns "
                     "WHERE table_name = 'events'"),
              "enrollment_key,sequence,payload,hash");
    EXPECT_EQ(scalar("SELECT string_agg(conname, ',' ORDER BY conname) FROM "
                     "pg_constraint WHERE conrelid IN ('events'::regclass, "
                     "'audit'::regclass)"),
              "audit_pkey,events_enrollment_key_fkey,events_pkey,"
              "events_sequence_check");
    // Every event names its enrollment by number; each log is whole.
    EXPECT_EQ(scalar("SELECT COUNT(*) || ' in ' || COUNT(DISTINCT e.key) FROM "
                     "events v JOIN enrollments e ON e.key = v.enrollment_key"),
              "8 in 2");
    EXPECT_EQ(scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                     "WHERE conname = 'enrollments_key'"),
              "UNIQUE (key)");
    EXPECT_EQ(scalar("SELECT COUNT(*) FROM audit WHERE rpc LIKE '/ipsrt%' OR "
                     "resource LIKE 'tenants/%'"),
              "0");
    // Migration 4 kept the key of every record; from schema 7 on a key is
    // kept when its record is pruned.
    EXPECT_EQ(scalar("SELECT COUNT(*) FROM request_keys"),
              old_version < 7 ? scalar("SELECT COUNT(*) FROM requests") : "0");
    EXPECT_EQ(scalar("SELECT COUNT(*) FROM events WHERE length(hash) = 32"),
              "8");
    EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox WHERE idempotency_key "
                     "LIKE 'reminder/%'"),
              "5");
    // Unique by each key's digest, the one the store computes (migration 7
    // computes it in SQL).
    EXPECT_EQ(scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                     "WHERE conname = 'outbox_key'"),
              "UNIQUE (key_digest)");
    EXPECT_EQ(OutboxDigestsMatch(
                  scalar("SELECT tenant, enrollment_id, idempotency_key, "
                         "encode(key_digest, 'hex') FROM outbox"),
                  '|'),
              "5/5");
    EXPECT_EQ(scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                     "WHERE conname = 'requests_pkey'"),
              "PRIMARY KEY (key)");
    EXPECT_EQ(RequestKeysMatch(scalar("SELECT tenant, request_id, key FROM "
                                      "requests"),
                               '|'),
              "8/8");
    ASSERT_NO_FATAL_FAILURE(Verify("--postgres=" + (*pg)->Conninfo(database)));
  }

  // Migration 10: schema 7's rows carried to schema 9 by migrations 8 and 9
  // (OldPostgres runs them as the store does), then a kill -9 inside migration
  // 10 leaves schema 7's digests; the next start rewrites them in SQL to the
  // digest the store computes.
  {
    SCOPED_TRACE("from schema 9");
    const std::string database = "old9";
    ASSERT_NO_FATAL_FAILURE(OldPostgres(**pg, database, 7, /*migrate_to=*/9));
    auto scalar = [&](const std::string& q) {
      return PgScalar(**pg, database, q);
    };
    TempDir dir;
    const std::string config =
        WritePostgresConfig(dir, (*pg)->Conninfo(database), "");
    ASSERT_NO_FATAL_FAILURE(KillInMigration(dir, config, 10));
    EXPECT_EQ(scalar("SELECT MAX(version) FROM schema_migrations"), "9");
    EXPECT_EQ(OutboxDigestsMatch(scalar(kPgOutboxDigests), '|',
                                 kOutboxKeyPrefixBytesSchema7),
              "5/5");
    ASSERT_NO_FATAL_FAILURE(
        ServesAll(config, FixtureNames("postgres", /*version=*/7)));
    EXPECT_EQ(scalar("SELECT MAX(version) FROM schema_migrations"),
              absl::StrCat(kSchemaVersion));
    EXPECT_EQ(OutboxDigestsMatch(scalar(kPgOutboxDigests), '|'), "5/5");
    EXPECT_EQ(scalar("SELECT string_agg(DISTINCT length(key_digest)::text, "
                     "',') FROM outbox"),
              "20");
    EXPECT_EQ(scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                     "WHERE conname = 'outbox_key'"),
              "UNIQUE (key_digest)");
    // Room in each page for the entries later events add under an
    // enrollment's prefix (docs/storage.md, "Schema 10").
    EXPECT_EQ(scalar("SELECT array_to_string(reloptions, ',') FROM pg_class "
                     "WHERE relname = 'outbox_key'"),
              "fillfactor=70");
    EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox"), "5");
    ASSERT_NO_FATAL_FAILURE(Verify("--postgres=" + (*pg)->Conninfo(database)));
  }
}

// SlowOutboxUpdates makes every UPDATE of an outbox row in `database` take
// `seconds` on the server (a trigger), so that migration 10's UPDATE of the
// fixture's 5 rows runs for 5 x `seconds`, as it does on a large store.
void SlowOutboxUpdates(testing::PostgresServer& pg, const std::string& database,
                       double seconds) {
  absl::StatusOr<std::string> r = pg.Psql(
      database,
      absl::StrCat("CREATE FUNCTION slow_row() RETURNS trigger AS $$ BEGIN "
                   "PERFORM pg_sleep(",
                   seconds,
                   "); RETURN NEW; END $$ LANGUAGE plpgsql;\n"
                   "CREATE TRIGGER slow BEFORE UPDATE ON outbox FOR EACH ROW "
                   "EXECUTE FUNCTION slow_row();\n"));
  ASSERT_TRUE(r.ok()) << r.status();
}

// A migration runs longer than store.postgres.statement_timeout (measured
// on a PostgreSQL store of 2,000,000 outbox rows, migration 10 takes
// minutes; docs/storage.md): it runs under migration_timeout instead (no
// limit by default), and a second replica starting meanwhile waits for it
// rather than timing out. With a migration_timeout it overruns, ipsrtd
// refuses to start DEADLINE_EXCEEDED, naming the setting, and the schema
// is as it was.
TEST(StorageMigrationTest, PostgresMigrationOutlastsTheStatementTimeout) {
  absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
      testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  // config: ipsrtd.yaml in `dir` on `database` with a 1 s statement timeout
  // and `more` after it in store.postgres.
  auto config = [&](const TempDir& dir, const std::string& database,
                    const std::string& more) {
    return WritePostgresConfig(dir, (*pg)->Conninfo(database), "",
                               /*pool_size=*/4,
                               "    statement_timeout: 1s\n" + more);
  };
  {
    SCOPED_TRACE("no migration_timeout, two replicas");
    const std::string database = "slow";
    ASSERT_NO_FATAL_FAILURE(OldPostgres(**pg, database, 7, /*migrate_to=*/9));
    ASSERT_NO_FATAL_FAILURE(SlowOutboxUpdates(**pg, database, 0.6));
    TempDir dir_a, dir_b;
    const std::string config_a = config(dir_a, database, "");
    const std::string config_b = config(dir_b, database, "");
    absl::StatusOr<std::unique_ptr<Ipsrtd>> a, b;
    const absl::Time began = absl::Now();
    std::thread first([&] { a = Ipsrtd::Start(config_a); });
    // The second replica starts while the first migrates (3 s).
    absl::SleepFor(absl::Milliseconds(700));
    b = Ipsrtd::Start(config_b);
    first.join();
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_GE(absl::Now() - began, absl::Seconds(3));
    const std::string log_a = (*a)->process().Log();
    const std::string log_b = (*b)->process().Log();
    EXPECT_THAT(log_a, HasSubstr("store: applying migration 10 (outbox key "
                                 "digests led by their enrollment's "
                                 "creation time)"));
    EXPECT_THAT(log_a, HasSubstr("store: schema 9 -> 10 in "));
    EXPECT_THAT(log_b, HasSubstr("store: another process holds the schema "
                                 "migration lock; waiting for it"));
    EXPECT_THAT(log_b, Not(HasSubstr("applying migration")));
    ASSERT_TRUE((*a)->Terminate().ok());
    ASSERT_TRUE((*b)->Terminate().ok());
    EXPECT_EQ(PgScalar(**pg, database,
                       "SELECT string_agg(version::text, ',' ORDER BY version) "
                       "FROM schema_migrations WHERE version > 9"),
              "10");
    EXPECT_EQ(
        OutboxDigestsMatch(PgScalar(**pg, database, kPgOutboxDigests), '|'),
        "5/5");
  }
  {
    SCOPED_TRACE("migration_timeout: 1s");
    const std::string database = "slow_limited";
    ASSERT_NO_FATAL_FAILURE(OldPostgres(**pg, database, 7, /*migrate_to=*/9));
    ASSERT_NO_FATAL_FAILURE(SlowOutboxUpdates(**pg, database, 0.6));
    TempDir dir;
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
        Ipsrtd::Start(config(dir, database, "    migration_timeout: 1s\n"));
    ASSERT_FALSE(server.ok());
    EXPECT_THAT(std::string(server.status().message()),
                HasSubstr("cannot open store: DEADLINE_EXCEEDED: migration 10 "
                          "(outbox key digests led by their enrollment's "
                          "creation time): store: exec: canceling statement "
                          "due to statement timeout (sqlstate 57014); "
                          "store.postgres.migration_timeout is 1s (0s: no "
                          "limit)"));
    EXPECT_EQ(PgScalar(**pg, database,
                       "SELECT MAX(version) FROM "
                       "schema_migrations"),
              "9");
    EXPECT_EQ(OutboxDigestsMatch(PgScalar(**pg, database, kPgOutboxDigests),
                                 '|', kOutboxKeyPrefixBytesSchema7),
              "5/5");
  }
}

// `ipsrt store init --config=FILE` on a database of an older release
// applies the pending migrations with no server running (so that servers
// of the new release start without them), says so, and is a no-op after.
TEST(StorageMigrationTest, StoreInitMigratesBeforeAnyServerStarts) {
  {
    SCOPED_TRACE("sqlite");
    TempDir dir;
    const std::string config = WriteConfig(dir);
    const std::string path = dir.File("ipsrt.db");
    OldSqlite(path, 7);
    ProcessResult init =
        RunCliNoServer({"store", "init", "--config=" + config});
    EXPECT_EQ(init.exit_code, 0) << init.out << init.err;
    EXPECT_THAT(init.out,
                HasSubstr(absl::StrCat("migrated: store sqlite at ", path,
                                       " (schema version ", kSchemaVersion,
                                       ", migrated from schema 7, ")));
    EXPECT_THAT(init.err, HasSubstr("store: applying migration 8 ("));
    EXPECT_THAT(init.err, HasSubstr(absl::StrCat("store: schema 7 -> ",
                                                 kSchemaVersion, " in ")));
    {
      Db db(path);
      ExpectLatestSchemaIntact(db);
    }
    ProcessResult again =
        RunCliNoServer({"store", "init", "--config=" + config});
    EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
    EXPECT_THAT(again.out, HasSubstr("already initialised: store sqlite at "));
    EXPECT_THAT(again.out, Not(HasSubstr("migrated from")));
    EXPECT_THAT(again.err, Not(HasSubstr("applying migration")));
    ASSERT_NO_FATAL_FAILURE(
        ServesAll(config, FixtureNames("sqlite", /*version=*/7)));
  }
  {
    SCOPED_TRACE("postgres");
    absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
        testing::PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    const std::string database = "init9";
    ASSERT_NO_FATAL_FAILURE(OldPostgres(**pg, database, 7, /*migrate_to=*/9));
    TempDir dir;
    const std::string config =
        WritePostgresConfig(dir, (*pg)->Conninfo(database), "");
    ProcessResult init =
        RunCliNoServer({"store", "init", "--config=" + config});
    EXPECT_EQ(init.exit_code, 0) << init.out << init.err;
    EXPECT_THAT(init.out, HasSubstr(absl::StrCat(
                              "migrated: store postgres (schema "
                              "version ",
                              kSchemaVersion, ", migrated from schema 9, ")));
    EXPECT_THAT(init.err, HasSubstr("store: applying migration 10 ("));
    EXPECT_EQ(
        PgScalar(**pg, database, "SELECT MAX(version) FROM schema_migrations"),
        absl::StrCat(kSchemaVersion));
    ProcessResult again =
        RunCliNoServer({"store", "init", "--config=" + config});
    EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
    EXPECT_THAT(again.out, HasSubstr("already initialised: store postgres ("));
    EXPECT_THAT(again.out, Not(HasSubstr("migrated from")));
    ASSERT_NO_FATAL_FAILURE(
        ServesAll(config, FixtureNames("postgres", /*version=*/7)));
    ASSERT_NO_FATAL_FAILURE(Verify("--postgres=" + (*pg)->Conninfo(database)));
  }
}

}  // namespace
}  // namespace ipsrt::e2e
