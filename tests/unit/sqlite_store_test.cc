#include "ipsrt/sqlite_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
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

// BytesWritten is what this process has passed to write(2) and its kin
// (wchar in /proc/self/io), files and sockets alike.
int64_t BytesWritten() {
  std::ifstream io("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value) {
    if (key == "wchar:") return value;
  }
  ADD_FAILURE() << "no wchar in /proc/self/io";
  return 0;
}

// CommitGroups commits `n` new enrollments named `prefix`0.. concurrently,
// so that the writer groups them; returns how many committed.
int CommitGroups(Store& store, const std::string& prefix, int n) {
  absl::BlockingCounter pending(n);
  std::atomic<int> ok{0};
  for (int i = 0; i < n; ++i) {
    store.CommitAsync(CreateBatch("t1", absl::StrCat(prefix, i),
                                  absl::StrCat(prefix, "r", i)),
                      [&](absl::StatusOr<CommitResult> r) {
                        if (r.ok()) ++ok;
                        pending.DecrementCount();
                      });
  }
  pending.Wait();
  return ok.load();
}

// The store's threads carry names (`ps -L`, `top -H`, perf's comm column),
// so that an operator or a profile tells the writer every change waits for
// from the thread answering callers and from the checkpointer.
TEST_F(SqliteStoreTest, ItsThreadsAreNamed) {
  // The names of this process's threads, as the kernel keeps them.
  auto thread_names = [] {
    std::vector<std::string> names;
    for (const auto& task :
         std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream in(task.path() / "comm");
      std::string name;
      std::getline(in, name);
      names.push_back(name);
    }
    return names;
  };
  auto store = OpenStore(Options());
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(thread_names(),
              ::testing::IsSupersetOf(
                  {"store-writer", "store-answers", "wal-checkpoint"}));
  // Closing the store ends them.
  store.reset();
  EXPECT_THAT(thread_names(),
              ::testing::Not(::testing::Contains("store-writer")));
}

// Each request of a group runs in a savepoint, whose journal holds the old
// contents of the pages the request changes. They stay in memory: the bytes
// the process writes per request are its share of the WAL's frames and of
// the checkpoints' copies. (With SQLite's default, 64 KiB in memory, every
// request wrote its journal to a temporary file: about 48 KB a request
// here, and four times the WAL's bytes under ipsrt_loadgen's creates.)
TEST_F(SqliteStoreTest, SavepointJournalsStayInMemory) {
  auto store = OpenStore(Options());
  ASSERT_NE(store, nullptr);
  // Pages that exist before a savepoint are the ones it journals.
  constexpr int kSeed = 500;
  ASSERT_EQ(CommitGroups(*store, "seed", kSeed), kSeed);
  const int64_t groups_before = store->GroupCommits();
  const int64_t before = BytesWritten();
  constexpr int kRequests = 500;
  ASSERT_EQ(CommitGroups(*store, "m", kRequests), kRequests);
  const int64_t per_request = (BytesWritten() - before) / kRequests;
  EXPECT_LT(store->GroupCommits() - groups_before, kRequests)
      << "requests were not grouped";
  EXPECT_LT(per_request, 12 << 10);
  std::printf("bytes written per request: %lld\n",
              static_cast<long long>(per_request));
}

// A process that runs a store can still run a statement that changes more
// than a megabyte of existing pages in one transaction (a migration, an
// operator's tool on its own connection). The store once set SQLite's
// process-wide statement-journal spill threshold to 1 MiB; SQLite 3.40
// then failed every such statement with "database or disk is full" when its
// journal spilled to a file (thresholds of 256 KiB and more did; 64 and 128
// KiB did not), which made migration 10 fail on a copy of the
// 1,000,000-enrollment set. The writer now keeps its journals in memory
// with PRAGMA temp_store=MEMORY on its own connection instead.
TEST_F(SqliteStoreTest, AStatementWithALargeJournalSucceedsInTheStoresProcess) {
  // As on a process's first use of SQLite (earlier tests in this process
  // may have used it; none holds a connection now): process-wide options
  // take effect only then.
  ASSERT_EQ(sqlite3_shutdown(), SQLITE_OK);
  auto store = OpenStore(Options());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.File("other.db").c_str(), &db), SQLITE_OK);
  auto exec = [&](const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    std::string message = err ? err : "";
    sqlite3_free(err);
    return absl::StrCat(rc, message.empty() ? "" : " ", message);
  };
  ASSERT_EQ(exec("PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER "
                 "PRIMARY KEY, v BLOB NOT NULL); WITH RECURSIVE n(i) AS "
                 "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
                 "INSERT INTO t (v) SELECT randomblob(200) FROM n;"),
            "0");
  // About 4.5 MB of existing pages, journalled by the statement.
  EXPECT_EQ(exec("BEGIN; UPDATE t SET v = randomblob(201); COMMIT;"), "0");
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(
      sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM t WHERE length(v) = 201", -1,
                         &count, nullptr),
      SQLITE_OK);
  ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(count, 0), 20000);
  sqlite3_finalize(count);
  sqlite3_close(db);
  // The store's own commits go on.
  EXPECT_TRUE(store->Commit(CreateBatch("t1", "e2", "r2")).ok());
}

