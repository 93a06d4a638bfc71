// Store backends for the conformance suite: each opens fresh, empty stores of
// one kind and reads tables behind the store's back to check what it wrote.
//
// PostgreSQL runs once per test binary (SharedPostgres(), started by a
// global test environment); every backend instance gets a database of its
// own on it, so tests never see each other's rows.
#ifndef IPSRT_TESTS_STORE_STORE_BACKENDS_H_
#define IPSRT_TESTS_STORE_STORE_BACKENDS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "ipsrt/postgres_store.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/store.h"
#include "store/pg_connection.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt::testing {

// SharedPostgres is the binary's PostgreSQL server; it fails the calling
// test when the server could not be started.
PostgresServer& SharedPostgres();

// NewDatabaseName returns a database name not used before in this binary.
std::string NewDatabaseName();

class SqliteBackend {
 public:
  static constexpr char kName[] = "sqlite";
  // FaultHook is the stores' test hook (SqlCore::Options::fault_hook).
  using FaultHook = std::function<absl::Status(absl::string_view step)>;
  // Open opens (creating on first use) this backend's one database, with
  // `fault_hook` when given.
  absl::StatusOr<std::unique_ptr<Store>> Open(FaultHook fault_hook = nullptr);
  // Scalar runs a query returning one value, rendered as text.
  std::string Scalar(const std::string& sql);
  // Exec runs statements behind the store's back (tampering tests).
  absl::Status Exec(const std::string& sql);
  // BlobLiteral is `bytes` as an SQL literal of the payload column's type.
  static std::string BlobLiteral(const std::string& bytes);

 private:
  TempDir dir_;
};

class PostgresBackend {
 public:
  static constexpr char kName[] = "postgres";
  using FaultHook = SqliteBackend::FaultHook;
  PostgresBackend();
  absl::StatusOr<std::unique_ptr<Store>> Open(FaultHook fault_hook = nullptr);
  std::string Scalar(const std::string& sql);
  absl::Status Exec(const std::string& sql);
  static std::string BlobLiteral(const std::string& bytes);
  PostgresStore::Options Options() const;

 private:
  std::string database_;
  std::unique_ptr<PgConnection> connection_;  // for Scalar
};

// The store kinds, for typed test suites:
//   TYPED_TEST_SUITE(MyTest, StoreBackends, StoreBackendName);
using StoreBackends = ::testing::Types<SqliteBackend, PostgresBackend>;
struct StoreBackendName {
  template <typename Backend>
  static std::string GetName(int) {
    return Backend::kName;
  }
};

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_STORE_STORE_BACKENDS_H_
