#include "ipsrt/postgres_store.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <limits>
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
#include "store/pg_connection.h"
#include "store/request_window.h"

namespace ipsrt {
namespace {

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

// Key of the advisory lock that serialises schema migrations across
// replicas ("ipsrt" in ASCII).
constexpr int64_t kMigrationLockKey = 0x6970737274;
// Key of the transaction-scoped advisory lock that serialises appends to
// the audit chain across replicas ("audit" in ASCII): the head read and the
// insert of the next record must not interleave with another transaction's.
constexpr int64_t kAuditChainLockKey = 0x6175646974;

// True for a batch that only appends audit records (a read's audit).
// InsertAudit appends `records` to the chain inside the caller's open
// transaction. The advisory lock is held until that transaction ends, so
// the head read here is still the head when it commits, in every replica;
// a rolled-back transaction takes its records (and their seqs) with it.
absl::Status InsertAudit(PgConnection& c,
                         const std::vector<AuditRecord>& records,
                         absl::string_view outcome_override) {
  if (records.empty()) return absl::OkStatus();
  IPSRT_RETURN_IF_ERROR(c.Query("SELECT pg_advisory_xact_lock($1)",
                                PgParams().Int(kAuditChainLockKey))
                            .status());
  IPSRT_ASSIGN_OR_RETURN(
      PgResult head,
      c.Query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"));
  int64_t seq = head.rows() > 0 ? head.Int(0, 0) : 0;
  std::string prev_hash = head.rows() > 0 ? head.Text(0, 1) : "";
  for (const AuditRecord& in : records) {
    AuditRecord r = in;
    if (!outcome_override.empty()) r.outcome = std::string(outcome_override);
    r.seq = ++seq;
    r.prev_hash = prev_hash;
    r.hash = AuditRecordHash(r);
    IPSRT_RETURN_IF_ERROR(
        c.Query("INSERT INTO audit (seq, tenant, subject, role, rpc, "
                "resource, outcome, time_us, request_id, prev_hash, hash) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                PgParams()
                    .Int(r.seq)
                    .Text(r.tenant)
                    .Text(r.subject)
                    .Text(r.role)
                    .Text(r.rpc)
                    .Text(r.resource)
                    .Text(r.outcome)
                    .Int(ToMicros(r.time))
                    .Text(r.request_id)
                    .Text(r.prev_hash)
                    .Text(r.hash))
            .status());
    prev_hash = r.hash;
  }
  return absl::OkStatus();
}

constexpr char kEnrollmentColumns[] =
    "tenant, id, patient_ref, workflow_id, workflow_version, stage, "
    "clinician_ref, state, revision, snapshot, create_time_us, "
    "update_time_us";

// Snapshots and responses are stored in their packed form
// (store/blob_codec.h), as SQLite stores them: PostgreSQL compresses only
// rows over about 2 KB, and leaves most of these rows as they come.
absl::StatusOr<EnrollmentRow> ReadEnrollment(const PgResult& r, int row) {
  EnrollmentRow e;
  e.tenant = r.Text(row, 0);
  e.id = r.Text(row, 1);
  e.patient_ref = r.Text(row, 2);
  e.workflow_id = r.Text(row, 3);
  e.workflow_version = static_cast<int32_t>(r.Int(row, 4));
  e.stage = r.Text(row, 5);
  e.clinician_ref = r.Text(row, 6);
  e.state = static_cast<int32_t>(r.Int(row, 7));
  e.revision = r.Int(row, 8);
  IPSRT_ASSIGN_OR_RETURN(e.snapshot,
                         UnpackBlob(r.Text(row, 9), "an enrollment snapshot"));
  e.create_time = FromMicros(r.Int(row, 10));
  e.update_time = FromMicros(r.Int(row, 11));
  return e;
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

class PostgresStore::Impl {
 public:
  explicit Impl(Options options) : options_(std::move(options)) {
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

  // Read runs the single-statement read `fn` on a pooled connection. A read
  // that finds a reused connection dead (the server restarted since) runs
  // once more on a fresh one.
  template <typename T>
  absl::StatusOr<T> Read(
      const std::function<absl::StatusOr<T>(PgConnection&)>& fn) {
    for (int attempt = 0;; ++attempt) {
      bool fresh = false;
      IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn,
                             Acquire(&fresh));
      absl::StatusOr<T> result = fn(*conn);
      bool broken = conn->Broken();
      Release(std::move(conn));
      if (!result.ok()) Watch(result.status()).IgnoreError();
      if (result.ok() || !broken || fresh || attempt > 0) return result;
    }
  }

  // Transact runs `fn` inside BEGIN ... COMMIT on a pooled connection and
  // rolls back when it fails. When BEGIN finds a reused connection dead,
  // nothing was sent yet, so it runs once more on a fresh connection.
  template <typename T>
  absl::StatusOr<T> Transact(
      const std::function<absl::StatusOr<T>(PgConnection&)>& fn) {
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
      absl::StatusOr<T> result = fn(*conn);
      if (result.ok()) {
        absl::Status committed = conn->Exec("COMMIT");
        if (!committed.ok()) result = CommitOutcomeUnknown(*conn, committed);
      } else if (!conn->Broken()) {
        conn->Exec("ROLLBACK").IgnoreError();
      }
      Release(std::move(conn));
      if (!result.ok()) Watch(result.status()).IgnoreError();
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
  absl::StatusOr<CommitResult> CommitOnce(const WriteBatch& b);
  absl::StatusOr<CommitResult> Apply(PgConnection& c, const WriteBatch& b);

  Options options_;
  PgConnectOptions connect_;
  int schema_version_ = 0;

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(pool_mu_);
  int open_ ABSL_GUARDED_BY(pool_mu_) = 0;
  bool pool_closed_ ABSL_GUARDED_BY(pool_mu_) = false;

  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;

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
  }
  return absl::OkStatus();
}

absl::Status PostgresStore::Impl::ApplyMigrations() {
  IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c,
                         PgConnection::Connect(connect_));
  // One transaction holds the advisory lock from the first look at the
  // schema to the last migration, so replicas starting together wait for
  // each other and then find the work done.
  IPSRT_RETURN_IF_ERROR(c->Exec("BEGIN"));
  absl::Status s = [&]() -> absl::Status {
    IPSRT_RETURN_IF_ERROR(c->Query("SELECT pg_advisory_xact_lock($1)",
                                   PgParams().Int(kMigrationLockKey))
                              .status());
    IPSRT_RETURN_IF_ERROR(
        c->Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                " applied_time_us BIGINT NOT NULL)"));
    IPSRT_ASSIGN_OR_RETURN(
        PgResult r, c->Query("SELECT COALESCE(MAX(version), 0)::int8 FROM "
                             "schema_migrations"));
    schema_version_ = static_cast<int>(r.Int(0, 0));
    const std::vector<Migration>& migrations = PostgresMigrations();
    int latest = migrations.empty() ? 0 : migrations.back().version;
    if (schema_version_ > latest) {
      return absl::FailedPreconditionError(
          absl::StrCat("store: database schema version ", schema_version_,
                       " is newer than this ipsrtd supports (", latest,
                       "); run a newer ipsrtd"));
    }
    for (const Migration& m : migrations) {
      if (m.version <= schema_version_) continue;
      absl::Status applied = c->Exec(m.sql);
      if (applied.ok()) PauseInMigration(m.version);
      if (applied.ok()) {
        applied = c->Query("INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                           PgParams()
                               .Int(m.version)
                               .Text(m.description)
                               .Int(ToMicros(absl::Now())))
                      .status();
      }
      if (!applied.ok()) {
        return absl::Status(
            applied.code(),
            absl::StrCat("migration ", m.version, " (", m.description,
                         "): ", applied.message()));
      }
    }
    if (!migrations.empty()) {
      schema_version_ = std::max(schema_version_, latest);
    }
    return c->Exec("COMMIT");
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
  {
    absl::MutexLock lock(&mu_);
    if (!closing_) {
      queue_.push_back(Pending{std::move(batch), std::move(done)});
      return;
    }
  }
  done(absl::UnavailableError("store: closing; retry on another server"));
}

void PostgresStore::Impl::CommitLoop() {
  while (true) {
    Pending p;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Impl* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->closing_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // closing and drained
      p = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::Time began = absl::Now();
    absl::StatusOr<CommitResult> result = Commit(p.batch);
    size_t audit = p.batch.audit.size();
    metrics::ObserveCommitGroup("postgres", 1, result.ok() ? 0 : 1, audit,
                                result.ok() ? 0 : audit, absl::Now() - began);
    p.done(std::move(result));
  }
}

// Commit runs one batch as one transaction. When BEGIN finds a reused
// connection dead, nothing was sent yet, so the batch runs once more on a
// fresh connection; any later failure is the caller's to retry.
absl::StatusOr<CommitResult> PostgresStore::Impl::Commit(const WriteBatch& b) {
  const RequestRecord& req = b.request;
  if (!IsAuditOnly(b) && (req.tenant.empty() || req.request_id.empty())) {
    return absl::InvalidArgumentError(
        "store: a write batch needs a tenant and a request id");
  }
  if (b.create.has_value() && b.update.has_value()) {
    return absl::InvalidArgumentError(
        "store: a write batch creates or updates one enrollment, not both");
  }
  if (!IsAuditOnly(b)) IPSRT_RETURN_IF_ERROR(SafetyStop());
  absl::StatusOr<CommitResult> result = CommitOnce(b);
  if (!result.ok()) Watch(result.status()).IgnoreError();
  return result;
}

absl::StatusOr<CommitResult> PostgresStore::Impl::CommitOnce(
    const WriteBatch& b) {
  for (int attempt = 0;; ++attempt) {
    bool fresh = false;
    IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c, Acquire(&fresh));
    absl::Status begun = c->Exec("BEGIN");
    if (!begun.ok()) {
      bool broken = c->Broken();
      Release(std::move(c));
      if (broken && !fresh && attempt == 0) continue;
      return begun;
    }
    absl::StatusOr<CommitResult> r = Apply(*c, b);
    if (r.ok()) {
      // A replay applied nothing but its audit records (if any).
      absl::Status committed = c->Exec("COMMIT");
      if (!committed.ok()) r = CommitOutcomeUnknown(*c, committed);
    } else if (!c->Broken()) {
      // A failed batch: roll back.
      absl::Status rolled_back = c->Exec("ROLLBACK");
      if (!rolled_back.ok() && r.ok()) r = rolled_back;
    }
    Release(std::move(c));
    return r;
  }
}

absl::StatusOr<CommitResult> PostgresStore::Impl::Apply(PgConnection& c,
                                                        const WriteBatch& b) {
  if (IsAuditOnly(b)) {
    IPSRT_RETURN_IF_ERROR(InsertAudit(c, b.audit, ""));
    return CommitResult{};
  }
  const RequestRecord& req = b.request;
  {
    // The request record goes first: a concurrent transaction with the same
    // request id (in any replica) makes this insert wait for its outcome,
    // then either this one proceeds (it rolled back) or replays it.
    IPSRT_ASSIGN_OR_RETURN(
        PgResult inserted,
        c.Query("INSERT INTO requests (tenant, request_id, method, "
                "payload_hash, response, create_time_us) VALUES ($1, $2, $3, "
                "$4, $5, $6) ON CONFLICT (tenant, request_id) DO NOTHING",
                PgParams()
                    .Text(req.tenant)
                    .Text(req.request_id)
                    .Text(req.method)
                    .Text(req.payload_hash)
                    .Bytes(PackBlob(req.response))
                    .Int(ToMicros(req.create_time))));
    if (inserted.affected() == 0) {
      IPSRT_ASSIGN_OR_RETURN(
          PgResult prior,
          c.Query("SELECT method, payload_hash, response FROM requests "
                  "WHERE tenant = $1 AND request_id = $2",
                  PgParams().Text(req.tenant).Text(req.request_id)));
      if (prior.rows() != 1) {
        return absl::UnavailableError(
            "store: a concurrent request with this request id vanished; "
            "retry");
      }
      std::string method = prior.Text(0, 0);
      if (method != req.method || prior.Text(0, 1) != req.payload_hash) {
        return absl::FailedPreconditionError(
            absl::StrCat("request_id: \"", req.request_id,
                         "\" was already used for a different ", method,
                         " request; use a new request id for a new request"));
      }
      IPSRT_ASSIGN_OR_RETURN(std::string first,
                             UnpackBlob(prior.Text(0, 2), "a stored response"));
      CommitResult replay{true, std::move(first)};
      IPSRT_RETURN_IF_ERROR(InsertAudit(c, b.audit, "OK (replayed)"));
      return replay;
    }
  }
  {
    // A new request id, or one whose record was pruned: its key says.
    IPSRT_ASSIGN_OR_RETURN(
        PgResult keyed,
        c.Query("INSERT INTO request_keys (key) VALUES ($1) ON CONFLICT "
                "(key) DO NOTHING",
                PgParams().Int(RequestKey(req.tenant, req.request_id))));
    if (keyed.affected() == 0) {
      return ExpiredRequestError(req.request_id, options_.request_retention);
    }
    // Records older than the window at this request's time (the callers'
    // clock), a few per commit, skipping rows another replica is deleting.
    absl::Time before =
        PruneBefore(req.create_time, options_.request_retention);
    if (before != absl::InfinitePast()) {
      IPSRT_RETURN_IF_ERROR(
          c.Query("DELETE FROM requests WHERE ctid = ANY(ARRAY(SELECT ctid "
                  "FROM requests WHERE create_time_us < $1 ORDER BY "
                  "create_time_us LIMIT 4 FOR UPDATE SKIP LOCKED))",
                  PgParams().Int(ToMicros(before)))
              .status());
    }
  }
  if (b.create.has_value()) {
    const EnrollmentRow& e = *b.create;
    absl::Status st =
        c.Query(
             "INSERT INTO enrollments (tenant, id, patient_ref, workflow_id, "
             "workflow_version, stage, clinician_ref, state, revision, "
             "snapshot, create_time_us, update_time_us) VALUES ($1, $2, $3, "
             "$4, $5, $6, $7, $8, $9, $10, $11, $12)",
             PgParams()
                 .Text(e.tenant)
                 .Text(e.id)
                 .Text(e.patient_ref)
                 .Text(e.workflow_id)
                 .Int(e.workflow_version)
                 .Text(e.stage)
                 .Text(e.clinician_ref)
                 .Int(e.state)
                 .Int(e.revision)
                 .Bytes(PackBlob(e.snapshot))
                 .Int(ToMicros(e.create_time))
                 .Int(ToMicros(e.update_time)))
            .status();
    if (absl::IsAlreadyExists(st)) {
      return absl::AlreadyExistsError(
          absl::StrCat("enrollment ", e.id, " already exists"));
    }
    IPSRT_RETURN_IF_ERROR(st);
  }
  if (b.update.has_value()) {
    const EnrollmentRow& e = b.update->row;
    IPSRT_ASSIGN_OR_RETURN(
        PgResult updated,
        c.Query("UPDATE enrollments SET patient_ref = $1, workflow_id = $2, "
                "workflow_version = $3, stage = $4, clinician_ref = $5, "
                "state = $6, revision = $7, snapshot = $8, "
                "update_time_us = $9 WHERE tenant = $10 AND id = $11 AND "
                "revision = $12",
                PgParams()
                    .Text(e.patient_ref)
                    .Text(e.workflow_id)
                    .Int(e.workflow_version)
                    .Text(e.stage)
                    .Text(e.clinician_ref)
                    .Int(e.state)
                    .Int(e.revision)
                    .Bytes(PackBlob(e.snapshot))
                    .Int(ToMicros(e.update_time))
                    .Text(e.tenant)
                    .Text(e.id)
                    .Int(b.update->expected_revision)));
    if (updated.affected() == 0) {
      IPSRT_ASSIGN_OR_RETURN(
          PgResult current,
          c.Query("SELECT revision FROM enrollments WHERE tenant = $1 AND "
                  "id = $2",
                  PgParams().Text(e.tenant).Text(e.id)));
      if (current.rows() == 0) {
        return absl::NotFoundError(
            absl::StrCat("enrollment ", e.id, " not found"));
      }
      return absl::AbortedError(absl::StrCat(
          "expected_revision: enrollment ", e.id, " is at revision ",
          current.Int(0, 0), ", not ", b.update->expected_revision,
          "; read it again and retry"));
    }
  }
  for (const EventRow& ev : b.events) {
    absl::Status st =
        c.Query(
             "INSERT INTO events (tenant, enrollment_id, sequence, type, "
             "actor, request_id, record_time_us, payload, prev_hash, hash) "
             "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
             PgParams()
                 .Text(ev.tenant)
                 .Text(ev.enrollment_id)
                 .Int(ev.sequence)
                 .Text(ev.type)
                 .Text(ev.actor)
                 .Text(ev.request_id)
                 .Int(ToMicros(ev.record_time))
                 .Bytes(ev.payload)
                 .Text(ev.prev_hash)
                 .Text(ev.hash))
            .status();
    if (absl::IsAlreadyExists(st)) {
      return absl::AbortedError(absl::StrCat("enrollment ", ev.enrollment_id,
                                             " already has event ", ev.sequence,
                                             "; read it again and retry"));
    }
    IPSRT_RETURN_IF_ERROR(st);
  }
  for (const OutboxRow& o : b.outbox) {
    IPSRT_RETURN_IF_ERROR(
        c.Query("INSERT INTO outbox (tenant, enrollment_id, kind, "
                "due_time_us, payload, idempotency_key, status, attempts, "
                "create_time_us) VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7)",
                PgParams()
                    .Text(o.tenant)
                    .Text(o.enrollment_id)
                    .Text(o.kind)
                    .Int(ToMicros(o.due_time))
                    .Bytes(o.payload)
                    .Text(o.idempotency_key)
                    .Int(ToMicros(req.create_time)))
            .status());
  }
  for (const std::string& key : b.cancel_outbox_keys) {
    IPSRT_RETURN_IF_ERROR(
        c.Query("UPDATE outbox SET status = 3, lease_owner = NULL WHERE "
                "idempotency_key = $1 AND status IN (0, 5)",
                PgParams().Text(key))
            .status());
  }
  IPSRT_RETURN_IF_ERROR(InsertAudit(c, b.audit, ""));
  return CommitResult{false, req.response};
}

void PostgresStore::Impl::Close() {
  if (closed_) return;
  closed_ = true;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  for (std::thread& t : committers_) t.join();
  absl::MutexLock lock(&pool_mu_);
  pool_closed_ = true;
  open_ -= static_cast<int>(idle_.size());
  idle_.clear();
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(
    const Options& options) {
  auto impl = std::make_unique<Impl>(options);
  IPSRT_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<PostgresStore>(new PostgresStore(std::move(impl)));
}

PostgresStore::PostgresStore(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
PostgresStore::~PostgresStore() { Close(); }

void PostgresStore::CommitAsync(
    WriteBatch batch, std::function<void(absl::StatusOr<CommitResult>)> done) {
  impl_->Enqueue(std::move(batch), std::move(done));
}

absl::StatusOr<std::optional<RequestRecord>> PostgresStore::LookupRequest(
    absl::string_view tenant, absl::string_view request_id) {
  return impl_->Read<std::optional<RequestRecord>>(
      [&](PgConnection& c) -> absl::StatusOr<std::optional<RequestRecord>> {
        IPSRT_ASSIGN_OR_RETURN(
            PgResult r,
            c.Query("SELECT method, payload_hash, response, create_time_us "
                    "FROM requests WHERE tenant = $1 AND request_id = $2",
                    PgParams().Text(tenant).Text(request_id)));
        if (r.rows() == 0) return std::optional<RequestRecord>();
        RequestRecord rec;
        rec.tenant = std::string(tenant);
        rec.request_id = std::string(request_id);
        rec.method = r.Text(0, 0);
        rec.payload_hash = r.Text(0, 1);
        IPSRT_ASSIGN_OR_RETURN(rec.response,
                               UnpackBlob(r.Text(0, 2), "a stored response"));
        rec.create_time = FromMicros(r.Int(0, 3));
        return std::optional<RequestRecord>(std::move(rec));
      });
}

absl::StatusOr<EnrollmentRow> PostgresStore::GetEnrollment(
    absl::string_view tenant, absl::string_view id) {
  return impl_->Read<EnrollmentRow>(
      [&](PgConnection& c) -> absl::StatusOr<EnrollmentRow> {
        IPSRT_ASSIGN_OR_RETURN(
            PgResult r,
            c.Query(absl::StrCat("SELECT ", kEnrollmentColumns,
                                 " FROM enrollments WHERE tenant = $1 AND "
                                 "id = $2"),
                    PgParams().Text(tenant).Text(id)));
        if (r.rows() == 0) {
          return absl::NotFoundError(absl::StrCat("enrollment tenants/", tenant,
                                                  "/enrollments/", id,
                                                  " not found"));
        }
        return ReadEnrollment(r, 0);
      });
}

absl::StatusOr<std::vector<EnrollmentRow>> PostgresStore::ListEnrollments(
    const EnrollmentFilter& filter,
    const std::optional<EnrollmentCursor>& after, int limit) {
  std::vector<std::string> where = {"tenant = $1"};
  PgParams params;
  params.Text(filter.tenant);
  auto add_text = [&](const std::string& column, const std::string& value) {
    if (value.empty()) return;
    params.Text(value);
    where.push_back(absl::StrCat(column, " = $", params.size()));
  };
  add_text("workflow_id", filter.workflow_id);
  add_text("stage", filter.stage);
  add_text("patient_ref", filter.patient_ref);
  add_text("clinician_ref", filter.clinician_ref);
  if (filter.state != 0) {
    params.Int(filter.state);
    where.push_back(absl::StrCat("state = $", params.size()));
  }
  if (after.has_value()) {
    params.Int(ToMicros(after->create_time));
    int t = params.size();
    params.Text(after->id);
    where.push_back(absl::StrCat("(create_time_us, id) > ($", t, ", $",
                                 params.size(), ")"));
  }
  params.Int(limit);
  std::string sql =
      absl::StrCat("SELECT ", kEnrollmentColumns, " FROM enrollments WHERE ",
                   absl::StrJoin(where, " AND "),
                   " ORDER BY create_time_us, id LIMIT $", params.size());
  return impl_->Read<std::vector<EnrollmentRow>>(
      [&](PgConnection& c) -> absl::StatusOr<std::vector<EnrollmentRow>> {
        IPSRT_ASSIGN_OR_RETURN(PgResult r, c.Query(sql, params));
        std::vector<EnrollmentRow> rows;
        for (int i = 0; i < r.rows(); ++i) {
          IPSRT_ASSIGN_OR_RETURN(EnrollmentRow row, ReadEnrollment(r, i));
          rows.push_back(std::move(row));
        }
        return rows;
      });
}

absl::StatusOr<std::vector<std::string>> PostgresStore::ListTenants() {
  return impl_->Read<std::vector<std::string>>(
      [&](PgConnection& c) -> absl::StatusOr<std::vector<std::string>> {
        IPSRT_ASSIGN_OR_RETURN(
            PgResult r,
            c.Query("SELECT DISTINCT tenant FROM enrollments ORDER BY tenant",
                    PgParams()));
        std::vector<std::string> tenants;
        for (int i = 0; i < r.rows(); ++i) tenants.push_back(r.Text(i, 0));
        return tenants;
      });
}

absl::StatusOr<std::vector<EventRow>> PostgresStore::ListEvents(
    absl::string_view tenant, absl::string_view enrollment_id,
    int64_t after_sequence, int limit) {
  return impl_->Read<std::vector<EventRow>>(
      [&](PgConnection& c) -> absl::StatusOr<std::vector<EventRow>> {
        IPSRT_ASSIGN_OR_RETURN(
            PgResult r,
            c.Query("SELECT sequence, type, actor, request_id, "
                    "record_time_us, payload, prev_hash, hash FROM events "
                    "WHERE tenant = $1 AND enrollment_id = $2 AND "
                    "sequence > $3 ORDER BY sequence LIMIT $4",
                    PgParams()
                        .Text(tenant)
                        .Text(enrollment_id)
                        .Int(after_sequence)
                        .Int(limit)));
        std::vector<EventRow> rows;
        for (int i = 0; i < r.rows(); ++i) {
          EventRow e;
          e.tenant = std::string(tenant);
          e.enrollment_id = std::string(enrollment_id);
          e.sequence = r.Int(i, 0);
          e.type = r.Text(i, 1);
          e.actor = r.Text(i, 2);
          e.request_id = r.Text(i, 3);
          e.record_time = FromMicros(r.Int(i, 4));
          e.payload = r.Text(i, 5);
          e.prev_hash = r.Text(i, 6);
          e.hash = r.Text(i, 7);
          rows.push_back(std::move(e));
        }
        return rows;
      });
}

// ---------------------------------------------------------------------------
// Outbox delivery. Claims lock the rows they take with FOR UPDATE SKIP
// LOCKED, so dispatchers in several replicas claim disjoint rows without
// waiting for each other. Change-feed positions come from the one
// outbox_feed row, whose row lock (held to commit) makes positions become
// visible in order.

namespace {

constexpr char kOutboxColumns[] =
    "id, tenant, enrollment_id, kind, due_time_us, payload, idempotency_key, "
    "status, attempts, lease_owner, lease_expiry_us, change_seq, last_error";

OutboxEntry ReadOutbox(const PgResult& r, int row) {
  OutboxEntry e;
  e.id = r.Int(row, 0);
  e.row.tenant = r.Text(row, 1);
  e.row.enrollment_id = r.Text(row, 2);
  e.row.kind = r.Text(row, 3);
  e.row.due_time = FromMicros(r.Int(row, 4));
  e.row.payload = r.Text(row, 5);
  e.row.idempotency_key = r.Text(row, 6);
  e.status = static_cast<OutboxStatus>(r.Int(row, 7));
  e.attempts = static_cast<int32_t>(r.Int(row, 8));
  e.lease_owner = r.Text(row, 9);
  e.lease_expiry =
      r.IsNull(row, 10) ? absl::InfinitePast() : FromMicros(r.Int(row, 10));
  e.change_seq = r.Int(row, 11);
  e.last_error = r.Text(row, 12);
  return e;
}

std::vector<OutboxEntry> ReadOutboxRows(const PgResult& r) {
  std::vector<OutboxEntry> rows;
  for (int i = 0; i < r.rows(); ++i) rows.push_back(ReadOutbox(r, i));
  return rows;
}

// NextChangeSeq hands out the next change-feed position inside the
// caller's transaction.
absl::StatusOr<int64_t> NextChangeSeq(PgConnection& c) {
  IPSRT_ASSIGN_OR_RETURN(
      PgResult r, c.Query("UPDATE outbox_feed SET last_seq = last_seq + 1 "
                          "WHERE id = 1 RETURNING last_seq"));
  if (r.rows() != 1) {
    return absl::InternalError("store: outbox_feed row missing");
  }
  return r.Int(0, 0);
}

std::string ReminderName(absl::string_view tenant, int64_t id) {
  return absl::StrCat("reminder tenants/", tenant, "/reminders/", id);
}

}  // namespace

absl::StatusOr<std::vector<OutboxEntry>> PostgresStore::ClaimOutbox(
    absl::Time now, absl::string_view owner, absl::Duration lease, int limit) {
  if (owner.empty() || lease <= absl::ZeroDuration() || limit < 1) {
    return absl::InvalidArgumentError(
        "store: a claim needs an owner, a positive lease and a limit >= 1");
  }
  // Two bounded range scans (outbox_due for scheduled rows, outbox_lease
  // for expired leases and due retries), merged by due time.
  const std::string sql = absl::StrCat(
      "WITH scheduled AS (SELECT id, due_time_us FROM outbox WHERE "
      "status = 0 AND due_time_us <= $3 ORDER BY due_time_us LIMIT $4 "
      "FOR UPDATE SKIP LOCKED), "
      "expired AS (SELECT id, due_time_us FROM outbox WHERE status IN (1, 5) "
      "AND lease_expiry_us <= $3 ORDER BY lease_expiry_us LIMIT $4 "
      "FOR UPDATE SKIP LOCKED), "
      "picked AS (SELECT id FROM (SELECT * FROM scheduled UNION ALL "
      "SELECT * FROM expired) due ORDER BY due_time_us, id LIMIT $4) "
      "UPDATE outbox SET status = 1, lease_owner = $1, lease_expiry_us = $2, "
      "attempts = attempts + 1 WHERE id IN (SELECT id FROM picked) "
      "RETURNING ",
      kOutboxColumns);
  PgParams params;
  params.Text(owner).Int(ToMicros(now + lease)).Int(ToMicros(now)).Int(limit);
  IPSRT_ASSIGN_OR_RETURN(
      std::vector<OutboxEntry> claimed,
      impl_->Transact<std::vector<OutboxEntry>>(
          [&](PgConnection& c) -> absl::StatusOr<std::vector<OutboxEntry>> {
            IPSRT_ASSIGN_OR_RETURN(PgResult r, c.Query(sql, params));
            return ReadOutboxRows(r);
          }));
  std::sort(claimed.begin(), claimed.end(),
            [](const OutboxEntry& a, const OutboxEntry& b) {
              return std::pair(a.row.due_time, a.id) <
                     std::pair(b.row.due_time, b.id);
            });
  return claimed;
}

absl::StatusOr<std::vector<int64_t>> PostgresStore::RecordOutboxOutcomes(
    absl::string_view owner, absl::Time now,
    const std::vector<OutboxResult>& results) {
  return impl_->Transact<std::vector<int64_t>>(
      [&](PgConnection& c) -> absl::StatusOr<std::vector<int64_t>> {
        std::vector<int64_t> lost;
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
          PgParams params;
          params.Int(static_cast<int64_t>(status));
          if (status == OutboxStatus::kRetryWait) {
            params.Int(ToMicros(r.outcome.retry_at));
          } else {
            params.NullInt();
          }
          params.Text(r.outcome.error).Int(r.id).Text(owner).Int(ToMicros(now));
          IPSRT_ASSIGN_OR_RETURN(
              PgResult updated,
              c.Query("UPDATE outbox SET status = $1, lease_owner = NULL, "
                      "lease_expiry_us = $2, last_error = $3 WHERE id = $4 "
                      "AND status = 1 AND lease_owner = $5 AND "
                      "lease_expiry_us > $6",
                      params));
          if (updated.affected() == 0) {
            lost.push_back(r.id);
            continue;
          }
          if (status == OutboxStatus::kRetryWait) continue;
          IPSRT_ASSIGN_OR_RETURN(int64_t seq, NextChangeSeq(c));
          IPSRT_RETURN_IF_ERROR(
              c.Query("UPDATE outbox SET change_seq = $1 WHERE id = $2",
                      PgParams().Int(seq).Int(r.id))
                  .status());
        }
        return lost;
      });
}

absl::StatusOr<std::vector<OutboxEntry>> PostgresStore::ListOutbox(
    const OutboxQuery& q) {
  PgParams params;
  params.Text(q.tenant).Int(q.due_before == absl::InfiniteFuture()
                                ? std::numeric_limits<int64_t>::max()
                                : ToMicros(q.due_before));
  std::string sql = absl::StrCat("SELECT ", kOutboxColumns,
                                 " FROM outbox WHERE tenant = $1 AND "
                                 "due_time_us <= $2");
  if (!q.statuses.empty()) {
    std::vector<std::string> codes;
    for (OutboxStatus st : q.statuses) {
      codes.push_back(absl::StrCat(static_cast<int>(st)));
    }
    absl::StrAppend(&sql, " AND status IN (", absl::StrJoin(codes, ", "), ")");
  }
  if (q.after.has_value()) {
    params.Int(ToMicros(q.after->first)).Int(q.after->second);
    absl::StrAppend(&sql, " AND (due_time_us, id) > ($3, $4)");
  }
  params.Int(q.limit);
  absl::StrAppend(&sql, " ORDER BY due_time_us, id LIMIT $", params.size());
  return impl_->Read<std::vector<OutboxEntry>>(
      [&](PgConnection& c) -> absl::StatusOr<std::vector<OutboxEntry>> {
        IPSRT_ASSIGN_OR_RETURN(PgResult r, c.Query(sql, params));
        return ReadOutboxRows(r);
      });
}

absl::StatusOr<OutboxEntry> PostgresStore::GetOutbox(absl::string_view tenant,
                                                     int64_t id) {
  return impl_->Read<OutboxEntry>(
      [&](PgConnection& c) -> absl::StatusOr<OutboxEntry> {
        IPSRT_ASSIGN_OR_RETURN(
            PgResult r,
            c.Query(absl::StrCat("SELECT ", kOutboxColumns,
                                 " FROM outbox WHERE id = $1 AND tenant = $2"),
                    PgParams().Int(id).Text(tenant)));
        if (r.rows() == 0) {
          return absl::NotFoundError(
              absl::StrCat(ReminderName(tenant, id), " not found"));
        }
        return ReadOutbox(r, 0);
      });
}

absl::StatusOr<std::vector<OutboxEntry>> PostgresStore::OutboxChanges(
    absl::string_view tenant, int64_t after_seq, int limit) {
  return impl_->Read<std::vector<OutboxEntry>>(
      [&](PgConnection& c) -> absl::StatusOr<std::vector<OutboxEntry>> {
        IPSRT_ASSIGN_OR_RETURN(
            PgResult r,
            c.Query(absl::StrCat("SELECT ", kOutboxColumns,
                                 " FROM outbox WHERE tenant = $1 AND "
                                 "change_seq > $2 ORDER BY change_seq "
                                 "LIMIT $3"),
                    PgParams().Text(tenant).Int(after_seq).Int(limit)));
        return ReadOutboxRows(r);
      });
}

absl::StatusOr<OutboxEntry> PostgresStore::AcknowledgeOutbox(
    absl::string_view tenant, int64_t id) {
  return impl_->Transact<OutboxEntry>(
      [&](PgConnection& c) -> absl::StatusOr<OutboxEntry> {
        IPSRT_ASSIGN_OR_RETURN(
            PgResult r,
            c.Query(absl::StrCat("SELECT ", kOutboxColumns,
                                 " FROM outbox WHERE id = $1 AND tenant = $2 "
                                 "FOR UPDATE"),
                    PgParams().Int(id).Text(tenant)));
        if (r.rows() == 0) {
          return absl::NotFoundError(
              absl::StrCat(ReminderName(tenant, id), " not found"));
        }
        OutboxEntry entry = ReadOutbox(r, 0);
        if (entry.status == OutboxStatus::kAcknowledged) return entry;
        if (entry.status != OutboxStatus::kDone) {
          return absl::FailedPreconditionError(
              absl::StrCat(ReminderName(tenant, id),
                           " has not been sent; only a sent reminder can be "
                           "acknowledged"));
        }
        IPSRT_ASSIGN_OR_RETURN(int64_t seq, NextChangeSeq(c));
        IPSRT_RETURN_IF_ERROR(
            c.Query("UPDATE outbox SET status = 6, change_seq = $1 WHERE "
                    "id = $2",
                    PgParams().Int(seq).Int(id))
                .status());
        entry.status = OutboxStatus::kAcknowledged;
        entry.change_seq = seq;
        return entry;
      });
}

absl::StatusOr<std::vector<AuditRecord>> PostgresStore::ListAudit(
    const AuditFilter& filter, int64_t after_seq, int limit) {
  PgParams params;
  params.Int(after_seq)
      .Text(filter.tenant)
      .Text(filter.subject)
      .Text(filter.rpc)
      .Int(filter.from.has_value() ? ToMicros(*filter.from)
                                   : std::numeric_limits<int64_t>::min())
      .Int(filter.until.has_value() ? ToMicros(*filter.until)
                                    : std::numeric_limits<int64_t>::max())
      .Int(limit);
  return impl_->Read<std::vector<AuditRecord>>(
      [&](PgConnection& c) -> absl::StatusOr<std::vector<AuditRecord>> {
        IPSRT_ASSIGN_OR_RETURN(
            PgResult r,
            c.Query("SELECT seq, tenant, subject, role, rpc, resource, "
                    "outcome, time_us, request_id, prev_hash, hash FROM audit "
                    "WHERE seq > $1 AND ($2 = '' OR tenant = $2) AND "
                    "($3 = '' OR subject = $3) AND ($4 = '' OR rpc = $4) AND "
                    "time_us >= $5 AND time_us < $6 ORDER BY seq LIMIT $7",
                    params));
        std::vector<AuditRecord> rows;
        for (int i = 0; i < r.rows(); ++i) {
          AuditRecord a;
          a.seq = r.Int(i, 0);
          a.tenant = r.Text(i, 1);
          a.subject = r.Text(i, 2);
          a.role = r.Text(i, 3);
          a.rpc = r.Text(i, 4);
          a.resource = r.Text(i, 5);
          a.outcome = r.Text(i, 6);
          a.time = FromMicros(r.Int(i, 7));
          a.request_id = r.Text(i, 8);
          a.prev_hash = r.Text(i, 9);
          a.hash = r.Text(i, 10);
          rows.push_back(std::move(a));
        }
        return rows;
      });
}

int PostgresStore::SchemaVersion() const { return impl_->schema_version(); }
void PostgresStore::Close() { impl_->Close(); }

absl::Status PostgresStore::Probe() {
  IPSRT_RETURN_IF_ERROR(impl_->SafetyStop());
  absl::StatusOr<bool> answered =
      impl_->Read<bool>([](PgConnection& c) -> absl::StatusOr<bool> {
        IPSRT_ASSIGN_OR_RETURN(PgResult r, c.ExecRows("SELECT 1"));
        return r.rows() == 1;
      });
  if (!answered.ok()) {
    return absl::UnavailableError(absl::StrCat("store: postgres probe failed: ",
                                               answered.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<StoreStats> PostgresStore::Stats(absl::Time now) {
  return impl_->Read<StoreStats>(
      [now](PgConnection& c) -> absl::StatusOr<StoreStats> {
        StoreStats stats;
        IPSRT_ASSIGN_OR_RETURN(
            PgResult e,
            c.Query("SELECT workflow_id, workflow_version, stage, COUNT(*) "
                    "FROM enrollments GROUP BY workflow_id, workflow_version, "
                    "stage",
                    PgParams()));
        for (int i = 0; i < e.rows(); ++i) {
          stats.enrollments.push_back(
              {.workflow_id = e.Text(i, 0),
               .workflow_version = static_cast<int32_t>(e.Int(i, 1)),
               .stage = e.Text(i, 2),
               .count = e.Int(i, 3)});
        }
        // Pending: scheduled (0), claimed (1), retry wait (5). Overdue: due
        // and unclaimed, or claimed under a lease that has run out.
        IPSRT_ASSIGN_OR_RETURN(
            PgResult o,
            c.Query("SELECT (SELECT COUNT(*) FROM outbox WHERE status IN (0, "
                    "1, 5)), (SELECT MIN(due_time_us) FROM outbox WHERE "
                    "(status = 0 AND due_time_us <= $1) OR (status = 1 AND "
                    "lease_expiry_us <= $1))",
                    PgParams().Int(ToMicros(now))));
        if (o.rows() == 1) {
          stats.outbox_pending = o.Int(0, 0);
          if (!o.IsNull(0, 1)) stats.oldest_due = FromMicros(o.Int(0, 1));
        }
        return stats;
      });
}

}  // namespace ipsrt
