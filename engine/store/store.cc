#include "ipsrt/store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"

namespace ipsrt {

bool IsAuditOnly(const WriteBatch& b) {
  return b.request.request_id.empty() && !b.audit.empty() &&
         !b.create.has_value() && !b.update.has_value() && b.events.empty() &&
         b.outbox.empty() && b.cancel_outbox_keys.empty();
}

bool SamePayloadHash(absl::string_view recorded, absl::string_view hex) {
  if (recorded == hex) return true;
  return recorded.size() >= 32 && recorded.size() < hex.size() &&
         absl::StartsWith(hex, recorded);
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
