#include "ipsrt/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <thread>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "ipsrt/status_macros.h"
#include "ops/metrics_hooks.h"
#include "store/blob_codec.h"
#include "store/commit_queue.h"
#include "store/enrollment_cache.h"
#include "store/migrations.h"
#include "store/request_window.h"
#include "store/sql_core.h"
#include "store/sql_dialect.h"
#include "store/sqlite_checkpointer.h"
#include "store/sqlite_migration_functions.h"
#include "store/store_files.h"

namespace ipsrt {

namespace {

// ValueText is a SQL function argument's text (empty for NULL).
absl::string_view ValueText(sqlite3_value* x) {
  const unsigned char* p = sqlite3_value_text(x);
  return absl::string_view(reinterpret_cast<const char*>(p),
                           p ? sqlite3_value_bytes(x) : 0);
}

}  // namespace

void AddSqliteMigrationFunctions(sqlite3* db) {
  // ipsrt_request_key(tenant, request_id): RequestKey, for migration 4.
  sqlite3_create_function(
      db, "ipsrt_request_key", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
      [](sqlite3_context* ctx, int, sqlite3_value** v) {
        sqlite3_result_int64(ctx, RequestKey(ValueText(v[0]), ValueText(v[1])));
      },
      nullptr, nullptr);
  // ipsrt_digest(value): StoredDigest as a BLOB, for migration 5.
  sqlite3_create_function(
      db, "ipsrt_digest", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
      [](sqlite3_context* ctx, int, sqlite3_value** v) {
        const void* p = sqlite3_value_blob(v[0]);
        const std::string stored = StoredDigest(absl::string_view(
            static_cast<const char*>(p), p ? sqlite3_value_bytes(v[0]) : 0));
        sqlite3_result_blob(ctx, stored.data(), static_cast<int>(stored.size()),
                            SQLITE_TRANSIENT);
      },
      nullptr, nullptr);
  // ipsrt_outbox_key_digest(tenant, enrollment_id, stored_key): schema 7's
  // OutboxKeyDigest (a 6-byte prefix), for migration 7, whose text is
  // fixed; with a fourth argument, the prefix's width (migration 10).
  const auto outbox_key_digest = [](sqlite3_context* ctx, int argc,
                                    sqlite3_value** v) {
    const size_t prefix_bytes =
        argc == 4 ? static_cast<size_t>(std::max(0, sqlite3_value_int(v[3])))
                  : kOutboxKeyPrefixBytesSchema7;
    const std::string digest = OutboxKeyDigest(ValueText(v[0]), ValueText(v[1]),
                                               ValueText(v[2]), prefix_bytes);
    sqlite3_result_blob(ctx, digest.data(), static_cast<int>(digest.size()),
                        SQLITE_TRANSIENT);
  };
  for (int argc : {3, 4}) {
    sqlite3_create_function(db, "ipsrt_outbox_key_digest", argc,
                            SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                            outbox_key_digest, nullptr, nullptr);
  }
}
namespace {

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

// FaultSinks maps each open connection to the store it belongs to, so that
// the first corruption, I/O or disk-full error any statement meets reaches
// that store's safety stop (SqliteStore::Impl::OnFault). Looked up only on
// those errors.
struct FaultSinks {
  absl::Mutex mu;
  std::map<sqlite3*, std::function<void(int, const std::string&)>> sinks
      ABSL_GUARDED_BY(mu);
};
FaultSinks& Sinks() {
  static FaultSinks* const sinks = new FaultSinks;
  return *sinks;
}
void ReportFault(sqlite3* db, int rc, const std::string& message) {
  if (db == nullptr) return;
  FaultSinks& f = Sinks();
  absl::MutexLock lock(&f.mu);
  auto it = f.sinks.find(db);
  if (it != f.sinks.end()) it->second(rc, message);
}

// Maps an SQLite result code to the most specific canonical code. Messages
// carry SQLite's text, which names tables and columns but never values
// (all values are bound parameters).
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string msg =
      absl::StrCat("store: ", what, ": ", db ? sqlite3_errmsg(db) : "",
                   " (sqlite code ", rc, ")");
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_IOERR:
    case SQLITE_FULL:
      ReportFault(db, rc, msg);
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(msg);
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(msg);
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      return absl::FailedPreconditionError(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(msg);
    case SQLITE_IOERR:
      // The device failed a read or write; the store turns read-only for
      // safety (OnFault), so this call may be retried elsewhere.
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// NumberedPlaceholders turns the shared statements' $N into SQLite's ?N
// (outside quoted literals), which binds by the same numbers.
std::string NumberedPlaceholders(absl::string_view sql) {
  std::string out(sql);
  char quote = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    char ch = out[i];
    if (quote != 0) {
      if (ch == quote) quote = 0;
    } else if (ch == '\'' || ch == '"') {
      quote = ch;
    } else if (ch == '$' && i + 1 < out.size() &&
               absl::ascii_isdigit(static_cast<unsigned char>(out[i + 1]))) {
      out[i] = '?';
    }
  }
  return out;
}

// Statement is a prepared statement with RAII finalisation; it is also the
// row a query is on.
class Statement final : public SqlRow {
 public:
  Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { Finalize(); }

  void Finalize() {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }

  absl::Status Prepare(sqlite3* db, absl::string_view sql, bool persistent) {
    db_ = db;
    std::string text = NumberedPlaceholders(sql);
    int rc = sqlite3_prepare_v3(db, text.data(), static_cast<int>(text.size()),
                                persistent ? SQLITE_PREPARE_PERSISTENT : 0,
                                &stmt_, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, "prepare");
    return absl::OkStatus();
  }

  // Bind binds $1, $2, ... The values stay the caller's (SQLITE_STATIC):
  // they outlive the statement's run, which ends with Reset.
  void Bind(const SqlParams& params) {
    int i = 1;
    for (const SqlParams::Value& v : params.values()) {
      switch (v.type) {
        case SqlParams::Type::kInt:
          sqlite3_bind_int64(stmt_, i, v.number);
          break;
        case SqlParams::Type::kText:
          sqlite3_bind_text(stmt_, i, v.bytes.data(),
                            static_cast<int>(v.bytes.size()), SQLITE_STATIC);
          break;
        case SqlParams::Type::kBytes:
          sqlite3_bind_blob(stmt_, i, v.bytes.data(),
                            static_cast<int>(v.bytes.size()), SQLITE_STATIC);
          break;
        case SqlParams::Type::kNullInt:
        case SqlParams::Type::kNullText:
          sqlite3_bind_null(stmt_, i);
          break;
      }
      ++i;
    }
  }
  void Bind(int i, absl::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }

