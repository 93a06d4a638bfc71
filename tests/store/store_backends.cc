#include "tests/store/store_backends.h"

#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ipsrt::testing {
namespace {

PostgresServer* g_postgres = nullptr;

// Starts the PostgreSQL server before the first test and stops it after the
// last (about a second each way).
class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<PostgresServer>> s = PostgresServer::Start();
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    g_postgres = server_.get();
  }
  void TearDown() override {
    g_postgres = nullptr;
    server_.reset();
  }

 private:
  std::unique_ptr<PostgresServer> server_;
};

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

}  // namespace

PostgresServer& SharedPostgres() {
  if (g_postgres == nullptr) {
    ADD_FAILURE() << "the PostgreSQL test server is not running";
    std::abort();
  }
  return *g_postgres;
}

std::string NewDatabaseName() {
  static std::atomic<int> next{0};
  return absl::StrCat("ipsrt_test_", next.fetch_add(1));
}

absl::StatusOr<std::unique_ptr<Store>> SqliteBackend::Open(
    FaultHook fault_hook) {
  SqliteStore::Options o;
  o.path = dir_.File("ipsrt.db");
  o.fault_hook = std::move(fault_hook);
  absl::StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(o);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Store>(*std::move(s));
}

std::string SqliteBackend::Scalar(const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out = "<error>";
  if (sqlite3_open_v2(dir_.File("ipsrt.db").c_str(), &db, SQLITE_OPEN_READONLY,
                      nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(stmt, 0);
      out = t ? reinterpret_cast<const char*>(t) : "";
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return out;
}

absl::Status SqliteBackend::Exec(const std::string& sql) {
  sqlite3* db = nullptr;
  absl::Status result = absl::OkStatus();
  if (sqlite3_open_v2(dir_.File("ipsrt.db").c_str(), &db, SQLITE_OPEN_READWRITE,
                      nullptr) != SQLITE_OK) {
    result = absl::InternalError("cannot open the database");
  } else if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) !=
             SQLITE_OK) {
    result = absl::InternalError(sqlite3_errmsg(db));
  }
  sqlite3_close(db);
  return result;
}

std::string SqliteBackend::BlobLiteral(const std::string& bytes) {
  return absl::StrCat("X'", absl::BytesToHexString(bytes), "'");
}

PostgresBackend::PostgresBackend() : database_(NewDatabaseName()) {
  absl::Status s = SharedPostgres().CreateDatabase(database_);
  EXPECT_TRUE(s.ok()) << s;
}

PostgresStore::Options PostgresBackend::Options() const {
  PostgresStore::Options o;
  o.conninfo = SharedPostgres().Conninfo(database_);
  o.pool_size = 4;
  return o;
}

absl::StatusOr<std::unique_ptr<Store>> PostgresBackend::Open(
    FaultHook fault_hook) {
  PostgresStore::Options o = Options();
  o.fault_hook = std::move(fault_hook);
  absl::StatusOr<std::unique_ptr<PostgresStore>> s = PostgresStore::Open(o);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Store>(*std::move(s));
}

absl::Status PostgresBackend::Exec(const std::string& sql) {
  if (Scalar("1") != "1") return absl::InternalError("cannot connect");
  return connection_->Exec(sql);
}

std::string PostgresBackend::BlobLiteral(const std::string& bytes) {
  return absl::StrCat("'\\x", absl::BytesToHexString(bytes), "'::bytea");
}

std::string PostgresBackend::Scalar(const std::string& sql) {
  if (connection_ == nullptr) {
    PgConnectOptions o;
    o.conninfo = SharedPostgres().Conninfo(database_);
    o.application_name = "ipsrt test";
    absl::StatusOr<std::unique_ptr<PgConnection>> c = PgConnection::Connect(o);
    if (!c.ok()) return absl::StrCat("<error: ", c.status().message(), ">");
    connection_ = *std::move(c);
  }
  // As text, whatever the column's type.
  absl::StatusOr<PgResult> r =
      connection_->Query(absl::StrCat("SELECT (", sql, ")::text"));
  if (!r.ok()) return absl::StrCat("<error: ", r.status().message(), ">");
  return r->Text(0, 0);
}

}  // namespace ipsrt::testing
