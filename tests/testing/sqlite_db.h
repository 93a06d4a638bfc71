// SqliteDb: a plain SQLite connection for tests that write and read a
// database behind the store's back (old layouts, migration checks).
#ifndef IPSRT_TESTS_TESTING_SQLITE_DB_H_
#define IPSRT_TESTS_TESTING_SQLITE_DB_H_

#include <sqlite3.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/migrations.h"
#include "store/sqlite_migration_functions.h"

namespace ipsrt::testing {

class SqliteDb {
 public:
  explicit SqliteDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK) << path;
  }
  ~SqliteDb() { sqlite3_close(db_); }
  sqlite3* handle() { return db_; }
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Exec runs statements; a failure fails the test, naming the SQL.
  void Exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "") << " in " << sql;
    sqlite3_free(err);
  }
  // EventPayload is the stored payload column of event `sequence` of the
  // enrollment with id `id` (schema 8: events name their enrollment by its
  // key), as bytes; "" when there is no such event. SetEventPayload stores
  // `payload` there.
  std::string EventPayload(const std::string& id, int64_t sequence) {
    sqlite3_stmt* s = PrepareEventStatement("SELECT payload FROM events WHERE ",
                                            id, sequence, 1);
    std::string out;
    if (s != nullptr && sqlite3_step(s) == SQLITE_ROW) {
      out.assign(static_cast<const char*>(sqlite3_column_blob(s, 0)),
                 static_cast<size_t>(sqlite3_column_bytes(s, 0)));
    }
    sqlite3_finalize(s);
    return out;
  }
  void SetEventPayload(const std::string& id, int64_t sequence,
                       const std::string& payload) {
    sqlite3_stmt* s = PrepareEventStatement(
        "UPDATE events SET payload = ?1 WHERE ", id, sequence, 2);
    ASSERT_NE(s, nullptr);
    sqlite3_bind_blob(s, 1, payload.data(), static_cast<int>(payload.size()),
                      SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(s), SQLITE_DONE) << sqlite3_errmsg(db_);
    EXPECT_EQ(sqlite3_changes(db_), 1);
    sqlite3_finalize(s);
  }
  // SetSnapshot stores `snapshot` as the snapshot column of the enrollment
  // with id `id` (as a damaged disk or a manual edit would leave it; a value
  // that does not start with 0x00 is read as it is).
  void SetSnapshot(const std::string& id, const std::string& snapshot) {
    sqlite3_busy_timeout(db_, 5000);
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db_,
                                 "UPDATE enrollments SET snapshot = ?1 WHERE "
                                 "id = ?2",
                                 -1, &s, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db_);
    sqlite3_bind_blob(s, 1, snapshot.data(), static_cast<int>(snapshot.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, id.c_str(), -1, SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(s), SQLITE_DONE) << sqlite3_errmsg(db_);
    EXPECT_EQ(sqlite3_changes(db_), 1);
    sqlite3_finalize(s);
  }
  // Scalar is the first column of the first row as text ("" when none).
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
  // PrepareEventStatement is `head` followed by the condition on one
  // event's row, with the id bound at `id_param` and the sequence after it.
  sqlite3_stmt* PrepareEventStatement(const char* head, const std::string& id,
                                      int64_t sequence, int id_param) {
    const std::string sql = absl::StrCat(
        head, "enrollment_key = (SELECT key FROM enrollments WHERE id = ?",
        id_param, ") AND sequence = ?", id_param + 1);
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sqlite3_errmsg(db_) << " in " << sql;
      return nullptr;
    }
    sqlite3_bind_text(s, id_param, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, id_param + 1, sequence);
    return s;
  }

  sqlite3* db_ = nullptr;
};

// LayOutSchema gives `db` the layout of schema `version`: migrations 1 to
// `version` of SqliteMigrations() (a released migration never changes),
// recorded in schema_migrations as the store records them.
inline void LayOutSchema(SqliteDb& db, int version) {
  AddSqliteMigrationFunctions(db.handle());
  db.Exec("PRAGMA journal_mode=WAL");
  db.Exec(
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
      "description TEXT NOT NULL, applied_time_us INTEGER NOT NULL)");
  for (const Migration& m : SqliteMigrations()) {
    if (m.version > version) break;
    db.Exec(m.sql);
    db.Exec(absl::StrCat("INSERT INTO schema_migrations VALUES (", m.version,
                         ", '", m.description, "', 1)"));
  }
}

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_TESTING_SQLITE_DB_H_