// UpdateRow is `id`'s row at `revision` (CreateBatch's row, moved on).
WriteBatch UpdateTo(const std::string& id, int64_t revision,
                    absl::Time create_time_in_row = absl::UnixEpoch()) {
  WriteBatch b = CreateBatch("t1", id, absl::StrCat("u-", id, "-", revision));
  EnrollmentRow row = *b.create;
  b.create.reset();
  row.revision = revision;
  row.stage = absl::StrCat("stage-", revision);
  row.snapshot = std::string(static_cast<size_t>(100 + revision), 'x');
  // An update does not write create_time; whatever the row says is ignored.
  row.create_time = create_time_in_row;
  row.update_time =
      testing::kBatchTime + absl::Seconds(revision) + absl::Nanoseconds(777);
  b.update = EnrollmentUpdate{revision - 1, row};
  b.events[0].sequence = revision;
  b.events[0].prev_hash = absl::StrCat("h", revision - 1);
  b.events[0].hash = absl::StrCat("h", revision);
  return b;
}

void ExpectSameRow(const EnrollmentRow& a, const EnrollmentRow& b) {
  EXPECT_EQ(a.tenant, b.tenant);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.patient_ref, b.patient_ref);
  EXPECT_EQ(a.workflow_id, b.workflow_id);
  EXPECT_EQ(a.workflow_version, b.workflow_version);
  EXPECT_EQ(a.stage, b.stage);
  EXPECT_EQ(a.clinician_ref, b.clinician_ref);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.revision, b.revision);
  EXPECT_EQ(a.snapshot, b.snapshot);
  EXPECT_EQ(a.create_time, b.create_time);
  EXPECT_EQ(a.update_time, b.update_time);
}

// With its lock file (one writing process), the store answers enrollment
// reads from its cache; every answer equals what the database holds, after
// creates, updates, refused updates, replays and a rolled-back request.
TEST_F(SqliteStoreTest, CachedEnrollmentsEqualTheDatabase) {
  SqliteStore::Options cached = Options();
  cached.lock_file = dir_.File("db/ipsrt.db.lock");
  std::vector<EnrollmentRow> answers;
  {
    auto store = OpenStore(cached);
    // Times below a microsecond, as the engine's clock gives them.
    ASSERT_TRUE(
        store
            ->Commit(CreateBatch("t1", "e1", "c1", "hash-a",
                                 testing::kBatchTime + absl::Nanoseconds(1999)))
            .ok());
    ASSERT_TRUE(store->Commit(CreateBatch("t1", "e2", "c2")).ok());
    // Read once: cached from here on (a new enrollment is cached when
    // first read), so the commits below must replace it or leave it.
    ASSERT_TRUE(store->GetEnrollment("t1", "e1").ok());
    ASSERT_TRUE(store->GetEnrollment("t1", "e2").ok());
    ASSERT_TRUE(store->Commit(UpdateTo("e1", 2)).ok());
    ASSERT_TRUE(store->Commit(UpdateTo("e1", 3)).ok());
    // Refused: stale revision; and a replay of revision 3's request.
    WriteBatch stale = UpdateTo("e1", 3);
    stale.request.request_id = "stale";
    EXPECT_EQ(store->Commit(stale).status().code(), absl::StatusCode::kAborted);
    absl::StatusOr<CommitResult> replayed = store->Commit(UpdateTo("e1", 3));
    ASSERT_TRUE(replayed.ok()) << replayed.status();
    EXPECT_TRUE(replayed->replayed);
    // A request whose event clashes fails after its row was updated inside
    // the transaction; its savepoint takes the update back, and the cache
    // must not keep it.
    WriteBatch clash = UpdateTo("e2", 2);
    clash.events[0].sequence = 1;  // e2 already has event 1
    EXPECT_FALSE(store->Commit(clash).ok());
    for (const char* id : {"e1", "e2"}) {
      absl::StatusOr<EnrollmentRow> row = store->GetEnrollment("t1", id);
      ASSERT_TRUE(row.ok()) << row.status();
      answers.push_back(*row);
    }
    // An update of a cached row replaces it: read again after one.
    ASSERT_TRUE(store->Commit(UpdateTo("e2", 2)).ok());
    absl::StatusOr<EnrollmentRow> e2 = store->GetEnrollment("t1", "e2");
    ASSERT_TRUE(e2.ok()) << e2.status();
    answers[1] = *e2;
    EXPECT_EQ(answers[0].revision, 3);
    EXPECT_EQ(answers[1].revision, 2);
    EXPECT_EQ(store->GetEnrollment("t1", "e3").status().code(),
              absl::StatusCode::kNotFound);
    // Only the first reads (and e3's) missed.
    EXPECT_EQ(store->EnrollmentCacheCounts().misses, 3);
    EXPECT_EQ(store->EnrollmentCacheCounts().hits, 3);
    EXPECT_EQ(store->EnrollmentCacheCounts().rows, 2);
  }
  // The same rows read with the cache off, after a restart.
  SqliteStore::Options uncached = Options();
  uncached.enrollment_cache_bytes = 0;
  auto store = OpenStore(uncached);
  ASSERT_EQ(answers.size(), 2u);
  for (const EnrollmentRow& answer : answers) {
    SCOPED_TRACE(answer.id);
    absl::StatusOr<EnrollmentRow> row = store->GetEnrollment("t1", answer.id);
    ASSERT_TRUE(row.ok()) << row.status();
    ExpectSameRow(answer, *row);
  }
}

