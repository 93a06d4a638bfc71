// Store: durable state of the engine, behind one interface with an embedded
// SQLite implementation (sqlite_store.h) and, later, a PostgreSQL one.
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
// dense; `payload` is the serialized ipsrt.v1.Event.
struct EventRow {
  std::string tenant;
  std::string enrollment_id;
  int64_t sequence = 0;
  std::string type;
  std::string actor;
  std::string request_id;
  absl::Time record_time;
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
  // Hash of the request without its request id; a replay must match it.
  std::string payload_hash;
  // Serialized response of the first successful execution.
  std::string response;
  absl::Time create_time;
};

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
  // task was done before it fired). Rows already claimed or done are left
  // as they are; unknown keys are ignored.
  std::vector<std::string> cancel_outbox_keys;
  // Audit records appended in the same transaction as the change. A batch
  // with only `audit` (no request id, no enrollment, events or outbox) is
  // an audit-only append.
  std::vector<AuditRecord> audit;
};

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

  // ListAudit returns up to `limit` audit records with seq > after_seq
  // matching `filter`, in seq order.
  virtual absl::StatusOr<std::vector<AuditRecord>> ListAudit(
      const AuditFilter& filter, int64_t after_seq, int limit) {
    return absl::UnimplementedError("store: this store keeps no audit trail");
  }

  // SchemaVersion is the highest migration applied.
  virtual int SchemaVersion() const = 0;

  // Kind is "sqlite" or "postgres".
  virtual absl::string_view Kind() const = 0;

  // Close finishes queued commits, refuses new ones with UNAVAILABLE and
  // releases the database. Idempotent; the destructor calls it.
  virtual void Close() = 0;
};

}  // namespace ipsrt

#endif  // IPSRT_STORE_H_
