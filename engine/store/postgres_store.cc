#include "ipsrt/postgres_store.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "ipsrt/status_macros.h"
#include "ops/metrics_hooks.h"
#include "store/commit_queue.h"
#include "store/migrations.h"
#include "store/pg_connection.h"
#include "store/request_window.h"
#include "store/sql_core.h"
#include "store/sql_dialect.h"

namespace ipsrt {
namespace {

// Key of the advisory lock that serialises schema migrations across
// replicas ("ipsrt" in ASCII).
constexpr int64_t kMigrationLockKey = 0x6970737274;
// Key of the transaction-scoped advisory lock that serialises appends to
// the audit chain across replicas ("audit" in ASCII): the head read and the
// insert of the next record must not interleave with another transaction's.
constexpr int64_t kAuditChainLockKey = 0x6175646974;

// PgRow is one row of a PgResult.
class PgRow final : public SqlRow {
 public:
  PgRow(const PgResult& r, int row) : r_(r), row_(row) {}
  bool IsNull(int col) const override { return r_.IsNull(row_, col); }
  int64_t Int(int col) const override { return r_.Int(row_, col); }
  std::string Text(int col) const override { return r_.Text(row_, col); }

 private:
  const PgResult& r_;
  int row_;
};

// PgSqlConnection runs the shared statements on a PgConnection (which
// prepares each once per connection).
class PgSqlConnection final : public SqlConnection {
 public:
  explicit PgSqlConnection(PgConnection& c) : c_(c) {}

  absl::StatusOr<int64_t> Exec(absl::string_view sql,
                               const SqlParams& params) override {
    IPSRT_ASSIGN_OR_RETURN(PgResult r, c_.Query(sql, ToPg(params)));
    return r.affected();
  }
  absl::Status Query(absl::string_view sql, const SqlParams& params,
                     SqlRowFn fn) override {
    IPSRT_ASSIGN_OR_RETURN(PgResult r, c_.Query(sql, ToPg(params)));
    for (int i = 0; i < r.rows(); ++i) {
      IPSRT_RETURN_IF_ERROR(fn(PgRow(r, i)));
    }
    return absl::OkStatus();
  }

 private:
  static PgParams ToPg(const SqlParams& params) {
    PgParams pg;
    for (const SqlParams::Value& v : params.values()) {
      switch (v.type) {
        case SqlParams::Type::kInt:
          pg.Int(v.number);
          break;
        case SqlParams::Type::kText:
          pg.Text(v.bytes);
          break;
        case SqlParams::Type::kBytes:
          pg.Bytes(v.bytes);
          break;
        case SqlParams::Type::kNullInt:
          pg.NullInt();
          break;
        case SqlParams::Type::kNullText:
          pg.NullText();
          break;
      }
    }
    return pg;
  }

