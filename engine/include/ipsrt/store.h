// Store: durable state of the engine, behind one interface with an embedded
// SQLite implementation (sqlite_store.h) and a PostgreSQL one
// (postgres_store.h), both over one SQL core (sql_store.h).
//
// The store knows rows, not clinical rules. Every change is one WriteBatch
// committed atomically: the request record (idempotency), the enrollment
// row (created, or updated under optimistic concurrency), its new events and
// the outbox rows for side effects either all commit or none do.
//
// Example:
//   WriteBatch batch;
//   batch.request = {.tenant = "clinic-a", .request_id = "r-1", ...};
//   batch.create = EnrollmentRow{...};
//   batch.events.push_back(EventRow{...});
//   absl::StatusOr<CommitResult> r = store->Commit(std::move(batch));
//   if (r.ok() && r->replayed) { /* first result is in r->response */ }
//
// Thread safety: every method may be called from any thread at once.
#ifndef IPSRT_STORE_H_
#define IPSRT_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ipsrt {

// One enrollment as stored. `snapshot` is the serialized ipsrt.v1.Enrollment
// (the cache that replaying the events reproduces); the other columns are
// copies of its fields that queries filter on.
struct EnrollmentRow {
  std::string tenant;
  std::string id;
  std::string patient_ref;
  std::string workflow_id;
  int32_t workflow_version = 0;
  std::string stage;
  std::string clinician_ref;
  int32_t state = 0;  // ipsrt.v1.Enrollment.State
  int64_t revision = 0;
  std::string snapshot;
  absl::Time create_time;
  absl::Time update_time;
};

// One event of an enrollment's append-only log. `sequence` is 1-based and
// dense; `payload` is the serialized ipsrt.v1.Event, which alone holds the
// event's type, actor, request id and record time.
struct EventRow {
  std::string tenant;
  std::string enrollment_id;
  int64_t sequence = 0;
  std::string payload;
  // Hash of the previous event ("" for the first) and of this one.
  std::string prev_hash;
  std::string hash;
};

// A side effect to perform after commit (reminder, export, escalation).
struct OutboxRow {
  std::string tenant;
  std::string enrollment_id;
  std::string kind;
  absl::Time due_time;
  std::string payload;
  // Unique across the store; a second row with the same key is refused.
  std::string idempotency_key;
};

// The idempotency record of one mutating request.
struct RequestRecord {
  std::string tenant;
  std::string request_id;
  // RPC method, e.g. "CreateEnrollment".
  std::string method;
  // Hash of the request without its request id; a replay must match it
  // (SamePayloadHash: a SQL store reads back the first half of a SHA-256
  // digest in hex).
  std::string payload_hash;
  // Serialized response of the first successful execution.
  std::string response;
  absl::Time create_time;
};

// SamePayloadHash is whether `recorded`, a request record's payload_hash
// as read back, is that of a request whose hash is `hex`: equal, or a
// prefix of at least 32 hex digits (the stored half of a digest).
bool SamePayloadHash(absl::string_view recorded, absl::string_view hex);

// One record of the audit trail: who read or changed (or was refused)
// what, chained by hash. `seq`, `prev_hash` and `hash` are assigned by the
// store when the record is appended (see audit_chain.h).
struct AuditRecord {
  int64_t seq = 0;
  // Tenant of the resource ("" for deployment-wide calls).
  std::string tenant;
  std::string subject;
  std::string role;
  // Full gRPC method, e.g. "/ipsrt.v1.EnrollmentService/GetEnrollment".
  std::string rpc;
  // Resource name the call addressed ("tenants/t/enrollments/e").
  std::string resource;
  // "OK" or the canonical code name of the refusal or failure.
  std::string outcome;
  absl::Time time;
  std::string request_id;
  std::string prev_hash;
  std::string hash;
};

// Filters for ListAudit; empty strings and nullopt mean "any".
struct AuditFilter {
  std::string tenant;
  std::string subject;
  std::string rpc;
  std::optional<absl::Time> from;   // time >= from
  std::optional<absl::Time> until;  // time < until
};

// An update of an existing enrollment. Applied only when the stored
// revision equals `expected_revision`; otherwise the batch fails ABORTED.
struct EnrollmentUpdate {
  int64_t expected_revision = 0;
  EnrollmentRow row;  // new values; row.revision is the new revision
};

// One atomic change. `request` is required; at most one of `create` and
// `update` is set; `events` belong to that enrollment.
struct WriteBatch {
  RequestRecord request;
  std::optional<EnrollmentRow> create;
  std::optional<EnrollmentUpdate> update;
  std::vector<EventRow> events;
  std::vector<OutboxRow> outbox;
  // Idempotency keys of scheduled outbox rows to cancel (a reminder whose
  // task was done before it fired). Scheduled and retry-waiting rows are
  // cancelled; rows claimed (in flight) or done are left as they are (the
  // dispatcher checks the task before it sends); unknown keys are ignored.
  std::vector<std::string> cancel_outbox_keys;
  // Audit records appended in the same transaction as the change. A batch
  // with only `audit` (no request id, no enrollment, events or outbox) is
  // an audit-only append.
  std::vector<AuditRecord> audit;
};

