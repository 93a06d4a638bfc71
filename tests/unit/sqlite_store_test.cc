#include "ipsrt/sqlite_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/open_store.h"
#include "tests/testing/store_batches.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;

using testing::CreateBatch;

class SqliteStoreTest : public ::testing::Test {
 protected:
  SqliteStore::Options Options() {
    SqliteStore::Options o;
    o.path = dir_.File("db/ipsrt.db");
    return o;
  }
  std::unique_ptr<SqliteStore> OpenStore(SqliteStore::Options o) {
    absl::StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  // CountRows reads a table through an independent SQLite connection.
  int64_t CountRows(const std::string& table) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(Options().path.c_str(), &db, SQLITE_OPEN_READONLY,
                              nullptr),
              SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    std::string sql = absl::StrCat("SELECT COUNT(*) FROM ", table);
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr),
              SQLITE_OK);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
  }

  testing::TempDir dir_;
};

// The Store contract itself is tested for every kind in
// tests/store/store_conformance_test.cc, and failures injected at each
// write step in tests/store/store_failure_test.cc; these tests cover what
// only SQLite has: WAL mode, the synchronous setting, a full disk and group
// commit.

TEST_F(SqliteStoreTest, DatabaseIsInWalMode) {
  auto store = OpenStore(Options());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(Options().path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)),
               "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

// Patient data is private to the account running the store, whatever the
// process's umask: the database, its WAL and shared-memory files are 0600.
TEST_F(SqliteStoreTest, FilesArePrivate) {
  const mode_t old_mask = ::umask(022);
  auto store = OpenStore(Options());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st;
    const std::string path = Options().path + suffix;
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 0777, 0600) << path;
  }
  store->Close();
  ::umask(old_mask);
}

// The configured synchronous setting reaches the store and its start-up
// line. Nothing weaker than FULL is representable; the YAML value
// "normal" is refused with its file:line:col in ConfigTest.
TEST_F(SqliteStoreTest, ConfiguredSynchronousReachesTheStore) {
  for (auto [setting, text] :
       {std::pair{SqliteSynchronous::kExtra, "synchronous=extra"},
        std::pair{SqliteSynchronous::kFull, "synchronous=full"}}) {
    StoreConfig config;
    config.sqlite.path = Options().path;
    config.sqlite.synchronous = setting;
    std::string description;
    absl::StatusOr<std::unique_ptr<Store>> store =
        ::ipsrt::OpenStore(config, &description);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_THAT(description, HasSubstr(text));
    (*store)->Close();
  }
}

// A real SQLite failure: the database hits its size limit mid-write. The
// failing request leaves nothing behind and reads keep working.
TEST_F(SqliteStoreTest, FullDatabaseFailsCleanly) {
  SqliteStore::Options o = Options();
  o.max_page_count = 40;
  auto store = OpenStore(o);
  int committed = 0;
  absl::Status failure;
  for (int i = 0; i < 5000; ++i) {
    WriteBatch b =
        CreateBatch("t1", absl::StrCat("e", i), absl::StrCat("r", i));
    b.create->snapshot = std::string(512, 'x');
    absl::StatusOr<CommitResult> r = store->Commit(std::move(b));
    if (!r.ok()) {
      failure = r.status();
      break;
    }
    ++committed;
  }
  ASSERT_FALSE(failure.ok()) << "the database never filled up";
  EXPECT_EQ(failure.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(failure.message(), HasSubstr("database or disk is full"));
  ASSERT_GT(committed, 0);
  std::string failed_id = absl::StrCat("e", committed);
  EXPECT_EQ(store->GetEnrollment("t1", failed_id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(
      store->LookupRequest("t1", absl::StrCat("r", committed))->has_value());
  EXPECT_TRUE(store->GetEnrollment("t1", "e0").ok());
  store.reset();
  EXPECT_EQ(CountRows("enrollments"), committed);
  EXPECT_EQ(CountRows("events"), committed);
  EXPECT_EQ(CountRows("requests"), committed);
}

// Concurrent requests share group transactions; one failing request in a
// group does not take the others down.
TEST_F(SqliteStoreTest, GroupCommitSharesTransactionsAndIsolatesFailures) {
  auto store = OpenStore(Options());
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "taken", "taken")).ok());
  const int64_t groups_before = store->GroupCommits();
  constexpr int kRequests = 300;
  const testing::ConcurrentOutcomes outcomes =
      testing::CommitConcurrently(*store, kRequests);
  EXPECT_EQ(outcomes.ok, kRequests - kRequests / 10);
  EXPECT_EQ(outcomes.conflicts, kRequests / 10);
  EXPECT_EQ(outcomes.other, 0);
  const int64_t groups = store->GroupCommits() - groups_before;
  EXPECT_GE(groups, 1);
  EXPECT_LT(groups, kRequests) << "requests were not grouped";
  store.reset();
  EXPECT_EQ(CountRows("enrollments"), 1 + kRequests - kRequests / 10);
}

TEST_F(SqliteStoreTest, RefusesNewerSchema) {
  { auto store = OpenStore(Options()); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(Options().path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO schema_migrations VALUES (999, 'future', "
                         "0)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  absl::StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(Options());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.status().message(),
            "store: database schema version 999 is newer than this ipsrtd "
            "supports (9); run a newer ipsrtd");
}

}  // namespace
}  // namespace ipsrt