  PgConnection& c_;
};

// The PostgreSQL dialect: several replicas write at once, so rows a
// transaction reads to change are locked, outbox claims skip rows another
// dispatcher holds (FOR UPDATE SKIP LOCKED), the audit chain's head is
// guarded by a transaction-scoped advisory lock, and each request prunes a
// few expired request records, skipping rows another replica is deleting.
SqlDialect PostgresDialect() {
  SqlDialect d;
  d.name = "postgres";
  d.row_value_keyset = true;
  d.lock_selected_rows = " FOR UPDATE";
  d.audit_chain_lock =
      absl::StrCat("SELECT pg_advisory_xact_lock(", kAuditChainLockKey, ")");
  // A pruned record leaves its request id's key in the same statement.
  d.prune_requests =
      "WITH gone AS (DELETE FROM requests WHERE key = ANY(ARRAY(SELECT key "
      "FROM requests WHERE create_time_us < $1 ORDER BY create_time_us LIMIT 4 "
      "FOR UPDATE SKIP LOCKED)) RETURNING key) INSERT INTO request_keys (key) "
      "SELECT key FROM gone ON CONFLICT (key) DO NOTHING";
  // Two bounded range scans (outbox_due for scheduled rows, outbox_lease
  // for expired leases and due retries), merged by due time.
  const std::string scheduled = SqlStatus(OutboxStatus::kScheduled);
  const std::string claimed = SqlStatus(OutboxStatus::kClaimed);
  d.claim_outbox = absl::StrCat(
      "WITH scheduled AS (SELECT id, due_time_us FROM outbox WHERE status = ",
      scheduled,
      " AND due_time_us <= $3 ORDER BY due_time_us LIMIT $4 FOR UPDATE SKIP "
      "LOCKED), expired AS (SELECT id, due_time_us FROM outbox WHERE status "
      "IN (",
      claimed, ", ", SqlStatus(OutboxStatus::kRetryWait),
      ") AND lease_expiry_us <= $3 ORDER BY lease_expiry_us LIMIT $4 FOR "
      "UPDATE SKIP LOCKED), picked AS (SELECT id FROM (SELECT * FROM "
      "scheduled UNION ALL SELECT * FROM expired) due ORDER BY due_time_us, "
      "id LIMIT $4) UPDATE outbox SET status = ",
      claimed,
      ", lease_owner = $1, lease_expiry_us = $2, attempts = attempts + 1 "
      "WHERE id IN (SELECT id FROM picked) RETURNING ",
      kOutboxColumns);
  return d;
}

}  // namespace

// CommitOutcomeUnknown is the status of a failed COMMIT: when the
// connection broke, the server may have committed before it went, so the
// caller learns that the change may be in and that a retry with the same
// request id is safe (it replays the first result, or applies it once).
absl::Status CommitOutcomeUnknown(const PgConnection& c,
                                  const absl::Status& failed) {
  if (!c.Broken()) return failed;
  return absl::UnavailableError(absl::StrCat(
      "store: the connection to PostgreSQL was lost after COMMIT was sent, "
      "so the change may have committed; retrying with the same request_id "
      "is safe (",
      failed.message(), ")"));
}

class PostgresStore::Impl : public SqlStore::Connections {
 public:
  Impl(Options options, const SqlCore* core)
      : options_(std::move(options)), core_(*core) {
    connect_.conninfo = options_.conninfo;
    connect_.password = options_.password;
    connect_.connect_timeout = options_.connect_timeout;
    connect_.statement_timeout = options_.statement_timeout;
  }
  ~Impl() { Close(); }

  absl::Status Open();
  void Enqueue(WriteBatch batch,
               std::function<void(absl::StatusOr<CommitResult>)> done);
  void Close();
  int schema_version() const { return schema_version_; }
  int schema_version_found() const { return schema_version_found_; }

  // Watch turns the store read-only for safety at the first DATA_LOSS
  // (SQLSTATE class XX: the server found corrupt data) and returns `s`.
  absl::Status Watch(absl::Status s) {
    if (s.code() != absl::StatusCode::kDataLoss) return s;
    absl::Time now = absl::Now();
    absl::MutexLock lock(&fault_mu_);
    bool first = !unsafe_.exchange(true);
    if (first) {
      unsafe_reason_ = std::string(s.message());
      unsafe_since_ = now;
    }
    if (first || now - last_fault_log_ >= absl::Minutes(1)) {
      last_fault_log_ = now;
      IPSRT_LOG(ERROR) << "store: PostgreSQL reported corrupt data ("
                       << unsafe_reason_
                       << "); this replica is read-only for safety: changes "
                          "are refused FAILED_PRECONDITION, reads continue. "
                          "Check the database (amcheck, server log), repair "
                          "or restore it, then restart the replicas";
    }
    return s;
  }
  // SafetyStop is OK, or FAILED_PRECONDITION once Watch tripped.
  absl::Status SafetyStop() {
    if (!unsafe_.load(std::memory_order_acquire)) return absl::OkStatus();
    absl::MutexLock lock(&fault_mu_);
    return absl::FailedPreconditionError(
        absl::StrCat("store: read-only for safety since ",
                     absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", unsafe_since_,
                                      absl::UTCTimeZone()),
                     " (", unsafe_reason_,
                     "); changes are refused until the database is repaired"));
  }

