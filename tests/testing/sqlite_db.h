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