  // Step returns true for a row, false when done.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, "step");
  }
  absl::Status Exec() {
    IPSRT_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  std::string Text(int col) const override {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), n) : std::string();
  }
  int64_t Int(int col) const override {
    return sqlite3_column_int64(stmt_, col);
  }
  bool IsNull(int col) const override {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// ResetOnExit resets a cached statement when a scope ends, on every path.
class ResetOnExit {
 public:
  explicit ResetOnExit(Statement& s) : s_(s) {}
  ~ResetOnExit() { s_.Reset(); }

 private:
  Statement& s_;
};

absl::Status ExecSql(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    sqlite3_free(err);
    return SqliteError(db, rc, "exec");
  }
  return absl::OkStatus();
}

// SqliteConnection is one connection with its statements prepared once and
// kept for the connection's life, by SQL text.
class SqliteConnection final : public SqlConnection {
 public:
  sqlite3* db = nullptr;

  absl::StatusOr<Statement*> Prepared(absl::string_view sql) {
    if (db == nullptr) return absl::UnavailableError("store: closed");
    auto it = cache_.find(sql);
    if (it != cache_.end()) return it->second.get();
    auto stmt = std::make_unique<Statement>();
    IPSRT_RETURN_IF_ERROR(stmt->Prepare(db, sql, true));
    Statement* out = stmt.get();
    cache_.emplace(std::string(sql), std::move(stmt));
    return out;
  }

  absl::StatusOr<int64_t> Exec(absl::string_view sql,
                               const SqlParams& params) override {
    IPSRT_ASSIGN_OR_RETURN(Statement * s, Prepared(sql));
    ResetOnExit reset(*s);
    s->Bind(params);
    while (true) {
      IPSRT_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) break;
    }
    return static_cast<int64_t>(sqlite3_changes(db));
  }

  absl::Status Query(absl::string_view sql, const SqlParams& params,
                     SqlRowFn fn) override {
    IPSRT_ASSIGN_OR_RETURN(Statement * s, Prepared(sql));
    ResetOnExit reset(*s);
    s->Bind(params);
    while (true) {
      IPSRT_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) return absl::OkStatus();
      IPSRT_RETURN_IF_ERROR(fn(*s));
    }
  }

  // Close finalises the statements, then closes the connection.
  void Close() {
    cache_.clear();
    if (db != nullptr) sqlite3_close_v2(db);
    db = nullptr;
  }

 private:
  std::map<std::string, std::unique_ptr<Statement>, std::less<>> cache_;
};

// Transaction runs `body` inside BEGIN IMMEDIATE ... COMMIT on `c`, rolling
// back on any error.
absl::Status Transaction(SqliteConnection& c,
                         absl::FunctionRef<absl::Status()> body) {
  if (c.db == nullptr) return absl::UnavailableError("store: closed");
  IPSRT_RETURN_IF_ERROR(ExecSql(c.db, "BEGIN IMMEDIATE"));
  absl::Status s = body();
  if (s.ok()) s = ExecSql(c.db, "COMMIT");
  if (!s.ok()) ExecSql(c.db, "ROLLBACK").IgnoreError();
  return s;
}

// The SQLite dialect: one writer at a time (BEGIN IMMEDIATE holds the
// database's write lock), so no row locks; the writer thread prunes request
// records once per group (PruneRequests).
SqlDialect SqliteDialect() {
  SqlDialect d;
  d.name = "sqlite";
  // Claims due rows: two bounded range scans (outbox_due for scheduled
  // rows, outbox_lease for expired leases and due retries), merged by due
  // time.
  const std::string scheduled = SqlStatus(OutboxStatus::kScheduled);
  const std::string claimed = SqlStatus(OutboxStatus::kClaimed);
  d.claim_outbox = absl::StrCat(
      "UPDATE outbox SET status = ", claimed,
      ", lease_owner = $1, lease_expiry_us = $2, attempts = attempts + 1 "
      "WHERE id IN (SELECT id FROM (SELECT id, due_time_us FROM (SELECT id, "
      "due_time_us FROM outbox WHERE status = ",
      scheduled,
      " AND due_time_us <= $3 ORDER BY due_time_us LIMIT $4) UNION ALL "
      "SELECT id, due_time_us FROM (SELECT id, due_time_us FROM outbox WHERE "
      "status IN (",
      claimed, ", ", SqlStatus(OutboxStatus::kRetryWait),
      ") AND lease_expiry_us <= $3 ORDER BY lease_expiry_us LIMIT $4)) "
      "ORDER BY due_time_us, id LIMIT $4) RETURNING ",
      kOutboxColumns);
  return d;
}

absl::StatusOr<sqlite3*> OpenConnection(const std::string& path, int flags,
                                        absl::Duration busy_timeout) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqliteError(db, rc, "open database");
    sqlite3_close(db);
    return s;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(
      db, static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
  return db;
}

}  // namespace

class SqliteStore::Impl : public SqlStore::Connections {
 public:
  Impl(Options options, const SqlCore* core)
      : options_(std::move(options)), core_(*core) {}
  ~Impl() { Close(); }

  absl::Status Open();
  void Enqueue(WriteBatch batch,
               std::function<void(absl::StatusOr<CommitResult>)> done);
  void Close();

  // Reader is one read-only connection; `mu` serialises its use.
  struct Reader {
    absl::Mutex mu;
    SqliteConnection conn;
  };
  // WithReader runs `fn` on a free-ish reader connection.
  template <typename Fn>
  auto WithReader(Fn fn) -> decltype(fn(std::declval<SqliteConnection&>())) {
    size_t i =
        next_reader_.fetch_add(1, std::memory_order_relaxed) % readers_.size();
    Reader& r = *readers_[i];
    absl::MutexLock lock(&r.mu);
    return fn(r.conn);
  }
  // Read runs `fn` on a reader connection.
  absl::Status Read(ConnectionFn fn) override {
    return WithReader([&](SqliteConnection& c) { return fn(c); });
  }
  // Transact runs `fn` in one transaction on the outbox connection (outbox
  // delivery; changes go through the writer thread).
  absl::Status Transact(ConnectionFn fn) override {
    IPSRT_RETURN_IF_ERROR(SafetyStop());
    absl::MutexLock lock(&outbox_.mu);
    return Transaction(outbox_.conn, [&] { return fn(outbox_.conn); });
  }

  // OnFault records a corruption, I/O or disk-full error that a statement
  // on one of this store's connections met (any thread).
  void OnFault(int rc, const std::string& message);
  // SafetyStop is OK, or FAILED_PRECONDITION once the store turned
  // read-only for safety.
  absl::Status SafetyStop();
  // SpaceCheck is OK, or RESOURCE_EXHAUSTED below the free-space watermark.
  absl::Status SpaceCheck();
  std::string store_id() const { return store_id_; }
  const std::string& path() const { return options_.path; }

