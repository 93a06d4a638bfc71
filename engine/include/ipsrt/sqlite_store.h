// SqliteStore: the embedded Store, one SQLite database file in WAL mode.
//
// Durability: every commit is on stable storage before its callback runs
// (synchronous=FULL by default, so a power loss after the callback loses
// nothing). Throughput: one writer thread commits everything queued at that
// moment as one SQLite transaction (group commit), each request inside its
// own SAVEPOINT, so concurrent requests share one fsync while a failing
// request rolls back alone; the callbacks of a committed group run on a
// second thread, in commit order, while the writer goes on to the next
// group. Reads use a pool of read-only connections and never wait for the
// writer; enrollment reads are answered from an in-memory cache of recent
// rows when the lock file makes this process the only writer
// (Options::enrollment_cache_bytes).
//
// Example:
//   SqliteStore::Options options;
//   options.path = "/var/lib/ipsrtd/ipsrt.db";
//   absl::StatusOr<std::unique_ptr<SqliteStore>> store =
//       SqliteStore::Open(options);
#ifndef IPSRT_SQLITE_STORE_H_
#define IPSRT_SQLITE_STORE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ipsrt/config.h"
#include "ipsrt/sql_store.h"
#include "ipsrt/store.h"

namespace ipsrt {

class SqliteStore final : public SqlStore {
 public:
  struct Options {
    // Database file; its directory is created when missing.
    std::string path;
    // PRAGMA synchronous: FULL (default) or EXTRA. Nothing weaker can be
    // set: a commit that a power loss can undo is not a commit for health
    // data. The configuration's enum (store.sqlite.synchronous).
    using Synchronous = SqliteSynchronous;
    Synchronous synchronous = Synchronous::kFull;
    // How long a statement waits for a lock held by another process.
    absl::Duration busy_timeout = absl::Seconds(5);
    // Most requests committed in one group transaction.
    int max_batch = 256;
    // Read-only connections for concurrent reads.
    int read_connections = 4;
    // Maximum database size in pages (0: SQLite's default). A full database
    // fails commits with RESOURCE_EXHAUSTED and keeps serving reads.
    int64_t max_page_count = 0;
    // What Open does with a database that has no ipsrt schema yet.
    //   kIfMissing: create the file when it does not exist; refuse an
    //     existing empty or schema-less file (an emptied database is lost
    //     data, not a new store).
    //   kAlways: also initialise an existing empty or schema-less file
    //     (first start; `ipsrt store init`).
    //   kNever: the database must exist with its schema.
    // The configuration's enum (store.sqlite.create).
    using Create = SqliteCreate;
    Create create = Create::kIfMissing;
    // Identity file (store/store_files.h); empty: none. When set, Open
    // refuses a database that is another store than the file names, one
    // older than the file (rolled back), and a missing or empty database
    // where the file says a store lived; the file then follows commits
    // (rewritten at most once a second and at Close).
    std::string identity_file;
    // With identity_file: accept the database as it is and record its
    // identity anew (a deliberate restore from backup).
    bool adopt = false;
    // Lock file held with an exclusive flock while open, so that two
    // processes never write one database; empty: no lock.
    std::string lock_file;
    // Free space of the database's file system below which changes are
    // refused RESOURCE_EXHAUSTED (audit records of reads still pass, so
    // reads keep working), and below which Open refuses to start.
    // 0: no watermark; -1: the smaller of 5 % and 256 MiB.
    int64_t min_free_bytes = 0;
    // PRAGMA quick_check at Open, abandoned (with a warning) after this
    // long; 0 skips it. Damage found turns the store read-only for safety.
    absl::Duration quick_check_timeout = absl::ZeroDuration();
    // Test hook: called before each write step of a batch with the step's
    // name (SqlCore::Options::fault_hook in store/sql_core.h); a non-OK
    // status fails that step as if SQLite had.
    std::function<absl::Status(absl::string_view step)> fault_hook;
    // How long a request's record (its first response, for retries) is
    // kept, counted from the request's create time; older records are
    // pruned as later requests commit, and a retry of a pruned request is
    // refused ALREADY_EXISTS, never applied again (store/request_window.h).
    // Zero or infinite: kept for ever.
    absl::Duration request_retention = absl::Hours(7 * 24);
    // Bytes of recently used enrollment rows kept in memory, so that
    // reading an enrollment (and loading it before an event) skips the
    // database; 0: off. Used only with lock_file: the writer thread keeps
    // the rows coherent, which holds only while no other process writes
    // the database (store/enrollment_cache.h).
    int64_t enrollment_cache_bytes = 32 << 20;
  };

  // Open creates or opens the database, applies pending schema migrations
  // and starts the writer thread. FAILED_PRECONDITION when the file's schema
  // is newer than this build knows, an option is invalid, the file is empty
  // or schema-less where data is expected (see Create), it is not the store
  // its identity file names, or another process holds its lock;
  // RESOURCE_EXHAUSTED below the free-space watermark; DATA_LOSS when the
  // file is not a database.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const Options& options);

  ~SqliteStore() override;

  void CommitAsync(
      WriteBatch batch,
      std::function<void(absl::StatusOr<CommitResult>)> done) override;
  int SchemaVersion() const override;
  // SchemaVersionFound is the schema version the database had when Open
  // began: 0 for a new one, below SchemaVersion() when Open migrated it.
  int SchemaVersionFound() const;
  absl::string_view Kind() const override { return "sqlite"; }

  // DatabasePath is Options::path.
  const std::string& DatabasePath() const;

  // StoreId is the store's identity (empty without Options::identity_file).
  std::string StoreId() const;
  void Close() override;
  absl::Status Probe() override;
  // The enrollment cache's counts since Open (all zero when it is off).
  using CacheCounts = StoreStats::EnrollmentCache;
  CacheCounts EnrollmentCacheCounts() const;
  // Stats adds the enrollment cache's counts when the cache is on.
  absl::StatusOr<StoreStats> Stats(absl::Time now) override;
  // GetEnrollment answers from the enrollment cache when it can (see
  // Options::enrollment_cache_bytes).
  absl::StatusOr<EnrollmentRow> GetEnrollment(absl::string_view tenant,
                                              absl::string_view id) override;

  // ClaimQueryPlan is SQLite's EXPLAIN QUERY PLAN of ClaimOutbox's
  // statement, one plan line per line (for tests and the benchmark).
  absl::StatusOr<std::string> ClaimQueryPlan();
  // The plans of one ListEnrollments page for `filter` (the first page, or
  // a later one when `after`) and of one ListOutbox page for `q`, as
  // ClaimQueryPlan: what the tests assert stays an index search as the
  // tables grow.
  absl::StatusOr<std::string> ListEnrollmentsQueryPlan(
      const EnrollmentFilter& filter, bool after);
  absl::StatusOr<std::string> ListOutboxQueryPlan(const OutboxQuery& q);

  // QueryPlan is SQLite's EXPLAIN QUERY PLAN of `sql` on a read connection,
  // one plan line per line (tests assert the plans of the store's queries).
  absl::StatusOr<std::string> QueryPlan(absl::string_view sql);

  // Number of group transactions committed so far (for tests and metrics).
  int64_t GroupCommits() const;

 private:
  class Impl;
  SqliteStore(std::unique_ptr<SqlCore> core, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsrt

#endif  // IPSRT_SQLITE_STORE_H_
