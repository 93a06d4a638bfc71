// SqlStore: the part of a Store that is the same on every SQL database.
// It answers the reads and outbox delivery of Store with one shared
// implementation (the store's SqlCore, engine/store/sql_core.h); a backend
// (SqliteStore, PostgresStore) derives from it and supplies connections
// (a Connections object: Read and Transact), its commit path
// (CommitAsync), and its life cycle (Close, Probe, SchemaVersion, Kind).
#ifndef IPSRT_SQL_STORE_H_
#define IPSRT_SQL_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ipsrt/store.h"

namespace ipsrt {

class SqlConnection;
class SqlCore;
struct SqlDialect;

class SqlStore : public Store {
 public:
  ~SqlStore() override;

  absl::StatusOr<std::optional<RequestRecord>> LookupRequest(
      absl::string_view tenant, absl::string_view request_id) override;
  absl::StatusOr<EnrollmentRow> GetEnrollment(absl::string_view tenant,
                                              absl::string_view id) override;
  absl::StatusOr<std::vector<EnrollmentRow>> ListEnrollments(
      const EnrollmentFilter& filter,
      const std::optional<EnrollmentCursor>& after, int limit) override;
  absl::StatusOr<std::vector<EventRow>> ListEvents(
      absl::string_view tenant, absl::string_view enrollment_id,
      int64_t after_sequence, int limit) override;
  absl::StatusOr<std::vector<OutboxEntry>> ClaimOutbox(absl::Time now,
                                                       absl::string_view owner,
                                                       absl::Duration lease,
                                                       int limit) override;
  absl::StatusOr<std::vector<int64_t>> RecordOutboxOutcomes(
      absl::string_view owner, absl::Time now,
      const std::vector<OutboxResult>& results) override;
  absl::StatusOr<std::vector<OutboxEntry>> ListOutbox(
      const OutboxQuery& query) override;
  absl::StatusOr<OutboxEntry> GetOutbox(absl::string_view tenant,
                                        int64_t id) override;
  absl::StatusOr<std::vector<OutboxEntry>> OutboxChanges(
      absl::string_view tenant, int64_t after_seq, int limit) override;
  absl::StatusOr<OutboxEntry> AcknowledgeOutbox(absl::string_view tenant,
                                                int64_t id) override;
  absl::StatusOr<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter,
                                                     int64_t after_seq,
                                                     int limit) override;
  absl::StatusOr<std::vector<std::string>> ListTenants() override;
  absl::StatusOr<StoreStats> Stats(absl::Time now) override;

 protected:
  using ConnectionFn = absl::FunctionRef<absl::Status(SqlConnection&)>;

  // Connections are a backend's connections, as the shared code uses them.
  class Connections {
   public:
    virtual ~Connections() = default;
    // Read runs `fn` (one or more reads) on a connection for reading; a
    // backend may run it a second time on a fresh connection when the
    // first was found dead, so `fn` starts its results afresh.
    virtual absl::Status Read(ConnectionFn fn) = 0;
    // Transact runs `fn` inside one transaction on a writing connection
    // and commits it, or rolls it back when `fn` or the commit fails.
    // Refuses with FAILED_PRECONDITION while the store is read-only for
    // safety.
    virtual absl::Status Transact(ConnectionFn fn) = 0;
  };

  // SqlStore runs its reads and outbox delivery on `connections`, which
  // the backend owns and keeps valid while any Store method can run.
  SqlStore(std::unique_ptr<SqlCore> core, Connections* connections);
  // NewCore is the core of a backend speaking `dialect`, with the request
  // retention and test fault hook of its options (store/sql_core.h).
  static std::unique_ptr<SqlCore> NewCore(
      const SqlDialect& dialect, absl::Duration request_retention,
      std::function<absl::Status(absl::string_view step)> fault_hook);
  const SqlCore& core() const { return *core_; }

 private:
  std::unique_ptr<SqlCore> core_;
  Connections* connections_;
};

}  // namespace ipsrt

#endif  // IPSRT_SQL_STORE_H_