  int schema_version() const { return schema_version_; }
  int schema_version_found() const { return schema_version_found_; }
  // The enrollment cache (null when off: Options::enrollment_cache_bytes
  // is 0, or other processes may write the database).
  EnrollmentCache* cache() { return cache_.get(); }
  int64_t group_commits() const {
    return group_commits_.load(std::memory_order_relaxed);
  }

 private:
  struct Pending {
    WriteBatch batch;
    std::function<void(absl::StatusOr<CommitResult>)> done;
    absl::StatusOr<CommitResult> result;
    // Made on the caller's thread so that deflating never holds up the
    // writer. Event payloads are stored as they are: the hash chain covers
    // them, and tamper checks and forensic reads work on the table's bytes.
    PackedBlobs packed;
  };

  // Statement runs one of the writer's own statements (no parameters).
  absl::Status Run(absl::string_view sql) {
    return writer_.Exec(sql, SqlParams()).status();
  }
  void WriterLoop();
  // CompletionLoop answers committed groups, in commit order, so that the
  // writer starts the next group while they are answered.
  void CompletionLoop();
  void RunGroup(std::vector<Pending>& group);
  // ApplyInSavepoint applies one request of a group; a failing one is
  // rolled back to its savepoint alone.
  void ApplyInSavepoint(Pending& p, bool* applied);
  // CommitGroup commits the group; *stored is set when the commit also
  // stored the commit count (StoreSequenceDue).
  absl::Status CommitGroup(std::vector<Pending>& group, bool applied,
                           bool* stored);
  // PublishRows hands the enrollment rows a committed group wrote to the
  // cache.
  void PublishRows(std::vector<Pending>& group);
  void ObserveGroup(const std::vector<Pending>& group, absl::Duration elapsed);
  absl::Status PruneRequests(const std::vector<Pending>& group);
  absl::Status ApplyMigrations();
  // CheckDatabaseFile refuses a missing, empty or schema-less database
  // where data is expected (Options::create, identity file).
  absl::Status CheckDatabaseFile();
  // The steps of Open, in order: the options' values; the directory, the
  // lock file and the free space; the writer connection with its schema
  // check, settings and SQL functions; the readers, the outbox connection,
  // the checkpointer and the writer thread.
  absl::Status CheckOptions() const;
  absl::Status PrepareDirectory();
  absl::Status OpenWriter();
  absl::Status CheckSchemaPresence();
  absl::Status StartServing();
  // CheckIdentity compares the database's identity with the identity file
  // and records it there.
  absl::Status CheckIdentity();
  // QuickCheck runs PRAGMA quick_check within options_.quick_check_timeout.
  void QuickCheck();
  void RegisterConnection(sqlite3* db);
  // StoreSequenceDue: the next commit that changes the database also
  // stores the commit count (at most once a second, as the identity file
  // is written). StoreSequence stores it in a transaction of its own (at
  // shutdown).
  bool StoreSequenceDue() const;
  void StoreSequence();
  // StoreCount sets the store_identity row's count (one statement, bound
  // parameter: the connection keeps its statements by SQL text).
  absl::Status StoreCount(int64_t count) {
    return writer_
        .Exec("UPDATE store_identity SET commit_seq = $1 WHERE id = 1",
              SqlParams().Int(count))
        .status();
  }
  // RecordSequence rewrites the identity file when `force` or a second has
  // passed since the last write (writer thread, or Close after it).
  void RecordSequence(bool force);

  Options options_;
  const SqlCore& core_;
  std::optional<DatabaseLock> lock_;
  // The database's identity (with Options::identity_file); sequence_ is
  // written on the writer thread only.
  std::string store_id_;
  // sequence_ counts the group commits that changed the database;
  // stored_sequence_ is the count its store_identity row holds, stored with
  // a commit at most once a second and at shutdown (not with every commit:
  // the row's page was a third of an audited read's WAL bytes). The
  // identity file records only stored_sequence_, so it never runs ahead of
  // the database.
  int64_t sequence_ = 0;
  int64_t stored_sequence_ = 0;
  int64_t recorded_sequence_ = -1;
  absl::Time recorded_at_ = absl::InfinitePast();
  bool schema_existed_ = false;
  bool identity_checked_ = false;
  // Read-only for safety: set once, never cleared while open.
  std::atomic<bool> unsafe_{false};
  absl::Mutex fault_mu_;
  std::string unsafe_reason_ ABSL_GUARDED_BY(fault_mu_);
  absl::Time unsafe_since_ ABSL_GUARDED_BY(fault_mu_);
  absl::Time last_fault_log_ ABSL_GUARDED_BY(fault_mu_) = absl::InfinitePast();
  int64_t faults_since_log_ ABSL_GUARDED_BY(fault_mu_) = 0;
  absl::Time last_space_log_ ABSL_GUARDED_BY(fault_mu_) = absl::InfinitePast();
  std::string directory_;
  // The writing connection; its statements run on the writer thread only.
  SqliteConnection writer_;
  std::vector<std::unique_ptr<Reader>> readers_;
  // A second writing connection for outbox delivery, so claims and
  // outcomes never queue behind group commits (SQLite serialises the two
  // writers with its lock; busy_timeout bounds the wait).
  Reader outbox_;
  std::atomic<size_t> next_reader_{0};
  int schema_version_ = 0;
  int schema_version_found_ = 0;
  std::atomic<int64_t> group_commits_{0};

  CommitQueue<Pending> queue_;
  std::thread writer_thread_;
  // Committed groups waiting for their answers (CompletionLoop).
  CommitQueue<std::vector<Pending>> completions_;
  std::thread completion_thread_;
  bool closed_ = false;
  // Checkpoints the WAL off the commit path (store/sqlite_checkpointer.h).
  std::unique_ptr<WalCheckpointer> checkpointer_;
  std::unique_ptr<EnrollmentCache> cache_;
};

