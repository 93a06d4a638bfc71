#include "ipsrt/store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace ipsrt {

bool IsAuditOnly(const WriteBatch& b) {
  return b.request.request_id.empty() && !b.audit.empty() &&
         !b.create.has_value() && !b.update.has_value() && b.events.empty() &&
         b.outbox.empty() && b.cancel_outbox_keys.empty();
}

absl::StatusOr<CommitResult> Store::Commit(WriteBatch batch) {
  absl::Notification done;
  absl::StatusOr<CommitResult> result;
  CommitAsync(std::move(batch), [&](absl::StatusOr<CommitResult> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

}  // namespace ipsrt

namespace ipsrt {
namespace {
absl::Status NoOutbox(absl::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat("store: ", what, " is not supported by this store"));
}
}  // namespace

absl::StatusOr<std::vector<OutboxEntry>> Store::ClaimOutbox(absl::Time,
                                                            absl::string_view,
                                                            absl::Duration,
                                                            int) {
  return NoOutbox("ClaimOutbox");
}
absl::StatusOr<std::vector<int64_t>> Store::RecordOutboxOutcomes(
    absl::string_view, absl::Time, const std::vector<OutboxResult>&) {
  return NoOutbox("RecordOutboxOutcomes");
}
absl::StatusOr<std::vector<OutboxEntry>> Store::ListOutbox(const OutboxQuery&) {
  return NoOutbox("ListOutbox");
}
absl::StatusOr<OutboxEntry> Store::GetOutbox(absl::string_view, int64_t) {
  return NoOutbox("GetOutbox");
}
absl::StatusOr<std::vector<OutboxEntry>> Store::OutboxChanges(absl::string_view,
                                                              int64_t, int) {
  return NoOutbox("OutboxChanges");
}
absl::StatusOr<OutboxEntry> Store::AcknowledgeOutbox(absl::string_view,
                                                     int64_t) {
  return NoOutbox("AcknowledgeOutbox");
}

absl::Status Store::Probe() { return absl::OkStatus(); }

}  // namespace ipsrt