  // Read runs the reads of `fn` on a pooled connection. A read that finds
  // a reused connection dead (the server restarted since) runs once more on
  // a fresh one.
  absl::Status Read(ConnectionFn fn) override {
    for (int attempt = 0;; ++attempt) {
      bool fresh = false;
      IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn,
                             Acquire(&fresh));
      PgSqlConnection c(*conn);
      absl::Status result = fn(c);
      bool broken = conn->Broken();
      Release(std::move(conn));
      if (!result.ok()) Watch(result).IgnoreError();
      if (result.ok() || !broken || fresh || attempt > 0) return result;
    }
  }

  // Transact runs `fn` inside BEGIN ... COMMIT on a pooled connection and
  // rolls back when it fails. When BEGIN finds a reused connection dead,
  // nothing was sent yet, so it runs once more on a fresh connection.
  // `commit_step` names the fault hook's step before COMMIT ("" none).
  absl::Status Transact(ConnectionFn fn) override { return Transact(fn, ""); }
  absl::Status Transact(ConnectionFn fn, absl::string_view commit_step) {
    for (int attempt = 0;; ++attempt) {
      bool fresh = false;
      IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn,
                             Acquire(&fresh));
      absl::Status begun = conn->Exec("BEGIN");
      if (!begun.ok()) {
        bool broken = conn->Broken();
        Release(std::move(conn));
        if (broken && !fresh && attempt == 0) continue;
        return begun;
      }
      PgSqlConnection c(*conn);
      absl::Status result = fn(c);
      if (result.ok() && !commit_step.empty()) {
        result = core_.Fault(commit_step);
      }
      if (result.ok()) {
        absl::Status committed = conn->Exec("COMMIT");
        if (!committed.ok()) result = CommitOutcomeUnknown(*conn, committed);
      } else if (!conn->Broken()) {
        conn->Exec("ROLLBACK").IgnoreError();
      }
      Release(std::move(conn));
      if (!result.ok()) Watch(result).IgnoreError();
      return result;
    }
  }

 private:
  struct Pending {
    WriteBatch batch;
    std::function<void(absl::StatusOr<CommitResult>)> done;
  };

  // Acquire returns an idle connection or opens one (setting *fresh) when
  // fewer than pool_size are open; it waits while all are in use.
  absl::StatusOr<std::unique_ptr<PgConnection>> Acquire(bool* fresh);
  // Release returns a healthy connection to the pool and drops a broken one.
  void Release(std::unique_ptr<PgConnection> conn);

  absl::Status ApplyMigrations();
  void CommitLoop();
  absl::StatusOr<CommitResult> Commit(const WriteBatch& b);

  Options options_;
  const SqlCore& core_;
  PgConnectOptions connect_;
  int schema_version_ = 0;
  int schema_version_found_ = 0;

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(pool_mu_);
  int open_ ABSL_GUARDED_BY(pool_mu_) = 0;
  bool pool_closed_ ABSL_GUARDED_BY(pool_mu_) = false;

  CommitQueue<Pending> queue_;

  std::atomic<bool> unsafe_{false};
  absl::Mutex fault_mu_;
  std::string unsafe_reason_ ABSL_GUARDED_BY(fault_mu_);
  absl::Time unsafe_since_ ABSL_GUARDED_BY(fault_mu_);
  absl::Time last_fault_log_ ABSL_GUARDED_BY(fault_mu_) = absl::InfinitePast();
  std::vector<std::thread> committers_;
  bool closed_ = false;
};

absl::Status PostgresStore::Impl::Open() {
  if (options_.conninfo.empty()) {
    return absl::InvalidArgumentError(
        "store.postgres.conninfo: must not be empty");
  }
  if (options_.pool_size < 1) {
    return absl::InvalidArgumentError(
        "store.postgres.pool_size: must be at least 1");
  }
  IPSRT_RETURN_IF_ERROR(ApplyMigrations());
  for (int i = 0; i < options_.pool_size; ++i) {
    committers_.emplace_back([this] { CommitLoop(); });
    NameThread(committers_.back(), "store-committer");
  }
  return absl::OkStatus();
}