absl::Status SqliteStore::Impl::Open() {
  IPSRT_RETURN_IF_ERROR(CheckOptions());
  IPSRT_RETURN_IF_ERROR(PrepareDirectory());
  IPSRT_RETURN_IF_ERROR(CheckDatabaseFile());
  IPSRT_RETURN_IF_ERROR(OpenWriter());
  IPSRT_RETURN_IF_ERROR(ApplyMigrations());
  // From here on the writer's savepoint and statement journals (and
  // temporary tables) stay in memory. Each request of a group commit runs
  // in a savepoint whose journal holds the old contents of the pages it
  // changes; with SQLite's default (64 KiB in memory, then a temporary
  // file) every create wrote them to a file, four times the WAL's own
  // bytes. A journal holds only pages that existed before the transaction,
  // so a group's is small. Not during the migrations: a rebuild's journal
  // (the dropped table's pages) took ipsrtd to 510 MB on the
  // 1,000,000-enrollment set in memory, 38 MB with the default. And not
  // the process-wide SQLITE_CONFIG_STMTJRNL_SPILL the store used to raise
  // to 1 MiB: SQLite 3.40 fails a statement whose journal spills past a
  // threshold of 256 KiB or more with "database or disk is full"
  // (bench/README.md, "Schema 10").
  IPSRT_RETURN_IF_ERROR(ExecSql(writer_.db, "PRAGMA temp_store=MEMORY"));
  IPSRT_RETURN_IF_ERROR(CheckIdentity());
  return StartServing();
}

absl::Status SqliteStore::Impl::CheckOptions() const {
  if (options_.path.empty()) {
    return absl::InvalidArgumentError("store.sqlite.path: must not be empty");
  }
  if (options_.max_batch < 1) {
    return absl::InvalidArgumentError(
        "store.sqlite.max_batch: must be at least 1");
  }
  if (options_.read_connections < 1) {
    return absl::InvalidArgumentError(
        "store.sqlite.read_connections: must be at least 1");
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Impl::PrepareDirectory() {
  std::filesystem::path dir =
      std::filesystem::path(options_.path).parent_path();
  directory_ = dir.empty() ? "." : dir.string();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store: cannot create directory ", dir.string(), ": ", ec.message()));
    }
  }
  if (!options_.lock_file.empty()) {
    IPSRT_ASSIGN_OR_RETURN(DatabaseLock lock,
                           DatabaseLock::Acquire(options_.lock_file));
    lock_.emplace(std::move(lock));
  }
  if (options_.min_free_bytes != 0) {
    IPSRT_ASSIGN_OR_RETURN(DiskSpace space, DiskSpaceOf(directory_));
    uint64_t watermark = FreeSpaceWatermark(options_.min_free_bytes, space);
    if (space.available_bytes < watermark) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "store: ", FormatBytes(space.available_bytes), " free of ",
          FormatBytes(space.total_bytes), " on the file system of ", directory_,
          ", below the free-space watermark of ", FormatBytes(watermark),
          " (store.sqlite.min_free_space); free space before starting"));
    }
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Impl::OpenWriter() {
  // A new database is created 0600 whatever the process's umask; SQLite
  // gives its WAL and shared-memory files the database file's mode.
  int created = ::open(options_.path.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (created >= 0) ::close(created);
  IPSRT_ASSIGN_OR_RETURN(
      writer_.db,
      OpenConnection(options_.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                     options_.busy_timeout));
  RegisterConnection(writer_.db);
  IPSRT_RETURN_IF_ERROR(CheckSchemaPresence());
  IPSRT_RETURN_IF_ERROR(ExecSql(writer_.db, "PRAGMA journal_mode=WAL"));
  IPSRT_RETURN_IF_ERROR(
      ExecSql(writer_.db, options_.synchronous == Options::Synchronous::kExtra
                              ? "PRAGMA synchronous=EXTRA"
                              : "PRAGMA synchronous=FULL"));
  IPSRT_RETURN_IF_ERROR(ExecSql(writer_.db, "PRAGMA foreign_keys=ON"));
  if (options_.max_page_count > 0) {
    IPSRT_RETURN_IF_ERROR(
        ExecSql(writer_.db,
                absl::StrCat("PRAGMA max_page_count=", options_.max_page_count)
                    .c_str()));
  }
  AddSqliteMigrationFunctions(writer_.db);
  return absl::OkStatus();
}

// CheckSchemaPresence refuses a file with pages but no ipsrt schema: one
// emptied in place (pages kept by the file system) or another program's
// database. Sets schema_existed_.
absl::Status SqliteStore::Impl::CheckSchemaPresence() {
  Statement s;
  IPSRT_RETURN_IF_ERROR(s.Prepare(
      writer_.db,
      "SELECT (SELECT count(*) FROM sqlite_master), (SELECT count(*) FROM "
      "sqlite_master WHERE name = 'schema_migrations')",
      false));
  IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
  int64_t objects = row ? s.Int(0) : 0;
  schema_existed_ = row && s.Int(1) > 0;
  if (objects > 0 && !schema_existed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: ", options_.path,
                     " is a SQLite database without the ipsrt schema (another "
                     "program's file?); point store.sqlite.path at the ipsrtd "
                     "database"));
  }
  std::error_code ec;
  if (!schema_existed_ && std::filesystem::file_size(options_.path, ec) > 0 &&
      !ec && options_.create != Options::Create::kAlways) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: ", options_.path,
        " has no ipsrt schema; if this is a first start, set "
        "store.sqlite.create: true or run `ipsrt store init`; if data is "
        "expected here, restore the file from a backup"));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Impl::StartServing() {
  for (int i = 0; i < options_.read_connections; ++i) {
    auto reader = std::make_unique<Reader>();
    IPSRT_ASSIGN_OR_RETURN(reader->conn.db,
                           OpenConnection(options_.path, SQLITE_OPEN_READONLY,
                                          options_.busy_timeout));
    RegisterConnection(reader->conn.db);
    readers_.push_back(std::move(reader));
  }
  IPSRT_ASSIGN_OR_RETURN(outbox_.conn.db,
                         OpenConnection(options_.path, SQLITE_OPEN_READWRITE,
                                        options_.busy_timeout));
  RegisterConnection(outbox_.conn.db);
  QuickCheck();
  IPSRT_ASSIGN_OR_RETURN(
      checkpointer_,
      WalCheckpointer::Start(writer_.db, options_.path, options_.busy_timeout));
  // Only this process writes a locked database, so its writer can keep
  // the cache coherent (store/enrollment_cache.h).
  if (options_.enrollment_cache_bytes > 0 && !options_.lock_file.empty()) {
    cache_ = std::make_unique<EnrollmentCache>(
        static_cast<size_t>(options_.enrollment_cache_bytes));
  }
  completion_thread_ = std::thread([this] { CompletionLoop(); });
  NameThread(completion_thread_, "store-answers");
  writer_thread_ = std::thread([this] { WriterLoop(); });
  NameThread(writer_thread_, "store-writer");
  return absl::OkStatus();
}

void SqliteStore::Impl::RegisterConnection(sqlite3* db) {
  FaultSinks& f = Sinks();
  absl::MutexLock lock(&f.mu);
  f.sinks[db] = [this](int rc, const std::string& message) {
    OnFault(rc, message);
  };
}

