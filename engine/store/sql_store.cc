#include "ipsrt/sql_store.h"

#include <utility>

#include "ipsrt/status_macros.h"
#include "store/sql_core.h"

namespace ipsrt {
namespace {

// Run calls `method` on a connection from `through` (a SqlStore's Read or
// Transact) and returns its result.
template <typename T, typename Through, typename Method>
absl::StatusOr<T> Run(Through through, Method method) {
  absl::StatusOr<T> out = absl::UnknownError("store: not run");
  IPSRT_RETURN_IF_ERROR(through([&](SqlConnection& c) -> absl::Status {
    out = method(c);
    return out.status();
  }));
  return out;
}

}  // namespace

SqlStore::SqlStore(std::unique_ptr<SqlCore> core, Connections* connections)
    : core_(std::move(core)), connections_(connections) {}
SqlStore::~SqlStore() = default;

std::unique_ptr<SqlCore> SqlStore::NewCore(
    const SqlDialect& dialect, absl::Duration request_retention,
    std::function<absl::Status(absl::string_view step)> fault_hook) {
  return std::make_unique<SqlCore>(
      dialect, SqlCore::Options{.request_retention = request_retention,
                                .fault_hook = std::move(fault_hook)});
}

#define IPSRT_SQL_READ(T, call)                                      \
  Run<T>([this](ConnectionFn fn) { return connections_->Read(fn); }, \
         [&](SqlConnection& c) -> absl::StatusOr<T> { return core_->call; })
#define IPSRT_SQL_TRANSACT(T, call)                                      \
  Run<T>([this](ConnectionFn fn) { return connections_->Transact(fn); }, \
         [&](SqlConnection& c) -> absl::StatusOr<T> { return core_->call; })

absl::StatusOr<std::optional<RequestRecord>> SqlStore::LookupRequest(
    absl::string_view tenant, absl::string_view request_id) {
  return IPSRT_SQL_READ(std::optional<RequestRecord>,
                        LookupRequest(c, tenant, request_id));
}

absl::StatusOr<EnrollmentRow> SqlStore::GetEnrollment(absl::string_view tenant,
                                                      absl::string_view id) {
  return IPSRT_SQL_READ(EnrollmentRow, GetEnrollment(c, tenant, id));
}

absl::StatusOr<std::vector<EnrollmentRow>> SqlStore::ListEnrollments(
    const EnrollmentFilter& filter,
    const std::optional<EnrollmentCursor>& after, int limit) {
  return IPSRT_SQL_READ(std::vector<EnrollmentRow>,
                        ListEnrollments(c, filter, after, limit));
}

absl::StatusOr<std::vector<EventRow>> SqlStore::ListEvents(
    absl::string_view tenant, absl::string_view enrollment_id,
    int64_t after_sequence, int limit) {
  return IPSRT_SQL_READ(
      std::vector<EventRow>,
      ListEvents(c, tenant, enrollment_id, after_sequence, limit));
}

absl::StatusOr<std::vector<OutboxEntry>> SqlStore::ClaimOutbox(
    absl::Time now, absl::string_view owner, absl::Duration lease, int limit) {
  IPSRT_RETURN_IF_ERROR(SqlCore::ValidateClaim(owner, lease, limit));
  return IPSRT_SQL_TRANSACT(std::vector<OutboxEntry>,
                            ClaimOutbox(c, now, owner, lease, limit));
}

absl::StatusOr<std::vector<int64_t>> SqlStore::RecordOutboxOutcomes(
    absl::string_view owner, absl::Time now,
    const std::vector<OutboxResult>& results) {
  return IPSRT_SQL_TRANSACT(std::vector<int64_t>,
                            RecordOutboxOutcomes(c, owner, now, results));
}

absl::StatusOr<std::vector<OutboxEntry>> SqlStore::ListOutbox(
    const OutboxQuery& query) {
  return IPSRT_SQL_READ(std::vector<OutboxEntry>, ListOutbox(c, query));
}

absl::StatusOr<OutboxEntry> SqlStore::GetOutbox(absl::string_view tenant,
                                                int64_t id) {
  return IPSRT_SQL_READ(OutboxEntry, GetOutbox(c, tenant, id));
}

absl::StatusOr<std::vector<OutboxEntry>> SqlStore::OutboxChanges(
    absl::string_view tenant, int64_t after_seq, int limit) {
  return IPSRT_SQL_READ(std::vector<OutboxEntry>,
                        OutboxChanges(c, tenant, after_seq, limit));
}

absl::StatusOr<OutboxEntry> SqlStore::AcknowledgeOutbox(
    absl::string_view tenant, int64_t id) {
  return IPSRT_SQL_TRANSACT(OutboxEntry, AcknowledgeOutbox(c, tenant, id));
}

absl::StatusOr<std::vector<AuditRecord>> SqlStore::ListAudit(
    const AuditFilter& filter, int64_t after_seq, int limit) {
  return IPSRT_SQL_READ(std::vector<AuditRecord>,
                        ListAudit(c, filter, after_seq, limit));
}

absl::StatusOr<std::vector<std::string>> SqlStore::ListTenants() {
  return IPSRT_SQL_READ(std::vector<std::string>, ListTenants(c));
}

absl::StatusOr<StoreStats> SqlStore::Stats(absl::Time now) {
  return IPSRT_SQL_READ(StoreStats, Stats(c, now));
}

#undef IPSRT_SQL_READ
#undef IPSRT_SQL_TRANSACT

}  // namespace ipsrt