// IsAuditOnly: `batch` only appends audit records (see WriteBatch::audit).
// Such appends pass when changes are refused for safety or disk space, so
// that reads, which are released only with their record, keep working.
bool IsAuditOnly(const WriteBatch& batch);

struct CommitResult {
  // True when the request id had been committed before with the same
  // payload hash: nothing was applied, and `response` is the first result.
  bool replayed = false;
  std::string response;
};

// Exact-match filters for ListEnrollments; empty strings and 0 mean "any".
struct EnrollmentFilter {
  std::string tenant;  // required
  std::string workflow_id;
  std::string stage;
  std::string patient_ref;
  std::string clinician_ref;
  int32_t state = 0;
};

// Keyset position for paging enrollments in (create_time, id) order.
struct EnrollmentCursor {
  absl::Time create_time;
  std::string id;
};

// Life of an outbox row (the `status` column). A row is claimed by one
// dispatcher at a time under a lease; a crash before the outcome is recorded
// leaves it claimed until the lease expires, and then it is claimed again
// (delivery is at least once, with the row's stable idempotency key).
enum class OutboxStatus : int32_t {
  kScheduled = 0,
  kClaimed = 1,  // lease_owner delivers it until lease_expiry
  kDone = 2,     // delivered
  kCancelled = 3,
  kFailed = 4,        // permanent error, or out of attempts
  kRetryWait = 5,     // a retriable failure; claimable again at lease_expiry
  kAcknowledged = 6,  // delivered, and the recipient acknowledged it
};

// One stored outbox row with its delivery state.
struct OutboxEntry {
  int64_t id = 0;  // increasing in insertion order
  OutboxRow row;
  OutboxStatus status = OutboxStatus::kScheduled;
  int32_t attempts = 0;  // deliveries started (claims)
  std::string lease_owner;
  // End of the lease (claimed) or time of the next attempt (retry wait).
  absl::Time lease_expiry = absl::InfinitePast();
  // Position in the change feed (0 before the first recorded outcome).
  int64_t change_seq = 0;
  // Canonical code and message of the last failed attempt; never patient
  // data (senders' errors name channels, not content).
  std::string last_error;
};

// What a dispatcher reports after an attempt.
struct OutboxOutcome {
  enum class Kind { kDone, kRetry, kFailed, kCancelled };
  Kind kind = Kind::kDone;
  absl::Time retry_at;  // kRetry only
  std::string error;    // kRetry and kFailed
};

// The outcome of an attempt on one claimed row.
struct OutboxResult {
  int64_t id = 0;
  OutboxOutcome outcome;
};

// Filter for ListOutbox, in (due_time, id) order.
struct OutboxQuery {
  std::string tenant;                              // required
  absl::Time due_before = absl::InfiniteFuture();  // due_time <= due_before
  std::vector<OutboxStatus> statuses;              // empty: any
  // Keyset position: rows after (after_due, after_id).
  std::optional<std::pair<absl::Time, int64_t>> after;
  int limit = 100;
};

// Aggregates for the metrics' gauges (Store::Stats).
struct StoreStats {
  struct EnrollmentCount {
    std::string workflow_id;
    int32_t workflow_version = 0;
    std::string stage;
    int64_t count = 0;
  };
  std::vector<EnrollmentCount> enrollments;
  // Rows scheduled, claimed or waiting to retry.
  int64_t outbox_pending = 0;
  // Due time of the oldest overdue row: due and not claimed, or claimed
  // under an expired lease. Infinite future when none is.
  absl::Time oldest_due = absl::InfiniteFuture();
  // The in-memory enrollment cache in front of the store's reads, where
  // there is one (SQLite with its lock file): reads answered from it and
  // from the database since the store opened, and what it holds now.
  struct EnrollmentCache {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t rows = 0;
    int64_t bytes = 0;
  };
  std::optional<EnrollmentCache> enrollment_cache;
};

class Store {
 public:
  virtual ~Store() = default;

  // CommitAsync applies `batch` atomically and durably (the commit is on
  // stable storage before `done` runs) and calls `done` exactly once, on a
  // store thread; `done` must not block. Failures:
  // - FAILED_PRECONDITION: the request id was used with another payload.
  // - ABORTED: an update's expected revision is stale.
  // - ALREADY_EXISTS: a created enrollment, event or outbox key exists.
  // - NOT_FOUND: an updated enrollment does not exist.
  // - RESOURCE_EXHAUSTED: the disk or database is full.
  // - UNAVAILABLE: the store is closing or cannot be reached; retry.
  // On any failure nothing of the batch is visible, ever.
  virtual void CommitAsync(
      WriteBatch batch,
      std::function<void(absl::StatusOr<CommitResult>)> done) = 0;

  // Commit is CommitAsync waited for.
  absl::StatusOr<CommitResult> Commit(WriteBatch batch);