absl::Status SqliteStore::Impl::CheckDatabaseFile() {
  std::error_code ec;
  bool exists = std::filesystem::exists(options_.path, ec);
  uintmax_t size = exists ? std::filesystem::file_size(options_.path, ec) : 0;
  if (exists && ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: cannot read ", options_.path, ": ", ec.message()));
  }
  if (exists && size > 0) return absl::OkStatus();  // schema checked later
  std::optional<StoreIdentity> known;
  if (!options_.identity_file.empty()) {
    IPSRT_ASSIGN_OR_RETURN(known, ReadIdentityFile(options_.identity_file));
  }
  if (known.has_value() && !options_.adopt) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: ", options_.path,
        exists ? " is empty (0 bytes)" : " is missing",
        " but its identity file ", options_.identity_file, " says store ",
        known->store_id, " lived there with ", known->sequence,
        " commits. Restore the database from a backup (with its identity "
        "file); to start a new, empty store on purpose, delete the identity "
        "file and start with store.sqlite.create: true"));
  }
  if (!exists && options_.create == Options::Create::kNever) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: ", options_.path,
        " does not exist and store.sqlite.create is false; run `ipsrt store "
        "init` to create it, or correct store.sqlite.path"));
  }
  if (exists && options_.create != Options::Create::kAlways) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: ", options_.path,
        " is empty (0 bytes); an emptied database is not a new one. If this "
        "is a first start, set store.sqlite.create: true or run `ipsrt store "
        "init`; if data is expected here, restore the file from a backup"));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Impl::CheckIdentity() {
  if (options_.identity_file.empty()) return absl::OkStatus();
  // Kept outside the numbered migrations: the schema version is shared
  // with PostgreSQL and `ipsrt store copy`, which have no identity file.
  IPSRT_RETURN_IF_ERROR(ExecSql(writer_.db,
                                "CREATE TABLE IF NOT EXISTS store_identity ("
                                " id INTEGER PRIMARY KEY CHECK (id = 1),"
                                " store_id TEXT NOT NULL,"
                                " commit_seq INTEGER NOT NULL)"));
  {
    Statement s;
    IPSRT_RETURN_IF_ERROR(s.Prepare(
        writer_.db, "SELECT store_id, commit_seq FROM store_identity", false));
    IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      store_id_ = s.Text(0);
      sequence_ = s.Int(1);
      stored_sequence_ = sequence_;
    }
  }
  if (store_id_.empty()) {
    // A new store, or one from before identities.
    store_id_ = NewStoreId();
    Statement ins;
    IPSRT_RETURN_IF_ERROR(ins.Prepare(
        writer_.db, "INSERT INTO store_identity VALUES (1, ?, 0)", false));
    ins.Bind(1, store_id_);
    IPSRT_RETURN_IF_ERROR(ins.Exec());
  }
  IPSRT_ASSIGN_OR_RETURN(std::optional<StoreIdentity> known,
                         ReadIdentityFile(options_.identity_file));
  if (known.has_value() && !options_.adopt) {
    if (known->store_id != store_id_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store: ", options_.path, " is store ", store_id_,
          ", but its identity file ", options_.identity_file, " names store ",
          known->store_id,
          ": this is another store's database. Correct store.sqlite.path, "
          "or start with --adopt_store to serve this database as it is"));
    }
    if (sequence_ < known->sequence) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store: ", options_.path, " is at commit ", sequence_,
          " but its identity file ", options_.identity_file,
          " recorded commit ", known->sequence,
          ": the database was rolled back (an older copy?) and later "
          "changes are missing. Restore the latest backup, or start with "
          "--adopt_store to serve it as it is"));
    }
  }
  if (known.has_value() && options_.adopt &&
      (known->store_id != store_id_ || sequence_ < known->sequence)) {
    IPSRT_LOG(WARNING) << "store: adopting " << options_.path << " (store "
                       << store_id_ << " at commit " << sequence_
                       << ") in place of store " << known->store_id
                       << " at commit " << known->sequence
                       << " (--adopt_store)";
  }
  identity_checked_ = true;
  RecordSequence(/*force=*/true);
  if (recorded_sequence_ != sequence_) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: cannot write identity file ",
                     options_.identity_file, "; see the log"));
  }
  return absl::OkStatus();
}

void SqliteStore::Impl::RecordSequence(bool force) {
  // Never before the checks passed: a refused database must not overwrite
  // the file that refused it.
  if (options_.identity_file.empty() || !identity_checked_) return;
  if (stored_sequence_ == recorded_sequence_) return;
  absl::Time now = absl::Now();
  if (!force && now - recorded_at_ < absl::Seconds(1)) return;
  absl::Status written = WriteIdentityFile(
      options_.identity_file,
      StoreIdentity{.store_id = store_id_, .sequence = stored_sequence_});
  recorded_at_ = now;
  if (written.ok()) {
    recorded_sequence_ = stored_sequence_;
  } else {
    IPSRT_LOG(WARNING) << written;
  }
}

bool SqliteStore::Impl::StoreSequenceDue() const {
  return !store_id_.empty() && identity_checked_ &&
         absl::Now() - recorded_at_ >= absl::Seconds(1);
}

void SqliteStore::Impl::StoreSequence() {
  if (store_id_.empty() || !identity_checked_ ||
      stored_sequence_ == sequence_) {
    return;
  }
  absl::Status status =
      Transaction(writer_, [&] { return StoreCount(sequence_); });
  if (status.ok()) {
    stored_sequence_ = sequence_;
  } else {
    // The identity file keeps the last count the database holds.
    IPSRT_LOG(WARNING) << "store: cannot store the commit count at shutdown: "
                       << status;
  }
}

// The progress handler's deadline for QuickCheck.
namespace {
int AbandonAfterDeadline(void* deadline) {
  return absl::Now() > *static_cast<absl::Time*>(deadline) ? 1 : 0;
}
}  // namespace