absl::Status PostgresStore::Impl::ApplyMigrations() {
  IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c,
                         PgConnection::Connect(connect_));
  const int64_t limit_ms = PgTimeoutMillis(options_.migration_timeout);
  // What a statement cancelled under the limit below (57014, which is also
  // an administrator's pg_cancel_backend) is reported as: the setting to
  // change, not statement_timeout's UNAVAILABLE (which a client would
  // retry; a restart meets the same limit).
  auto timed_out = [&](const absl::Status& s) {
    if (s.ok() || limit_ms == 0 || c->LastSqlstate() != "57014") return s;
    return absl::DeadlineExceededError(absl::StrCat(
        s.message(), "; store.postgres.migration_timeout is ",
        absl::FormatDuration(options_.migration_timeout), " (0s: no limit)"));
  };
  // One transaction holds the advisory lock from the first look at the
  // schema to the last migration, so replicas starting together wait for
  // each other and then find the work done. Its statements run under
  // migration_timeout, not statement_timeout: a migration rewrites whole
  // tables (minutes on a large store), and a replica may wait that long for
  // another's.
  IPSRT_RETURN_IF_ERROR(c->Exec("BEGIN"));
  absl::Status s = [&]() -> absl::Status {
    IPSRT_RETURN_IF_ERROR(
        c->Exec(absl::StrCat("SET LOCAL statement_timeout = ", limit_ms)));
    IPSRT_ASSIGN_OR_RETURN(
        PgResult got,
        c->Query("SELECT pg_try_advisory_xact_lock($1)::int::int8",
                 PgParams().Int(kMigrationLockKey)));
    if (got.Int(0, 0) != 1) {
      IPSRT_LOG(INFO) << "store: another process holds the schema migration "
                         "lock; waiting for it";
      IPSRT_RETURN_IF_ERROR(
          timed_out(c->Query("SELECT pg_advisory_xact_lock($1)",
                             PgParams().Int(kMigrationLockKey))
                        .status()));
    }
    IPSRT_RETURN_IF_ERROR(
        c->Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                " applied_time_us BIGINT NOT NULL)"));
    IPSRT_ASSIGN_OR_RETURN(
        PgResult r, c->Query("SELECT COALESCE(MAX(version), 0)::int8 FROM "
                             "schema_migrations"));
    schema_version_ = static_cast<int>(r.Int(0, 0));
    schema_version_found_ = schema_version_;
    IPSRT_RETURN_IF_ERROR(RefuseNewerSchema(schema_version_));
    const absl::Time started = absl::Now();
    for (const Migration& m : PostgresMigrations()) {
      if (m.version <= schema_version_) continue;
      LogMigrationStart(schema_version_, m);
      absl::Status applied = timed_out(c->Exec(m.sql));
      if (applied.ok()) PauseInMigration(m.version);
      if (applied.ok()) {
        applied = c->Query("INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                           PgParams()
                               .Int(m.version)
                               .Text(m.description)
                               .Int(absl::ToUnixMicros(absl::Now())))
                      .status();
      }
      if (!applied.ok()) {
        return absl::Status(
            applied.code(),
            absl::StrCat("migration ", m.version, " (", m.description,
                         "): ", applied.message()));
      }
    }
    IPSRT_RETURN_IF_ERROR(timed_out(c->Exec("COMMIT")));
    LogMigrationsDone(schema_version_, kSchemaVersion, started);
    schema_version_ = std::max(schema_version_, kSchemaVersion);
    return absl::OkStatus();
  }();
  if (!s.ok() && !c->Broken()) c->Exec("ROLLBACK").IgnoreError();
  return s;
}

absl::StatusOr<std::unique_ptr<PgConnection>> PostgresStore::Impl::Acquire(
    bool* fresh) {
  *fresh = false;
  {
    absl::MutexLock lock(&pool_mu_);
    pool_mu_.Await(absl::Condition(
        +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->pool_mu_) {
          return self->pool_closed_ || !self->idle_.empty() ||
                 self->open_ < self->options_.pool_size;
        },
        this));
    if (pool_closed_) return absl::UnavailableError("store: closed");
    if (!idle_.empty()) {
      std::unique_ptr<PgConnection> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    ++open_;
  }
  // Connect outside the lock: it may take up to connect_timeout.
  absl::StatusOr<std::unique_ptr<PgConnection>> c =
      PgConnection::Connect(connect_);
  if (!c.ok()) {
    absl::MutexLock lock(&pool_mu_);
    --open_;
    return c.status();
  }
  *fresh = true;
  return c;
}

