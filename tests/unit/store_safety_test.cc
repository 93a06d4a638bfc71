// The SQLite store refuses a wrong, shared or full database and turns
// read-only for safety at the first corruption (docs/durability.md). Real
// files: emptied, replaced by another store's, rolled back, locked, and
// damaged by zeroing a leaf page.
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/config.h"
#include "ipsrt/sqlite_store.h"
#include "store/store_files.h"
#include "tests/testing/sqlite_pages.h"
#include "tests/testing/store_batches.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const absl::Time kT0 = absl::FromUnixSeconds(1790000000);

// CreateBatch creates enrollment `id` with `events` events whose payloads
// are `payload_bytes` long (so that tables span several pages).
WriteBatch CreateBatch(const std::string& id, int events = 1,
                       size_t payload_bytes = 16) {
  WriteBatch b = testing::CreateBatch("t1", id, "req-" + id);
  EventRow first = b.events.front();
  b.events.clear();
  for (int i = 1; i <= events; ++i) {
    EventRow ev = first;
    ev.sequence = i;
    ev.payload = std::string(payload_bytes, 'p');
    ev.hash = absl::StrCat("h", i);
    b.events.push_back(std::move(ev));
  }
  return b;
}

WriteBatch AuditOnly() {
  WriteBatch b;
  b.audit.push_back(AuditRecord{.tenant = "t1",
                                .subject = "reader",
                                .role = "admin",
                                .rpc = "/ipsrt.v1.EnrollmentService/Get",
                                .resource = "tenants/t1/enrollments/e1",
                                .outcome = "OK",
                                .time = kT0});
  return b;
}

class StoreSafetyTest : public ::testing::Test {
 protected:
  std::string Path() const { return dir_.File("ipsrt.db"); }
  SqliteStore::Options Options() const {
    SqliteStore::Options o;
    o.path = Path();
    o.identity_file = IdentityFilePath(o.path);
    o.lock_file = LockFilePath(o.path);
    return o;
  }
  std::unique_ptr<SqliteStore> Open(const SqliteStore::Options& o) {
    absl::StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  // Populate creates `n` enrollments, one commit each, and closes.
  void Populate(int n, int events = 1, size_t payload_bytes = 16) {
    auto store = Open(Options());
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(
          store
              ->Commit(CreateBatch(absl::StrCat("e", i), events, payload_bytes))
              .ok());
    }
  }
  absl::Status OpenStatus(const SqliteStore::Options& o) {
    return SqliteStore::Open(o).status();
  }

  testing::TempDir dir_;
};

TEST_F(StoreSafetyTest, EmptiedFileIsRefusedNotServedAsNew) {
  Populate(3);
  std::filesystem::resize_file(Path(), 0);
  absl::Status s = OpenStatus(Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      std::string(s.message()),
      HasSubstr(absl::StrCat(Path(),
                             " is empty (0 bytes) but its "
                             "identity file ",
                             IdentityFilePath(Path()), " says store ")));
  EXPECT_THAT(std::string(s.message()), HasSubstr("with 3 commits"));
  EXPECT_EQ(std::filesystem::file_size(Path()), 0u) << "the file was touched";
}

TEST_F(StoreSafetyTest, EmptyFileWithoutIdentityNeedsCreate) {
  { std::ofstream touch(Path()); }
  SqliteStore::Options o = Options();
  absl::Status s = OpenStatus(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("is empty (0 bytes); an emptied database "
                        "is not a new one. If this is a first "
                        "start, set store.sqlite.create: true"));
  o.create = SqliteStore::Options::Create::kAlways;
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->StoreId().size(), 32u);
  EXPECT_TRUE(store->Commit(CreateBatch("e1")).ok());
}

TEST_F(StoreSafetyTest, MissingFileIsRefusedWhenCreateIsFalse) {
  SqliteStore::Options o = Options();
  o.create = SqliteStore::Options::Create::kNever;
  absl::Status s = OpenStatus(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("does not exist and store.sqlite.create "
                        "is false; run `ipsrt store init`"));
  EXPECT_FALSE(std::filesystem::exists(Path()));
}