void SqliteStore::Impl::QuickCheck() {
  if (options_.quick_check_timeout <= absl::ZeroDuration()) return;
  absl::Time start = absl::Now();
  absl::Time deadline = start + options_.quick_check_timeout;
  // The check reports its own finding below, not as a failed statement.
  {
    FaultSinks& f = Sinks();
    absl::MutexLock lock(&f.mu);
    f.sinks.erase(writer_.db);
  }
  sqlite3_progress_handler(writer_.db, 10000, AbandonAfterDeadline, &deadline);
  std::vector<std::string> findings;
  absl::Status status;
  {
    Statement s;
    status = s.Prepare(writer_.db, "PRAGMA quick_check(20)", false);
    while (status.ok()) {
      absl::StatusOr<bool> row = s.Step();
      if (!row.ok()) {
        status = row.status();
        break;
      }
      if (!*row) break;
      std::string line = s.Text(0);
      if (line != "ok") findings.push_back(std::move(line));
    }
  }
  sqlite3_progress_handler(writer_.db, 0, nullptr, nullptr);
  RegisterConnection(writer_.db);
  if (!status.ok() && absl::Now() > deadline) {
    IPSRT_LOG(WARNING) << "store: PRAGMA quick_check of " << options_.path
                       << " did not finish within "
                       << options_.quick_check_timeout
                       << " (store.sqlite.quick_check_timeout) and was "
                          "abandoned; run `ipsrt store check --db="
                       << options_.path << "` offline";
    return;
  }
  if (!status.ok()) {
    OnFault(SQLITE_CORRUPT,
            absl::StrCat("PRAGMA quick_check failed: ", status.message()));
    return;
  }
  if (!findings.empty()) {
    OnFault(SQLITE_CORRUPT,
            absl::StrCat("PRAGMA quick_check found ", findings.size(),
                         findings.size() >= 20 ? " or more" : "",
                         " problem(s), the first: ", findings.front()));
    return;
  }
  IPSRT_LOG(INFO) << "store: quick_check of " << options_.path << " ok in "
                  << absl::ToInt64Milliseconds(absl::Now() - start) << " ms";
}

void SqliteStore::Impl::OnFault(int rc, const std::string& message) {
  absl::Time now = absl::Now();
  absl::MutexLock lock(&fault_mu_);
  if ((rc & 0xff) == SQLITE_FULL) {
    if (now - last_space_log_ >= absl::Minutes(1)) {
      last_space_log_ = now;
      IPSRT_LOG(ERROR) << "store: the disk or database of " << options_.path
                       << " is full (" << message
                       << "); changes fail RESOURCE_EXHAUSTED until space "
                          "is freed";
    }
    return;
  }
  bool first = !unsafe_.exchange(true);
  if (first) {
    unsafe_reason_ = message;
    unsafe_since_ = now;
  }
  ++faults_since_log_;
  if (!first && now - last_fault_log_ < absl::Minutes(1)) return;
  last_fault_log_ = now;
  IPSRT_LOG(ERROR) << "store: " << options_.path
                   << " is read-only for safety since "
                   << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", unsafe_since_,
                                       absl::UTCTimeZone())
                   << " (" << faults_since_log_
                   << " fault(s) since the last report; first: "
                   << unsafe_reason_
                   << "): changes are refused FAILED_PRECONDITION, reads are "
                      "served where the data can be read. Stop ipsrtd, run "
                      "`ipsrt store check --db="
                   << options_.path
                   << "` and restore the database from a backup";
  faults_since_log_ = 0;
}

absl::Status SqliteStore::Impl::SafetyStop() {
  if (!unsafe_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&fault_mu_);
  return absl::FailedPreconditionError(absl::StrCat(
      "store: read-only for safety since ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", unsafe_since_,
                       absl::UTCTimeZone()),
      " (", unsafe_reason_,
      "); changes are refused until the database is repaired: run `ipsrt "
      "store check --db=",
      options_.path, "` and restore from a backup"));
}

absl::Status SqliteStore::Impl::SpaceCheck() {
  if (options_.min_free_bytes == 0) return absl::OkStatus();
  absl::StatusOr<DiskSpace> space = DiskSpaceOf(directory_);
  if (!space.ok()) return space.status();
  uint64_t watermark = FreeSpaceWatermark(options_.min_free_bytes, *space);
  if (space->available_bytes >= watermark) return absl::OkStatus();
  std::string figures =
      absl::StrCat(FormatBytes(space->available_bytes), " free of ",
                   FormatBytes(space->total_bytes), " on ", directory_,
                   ", below the watermark of ", FormatBytes(watermark));
  {
    absl::Time now = absl::Now();
    absl::MutexLock lock(&fault_mu_);
    if (now - last_space_log_ >= absl::Minutes(1)) {
      last_space_log_ = now;
      IPSRT_LOG(ERROR) << "store: " << figures
                       << " (store.sqlite.min_free_space): changes are "
                          "refused RESOURCE_EXHAUSTED, reads continue; free "
                          "space on that file system";
    }
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "store: disk nearly full: ", figures,
      " (store.sqlite.min_free_space); changes are refused until space is "
      "freed, reads continue"));
}

absl::Status SqliteStore::Impl::ApplyMigrations() {
  IPSRT_RETURN_IF_ERROR(
      ExecSql(writer_.db,
              "CREATE TABLE IF NOT EXISTS schema_migrations ("
              " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
              " applied_time_us INTEGER NOT NULL)"));
  {
    Statement s;
    IPSRT_RETURN_IF_ERROR(s.Prepare(
        writer_.db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        false));
    IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
    schema_version_ = row ? static_cast<int>(s.Int(0)) : 0;
    schema_version_found_ = schema_version_;
  }
  IPSRT_RETURN_IF_ERROR(RefuseNewerSchema(schema_version_));
  const std::vector<Migration>& migrations = SqliteMigrations();
  // A migration that rebuilds a table (migration 4) drops and renames
  // parents of foreign keys, which SQLite allows only with enforcement off;
  // PRAGMA foreign_key_check inside the transaction then proves the rows
  // still match before it commits. The pragma is a no-op inside a
  // transaction, so it is switched around each one.
  const absl::Time started = absl::Now();
  for (const Migration& m : migrations) {
    if (m.version <= schema_version_) continue;
    LogMigrationStart(schema_version_found_, m);
    IPSRT_RETURN_IF_ERROR(ExecSql(writer_.db, "PRAGMA foreign_keys=OFF"));
    IPSRT_RETURN_IF_ERROR(ExecSql(writer_.db, "BEGIN IMMEDIATE"));
    absl::Status s = ExecSql(writer_.db, m.sql.c_str());
    if (s.ok()) {
      Statement check;
      s = check.Prepare(writer_.db, "PRAGMA foreign_key_check", false);
      absl::StatusOr<bool> violation =
          s.ok() ? check.Step() : absl::StatusOr<bool>(s);
      if (!violation.ok()) {
        s = violation.status();
      } else if (*violation) {
        s = absl::DataLossError(
            absl::StrCat("a row of table ", check.Text(0), " has no parent in ",
                         check.Text(2), " after the rebuild"));
      }
    }
    if (s.ok()) {
      Statement ins;
      s = ins.Prepare(writer_.db,
                      "INSERT INTO schema_migrations VALUES (?, ?, ?)", false);
      if (s.ok()) {
        ins.Bind(1, int64_t{m.version});
        ins.Bind(2, m.description);
        ins.Bind(3, ToMicros(absl::Now()));
        s = ins.Exec();
      }
    }
    if (s.ok()) PauseInMigration(m.version);
    if (s.ok()) s = ExecSql(writer_.db, "COMMIT");
    if (!s.ok()) ExecSql(writer_.db, "ROLLBACK").IgnoreError();
    absl::Status fk = ExecSql(writer_.db, "PRAGMA foreign_keys=ON");
    if (s.ok()) s = fk;
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("migration ", m.version, " (", m.description,
                                 "): ", s.message()));
    }
    schema_version_ = m.version;
  }
  LogMigrationsDone(schema_version_found_, schema_version_, started);
  return absl::OkStatus();
}