void PostgresStore::Impl::Release(std::unique_ptr<PgConnection> conn) {
  absl::MutexLock lock(&pool_mu_);
  if (conn == nullptr || conn->Broken() || pool_closed_) {
    --open_;
    if (conn != nullptr && conn->Broken()) {
      // One connection found broken usually means the server restarted and
      // every idle one is broken too: drop them all, so that the retry of
      // the failed call (and later calls) open fresh ones instead of
      // failing on each stale connection in turn.
      open_ -= static_cast<int>(idle_.size());
      idle_.clear();
    }
    return;  // connections are re-opened on later Acquires
  }
  idle_.push_back(std::move(conn));
}

void PostgresStore::Impl::Enqueue(
    WriteBatch batch, std::function<void(absl::StatusOr<CommitResult>)> done) {
  Pending p{std::move(batch), std::move(done)};
  if (!queue_.Push(p)) p.done(StoreClosingError());
}

void PostgresStore::Impl::CommitLoop() {
  std::vector<Pending> one;
  while (queue_.PopUpTo(1, &one)) {
    Pending& p = one.front();
    absl::Time began = absl::Now();
    absl::StatusOr<CommitResult> result = Commit(p.batch);
    size_t audit = p.batch.audit.size();
    metrics::ObserveCommitGroup("postgres", 1, result.ok() ? 0 : 1, audit,
                                result.ok() ? 0 : audit, absl::Now() - began);
    p.done(std::move(result));
    one.clear();
  }
}

// Commit runs one batch as one transaction. When BEGIN finds a reused
// connection dead, nothing was sent yet, so the batch runs once more on a
// fresh connection; any later failure is the caller's to retry.

// Commit runs one batch as one transaction (Transact: a batch whose BEGIN
// found a reused connection dead runs once more on a fresh one; any later
// failure is the caller's to retry). The blobs are packed before the
// transaction begins.
absl::StatusOr<CommitResult> PostgresStore::Impl::Commit(const WriteBatch& b) {
  IPSRT_RETURN_IF_ERROR(SqlCore::ValidateBatch(b));
  if (!IsAuditOnly(b)) IPSRT_RETURN_IF_ERROR(SafetyStop());
  const PackedBlobs packed = PackBatch(b);
  absl::StatusOr<CommitResult> result = absl::UnknownError("store: not run");
  IPSRT_RETURN_IF_ERROR(Transact(
      [&](SqlConnection& c) -> absl::Status {
        // A replay applies nothing but its audit records (if any).
        result = core_.ApplyBatch(c, b, packed);
        return result.status();
      },
      "commit"));
  return result;
}

void PostgresStore::Impl::Close() {
  if (closed_) return;
  closed_ = true;
  queue_.Close();
  for (std::thread& t : committers_) t.join();
  absl::MutexLock lock(&pool_mu_);
  pool_closed_ = true;
  open_ -= static_cast<int>(idle_.size());
  idle_.clear();
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(
    const Options& options) {
  std::unique_ptr<SqlCore> core =
      NewCore(PostgresDialect(), options.request_retention, options.fault_hook);
  auto impl = std::make_unique<Impl>(options, core.get());
  IPSRT_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<PostgresStore>(
      new PostgresStore(std::move(core), std::move(impl)));
}

PostgresStore::PostgresStore(std::unique_ptr<SqlCore> core,
                             std::unique_ptr<Impl> impl)
    : SqlStore(std::move(core), impl.get()), impl_(std::move(impl)) {}
PostgresStore::~PostgresStore() { Close(); }

void PostgresStore::CommitAsync(
    WriteBatch batch, std::function<void(absl::StatusOr<CommitResult>)> done) {
  impl_->Enqueue(std::move(batch), std::move(done));
}

int PostgresStore::SchemaVersion() const { return impl_->schema_version(); }
int PostgresStore::SchemaVersionFound() const {
  return impl_->schema_version_found();
}
void PostgresStore::Close() { impl_->Close(); }

absl::Status PostgresStore::Probe() {
  IPSRT_RETURN_IF_ERROR(impl_->SafetyStop());
  absl::Status answered = impl_->Read([](SqlConnection& c) {
    return c.Query("SELECT 1", SqlParams(),
                   [](const SqlRow&) { return absl::OkStatus(); });
  });
  if (!answered.ok()) {
    return absl::UnavailableError(
        absl::StrCat("store: postgres probe failed: ", answered.message()));
  }
  return absl::OkStatus();
}

}  // namespace ipsrt