TEST_F(StoreSafetyTest, SchemaLessAndForeignFilesAreRefused) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(Path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "PRAGMA user_version = 7", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  ASSERT_GT(std::filesystem::file_size(Path()), 0u);
  absl::Status s = OpenStatus(Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(" has no ipsrt schema; if this is a "
                        "first start, set store.sqlite.create"));

  ASSERT_EQ(sqlite3_open(Path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE invoices (id INTEGER)", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  SqliteStore::Options o = Options();
  o.create = SqliteStore::Options::Create::kAlways;
  s = OpenStatus(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("is a SQLite database without the ipsrt schema"));
}

TEST_F(StoreSafetyTest, IdentityFileFollowsCommits) {
  Populate(4);
  absl::StatusOr<std::optional<StoreIdentity>> id =
      ReadIdentityFile(IdentityFilePath(Path()));
  ASSERT_TRUE(id.ok() && id->has_value()) << id.status();
  EXPECT_EQ((*id)->sequence, 4);
  auto store = Open(Options());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->StoreId(), (*id)->store_id);
}

// StoredCount reads the commit count the database file holds, through a
// connection of its own (as the next start would read it).
int64_t StoredCount(const std::string& path) {
  sqlite3* db = nullptr;
  int64_t count = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT commit_seq FROM store_identity", -1, &st,
                           nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      count = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return count;
}

// The count is stored with a commit at most once a second (not with every
// commit: that rewrote a page per commit) and at shutdown; the identity
// file never records more than the database holds, so a crash between two
// stores of the count is never mistaken for a rollback.
TEST_F(StoreSafetyTest, CommitCountIsStoredOnceASecondAndAtShutdown) {
  auto store = Open(Options());
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store->Commit(AuditOnly()).ok());
    absl::StatusOr<std::optional<StoreIdentity>> id =
        ReadIdentityFile(IdentityFilePath(Path()));
    ASSERT_TRUE(id.ok() && id->has_value()) << id.status();
    EXPECT_LE((*id)->sequence, StoredCount(Path())) << "after commit " << i;
  }
  // Within the first second after the start's own write, none of the 20
  // commits stored the count (the start wrote it at 0).
  EXPECT_LT(StoredCount(Path()), 20);
  absl::SleepFor(absl::Milliseconds(1100));
  ASSERT_TRUE(store->Commit(AuditOnly()).ok());
  EXPECT_EQ(StoredCount(Path()), 21) << "the first commit after a second";
  {
    absl::StatusOr<std::optional<StoreIdentity>> id =
        ReadIdentityFile(IdentityFilePath(Path()));
    ASSERT_TRUE(id.ok() && id->has_value()) << id.status();
    EXPECT_EQ((*id)->sequence, 21);
  }
  ASSERT_TRUE(store->Commit(AuditOnly()).ok());
  EXPECT_EQ(StoredCount(Path()), 21);
  store.reset();  // shutdown stores and records the last count
  EXPECT_EQ(StoredCount(Path()), 22);
  absl::StatusOr<std::optional<StoreIdentity>> id =
      ReadIdentityFile(IdentityFilePath(Path()));
  ASSERT_TRUE(id.ok() && id->has_value()) << id.status();
  EXPECT_EQ((*id)->sequence, 22);
  EXPECT_NE(Open(Options()), nullptr);
}

// A process that dies between two stores of the count (kill -9, power
// loss) starts again: its files, copied while it runs (the database, its
// WAL and the identity file, as a crash leaves them), are accepted.
TEST_F(StoreSafetyTest, CrashBetweenStoresOfTheCountStartsAgain) {
  testing::TempDir crash;
  const std::string image = crash.File("ipsrt.db");
  {
    auto store = Open(Options());
    ASSERT_NE(store, nullptr);
    absl::SleepFor(absl::Milliseconds(1100));
    ASSERT_TRUE(store->Commit(AuditOnly()).ok());  // stores the count, 1
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->Commit(AuditOnly()).ok());
    EXPECT_EQ(StoredCount(Path()), 1);
    for (const char* suffix : {"", "-wal"}) {
      std::filesystem::copy_file(Path() + suffix, image + suffix);
    }
    std::filesystem::copy_file(IdentityFilePath(Path()),
                               IdentityFilePath(image));
  }
  SqliteStore::Options o;
  o.path = image;
  o.identity_file = IdentityFilePath(image);
  o.lock_file = LockFilePath(image);
  auto again = Open(o);
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->Commit(AuditOnly()).ok());
}