void SqliteStore::Impl::Enqueue(
    WriteBatch batch, std::function<void(absl::StatusOr<CommitResult>)> done) {
  PackedBlobs packed = PackBatch(batch);
  Pending p{std::move(batch), std::move(done), absl::UnknownError("not run"),
            std::move(packed)};
  if (!queue_.Push(p)) p.done(StoreClosingError());
}

void SqliteStore::Impl::WriterLoop() {
  std::vector<Pending> group;
  while (queue_.PopUpTo(options_.max_batch, &group)) {
    absl::Time began = absl::Now();
    RunGroup(group);
    ObserveGroup(group, absl::Now() - began);
    // The answers (each caller's callback: building its response, handing
    // it to gRPC) and freeing the batches take a tenth of a create's time
    // on this thread, the one every write waits for; they run on the
    // completion thread instead, in the same order, each after its group
    // is durable as before.
    if (!completions_.Push(group)) {
      for (Pending& p : group) p.done(std::move(p.result));
    }
    group.clear();
  }
}

void SqliteStore::Impl::CompletionLoop() {
  std::vector<std::vector<Pending>> groups;
  while (completions_.PopUpTo(64, &groups)) {
    for (std::vector<Pending>& group : groups) {
      for (Pending& p : group) p.done(std::move(p.result));
    }
    groups.clear();
  }
}

// ObserveGroup reports one group commit to the metrics hooks.
void SqliteStore::Impl::ObserveGroup(const std::vector<Pending>& group,
                                     absl::Duration elapsed) {
  size_t failed = 0, audit = 0, audit_failed = 0;
  for (const Pending& p : group) {
    audit += p.batch.audit.size();
    if (!p.result.ok()) {
      ++failed;
      audit_failed += p.batch.audit.size();
    }
  }
  metrics::ObserveCommitGroup("sqlite", group.size(), failed, audit,
                              audit_failed, elapsed);
}

// RunGroup commits every request of `group` in one transaction. Each
// request runs inside its own savepoint, so a failing one is rolled back
// alone; if the final COMMIT fails, every request fails with it.
void SqliteStore::Impl::RunGroup(std::vector<Pending>& group) {
  // Changes (not audit-only appends) stop while the store is read-only for
  // safety or the disk is below its watermark.
  absl::Status stopped = SafetyStop();
  std::optional<absl::Status> space;
  bool any = false;
  for (Pending& p : group) {
    p.result = CommitResult{};
    if (IsAuditOnly(p.batch)) {
      any = true;
      continue;
    }
    if (!stopped.ok()) {
      p.result = stopped;
      continue;
    }
    if (!space.has_value()) space = SpaceCheck();
    if (!space->ok()) {
      p.result = *space;
      continue;
    }
    any = true;
  }
  if (!any) return;
  absl::Status begun = Run("BEGIN IMMEDIATE");
  if (!begun.ok()) {
    for (Pending& p : group) {
      if (p.result.ok()) p.result = begun;
    }
    return;
  }
  bool applied = false;
  for (Pending& p : group) {
    if (p.result.ok()) ApplyInSavepoint(p, &applied);  // else refused above
  }
  bool stored = false;
  absl::Status committed = CommitGroup(group, applied, &stored);
  if (!committed.ok()) {
    // Whatever the failed COMMIT left, no cached row is trusted.
    if (cache_ != nullptr) cache_->Clear();
    Run("ROLLBACK").IgnoreError();
    for (Pending& p : group) {
      if (p.result.ok()) p.result = committed;
    }
    return;
  }
  group_commits_.fetch_add(1, std::memory_order_relaxed);
  if (cache_ != nullptr) PublishRows(group);
  if (applied && !store_id_.empty()) {
    ++sequence_;
    if (stored) stored_sequence_ = sequence_;
    RecordSequence(/*force=*/false);
  }
}

void SqliteStore::Impl::PublishRows(std::vector<Pending>& group) {
  std::vector<EnrollmentCache::Written> rows;
  bool changed = false;
  for (Pending& p : group) {
    if (!p.result.ok() || p.result->replayed) continue;
    // A new enrollment is cached when it is first read: creating many
    // that are not read soon would only push read ones out.
    changed |= p.batch.create.has_value();
    if (p.batch.update.has_value()) {
      changed = true;
      // The batch is not read after its commit: the row moves.
      rows.push_back({std::move(p.batch.update->row), /*created=*/false});
    }
  }
  // Audit-only groups change no enrollment: readers' tickets stay valid.
  if (changed) cache_->Publish(std::move(rows));
}

void SqliteStore::Impl::ApplyInSavepoint(Pending& p, bool* applied) {
  // A single audit record (a read's) is one INSERT, atomic by itself: the
  // common read path skips the savepoint's two statements.
  const bool single = IsAuditOnly(p.batch) && p.batch.audit.size() == 1;
  if (!single) {
    absl::Status sp = Run("SAVEPOINT request");
    if (!sp.ok()) {
      p.result = sp;
      return;
    }
  }
  p.result = core_.ApplyBatch(writer_, p.batch, p.packed);
  if (p.result.ok()) {
    *applied = true;
  } else if (!single) {
    Run("ROLLBACK TO request").IgnoreError();
  }
  if (!single) Run("RELEASE request").IgnoreError();
}

// CommitGroup prunes expired request records, stores the commit count
// when it is due (the count this commit makes) and commits the group's
// transaction.
absl::Status SqliteStore::Impl::CommitGroup(std::vector<Pending>& group,
                                            bool applied, bool* stored) {
  IPSRT_RETURN_IF_ERROR(core_.Fault("commit"));
  if (applied) IPSRT_RETURN_IF_ERROR(PruneRequests(group));
  if (applied && StoreSequenceDue()) {
    IPSRT_RETURN_IF_ERROR(StoreCount(sequence_ + 1));
    *stored = true;
  }
  return Run("COMMIT");
}

