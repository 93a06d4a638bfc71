// SqlCore: the store's transaction logic and row mapping, written once over
// SqlConnection (store/sql_dialect.h) for every SQL backend. It applies a
// WriteBatch (idempotency record, enrollment create or update under its
// expected revision, events, outbox rows and cancellations, audit records),
// claims outbox rows and records their outcomes, appends to the audit chain
// and runs the list and lookup queries.
//
// A backend owns what really differs: its connections and concurrency
// (when a transaction begins and commits, on which thread), its error-code
// mapping, its migration runner, and the SqlDialect facts. Each method here
// runs its statements on the connection it is given, inside the caller's
// transaction where it changes rows; none begins or commits.
//
// Example (a backend's commit path):
//   IPSRT_RETURN_IF_ERROR(core.ValidateBatch(batch));
//   BEGIN on c
//   absl::StatusOr<CommitResult> r = core.ApplyBatch(c, batch, packed);
//   if (r.ok()) r = core.Fault("commit") then COMMIT, else ROLLBACK
//
// Thread safety: const methods may run on any number of connections at once.
#ifndef IPSRT_STORE_SQL_CORE_H_
#define IPSRT_STORE_SQL_CORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ipsrt/store.h"
#include "store/sql_dialect.h"

namespace ipsrt {

// SqlStatus is an outbox status as it stands in SQL text ("0" ... "6"), so
// that statements name the states instead of repeating their numbers.
std::string SqlStatus(OutboxStatus status);

// The column lists the row readers expect, in order.
extern const char kEnrollmentColumns[];
extern const char kOutboxColumns[];

// The metrics' enrollment counts per workflow, version and stage (Stats);
// read from the index enrollments_by_stage, not the table.
extern const char kEnrollmentCountsSql[];

// ReadOutbox maps a row of kOutboxColumns.
OutboxEntry ReadOutbox(const SqlRow& row);

// PackedBlobs are the stored forms (store/blob_codec.h) of a batch's
// snapshot, response and event payloads (in the batch's event order); a
// backend may make them off its writing thread.
struct PackedBlobs {
  std::string snapshot;
  std::string response;
  std::vector<std::string> payloads;
};
PackedBlobs PackBatch(const WriteBatch& batch);

// A statement with its parameters.
struct SqlStatement {
  std::string sql;
  SqlParams params;
};

class SqlCore {
 public:
  struct Options {
    // How long request records are kept (store/request_window.h).
    absl::Duration request_retention = absl::Hours(7 * 24);
    // Test hook, called before each write step of a batch with the step's
    // name ("request.insert", "request.lookup", "enrollment.insert",
    // "enrollment.update", "event.insert", "outbox.insert",
    // "outbox.cancel", "audit.insert", and "commit" by the backend before
    // it commits); a non-OK status fails that step as the database would.
    std::function<absl::Status(absl::string_view step)> fault_hook;
  };

  SqlCore(SqlDialect dialect, Options options);

  const SqlDialect& dialect() const { return dialect_; }
  const Options& options() const { return options_; }

  // Fault is the fault hook's verdict on `step` (OK without a hook).
  absl::Status Fault(absl::string_view step) const;

  // ValidateBatch refuses a batch without tenant and request id (unless
  // audit-only) or one that both creates and updates: INVALID_ARGUMENT.
  static absl::Status ValidateBatch(const WriteBatch& batch);

  // ApplyBatch applies `batch` on `c` inside the caller's open transaction
  // (the codes of Store::CommitAsync). On failure the caller rolls back.
  // The request record is written first: a concurrent transaction with the
  // same request id (another replica) waits on its key, then this one
  // replays it. `packed` holds PackBatch(batch).
  absl::StatusOr<CommitResult> ApplyBatch(SqlConnection& c,
                                          const WriteBatch& batch,
                                          const PackedBlobs& packed) const;

  // AppendAudit appends `records` to the audit chain (audit_chain.h) inside
  // the caller's transaction; a non-empty `outcome_override` replaces each
  // record's outcome.
  absl::Status AppendAudit(SqlConnection& c,
                           const std::vector<AuditRecord>& records,
                           absl::string_view outcome_override) const;

  // --- Outbox delivery, each inside the caller's transaction. ---
  static absl::Status ValidateClaim(absl::string_view owner,
                                    absl::Duration lease, int limit);
  absl::StatusOr<std::vector<OutboxEntry>> ClaimOutbox(SqlConnection& c,
                                                       absl::Time now,
                                                       absl::string_view owner,
                                                       absl::Duration lease,
                                                       int limit) const;
  absl::StatusOr<std::vector<int64_t>> RecordOutboxOutcomes(
      SqlConnection& c, absl::string_view owner, absl::Time now,
      const std::vector<OutboxResult>& results) const;
  absl::StatusOr<OutboxEntry> AcknowledgeOutbox(SqlConnection& c,
                                                absl::string_view tenant,
                                                int64_t id) const;

  // --- Reads (the Store methods of the same names). ---
  absl::StatusOr<std::optional<RequestRecord>> LookupRequest(
      SqlConnection& c, absl::string_view tenant,
      absl::string_view request_id) const;
  absl::StatusOr<EnrollmentRow> GetEnrollment(SqlConnection& c,
                                              absl::string_view tenant,
                                              absl::string_view id) const;
  absl::StatusOr<std::vector<EnrollmentRow>> ListEnrollments(
      SqlConnection& c, const EnrollmentFilter& filter,
      const std::optional<EnrollmentCursor>& after, int limit) const;
  absl::StatusOr<std::vector<EventRow>> ListEvents(
      SqlConnection& c, absl::string_view tenant,
      absl::string_view enrollment_id, int64_t after_sequence, int limit) const;
  absl::StatusOr<std::vector<std::string>> ListTenants(SqlConnection& c) const;
  absl::StatusOr<std::vector<OutboxEntry>> ListOutbox(
      SqlConnection& c, const OutboxQuery& query) const;
  absl::StatusOr<OutboxEntry> GetOutbox(SqlConnection& c,
                                        absl::string_view tenant,
                                        int64_t id) const;
  absl::StatusOr<std::vector<OutboxEntry>> OutboxChanges(
      SqlConnection& c, absl::string_view tenant, int64_t after_seq,
      int limit) const;
  absl::StatusOr<std::vector<AuditRecord>> ListAudit(SqlConnection& c,
                                                     const AuditFilter& filter,
                                                     int64_t after_seq,
                                                     int limit) const;
  absl::StatusOr<StoreStats> Stats(SqlConnection& c, absl::Time now) const;

  // The statements of one ListEnrollments and one ListOutbox page (for
  // their query plans); `limit` and the cursor values are parameters.
  SqlStatement ListEnrollmentsStatement(
      const EnrollmentFilter& filter,
      const std::optional<EnrollmentCursor>& after, int limit) const;
  SqlStatement ListOutboxStatement(const OutboxQuery& query) const;

 private:
  // KeysetAfter is `(a, b) > ($pa, $pb)` in the dialect's form.
  std::string KeysetAfter(absl::string_view a, absl::string_view b, int pa,
                          int pb) const;
  absl::Status WriteRequest(SqlConnection& c, const WriteBatch& batch,
                            const PackedBlobs& packed,
                            std::optional<CommitResult>* replay) const;
  absl::Status WriteEnrollment(SqlConnection& c, const WriteBatch& batch,
                               const PackedBlobs& packed) const;
  absl::StatusOr<int64_t> NextChangeSeq(SqlConnection& c) const;

  const SqlDialect dialect_;
  const Options options_;
};

}  // namespace ipsrt

#endif  // IPSRT_STORE_SQL_CORE_H_
