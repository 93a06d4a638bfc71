#include "ipsrt/store.h"

#include <utility>

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