// PruneRequests deletes request records older than the retention window
// at the latest request time of `group` (the callers' clock), a few more
// than the group added, so the table shrinks back to the window under any
// steady load.
absl::Status SqliteStore::Impl::PruneRequests(
    const std::vector<Pending>& group) {
  absl::Time now = absl::InfinitePast();
  for (const Pending& p : group) {
    if (p.result.ok() && !IsAuditOnly(p.batch)) {
      now = std::max(now, p.batch.request.create_time);
    }
  }
  absl::Time before = PruneBefore(now, options_.request_retention);
  if (before == absl::InfinitePast() || now == absl::InfinitePast()) {
    return absl::OkStatus();
  }
  // The oldest records by rowid (insertion order), those among them
  // created before $1: a bounded look at the head of the table, no index
  // on time needed. Each leaves its request id's key first, in the same
  // transaction (request_window.h).
  const SqlParams params =
      SqlParams().Time(before).Int(static_cast<int64_t>(2 * group.size() + 16));
  IPSRT_RETURN_IF_ERROR(
      writer_
          .Exec("INSERT OR IGNORE INTO request_keys (key) SELECT key FROM "
                "requests WHERE rowid IN (SELECT rowid FROM requests ORDER BY "
                "rowid LIMIT $2) AND create_time_us < $1",
                params)
          .status());
  return writer_
      .Exec(
          "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
          "ORDER BY rowid LIMIT $2) AND create_time_us < $1",
          params)
      .status();
}

void SqliteStore::Impl::Close() {
  if (closed_) return;
  closed_ = true;
  queue_.Close();
  if (writer_thread_.joinable()) writer_thread_.join();
  // Every committed group is answered before the connections close (an
  // answer may read).
  completions_.Close();
  if (completion_thread_.joinable()) completion_thread_.join();
  checkpointer_.reset();  // before the connections close
  StoreSequence();
  RecordSequence(/*force=*/true);
  {
    FaultSinks& f = Sinks();
    absl::MutexLock lock(&f.mu);
    f.sinks.erase(writer_.db);
    f.sinks.erase(outbox_.conn.db);
    for (auto& r : readers_) f.sinks.erase(r->conn.db);
  }
  for (auto& r : readers_) {
    absl::MutexLock lock(&r->mu);
    r->conn.Close();
  }
  {
    absl::MutexLock lock(&outbox_.mu);
    outbox_.conn.Close();
  }
  writer_.Close();
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const Options& options) {
  std::unique_ptr<SqlCore> core =
      NewCore(SqliteDialect(), options.request_retention, options.fault_hook);
  auto impl = std::make_unique<Impl>(options, core.get());
  IPSRT_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(std::move(core), std::move(impl)));
}

SqliteStore::SqliteStore(std::unique_ptr<SqlCore> core,
                         std::unique_ptr<Impl> impl)
    : SqlStore(std::move(core), impl.get()), impl_(std::move(impl)) {}
SqliteStore::~SqliteStore() { Close(); }

void SqliteStore::CommitAsync(
    WriteBatch batch, std::function<void(absl::StatusOr<CommitResult>)> done) {
  impl_->Enqueue(std::move(batch), std::move(done));
}

absl::StatusOr<std::string> SqliteStore::ClaimQueryPlan() {
  return QueryPlan(core().dialect().claim_outbox);
}

absl::StatusOr<std::string> SqliteStore::ListEnrollmentsQueryPlan(
    const EnrollmentFilter& filter, bool after) {
  std::optional<EnrollmentCursor> cursor;
  if (after) cursor = EnrollmentCursor{};
  return QueryPlan(core().ListEnrollmentsStatement(filter, cursor, 1).sql);
}

absl::StatusOr<std::string> SqliteStore::ListOutboxQueryPlan(
    const OutboxQuery& q) {
  return QueryPlan(core().ListOutboxStatement(q).sql);
}

absl::StatusOr<std::string> SqliteStore::QueryPlan(absl::string_view sql) {
  return impl_->WithReader(
      [&](SqliteConnection& c) -> absl::StatusOr<std::string> {
        Statement s;
        IPSRT_RETURN_IF_ERROR(
            s.Prepare(c.db, absl::StrCat("EXPLAIN QUERY PLAN ", sql), false));
        std::vector<std::string> lines;
        while (true) {
          IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          lines.push_back(s.Text(3));
        }
        return absl::StrJoin(lines, "\n");
      });
}

std::string SqliteStore::StoreId() const { return impl_->store_id(); }
const std::string& SqliteStore::DatabasePath() const { return impl_->path(); }
int SqliteStore::SchemaVersion() const { return impl_->schema_version(); }
int SqliteStore::SchemaVersionFound() const {
  return impl_->schema_version_found();
}
int64_t SqliteStore::GroupCommits() const { return impl_->group_commits(); }
void SqliteStore::Close() { impl_->Close(); }

SqliteStore::CacheCounts SqliteStore::EnrollmentCacheCounts() const {
  const EnrollmentCache* cache = impl_->cache();
  if (cache == nullptr) return CacheCounts{};
  return cache->counts();
}

absl::StatusOr<StoreStats> SqliteStore::Stats(absl::Time now) {
  IPSRT_ASSIGN_OR_RETURN(StoreStats stats, SqlStore::Stats(now));
  if (const EnrollmentCache* cache = impl_->cache(); cache != nullptr) {
    stats.enrollment_cache = cache->counts();
  }
  return stats;
}

absl::StatusOr<EnrollmentRow> SqliteStore::GetEnrollment(
    absl::string_view tenant, absl::string_view id) {
  EnrollmentCache* cache = impl_->cache();
  if (cache == nullptr) return SqlStore::GetEnrollment(tenant, id);
  uint64_t ticket = 0;
  if (std::optional<EnrollmentRow> row = cache->Lookup(tenant, id, &ticket)) {
    return *std::move(row);
  }
  absl::StatusOr<EnrollmentRow> row = SqlStore::GetEnrollment(tenant, id);
  if (row.ok()) cache->Fill(*row, ticket);
  return row;
}

absl::Status SqliteStore::Probe() {
  // Read-only for safety, or below the free-space watermark: not ready.
  IPSRT_RETURN_IF_ERROR(impl_->SafetyStop());
  IPSRT_RETURN_IF_ERROR(impl_->SpaceCheck());
  return impl_->WithReader([](SqliteConnection& c) -> absl::Status {
    absl::Status s = c.Query("SELECT 1", SqlParams(),
                             [](const SqlRow&) { return absl::OkStatus(); });
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("store: sqlite probe failed: ", s.message()));
    }
    return absl::OkStatus();
  });
}

}  // namespace ipsrt