  // LookupRequest returns the record of a committed request, or nullopt.
  virtual absl::StatusOr<std::optional<RequestRecord>> LookupRequest(
      absl::string_view tenant, absl::string_view request_id) = 0;

  // GetEnrollment returns NOT_FOUND when the tenant has no such enrollment.
  virtual absl::StatusOr<EnrollmentRow> GetEnrollment(absl::string_view tenant,
                                                      absl::string_view id) = 0;

  // ListEnrollments returns up to `limit` rows matching `filter` that come
  // after `after` in (create_time, id) order.
  virtual absl::StatusOr<std::vector<EnrollmentRow>> ListEnrollments(
      const EnrollmentFilter& filter,
      const std::optional<EnrollmentCursor>& after, int limit) = 0;

  // ListEvents returns up to `limit` events with sequence > after_sequence,
  // in order.
  virtual absl::StatusOr<std::vector<EventRow>> ListEvents(
      absl::string_view tenant, absl::string_view enrollment_id,
      int64_t after_sequence, int limit) = 0;

  // --- Outbox delivery. ---

  // ClaimOutbox claims, in one transaction, up to `limit` rows that are due
  // at `now`: scheduled rows with due_time <= now, and claimed or
  // retry-waiting rows whose lease_expiry <= now (a dispatcher that died,
  // or a retry whose time came). Each claimed row gets lease_owner =
  // `owner`, lease_expiry = now + `lease` and attempts + 1. Earliest due
  // first; found through index range scans, so the cost does not grow with
  // the number of rows not due.
  virtual absl::StatusOr<std::vector<OutboxEntry>> ClaimOutbox(
      absl::Time now, absl::string_view owner, absl::Duration lease,
      int limit) = 0;

  // RecordOutboxOutcomes records, in one transaction, the outcome of each
  // attempt whose row `owner` still holds (claimed by `owner` with
  // lease_expiry > now) and returns the ids of the others, whose lease was
  // lost (expired, maybe claimed again): their outcome is dropped and the
  // new owner's counts. kDone, kFailed and kCancelled give the row the next
  // change-feed position; kRetry makes it retry-waiting until retry_at.
  virtual absl::StatusOr<std::vector<int64_t>> RecordOutboxOutcomes(
      absl::string_view owner, absl::Time now,
      const std::vector<OutboxResult>& results) = 0;

  // ListOutbox pages through a tenant's rows (see OutboxQuery).
  virtual absl::StatusOr<std::vector<OutboxEntry>> ListOutbox(
      const OutboxQuery& query) = 0;

  // GetOutbox returns one row; NOT_FOUND when the tenant has no such row.
  virtual absl::StatusOr<OutboxEntry> GetOutbox(absl::string_view tenant,
                                                int64_t id) = 0;

  // OutboxChanges returns up to `limit` rows of `tenant` whose change_seq is
  // above `after_seq`, in change_seq order (the WatchReminders feed). A row
  // appears at its latest change only.
  virtual absl::StatusOr<std::vector<OutboxEntry>> OutboxChanges(
      absl::string_view tenant, int64_t after_seq, int limit) = 0;

  // AcknowledgeOutbox marks a delivered row acknowledged (with a new
  // change-feed position); an acknowledged row stays so (idempotent).
  // FAILED_PRECONDITION when it was not delivered.
  virtual absl::StatusOr<OutboxEntry> AcknowledgeOutbox(
      absl::string_view tenant, int64_t id) = 0;

  // ListAudit returns up to `limit` audit records with seq > after_seq
  // matching `filter`, in seq order.
  virtual absl::StatusOr<std::vector<AuditRecord>> ListAudit(
      const AuditFilter& filter, int64_t after_seq, int limit) = 0;

  // ListTenants returns every tenant that has an enrollment, sorted (for
  // deployment-wide checks such as the integrity verification).
  virtual absl::StatusOr<std::vector<std::string>> ListTenants() = 0;

  // SchemaVersion is the highest migration applied.
  virtual int SchemaVersion() const = 0;

  // Kind is "sqlite" or "postgres".
  virtual absl::string_view Kind() const = 0;

  // Close finishes queued commits, refuses new ones with UNAVAILABLE and
  // releases the database. Idempotent; the destructor calls it.
  virtual void Close() = 0;

  // Probe says whether the store can serve changes now (readiness), cheaply
  // enough for every health check: OK; FAILED_PRECONDITION when it turned
  // read-only for safety (a corrupt page, an I/O error: changes are refused,
  // reads are served where the data can be read); RESOURCE_EXHAUSTED when
  // free disk space is below the watermark; UNAVAILABLE naming the store
  // when a round trip to the database fails. The message says what happened
  // and what to run. Thread-safe; never blocks longer than the store's
  // connect timeout.
  virtual absl::Status Probe() = 0;

  // Stats counts enrollments by (workflow, version, stage) and the outbox
  // rows waiting for delivery, for the metrics' gauges. One aggregate
  // query; callers refresh it on an interval, never per scrape.
  virtual absl::StatusOr<StoreStats> Stats(absl::Time now) = 0;
};

}  // namespace ipsrt

#endif  // IPSRT_STORE_H_