TEST_F(StoreSafetyTest, AnotherStoresDatabaseIsRefusedUnlessAdopted) {
  Populate(2);
  testing::TempDir other;
  {
    SqliteStore::Options o;
    o.path = other.File("other.db");
    o.identity_file = IdentityFilePath(o.path);
    auto store = Open(o);
    ASSERT_NE(store, nullptr);
  }
  std::filesystem::copy_file(other.File("other.db"), Path(),
                             std::filesystem::copy_options::overwrite_existing);
  absl::Status s = OpenStatus(Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("this is another store's database. "
                        "Correct store.sqlite.path, or start "
                        "with --adopt_store"));
  SqliteStore::Options adopt = Options();
  adopt.adopt = true;
  { EXPECT_NE(Open(adopt), nullptr); }
  EXPECT_TRUE(OpenStatus(Options()).ok()) << "adoption is recorded";
}

TEST_F(StoreSafetyTest, RolledBackDatabaseIsRefused) {
  Populate(1);
  std::filesystem::copy_file(Path(), dir_.File("backup.db"));
  {
    auto store = Open(Options());
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Commit(CreateBatch("later")).ok());
  }
  std::filesystem::copy_file(dir_.File("backup.db"), Path(),
                             std::filesystem::copy_options::overwrite_existing);
  absl::Status s = OpenStatus(Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(" is at commit 1 but its identity file "));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("recorded commit 2: the database was "
                        "rolled back"));
}

TEST_F(StoreSafetyTest, SecondOpenOfALockedDatabaseIsRefused) {
  auto first = Open(Options());
  ASSERT_NE(first, nullptr);
  absl::Status s = OpenStatus(Options());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("store: the database is in use by "
                                     "another ipsrtd (pid ",
                                     getpid(), "): lock file ",
                                     LockFilePath(Path()), " is held")));
  first.reset();
  EXPECT_TRUE(OpenStatus(Options()).ok()) << "the lock goes with the store";
}

TEST_F(StoreSafetyTest, StartBelowTheFreeSpaceWatermarkIsRefused) {
  SqliteStore::Options o = Options();
  o.min_free_bytes = int64_t{1} << 60;
  absl::Status s = OpenStatus(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(", below the free-space watermark of "
                        "1073741824.0 GiB"));
}

TEST_F(StoreSafetyTest, WatermarkDefaultIsTheSmallerOfFivePercentAnd256MiB) {
  EXPECT_EQ(FreeSpaceWatermark(
                -1, {.available_bytes = 0, .total_bytes = uint64_t{100} << 20}),
            uint64_t{5} << 20);
  EXPECT_EQ(FreeSpaceWatermark(
                -1, {.available_bytes = 0, .total_bytes = uint64_t{100} << 30}),
            uint64_t{256} << 20);
  EXPECT_EQ(FreeSpaceWatermark(4096, {.total_bytes = uint64_t{1} << 40}),
            4096u);
}

// Zeroes the middle leaf of `table` after Populate.
void Damage(const std::string& path, const std::string& table) {
  absl::StatusOr<int64_t> page = testing::MiddleLeafPage(path, table);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_TRUE(testing::ZeroPage(path, *page).ok());
}

