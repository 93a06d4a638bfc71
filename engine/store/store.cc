#include "ipsrt/store.h"

#include <utility>

#include "absl/synchronization/notification.h"

namespace ipsrt {

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
