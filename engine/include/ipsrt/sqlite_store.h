// SqliteStore: the embedded Store, one SQLite database file in WAL mode.
//
// Durability: every commit is on stable storage before its callback runs
// (synchronous=FULL by default, so a power loss after the callback loses
// nothing). Throughput: one writer thread commits everything queued at that
// moment as one SQLite transaction (group commit), each request inside its
// own SAVEPOINT, so concurrent requests share one fsync while a failing
// request rolls back alone. Reads use a pool of read-only connections and
// never wait for the writer.
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
#include "ipsrt/store.h"

namespace ipsrt {

class SqliteStore final : public Store {
 public:
  struct Options {
    // Database file; its directory is created when missing.
    std::string path;
    // "full" (default) or "extra". Weaker settings are refused: a commit
    // that a power loss can undo is not a commit for health data.
    std::string synchronous = "full";
    // How long a statement waits for a lock held by another process.
    absl::Duration busy_timeout = absl::Seconds(5);
    // Most requests committed in one group transaction.
    int max_batch = 256;
    // Read-only connections for concurrent reads.
    int read_connections = 4;
    // Maximum database size in pages (0: SQLite's default). A full database
    // fails commits with RESOURCE_EXHAUSTED and keeps serving reads.
    int64_t max_page_count = 0;
    // Test hook: called before each write step of a batch with the step's
    // name ("request.lookup", "enrollment.insert", "enrollment.update",
    // "event.insert", "outbox.insert", "outbox.cancel", "request.insert",
    // "audit.insert",
    // "commit"); a non-OK
    // status fails that step as if SQLite had.
    std::function<absl::Status(absl::string_view step)> fault_hook;
  };

  // Open creates or opens the database, applies pending schema migrations
  // and starts the writer thread. FAILED_PRECONDITION when the file's schema
  // is newer than this build knows or an option is invalid.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const Options& options);

  ~SqliteStore() override;

  void CommitAsync(
      WriteBatch batch,
      std::function<void(absl::StatusOr<CommitResult>)> done) override;
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
  int SchemaVersion() const override;
  absl::string_view Kind() const override { return "sqlite"; }
  void Close() override;
  absl::Status Probe() override;
  absl::StatusOr<StoreStats> Stats(absl::Time now) override;

  // ClaimQueryPlan is SQLite's EXPLAIN QUERY PLAN of ClaimOutbox's
  // statement, one plan line per line (for tests and the benchmark).
  absl::StatusOr<std::string> ClaimQueryPlan();

  // Number of group transactions committed so far (for tests and metrics).
  int64_t GroupCommits() const;

 private:
  class Impl;
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsrt

#endif  // IPSRT_SQLITE_STORE_H_
