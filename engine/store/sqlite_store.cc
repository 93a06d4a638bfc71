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

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "ipsrt/status_macros.h"
#include "ops/metrics_hooks.h"
#include "store/audit_chain.h"
#include "store/blob_codec.h"
#include "store/migrations.h"
#include "store/request_window.h"
#include "store/sqlite_checkpointer.h"
#include "store/store_files.h"

namespace ipsrt {
namespace {

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

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

// Statement is a prepared statement with RAII finalisation and typed binds.
class Statement {
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
    int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                persistent ? SQLITE_PREPARE_PERSISTENT : 0,
                                &stmt_, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, "prepare");
    return absl::OkStatus();
  }

  // Binds are 1-based, in the order of the statement's placeholders.
  void Bind(int i, absl::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
  }
  void BindBlob(int i, absl::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()),
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

  std::string Text(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), n) : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const {
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

constexpr char kEnrollmentColumns[] =
    "tenant, id, patient_ref, workflow_id, workflow_version, stage, "
    "clinician_ref, state, revision, snapshot, create_time_us, "
    "update_time_us";

absl::StatusOr<EnrollmentRow> ReadEnrollment(const Statement& s) {
  EnrollmentRow r;
  r.tenant = s.Text(0);
  r.id = s.Text(1);
  r.patient_ref = s.Text(2);
  r.workflow_id = s.Text(3);
  r.workflow_version = static_cast<int32_t>(s.Int(4));
  r.stage = s.Text(5);
  r.clinician_ref = s.Text(6);
  r.state = static_cast<int32_t>(s.Int(7));
  r.revision = s.Int(8);
  IPSRT_ASSIGN_OR_RETURN(r.snapshot,
                         UnpackBlob(s.Text(9), "an enrollment snapshot"));
  r.create_time = FromMicros(s.Int(10));
  r.update_time = FromMicros(s.Int(11));
  return r;
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

class SqliteStore::Impl {
 public:
  explicit Impl(Options options) : options_(std::move(options)) {}
  ~Impl() { Close(); }

  absl::Status Open();
  void Enqueue(WriteBatch batch,
               std::function<void(absl::StatusOr<CommitResult>)> done);
  void Close();

  // Reader is one read-only connection; `mu` serialises its use.
  struct Reader {
    absl::Mutex mu;
    sqlite3* db = nullptr;
    // Prepared statements by SQL text, kept for the connection's life; a
    // user resets the statement when done (ResetOnExit).
    std::map<std::string, std::unique_ptr<Statement>, std::less<>> cache;

    absl::StatusOr<Statement*> Prepared(absl::string_view sql) {
      if (db == nullptr) return absl::UnavailableError("store: closed");
      auto it = cache.find(sql);
      if (it != cache.end()) return it->second.get();
      auto stmt = std::make_unique<Statement>();
      IPSRT_RETURN_IF_ERROR(stmt->Prepare(db, sql, true));
      Statement* out = stmt.get();
      cache.emplace(std::string(sql), std::move(stmt));
      return out;
    }
  };
  // WithReader runs `fn` on a free-ish reader connection.
  template <typename Fn>
  auto WithReader(Fn fn) -> decltype(fn(std::declval<Reader&>())) {
    size_t i =
        next_reader_.fetch_add(1, std::memory_order_relaxed) % readers_.size();
    Reader& r = *readers_[i];
    absl::MutexLock lock(&r.mu);
    return fn(r);
  }

  // Outbox delivery (see Store); on the `outbox_` connection.
  absl::StatusOr<std::vector<OutboxEntry>> ClaimOutbox(absl::Time now,
                                                       absl::string_view owner,
                                                       absl::Duration lease,
                                                       int limit);
  absl::StatusOr<std::vector<int64_t>> RecordOutboxOutcomes(
      absl::string_view owner, absl::Time now,
      const std::vector<OutboxResult>& results);
  absl::StatusOr<OutboxEntry> AcknowledgeOutbox(absl::string_view tenant,
                                                int64_t id);

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
  int64_t group_commits() const {
    return group_commits_.load(std::memory_order_relaxed);
  }

 private:
  // The stored forms (PackBlob) of a batch's snapshot and response, made
  // on the caller's thread so that deflating never holds up the writer.
  // Event payloads are stored as they are: the hash chain covers them, and
  // tamper checks and forensic reads work on the bytes in the table.
  struct Packed {
    std::string snapshot;
    std::string response;
  };
  struct Pending {
    WriteBatch batch;
    std::function<void(absl::StatusOr<CommitResult>)> done;
    absl::StatusOr<CommitResult> result;
    Packed packed;
  };

  absl::Status Fault(absl::string_view step) {
    if (options_.fault_hook) return options_.fault_hook(step);
    return absl::OkStatus();
  }
  absl::Status PrepareWriterStatements();
  void WriterLoop();
  void RunGroup(std::vector<Pending>& group);
  void ObserveGroup(const std::vector<Pending>& group, absl::Duration elapsed);
  absl::StatusOr<CommitResult> Apply(const WriteBatch& b, const Packed& packed);
  absl::Status InsertAudit(const std::vector<AuditRecord>& records,
                           absl::string_view outcome_override);
  absl::Status PruneRequests(const std::vector<Pending>& group);
  absl::Status ApplyMigrations();
  // CheckDatabaseFile refuses a missing, empty or schema-less database
  // where data is expected (Options::create, identity file).
  absl::Status CheckDatabaseFile();
  // CheckIdentity compares the database's identity with the identity file
  // and records it there.
  absl::Status CheckIdentity();
  // QuickCheck runs PRAGMA quick_check within options_.quick_check_timeout.
  void QuickCheck();
  void RegisterConnection(sqlite3* db);
  // RecordSequence rewrites the identity file when `force` or a second has
  // passed since the last write (writer thread, or Close after it).
  void RecordSequence(bool force);

  Options options_;
  std::optional<DatabaseLock> lock_;
  // The database's identity (with Options::identity_file); sequence_ is
  // written on the writer thread only.
  std::string store_id_;
  int64_t sequence_ = 0;
  int64_t recorded_sequence_ = -1;
  absl::Time recorded_at_ = absl::InfinitePast();
  bool schema_existed_ = false;
  bool identity_checked_ = false;
  Statement bump_sequence_;
  // Read-only for safety: set once, never cleared while open.
  std::atomic<bool> unsafe_{false};
  absl::Mutex fault_mu_;
  std::string unsafe_reason_ ABSL_GUARDED_BY(fault_mu_);
  absl::Time unsafe_since_ ABSL_GUARDED_BY(fault_mu_);
  absl::Time last_fault_log_ ABSL_GUARDED_BY(fault_mu_) = absl::InfinitePast();
  int64_t faults_since_log_ ABSL_GUARDED_BY(fault_mu_) = 0;
  absl::Time last_space_log_ ABSL_GUARDED_BY(fault_mu_) = absl::InfinitePast();
  std::string directory_;
  sqlite3* writer_ = nullptr;
  std::vector<std::unique_ptr<Reader>> readers_;
  // A second writing connection for outbox delivery, so claims and
  // outcomes never queue behind group commits (SQLite serialises the two
  // writers with its lock; busy_timeout bounds the wait).
  Reader outbox_;
  std::atomic<size_t> next_reader_{0};
  int schema_version_ = 0;
  std::atomic<int64_t> group_commits_{0};

  // Writer statements, used only on the writer thread.
  Statement begin_, commit_, rollback_, savepoint_, release_, rollback_to_;
  Statement lookup_request_, insert_request_, insert_enrollment_,
      update_enrollment_, current_revision_, insert_event_, insert_outbox_,
      cancel_outbox_, audit_head_, insert_audit_, insert_request_key_,
      prune_requests_;

  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_thread_;
  bool closed_ = false;
  // Checkpoints the WAL off the commit path (store/sqlite_checkpointer.h).
  std::unique_ptr<WalCheckpointer> checkpointer_;
};

absl::Status SqliteStore::Impl::Open() {
  if (options_.path.empty()) {
    return absl::InvalidArgumentError("store.sqlite.path: must not be empty");
  }
  if (options_.synchronous != "full" && options_.synchronous != "extra") {
    return absl::InvalidArgumentError(absl::StrCat(
        "store.sqlite.synchronous: must be \"full\" or \"extra\", got \"",
        options_.synchronous, "\""));
  }
  if (options_.max_batch < 1) {
    return absl::InvalidArgumentError(
        "store.sqlite.max_batch: must be at least 1");
  }
  if (options_.read_connections < 1) {
    return absl::InvalidArgumentError(
        "store.sqlite.read_connections: must be at least 1");
  }
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
  IPSRT_RETURN_IF_ERROR(CheckDatabaseFile());
  // A new database is created 0600 whatever the process's umask; SQLite
  // gives its WAL and shared-memory files the database file's mode.
  int created = ::open(options_.path.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (created >= 0) ::close(created);
  IPSRT_ASSIGN_OR_RETURN(
      writer_,
      OpenConnection(options_.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                     options_.busy_timeout));
  RegisterConnection(writer_);
  {
    // A file with pages but no ipsrt schema: emptied in place (pages kept
    // by the file system) or another program's database.
    Statement s;
    IPSRT_RETURN_IF_ERROR(s.Prepare(
        writer_,
        "SELECT (SELECT count(*) FROM sqlite_master), (SELECT count(*) FROM "
        "sqlite_master WHERE name = 'schema_migrations')",
        false));
    IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
    int64_t objects = row ? s.Int(0) : 0;
    schema_existed_ = row && s.Int(1) > 0;
    if (objects > 0 && !schema_existed_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store: ", options_.path,
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
  }
  IPSRT_RETURN_IF_ERROR(ExecSql(writer_, "PRAGMA journal_mode=WAL"));
  IPSRT_RETURN_IF_ERROR(ExecSql(
      writer_,
      absl::StrCat("PRAGMA synchronous=", options_.synchronous).c_str()));
  IPSRT_RETURN_IF_ERROR(ExecSql(writer_, "PRAGMA foreign_keys=ON"));
  if (options_.max_page_count > 0) {
    IPSRT_RETURN_IF_ERROR(ExecSql(
        writer_, absl::StrCat("PRAGMA max_page_count=", options_.max_page_count)
                     .c_str()));
  }
  // ipsrt_request_key(tenant, request_id): RequestKey, for migration 4.
  sqlite3_create_function(
      writer_, "ipsrt_request_key", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
      nullptr,
      [](sqlite3_context* ctx, int, sqlite3_value** v) {
        auto text = [](sqlite3_value* x) {
          const unsigned char* p = sqlite3_value_text(x);
          return absl::string_view(reinterpret_cast<const char*>(p),
                                   p ? sqlite3_value_bytes(x) : 0);
        };
        sqlite3_result_int64(ctx, RequestKey(text(v[0]), text(v[1])));
      },
      nullptr, nullptr);
  IPSRT_RETURN_IF_ERROR(ApplyMigrations());
  IPSRT_RETURN_IF_ERROR(CheckIdentity());
  IPSRT_RETURN_IF_ERROR(PrepareWriterStatements());
  for (int i = 0; i < options_.read_connections; ++i) {
    auto reader = std::make_unique<Reader>();
    IPSRT_ASSIGN_OR_RETURN(reader->db,
                           OpenConnection(options_.path, SQLITE_OPEN_READONLY,
                                          options_.busy_timeout));
    RegisterConnection(reader->db);
    readers_.push_back(std::move(reader));
  }
  IPSRT_ASSIGN_OR_RETURN(outbox_.db,
                         OpenConnection(options_.path, SQLITE_OPEN_READWRITE,
                                        options_.busy_timeout));
  RegisterConnection(outbox_.db);
  QuickCheck();
  IPSRT_ASSIGN_OR_RETURN(
      checkpointer_,
      WalCheckpointer::Start(writer_, options_.path, options_.busy_timeout));
  writer_thread_ = std::thread([this] { WriterLoop(); });
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
  IPSRT_RETURN_IF_ERROR(ExecSql(writer_,
                                "CREATE TABLE IF NOT EXISTS store_identity ("
                                " id INTEGER PRIMARY KEY CHECK (id = 1),"
                                " store_id TEXT NOT NULL,"
                                " commit_seq INTEGER NOT NULL)"));
  {
    Statement s;
    IPSRT_RETURN_IF_ERROR(s.Prepare(
        writer_, "SELECT store_id, commit_seq FROM store_identity", false));
    IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      store_id_ = s.Text(0);
      sequence_ = s.Int(1);
    }
  }
  if (store_id_.empty()) {
    // A new store, or one from before identities.
    store_id_ = NewStoreId();
    Statement ins;
    IPSRT_RETURN_IF_ERROR(ins.Prepare(
        writer_, "INSERT INTO store_identity VALUES (1, ?, 0)", false));
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
  if (sequence_ == recorded_sequence_) return;
  absl::Time now = absl::Now();
  if (!force && now - recorded_at_ < absl::Seconds(1)) return;
  absl::Status written = WriteIdentityFile(
      options_.identity_file,
      StoreIdentity{.store_id = store_id_, .sequence = sequence_});
  recorded_at_ = now;
  if (written.ok()) {
    recorded_sequence_ = sequence_;
  } else {
    IPSRT_LOG(WARNING) << written;
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
    f.sinks.erase(writer_);
  }
  sqlite3_progress_handler(writer_, 10000, AbandonAfterDeadline, &deadline);
  std::vector<std::string> findings;
  absl::Status status;
  {
    Statement s;
    status = s.Prepare(writer_, "PRAGMA quick_check(20)", false);
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
  sqlite3_progress_handler(writer_, 0, nullptr, nullptr);
  RegisterConnection(writer_);
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
      ExecSql(writer_,
              "CREATE TABLE IF NOT EXISTS schema_migrations ("
              " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
              " applied_time_us INTEGER NOT NULL)"));
  {
    Statement s;
    IPSRT_RETURN_IF_ERROR(s.Prepare(
        writer_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        false));
    IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
    schema_version_ = row ? static_cast<int>(s.Int(0)) : 0;
  }
  const std::vector<Migration>& migrations = SqliteMigrations();
  int latest = migrations.empty() ? 0 : migrations.back().version;
  if (schema_version_ > latest) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: database schema version ", schema_version_,
                     " is newer than this ipsrtd supports (", latest,
                     "); run a newer ipsrtd"));
  }
  // A migration that rebuilds a table (migration 4) drops and renames
  // parents of foreign keys, which SQLite allows only with enforcement off;
  // PRAGMA foreign_key_check inside the transaction then proves the rows
  // still match before it commits. The pragma is a no-op inside a
  // transaction, so it is switched around each one.
  for (const Migration& m : migrations) {
    if (m.version <= schema_version_) continue;
    IPSRT_RETURN_IF_ERROR(ExecSql(writer_, "PRAGMA foreign_keys=OFF"));
    IPSRT_RETURN_IF_ERROR(ExecSql(writer_, "BEGIN IMMEDIATE"));
    absl::Status s = ExecSql(writer_, m.sql.c_str());
    if (s.ok()) {
      Statement check;
      s = check.Prepare(writer_, "PRAGMA foreign_key_check", false);
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
      s = ins.Prepare(writer_, "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                      false);
      if (s.ok()) {
        ins.Bind(1, int64_t{m.version});
        ins.Bind(2, m.description);
        ins.Bind(3, ToMicros(absl::Now()));
        s = ins.Exec();
      }
    }
    if (s.ok()) PauseInMigration(m.version);
    if (s.ok()) s = ExecSql(writer_, "COMMIT");
    if (!s.ok()) ExecSql(writer_, "ROLLBACK").IgnoreError();
    absl::Status fk = ExecSql(writer_, "PRAGMA foreign_keys=ON");
    if (s.ok()) s = fk;
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("migration ", m.version, " (", m.description,
                                 "): ", s.message()));
    }
    schema_version_ = m.version;
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Impl::PrepareWriterStatements() {
  struct {
    Statement* stmt;
    const char* sql;
  } const statements[] = {
      {&begin_, "BEGIN IMMEDIATE"},
      {&commit_, "COMMIT"},
      {&rollback_, "ROLLBACK"},
      {&savepoint_, "SAVEPOINT request"},
      {&release_, "RELEASE request"},
      {&rollback_to_, "ROLLBACK TO request"},
      {&lookup_request_,
       "SELECT method, payload_hash, response, create_time_us FROM requests "
       "WHERE tenant = ? AND request_id = ?"},
      {&insert_request_,
       "INSERT INTO requests (tenant, request_id, method, payload_hash, "
       "response, create_time_us) VALUES (?, ?, ?, ?, ?, ?)"},
      {&insert_enrollment_,
       "INSERT INTO enrollments (tenant, id, patient_ref, workflow_id, "
       "workflow_version, stage, clinician_ref, state, revision, snapshot, "
       "create_time_us, update_time_us) "
       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
      {&update_enrollment_,
       "UPDATE enrollments SET patient_ref = ?, workflow_id = ?, "
       "workflow_version = ?, stage = ?, clinician_ref = ?, state = ?, "
       "revision = ?, snapshot = ?, update_time_us = ? "
       "WHERE tenant = ? AND id = ? AND revision = ?"},
      {&current_revision_,
       "SELECT revision FROM enrollments WHERE tenant = ? AND id = ?"},
      {&insert_event_,
       "INSERT INTO events (tenant, enrollment_id, sequence, type, actor, "
       "request_id, record_time_us, payload, prev_hash, hash) "
       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
      {&insert_outbox_,
       "INSERT INTO outbox (tenant, enrollment_id, kind, due_time_us, "
       "payload, idempotency_key, status, attempts, create_time_us) "
       "VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?)"},
      {&cancel_outbox_,
       "UPDATE outbox SET status = 3, lease_owner = NULL WHERE "
       "idempotency_key = ? AND status IN (0, 5)"},
      {&audit_head_, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"},
      {&insert_request_key_,
       "INSERT OR IGNORE INTO request_keys (key) VALUES (?)"},
      // The oldest records by rowid (insertion order), those among them
      // created before ?1: a bounded look at the head of the table, no
      // index on time needed.
      {&prune_requests_,
       "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
       "ORDER BY rowid LIMIT ?2) AND create_time_us < ?1"},
      {&insert_audit_,
       "INSERT INTO audit (seq, tenant, subject, role, rpc, resource, "
       "outcome, time_us, request_id, prev_hash, hash) "
       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
  };
  for (const auto& s : statements) {
    IPSRT_RETURN_IF_ERROR(s.stmt->Prepare(writer_, s.sql, true));
  }
  if (!store_id_.empty()) {
    IPSRT_RETURN_IF_ERROR(bump_sequence_.Prepare(
        writer_,
        "UPDATE store_identity SET commit_seq = commit_seq + 1 WHERE id = 1",
        true));
  }
  return absl::OkStatus();
}

void SqliteStore::Impl::Enqueue(
    WriteBatch batch, std::function<void(absl::StatusOr<CommitResult>)> done) {
  Packed packed;
  if (batch.create.has_value())
    packed.snapshot = PackBlob(batch.create->snapshot);
  if (batch.update.has_value()) {
    packed.snapshot = PackBlob(batch.update->row.snapshot);
  }
  packed.response = PackBlob(batch.request.response);
  {
    absl::MutexLock lock(&mu_);
    if (!closing_) {
      queue_.push_back(Pending{std::move(batch), std::move(done),
                               absl::UnknownError("not run"),
                               std::move(packed)});
      return;
    }
  }
  done(absl::UnavailableError("store: closing; retry on another server"));
}

void SqliteStore::Impl::WriterLoop() {
  std::vector<Pending> group;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->closing_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // closing and drained
      while (!queue_.empty() &&
             static_cast<int>(group.size()) < options_.max_batch) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    absl::Time began = absl::Now();
    RunGroup(group);
    ObserveGroup(group, absl::Now() - began);
    for (Pending& p : group) p.done(std::move(p.result));
    group.clear();
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
  absl::Status begun = begin_.Exec();
  begin_.Reset();
  if (!begun.ok()) {
    for (Pending& p : group) {
      if (p.result.ok()) p.result = begun;
    }
    return;
  }
  bool applied = false;
  for (Pending& p : group) {
    if (!p.result.ok()) continue;  // refused above
    // A single audit record (a read's) is one INSERT, atomic by itself:
    // the common read path skips the savepoint's two statements.
    const bool single = IsAuditOnly(p.batch) && p.batch.audit.size() == 1;
    if (!single) {
      absl::Status sp = savepoint_.Exec();
      savepoint_.Reset();
      if (!sp.ok()) {
        p.result = sp;
        continue;
      }
    }
    p.result = Apply(p.batch, p.packed);
    if (!p.result.ok()) {
      if (!single) {
        rollback_to_.Exec().IgnoreError();
        rollback_to_.Reset();
      }
    } else {
      applied = true;
    }
    if (!single) {
      release_.Exec().IgnoreError();
      release_.Reset();
    }
  }
  absl::Status committed = Fault("commit");
  if (committed.ok() && applied) committed = PruneRequests(group);
  if (committed.ok() && applied && !store_id_.empty()) {
    committed = bump_sequence_.Exec();
    bump_sequence_.Reset();
  }
  if (committed.ok()) {
    committed = commit_.Exec();
    commit_.Reset();
  }
  if (!committed.ok()) {
    rollback_.Exec().IgnoreError();
    rollback_.Reset();
    for (Pending& p : group) {
      if (p.result.ok()) p.result = committed;
    }
    return;
  }
  group_commits_.fetch_add(1, std::memory_order_relaxed);
  if (applied && !store_id_.empty()) {
    ++sequence_;
    RecordSequence(/*force=*/false);
  }
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
  ResetOnExit reset(prune_requests_);
  prune_requests_.Bind(1, ToMicros(before));
  prune_requests_.Bind(2, static_cast<int64_t>(2 * group.size() + 16));
  return prune_requests_.Exec();
}

// InsertAudit appends `records` to the chain. The head is read inside the
// writer's open transaction (BEGIN IMMEDIATE holds the database's write
// lock), so neither concurrent requests nor another process sharing the
// file can fork the chain, and a rolled-back savepoint takes its records
// (and their seqs) with it.
absl::Status SqliteStore::Impl::InsertAudit(
    const std::vector<AuditRecord>& records,
    absl::string_view outcome_override) {
  for (const AuditRecord& in : records) {
    IPSRT_RETURN_IF_ERROR(Fault("audit.insert"));
    AuditRecord r = in;
    if (!outcome_override.empty()) r.outcome = std::string(outcome_override);
    {
      ResetOnExit reset(audit_head_);
      IPSRT_ASSIGN_OR_RETURN(bool found, audit_head_.Step());
      r.seq = found ? audit_head_.Int(0) + 1 : 1;
      r.prev_hash = found ? audit_head_.Text(1) : "";
    }
    r.hash = AuditRecordHash(r);
    ResetOnExit reset(insert_audit_);
    Statement& s = insert_audit_;
    s.Bind(1, r.seq);
    s.Bind(2, r.tenant);
    s.Bind(3, r.subject);
    s.Bind(4, r.role);
    s.Bind(5, r.rpc);
    s.Bind(6, r.resource);
    s.Bind(7, r.outcome);
    s.Bind(8, ToMicros(r.time));
    s.Bind(9, r.request_id);
    s.Bind(10, r.prev_hash);
    s.Bind(11, r.hash);
    IPSRT_RETURN_IF_ERROR(s.Exec());
  }
  return absl::OkStatus();
}

absl::StatusOr<CommitResult> SqliteStore::Impl::Apply(const WriteBatch& b,
                                                      const Packed& packed) {
  const RequestRecord& req = b.request;
  if (IsAuditOnly(b)) {
    IPSRT_RETURN_IF_ERROR(InsertAudit(b.audit, ""));
    return CommitResult{};
  }
  if (req.tenant.empty() || req.request_id.empty()) {
    return absl::InvalidArgumentError(
        "store: a write batch needs a tenant and a request id");
  }
  if (b.create.has_value() && b.update.has_value()) {
    return absl::InvalidArgumentError(
        "store: a write batch creates or updates one enrollment, not both");
  }
  {
    IPSRT_RETURN_IF_ERROR(Fault("request.lookup"));
    ResetOnExit reset(lookup_request_);
    lookup_request_.Bind(1, req.tenant);
    lookup_request_.Bind(2, req.request_id);
    IPSRT_ASSIGN_OR_RETURN(bool found, lookup_request_.Step());
    if (found) {
      std::string method = lookup_request_.Text(0);
      if (method != req.method || lookup_request_.Text(1) != req.payload_hash) {
        return absl::FailedPreconditionError(
            absl::StrCat("request_id: \"", req.request_id,
                         "\" was already used for a different ", method,
                         " request; use a new request id for a new request"));
      }
      IPSRT_ASSIGN_OR_RETURN(
          std::string first,
          UnpackBlob(lookup_request_.Text(2), "a stored response"));
      CommitResult replay{true, std::move(first)};
      lookup_request_.Reset();
      IPSRT_RETURN_IF_ERROR(InsertAudit(b.audit, "OK (replayed)"));
      return replay;
    }
  }
  {
    // A new request id, or one whose record was pruned: its key says.
    ResetOnExit reset(insert_request_key_);
    insert_request_key_.Bind(1, RequestKey(req.tenant, req.request_id));
    IPSRT_RETURN_IF_ERROR(insert_request_key_.Exec());
    if (sqlite3_changes(writer_) == 0) {
      return ExpiredRequestError(req.request_id, options_.request_retention);
    }
  }
  if (b.create.has_value()) {
    const EnrollmentRow& e = *b.create;
    IPSRT_RETURN_IF_ERROR(Fault("enrollment.insert"));
    ResetOnExit reset(insert_enrollment_);
    Statement& s = insert_enrollment_;
    s.Bind(1, e.tenant);
    s.Bind(2, e.id);
    s.Bind(3, e.patient_ref);
    s.Bind(4, e.workflow_id);
    s.Bind(5, int64_t{e.workflow_version});
    s.Bind(6, e.stage);
    s.Bind(7, e.clinician_ref);
    s.Bind(8, int64_t{e.state});
    s.Bind(9, e.revision);
    s.BindBlob(10, packed.snapshot);
    s.Bind(11, ToMicros(e.create_time));
    s.Bind(12, ToMicros(e.update_time));
    absl::Status st = s.Exec();
    if (absl::IsAlreadyExists(st)) {
      return absl::AlreadyExistsError(
          absl::StrCat("enrollment ", e.id, " already exists"));
    }
    IPSRT_RETURN_IF_ERROR(st);
  }
  if (b.update.has_value()) {
    const EnrollmentRow& e = b.update->row;
    IPSRT_RETURN_IF_ERROR(Fault("enrollment.update"));
    ResetOnExit reset(update_enrollment_);
    Statement& s = update_enrollment_;
    s.Bind(1, e.patient_ref);
    s.Bind(2, e.workflow_id);
    s.Bind(3, int64_t{e.workflow_version});
    s.Bind(4, e.stage);
    s.Bind(5, e.clinician_ref);
    s.Bind(6, int64_t{e.state});
    s.Bind(7, e.revision);
    s.BindBlob(8, packed.snapshot);
    s.Bind(9, ToMicros(e.update_time));
    s.Bind(10, e.tenant);
    s.Bind(11, e.id);
    s.Bind(12, b.update->expected_revision);
    IPSRT_RETURN_IF_ERROR(s.Exec());
    if (sqlite3_changes(writer_) == 0) {
      ResetOnExit reset_rev(current_revision_);
      current_revision_.Bind(1, e.tenant);
      current_revision_.Bind(2, e.id);
      IPSRT_ASSIGN_OR_RETURN(bool found, current_revision_.Step());
      if (!found) {
        return absl::NotFoundError(
            absl::StrCat("enrollment ", e.id, " not found"));
      }
      return absl::AbortedError(absl::StrCat(
          "expected_revision: enrollment ", e.id, " is at revision ",
          current_revision_.Int(0), ", not ", b.update->expected_revision,
          "; read it again and retry"));
    }
  }
  for (const EventRow& ev : b.events) {
    IPSRT_RETURN_IF_ERROR(Fault("event.insert"));
    ResetOnExit reset(insert_event_);
    Statement& s = insert_event_;
    s.Bind(1, ev.tenant);
    s.Bind(2, ev.enrollment_id);
    s.Bind(3, ev.sequence);
    s.Bind(4, ev.type);
    s.Bind(5, ev.actor);
    s.Bind(6, ev.request_id);
    s.Bind(7, ToMicros(ev.record_time));
    s.BindBlob(8, ev.payload);
    s.Bind(9, ev.prev_hash);
    s.Bind(10, ev.hash);
    absl::Status st = s.Exec();
    if (absl::IsAlreadyExists(st)) {
      return absl::AbortedError(absl::StrCat("enrollment ", ev.enrollment_id,
                                             " already has event ", ev.sequence,
                                             "; read it again and retry"));
    }
    IPSRT_RETURN_IF_ERROR(st);
  }
  for (const OutboxRow& o : b.outbox) {
    IPSRT_RETURN_IF_ERROR(Fault("outbox.insert"));
    ResetOnExit reset(insert_outbox_);
    Statement& s = insert_outbox_;
    s.Bind(1, o.tenant);
    s.Bind(2, o.enrollment_id);
    s.Bind(3, o.kind);
    s.Bind(4, ToMicros(o.due_time));
    s.BindBlob(5, o.payload);
    s.Bind(6, o.idempotency_key);
    s.Bind(7, ToMicros(req.create_time));
    IPSRT_RETURN_IF_ERROR(s.Exec());
  }
  for (const std::string& key : b.cancel_outbox_keys) {
    IPSRT_RETURN_IF_ERROR(Fault("outbox.cancel"));
    ResetOnExit reset(cancel_outbox_);
    cancel_outbox_.Bind(1, key);
    IPSRT_RETURN_IF_ERROR(cancel_outbox_.Exec());
  }
  {
    IPSRT_RETURN_IF_ERROR(Fault("request.insert"));
    ResetOnExit reset(insert_request_);
    Statement& s = insert_request_;
    s.Bind(1, req.tenant);
    s.Bind(2, req.request_id);
    s.Bind(3, req.method);
    s.Bind(4, req.payload_hash);
    s.BindBlob(5, packed.response);
    s.Bind(6, ToMicros(req.create_time));
    IPSRT_RETURN_IF_ERROR(s.Exec());
  }
  IPSRT_RETURN_IF_ERROR(InsertAudit(b.audit, ""));
  return CommitResult{false, req.response};
}

void SqliteStore::Impl::Close() {
  if (closed_) return;
  closed_ = true;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  if (writer_thread_.joinable()) writer_thread_.join();
  checkpointer_.reset();  // before the connections close
  RecordSequence(/*force=*/true);
  {
    FaultSinks& f = Sinks();
    absl::MutexLock lock(&f.mu);
    f.sinks.erase(writer_);
    f.sinks.erase(outbox_.db);
    for (auto& r : readers_) f.sinks.erase(r->db);
  }
  for (auto& r : readers_) {
    absl::MutexLock lock(&r->mu);
    r->cache.clear();
    sqlite3_close_v2(r->db);
    r->db = nullptr;
  }
  {
    absl::MutexLock lock(&outbox_.mu);
    outbox_.cache.clear();
    sqlite3_close_v2(outbox_.db);
    outbox_.db = nullptr;
  }
  // Finalise the writer's cached statements before closing its connection.
  for (Statement* s :
       {&begin_, &commit_, &rollback_, &savepoint_, &release_, &rollback_to_,
        &lookup_request_, &insert_request_, &insert_enrollment_,
        &update_enrollment_, &current_revision_, &insert_event_,
        &insert_outbox_, &cancel_outbox_, &audit_head_, &insert_audit_,
        &insert_request_key_, &prune_requests_, &bump_sequence_}) {
    s->Finalize();
  }
  if (writer_ != nullptr) {
    sqlite3_close_v2(writer_);
    writer_ = nullptr;
  }
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const Options& options) {
  auto impl = std::make_unique<Impl>(options);
  IPSRT_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SqliteStore::~SqliteStore() { Close(); }

void SqliteStore::CommitAsync(
    WriteBatch batch, std::function<void(absl::StatusOr<CommitResult>)> done) {
  impl_->Enqueue(std::move(batch), std::move(done));
}

absl::StatusOr<std::optional<RequestRecord>> SqliteStore::LookupRequest(
    absl::string_view tenant, absl::string_view request_id) {
  return impl_->WithReader([&](Impl::Reader& reader)
                               -> absl::StatusOr<std::optional<RequestRecord>> {
    IPSRT_ASSIGN_OR_RETURN(
        Statement * prepared,
        reader.Prepared("SELECT method, payload_hash, response, create_time_us "
                        "FROM requests WHERE tenant = ? AND request_id = ?"));
    Statement& s = *prepared;
    ResetOnExit reset(s);
    s.Bind(1, tenant);
    s.Bind(2, request_id);
    IPSRT_ASSIGN_OR_RETURN(bool found, s.Step());
    if (!found) return std::optional<RequestRecord>();
    RequestRecord r;
    r.tenant = std::string(tenant);
    r.request_id = std::string(request_id);
    r.method = s.Text(0);
    r.payload_hash = s.Text(1);
    IPSRT_ASSIGN_OR_RETURN(r.response,
                           UnpackBlob(s.Text(2), "a stored response"));
    r.create_time = FromMicros(s.Int(3));
    return std::optional<RequestRecord>(std::move(r));
  });
}

absl::StatusOr<EnrollmentRow> SqliteStore::GetEnrollment(
    absl::string_view tenant, absl::string_view id) {
  return impl_->WithReader(
      [&](Impl::Reader& reader) -> absl::StatusOr<EnrollmentRow> {
        IPSRT_ASSIGN_OR_RETURN(
            Statement * prepared,
            reader.Prepared(
                absl::StrCat("SELECT ", kEnrollmentColumns,
                             " FROM enrollments WHERE tenant = ? AND id = ?")));
        Statement& s = *prepared;
        ResetOnExit reset(s);
        s.Bind(1, tenant);
        s.Bind(2, id);
        IPSRT_ASSIGN_OR_RETURN(bool found, s.Step());
        if (!found) {
          return absl::NotFoundError(absl::StrCat("enrollment tenants/", tenant,
                                                  "/enrollments/", id,
                                                  " not found"));
        }
        return ReadEnrollment(s);
      });
}

namespace {

// ListEnrollmentsSql is ListEnrollments' statement for `filter`, with the
// page cursor's condition when `after`; its text arguments (tenant, then
// the non-empty filters in this order) go to `text_args`.
std::string ListEnrollmentsSql(const EnrollmentFilter& filter, bool after,
                               std::vector<std::string>* text_args) {
  std::vector<std::string> where = {"tenant = ?"};
  text_args->push_back(filter.tenant);
  auto add_text = [&](const std::string& column, const std::string& value) {
    if (value.empty()) return;
    where.push_back(absl::StrCat(column, " = ?"));
    text_args->push_back(value);
  };
  add_text("workflow_id", filter.workflow_id);
  add_text("stage", filter.stage);
  add_text("patient_ref", filter.patient_ref);
  add_text("clinician_ref", filter.clinician_ref);
  if (filter.state != 0) where.push_back("state = ?");
  if (after) {
    where.push_back("(create_time_us > ? OR (create_time_us = ? AND id > ?))");
  }
  return absl::StrCat("SELECT ", kEnrollmentColumns, " FROM enrollments WHERE ",
                      absl::StrJoin(where, " AND "),
                      " ORDER BY create_time_us, id LIMIT ?");
}

}  // namespace

absl::StatusOr<std::vector<EnrollmentRow>> SqliteStore::ListEnrollments(
    const EnrollmentFilter& filter,
    const std::optional<EnrollmentCursor>& after, int limit) {
  std::vector<std::string> text_args;
  std::string sql = ListEnrollmentsSql(filter, after.has_value(), &text_args);
  return impl_->WithReader(
      [&](Impl::Reader& reader) -> absl::StatusOr<std::vector<EnrollmentRow>> {
        IPSRT_ASSIGN_OR_RETURN(Statement * prepared, reader.Prepared(sql));
        Statement& s = *prepared;
        ResetOnExit reset(s);
        int i = 1;
        for (const std::string& a : text_args) s.Bind(i++, a);
        if (filter.state != 0) s.Bind(i++, int64_t{filter.state});
        if (after.has_value()) {
          s.Bind(i++, ToMicros(after->create_time));
          s.Bind(i++, ToMicros(after->create_time));
          s.Bind(i++, after->id);
        }
        s.Bind(i++, int64_t{limit});
        std::vector<EnrollmentRow> rows;
        while (true) {
          IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          IPSRT_ASSIGN_OR_RETURN(EnrollmentRow r, ReadEnrollment(s));
          rows.push_back(std::move(r));
        }
        return rows;
      });
}

absl::StatusOr<std::vector<std::string>> SqliteStore::ListTenants() {
  return impl_->WithReader(
      [&](Impl::Reader& reader) -> absl::StatusOr<std::vector<std::string>> {
        IPSRT_ASSIGN_OR_RETURN(
            Statement * prepared,
            reader.Prepared(
                "SELECT DISTINCT tenant FROM enrollments ORDER BY tenant"));
        Statement& s = *prepared;
        ResetOnExit reset(s);
        std::vector<std::string> tenants;
        while (true) {
          IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          tenants.push_back(s.Text(0));
        }
        return tenants;
      });
}

absl::StatusOr<std::vector<EventRow>> SqliteStore::ListEvents(
    absl::string_view tenant, absl::string_view enrollment_id,
    int64_t after_sequence, int limit) {
  return impl_->WithReader([&](Impl::Reader& reader)
                               -> absl::StatusOr<std::vector<EventRow>> {
    IPSRT_ASSIGN_OR_RETURN(
        Statement * prepared,
        reader.Prepared(
            "SELECT sequence, type, actor, request_id, record_time_us, "
            "payload, prev_hash, hash FROM events WHERE tenant = ? AND "
            "enrollment_id = ? AND sequence > ? ORDER BY sequence LIMIT ?"));
    Statement& s = *prepared;
    ResetOnExit reset(s);
    s.Bind(1, tenant);
    s.Bind(2, enrollment_id);
    s.Bind(3, after_sequence);
    s.Bind(4, int64_t{limit});
    std::vector<EventRow> rows;
    while (true) {
      IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      EventRow e;
      e.tenant = std::string(tenant);
      e.enrollment_id = std::string(enrollment_id);
      e.sequence = s.Int(0);
      e.type = s.Text(1);
      e.actor = s.Text(2);
      e.request_id = s.Text(3);
      e.record_time = FromMicros(s.Int(4));
      e.payload = s.Text(5);
      e.prev_hash = s.Text(6);
      e.hash = s.Text(7);
      rows.push_back(std::move(e));
    }
    return rows;
  });
}

// ---------------------------------------------------------------------------
// Outbox delivery.

namespace {

constexpr char kOutboxColumns[] =
    "id, tenant, enrollment_id, kind, due_time_us, payload, idempotency_key, "
    "status, attempts, lease_owner, lease_expiry_us, change_seq, last_error";

OutboxEntry ReadOutbox(const Statement& s) {
  OutboxEntry e;
  e.id = s.Int(0);
  e.row.tenant = s.Text(1);
  e.row.enrollment_id = s.Text(2);
  e.row.kind = s.Text(3);
  e.row.due_time = FromMicros(s.Int(4));
  e.row.payload = s.Text(5);
  e.row.idempotency_key = s.Text(6);
  e.status = static_cast<OutboxStatus>(s.Int(7));
  e.attempts = static_cast<int32_t>(s.Int(8));
  e.lease_owner = s.Text(9);
  e.lease_expiry = s.IsNull(10) ? absl::InfinitePast() : FromMicros(s.Int(10));
  e.change_seq = s.Int(11);
  e.last_error = s.Text(12);
  return e;
}

// ClaimSql claims due rows: two bounded range scans (outbox_due for
// scheduled rows, outbox_lease for expired leases and due retries), merged
// by due time. ?1 owner, ?2 lease expiry, ?3 now, ?4 limit.
std::string ClaimSql() {
  return absl::StrCat(
      "UPDATE outbox SET status = 1, lease_owner = ?1, "
      "lease_expiry_us = ?2, attempts = attempts + 1 WHERE id IN ("
      "SELECT id FROM ("
      "SELECT id, due_time_us FROM (SELECT id, due_time_us FROM outbox "
      "WHERE status = 0 AND due_time_us <= ?3 "
      "ORDER BY due_time_us LIMIT ?4) "
      "UNION ALL "
      "SELECT id, due_time_us FROM (SELECT id, due_time_us FROM outbox "
      "WHERE status IN (1, 5) AND lease_expiry_us <= ?3 "
      "ORDER BY lease_expiry_us LIMIT ?4)) "
      "ORDER BY due_time_us, id LIMIT ?4) RETURNING ",
      kOutboxColumns);
}

// Transaction runs `body` inside BEGIN IMMEDIATE ... COMMIT on `db`, rolling
// back on any error.
template <typename Fn>
absl::Status Transaction(sqlite3* db, Fn body) {
  if (db == nullptr) return absl::UnavailableError("store: closed");
  IPSRT_RETURN_IF_ERROR(ExecSql(db, "BEGIN IMMEDIATE"));
  absl::Status s = body();
  if (s.ok()) s = ExecSql(db, "COMMIT");
  if (!s.ok()) ExecSql(db, "ROLLBACK").IgnoreError();
  return s;
}

// NextChangeSeq hands out the next change-feed position (inside the
// caller's transaction).
absl::StatusOr<int64_t> NextChangeSeq(Statement& bump) {
  ResetOnExit reset(bump);
  IPSRT_ASSIGN_OR_RETURN(bool row, bump.Step());
  if (!row) return absl::InternalError("store: outbox_feed row missing");
  return bump.Int(0);
}

}  // namespace

absl::StatusOr<std::vector<OutboxEntry>> SqliteStore::Impl::ClaimOutbox(
    absl::Time now, absl::string_view owner, absl::Duration lease, int limit) {
  if (owner.empty() || lease <= absl::ZeroDuration() || limit < 1) {
    return absl::InvalidArgumentError(
        "store: a claim needs an owner, a positive lease and a limit >= 1");
  }
  IPSRT_RETURN_IF_ERROR(SafetyStop());
  absl::MutexLock lock(&outbox_.mu);
  std::vector<OutboxEntry> claimed;
  IPSRT_RETURN_IF_ERROR(Transaction(outbox_.db, [&]() -> absl::Status {
    // Two bounded range scans (outbox_due for scheduled rows, outbox_lease
    // for expired leases and due retries), merged by due time.
    IPSRT_ASSIGN_OR_RETURN(Statement * prepared, outbox_.Prepared(ClaimSql()));
    Statement& s = *prepared;
    ResetOnExit reset(s);
    s.Bind(1, owner);
    s.Bind(2, ToMicros(now + lease));
    s.Bind(3, ToMicros(now));
    s.Bind(4, int64_t{limit});
    while (true) {
      IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      claimed.push_back(ReadOutbox(s));
    }
    return absl::OkStatus();
  }));
  std::sort(claimed.begin(), claimed.end(),
            [](const OutboxEntry& a, const OutboxEntry& b) {
              return std::pair(a.row.due_time, a.id) <
                     std::pair(b.row.due_time, b.id);
            });
  return claimed;
}

absl::StatusOr<std::vector<int64_t>> SqliteStore::Impl::RecordOutboxOutcomes(
    absl::string_view owner, absl::Time now,
    const std::vector<OutboxResult>& results) {
  IPSRT_RETURN_IF_ERROR(SafetyStop());
  absl::MutexLock lock(&outbox_.mu);
  std::vector<int64_t> lost;
  IPSRT_RETURN_IF_ERROR(Transaction(outbox_.db, [&]() -> absl::Status {
    IPSRT_ASSIGN_OR_RETURN(
        Statement * update,
        outbox_.Prepared(
            "UPDATE outbox SET status = ?1, lease_owner = NULL, "
            "lease_expiry_us = ?2, last_error = ?3 WHERE id = ?4 AND "
            "status = 1 AND lease_owner = ?5 AND lease_expiry_us > ?6"));
    IPSRT_ASSIGN_OR_RETURN(
        Statement * bump,
        outbox_.Prepared("UPDATE outbox_feed SET last_seq = last_seq + 1 "
                         "WHERE id = 1 RETURNING last_seq"));
    IPSRT_ASSIGN_OR_RETURN(
        Statement * set_seq,
        outbox_.Prepared("UPDATE outbox SET change_seq = ? WHERE id = ?"));
    for (const OutboxResult& r : results) {
      OutboxStatus status = OutboxStatus::kDone;
      switch (r.outcome.kind) {
        case OutboxOutcome::Kind::kDone:
          status = OutboxStatus::kDone;
          break;
        case OutboxOutcome::Kind::kRetry:
          status = OutboxStatus::kRetryWait;
          break;
        case OutboxOutcome::Kind::kFailed:
          status = OutboxStatus::kFailed;
          break;
        case OutboxOutcome::Kind::kCancelled:
          status = OutboxStatus::kCancelled;
          break;
      }
      {
        ResetOnExit reset(*update);
        update->Bind(1, static_cast<int64_t>(status));
        if (status == OutboxStatus::kRetryWait) {
          update->Bind(2, ToMicros(r.outcome.retry_at));
        }  // else NULL
        update->Bind(3, r.outcome.error);
        update->Bind(4, r.id);
        update->Bind(5, owner);
        update->Bind(6, ToMicros(now));
        IPSRT_RETURN_IF_ERROR(update->Exec());
      }
      if (sqlite3_changes(outbox_.db) == 0) {
        lost.push_back(r.id);
        continue;
      }
      if (status == OutboxStatus::kRetryWait) continue;
      IPSRT_ASSIGN_OR_RETURN(int64_t seq, NextChangeSeq(*bump));
      ResetOnExit reset(*set_seq);
      set_seq->Bind(1, seq);
      set_seq->Bind(2, r.id);
      IPSRT_RETURN_IF_ERROR(set_seq->Exec());
    }
    return absl::OkStatus();
  }));
  return lost;
}

absl::StatusOr<OutboxEntry> SqliteStore::Impl::AcknowledgeOutbox(
    absl::string_view tenant, int64_t id) {
  IPSRT_RETURN_IF_ERROR(SafetyStop());
  absl::MutexLock lock(&outbox_.mu);
  OutboxEntry entry;
  IPSRT_RETURN_IF_ERROR(Transaction(outbox_.db, [&]() -> absl::Status {
    IPSRT_ASSIGN_OR_RETURN(Statement * get, outbox_.Prepared(absl::StrCat(
                                                "SELECT ", kOutboxColumns,
                                                " FROM outbox WHERE id = ? AND "
                                                "tenant = ?")));
    {
      ResetOnExit reset(*get);
      get->Bind(1, id);
      get->Bind(2, tenant);
      IPSRT_ASSIGN_OR_RETURN(bool found, get->Step());
      if (!found) {
        return absl::NotFoundError(absl::StrCat(
            "reminder tenants/", tenant, "/reminders/", id, " not found"));
      }
      entry = ReadOutbox(*get);
    }
    if (entry.status == OutboxStatus::kAcknowledged) return absl::OkStatus();
    if (entry.status != OutboxStatus::kDone) {
      return absl::FailedPreconditionError(
          absl::StrCat("reminder tenants/", tenant, "/reminders/", id,
                       " has not been sent; only a sent reminder can be "
                       "acknowledged"));
    }
    IPSRT_ASSIGN_OR_RETURN(
        Statement * bump,
        outbox_.Prepared("UPDATE outbox_feed SET last_seq = last_seq + 1 "
                         "WHERE id = 1 RETURNING last_seq"));
    IPSRT_ASSIGN_OR_RETURN(int64_t seq, NextChangeSeq(*bump));
    IPSRT_ASSIGN_OR_RETURN(
        Statement * ack,
        outbox_.Prepared(
            "UPDATE outbox SET status = 6, change_seq = ? WHERE id = ?"));
    ResetOnExit reset(*ack);
    ack->Bind(1, seq);
    ack->Bind(2, id);
    IPSRT_RETURN_IF_ERROR(ack->Exec());
    entry.status = OutboxStatus::kAcknowledged;
    entry.change_seq = seq;
    return absl::OkStatus();
  }));
  return entry;
}

namespace {
std::string ListOutboxSql(const OutboxQuery& q);  // below, with ListOutbox
}  // namespace

absl::StatusOr<std::string> SqliteStore::ClaimQueryPlan() {
  return QueryPlan(ClaimSql());
}

absl::StatusOr<std::string> SqliteStore::ListEnrollmentsQueryPlan(
    const EnrollmentFilter& filter, bool after) {
  std::vector<std::string> unused;
  return QueryPlan(ListEnrollmentsSql(filter, after, &unused));
}

absl::StatusOr<std::string> SqliteStore::ListOutboxQueryPlan(
    const OutboxQuery& q) {
  return QueryPlan(ListOutboxSql(q));
}

absl::StatusOr<std::string> SqliteStore::QueryPlan(absl::string_view sql) {
  return impl_->WithReader(
      [&](Impl::Reader& reader) -> absl::StatusOr<std::string> {
        Statement s;
        IPSRT_RETURN_IF_ERROR(s.Prepare(
            reader.db, absl::StrCat("EXPLAIN QUERY PLAN ", sql), false));
        std::vector<std::string> lines;
        while (true) {
          IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          lines.push_back(s.Text(3));
        }
        return absl::StrJoin(lines, "\n");
      });
}

absl::StatusOr<std::vector<OutboxEntry>> SqliteStore::ClaimOutbox(
    absl::Time now, absl::string_view owner, absl::Duration lease, int limit) {
  return impl_->ClaimOutbox(now, owner, lease, limit);
}

absl::StatusOr<std::vector<int64_t>> SqliteStore::RecordOutboxOutcomes(
    absl::string_view owner, absl::Time now,
    const std::vector<OutboxResult>& results) {
  return impl_->RecordOutboxOutcomes(owner, now, results);
}

absl::StatusOr<OutboxEntry> SqliteStore::AcknowledgeOutbox(
    absl::string_view tenant, int64_t id) {
  return impl_->AcknowledgeOutbox(tenant, id);
}

namespace {

// ListOutboxSql is ListOutbox's statement for `q`.
std::string ListOutboxSql(const OutboxQuery& q) {
  std::string sql = absl::StrCat("SELECT ", kOutboxColumns,
                                 " FROM outbox WHERE tenant = ? AND "
                                 "due_time_us <= ?");
  if (!q.statuses.empty()) {
    std::vector<std::string> codes;
    for (OutboxStatus st : q.statuses) {
      codes.push_back(absl::StrCat(static_cast<int>(st)));
    }
    absl::StrAppend(&sql, " AND status IN (", absl::StrJoin(codes, ", "), ")");
  }
  if (q.after.has_value()) {
    absl::StrAppend(&sql,
                    " AND (due_time_us > ? OR (due_time_us = ? AND id > ?))");
  }
  absl::StrAppend(&sql, " ORDER BY due_time_us, id LIMIT ?");
  return sql;
}

}  // namespace

absl::StatusOr<std::vector<OutboxEntry>> SqliteStore::ListOutbox(
    const OutboxQuery& q) {
  std::string sql = ListOutboxSql(q);
  return impl_->WithReader(
      [&](Impl::Reader& reader) -> absl::StatusOr<std::vector<OutboxEntry>> {
        IPSRT_ASSIGN_OR_RETURN(Statement * prepared, reader.Prepared(sql));
        Statement& s = *prepared;
        ResetOnExit reset(s);
        int i = 1;
        s.Bind(i++, q.tenant);
        s.Bind(i++, q.due_before == absl::InfiniteFuture()
                        ? std::numeric_limits<int64_t>::max()
                        : ToMicros(q.due_before));
        if (q.after.has_value()) {
          s.Bind(i++, ToMicros(q.after->first));
          s.Bind(i++, ToMicros(q.after->first));
          s.Bind(i++, q.after->second);
        }
        s.Bind(i++, int64_t{q.limit});
        std::vector<OutboxEntry> rows;
        while (true) {
          IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          rows.push_back(ReadOutbox(s));
        }
        return rows;
      });
}

absl::StatusOr<OutboxEntry> SqliteStore::GetOutbox(absl::string_view tenant,
                                                   int64_t id) {
  return impl_->WithReader(
      [&](Impl::Reader& reader) -> absl::StatusOr<OutboxEntry> {
        IPSRT_ASSIGN_OR_RETURN(
            Statement * prepared,
            reader.Prepared(absl::StrCat("SELECT ", kOutboxColumns,
                                         " FROM outbox WHERE id = ? AND "
                                         "tenant = ?")));
        Statement& s = *prepared;
        ResetOnExit reset(s);
        s.Bind(1, id);
        s.Bind(2, tenant);
        IPSRT_ASSIGN_OR_RETURN(bool found, s.Step());
        if (!found) {
          return absl::NotFoundError(absl::StrCat(
              "reminder tenants/", tenant, "/reminders/", id, " not found"));
        }
        return ReadOutbox(s);
      });
}

absl::StatusOr<std::vector<OutboxEntry>> SqliteStore::OutboxChanges(
    absl::string_view tenant, int64_t after_seq, int limit) {
  return impl_->WithReader(
      [&](Impl::Reader& reader) -> absl::StatusOr<std::vector<OutboxEntry>> {
        IPSRT_ASSIGN_OR_RETURN(
            Statement * prepared,
            reader.Prepared(
                absl::StrCat("SELECT ", kOutboxColumns,
                             " FROM outbox WHERE tenant = ? AND change_seq > ? "
                             "ORDER BY change_seq LIMIT ?")));
        Statement& s = *prepared;
        ResetOnExit reset(s);
        s.Bind(1, tenant);
        s.Bind(2, after_seq);
        s.Bind(3, int64_t{limit});
        std::vector<OutboxEntry> rows;
        while (true) {
          IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) break;
          rows.push_back(ReadOutbox(s));
        }
        return rows;
      });
}

absl::StatusOr<std::vector<AuditRecord>> SqliteStore::ListAudit(
    const AuditFilter& filter, int64_t after_seq, int limit) {
  return impl_->WithReader([&](Impl::Reader& reader)
                               -> absl::StatusOr<std::vector<AuditRecord>> {
    IPSRT_ASSIGN_OR_RETURN(
        Statement * prepared,
        reader.Prepared(
            "SELECT seq, tenant, subject, role, rpc, resource, outcome, "
            "time_us, request_id, prev_hash, hash FROM audit WHERE seq > ?1 "
            "AND (?2 = '' OR tenant = ?2) AND (?3 = '' OR subject = ?3) "
            "AND (?4 = '' OR rpc = ?4) AND time_us >= ?5 AND time_us < ?6 "
            "ORDER BY seq LIMIT ?7"));
    Statement& s = *prepared;
    ResetOnExit reset(s);
    s.Bind(1, after_seq);
    s.Bind(2, filter.tenant);
    s.Bind(3, filter.subject);
    s.Bind(4, filter.rpc);
    s.Bind(5, filter.from.has_value() ? ToMicros(*filter.from)
                                      : std::numeric_limits<int64_t>::min());
    s.Bind(6, filter.until.has_value() ? ToMicros(*filter.until)
                                       : std::numeric_limits<int64_t>::max());
    s.Bind(7, int64_t{limit});
    std::vector<AuditRecord> rows;
    while (true) {
      IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      AuditRecord r;
      r.seq = s.Int(0);
      r.tenant = s.Text(1);
      r.subject = s.Text(2);
      r.role = s.Text(3);
      r.rpc = s.Text(4);
      r.resource = s.Text(5);
      r.outcome = s.Text(6);
      r.time = FromMicros(s.Int(7));
      r.request_id = s.Text(8);
      r.prev_hash = s.Text(9);
      r.hash = s.Text(10);
      rows.push_back(std::move(r));
    }
    return rows;
  });
}

std::string SqliteStore::StoreId() const { return impl_->store_id(); }
const std::string& SqliteStore::DatabasePath() const { return impl_->path(); }
int SqliteStore::SchemaVersion() const { return impl_->schema_version(); }
int64_t SqliteStore::GroupCommits() const { return impl_->group_commits(); }
void SqliteStore::Close() { impl_->Close(); }

absl::Status SqliteStore::Probe() {
  // Read-only for safety, or below the free-space watermark: not ready.
  IPSRT_RETURN_IF_ERROR(impl_->SafetyStop());
  IPSRT_RETURN_IF_ERROR(impl_->SpaceCheck());
  return impl_->WithReader([](Impl::Reader& reader) -> absl::Status {
    IPSRT_ASSIGN_OR_RETURN(Statement * prepared, reader.Prepared("SELECT 1"));
    ResetOnExit reset(*prepared);
    absl::StatusOr<bool> row = prepared->Step();
    if (!row.ok()) {
      return absl::UnavailableError(
          absl::StrCat("store: sqlite probe failed: ", row.status().message()));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<StoreStats> SqliteStore::Stats(absl::Time now) {
  return impl_->WithReader(
      [now](Impl::Reader& reader) -> absl::StatusOr<StoreStats> {
        StoreStats stats;
        {
          IPSRT_ASSIGN_OR_RETURN(
              Statement * prepared,
              reader.Prepared("SELECT workflow_id, workflow_version, stage, "
                              "COUNT(*) FROM enrollments GROUP BY "
                              "workflow_id, workflow_version, stage"));
          Statement& s = *prepared;
          ResetOnExit reset(s);
          while (true) {
            IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
            if (!row) break;
            stats.enrollments.push_back(
                {.workflow_id = s.Text(0),
                 .workflow_version = static_cast<int32_t>(s.Int(1)),
                 .stage = s.Text(2),
                 .count = s.Int(3)});
          }
        }
        // Pending: scheduled (0), claimed (1), retry wait (5). Overdue: due
        // and unclaimed, or claimed under a lease that has run out.
        IPSRT_ASSIGN_OR_RETURN(
            Statement * prepared,
            reader.Prepared("SELECT (SELECT COUNT(*) FROM outbox WHERE status "
                            "IN (0, 1, 5)), (SELECT MIN(due_time_us) FROM "
                            "outbox WHERE (status = 0 AND due_time_us <= ?1) "
                            "OR (status = 1 AND lease_expiry_us <= ?1))"));
        Statement& s = *prepared;
        ResetOnExit reset(s);
        s.Bind(1, ToMicros(now));
        IPSRT_ASSIGN_OR_RETURN(bool row, s.Step());
        if (row) {
          stats.outbox_pending = s.Int(0);
          if (!s.IsNull(1)) stats.oldest_due = FromMicros(s.Int(1));
        }
        return stats;
      });
}

}  // namespace ipsrt