// Readers racing a writer never read a revision older than one already
// acknowledged, even while the cache (room for about one row) evicts and
// refills on every read.
TEST_F(SqliteStoreTest, CachedReadsNeverGoBackBehindAnAcknowledgedCommit) {
  SqliteStore::Options o = Options();
  o.lock_file = dir_.File("db/ipsrt.db.lock");
  o.enrollment_cache_bytes = 700;
  auto store = OpenStore(o);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "c1")).ok());
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e2", "c2")).ok());
  constexpr int kRevisions = 150;
  std::atomic<int64_t> acked[2] = {1, 1};
  std::atomic<bool> done{false};
  std::atomic<int> behind{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      for (int i = 0; !done.load(); ++i) {
        int which = (i + t) % 2;
        int64_t floor = acked[which].load();
        absl::StatusOr<EnrollmentRow> row =
            store->GetEnrollment("t1", which == 0 ? "e1" : "e2");
        if (!row.ok() || row->revision < floor) ++behind;
        ++reads;
      }
    });
  }
  for (int r = 2; r <= kRevisions; ++r) {
    for (int which = 0; which < 2; ++which) {
      ASSERT_TRUE(store->Commit(UpdateTo(which == 0 ? "e1" : "e2", r)).ok());
      acked[which].store(r);
    }
  }
  done.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(behind.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_GT(reads.load(), 0);
  // The race was run with the cache in play: reads hit, missed and filled.
  SqliteStore::CacheCounts counts = store->EnrollmentCacheCounts();
  EXPECT_GT(counts.hits, 0);
  EXPECT_GT(counts.misses, 0);
  EXPECT_EQ(store->GetEnrollment("t1", "e1")->revision, kRevisions);
  EXPECT_EQ(store->GetEnrollment("t1", "e2")->revision, kRevisions);
}

// Several processes may write a shared database (no lock file): no cache,
// so a change by another process is read at once.
TEST_F(SqliteStoreTest, ASharedDatabaseIsNeverCached) {
  auto first = OpenStore(Options());
  auto second = OpenStore(Options());
  ASSERT_TRUE(first->Commit(CreateBatch("t1", "e1", "c1")).ok());
  ASSERT_EQ(second->GetEnrollment("t1", "e1")->revision, 1);
  ASSERT_TRUE(first->Commit(UpdateTo("e1", 2)).ok());
  EXPECT_EQ(second->GetEnrollment("t1", "e1")->revision, 2);
  EXPECT_EQ(first->EnrollmentCacheCounts().hits +
                first->EnrollmentCacheCounts().misses,
            0);
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
            "supports (10); run a newer ipsrtd");
}

}  // namespace
}  // namespace ipsrt