TEST_F(StoreSafetyTest, QuickCheckAtStartTurnsADamagedStoreReadOnly) {
  Populate(40, 4, 200);
  Damage(Path(), "events");
  SqliteStore::Options o = Options();
  o.quick_check_timeout = absl::Seconds(30);
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  absl::Status probe = store->Probe();
  EXPECT_EQ(probe.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(probe.message()),
              StartsWith("store: read-only for safety since "));
  EXPECT_THAT(std::string(probe.message()), HasSubstr("PRAGMA quick_check "));
  EXPECT_THAT(std::string(probe.message()),
              HasSubstr(absl::StrCat("run `ipsrt store check --db=", Path())));
  absl::StatusOr<CommitResult> write = store->Commit(CreateBatch("new"));
  EXPECT_EQ(write.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(write.status().message(), probe.message());
  // Reads of undamaged tables, and the audit records of reads, still work.
  EXPECT_TRUE(store->GetEnrollment("t1", "e0").ok());
  EXPECT_TRUE(store->Commit(AuditOnly()).ok());
  EXPECT_EQ(
      store->ClaimOutbox(kT0, "me", absl::Seconds(10), 10).status().code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST_F(StoreSafetyTest, FirstCorruptReadTurnsTheStoreReadOnly) {
  Populate(40, 4, 200);
  Damage(Path(), "events");
  auto store = Open(Options());  // no quick_check
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->Probe().ok());
  absl::StatusCode seen = absl::StatusCode::kOk;
  for (int i = 0; i < 40 && seen == absl::StatusCode::kOk; ++i) {
    seen =
        store->ListEvents("t1", absl::StrCat("e", i), 0, 100).status().code();
  }
  EXPECT_EQ(seen, absl::StatusCode::kDataLoss);
  absl::Status probe = store->Probe();
  EXPECT_EQ(probe.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(probe.message()),
              HasSubstr("database disk image is malformed (sqlite code 11)"));
  EXPECT_EQ(store->Commit(CreateBatch("new")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store->GetEnrollment("t1", "e1").ok());
}

TEST(StoreSafetyConfigTest, DefaultsAndSizes) {
  absl::StatusOr<Config> c = ParseConfig(R"(store:
  sqlite:
    path: ipsrt.db
)",
                                         "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->store.sqlite.create, SqliteCreate::kIfMissing);
  EXPECT_FALSE(c->store.sqlite.allow_shared);
  EXPECT_EQ(c->store.sqlite.min_free_bytes, -1);
  EXPECT_EQ(c->store.sqlite.quick_check_timeout, absl::Seconds(10));
  EXPECT_EQ(c->store.sqlite.enrollment_cache_bytes, int64_t{32} << 20);
  c = ParseConfig(R"(store:
  sqlite:
    path: ipsrt.db
    create: false
    allow_shared: true
    min_free_space: 512MiB
    quick_check_timeout: 0s
    enrollment_cache: 0
)",
                  "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->store.sqlite.create, SqliteCreate::kNever);
  EXPECT_TRUE(c->store.sqlite.allow_shared);
  EXPECT_EQ(c->store.sqlite.min_free_bytes, int64_t{512} << 20);
  EXPECT_EQ(c->store.sqlite.quick_check_timeout, absl::ZeroDuration());
  EXPECT_EQ(c->store.sqlite.enrollment_cache_bytes, 0);
}

TEST(StoreSafetyConfigTest, BadValuesNameTheirPlace) {
  absl::StatusOr<Config> c = ParseConfig(R"(store:
  sqlite:
    path: ipsrt.db
    create: maybe
    min_free_space: lots
    enrollment_cache: -1MiB
)",
                                         "x.yaml", "/etc/ipsrtd");
  EXPECT_EQ(c.status().message(),
            "x.yaml:4:13: error: store.sqlite.create: must be if_missing, "
            "true or false\n"
            "x.yaml:5:21: error: store.sqlite.min_free_space: must be auto, 0 "
            "(off) or a size such as 512MiB or 2GiB\n"
            "x.yaml:6:23: error: store.sqlite.enrollment_cache: must be 0 "
            "(off) or a size such as 32MiB or 1GiB");
}

TEST(StoreSafetyConfigTest, ShippedConfigsChooseCreation) {
  absl::StatusOr<Config> dev =
      LoadConfigFile(std::string(IPSRT_SOURCE_DIR) + "/config/ipsrtd.yaml");
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ(dev->store.sqlite.create, SqliteCreate::kIfMissing);
}

}  // namespace
}  // namespace ipsrt
