// CommitQueue: the commits waiting for a store's committing thread(s), in
// arrival order. SQLite's writer takes up to max_batch at a time (one group
// transaction); each PostgreSQL committer takes one.
//
// Example:
//   if (!queue.Push(pending)) pending.done(StoreClosingError());
//   while (queue.PopUpTo(max, &group)) { commit group; group.clear(); }
//
// Thread-safe.
#ifndef IPSRT_STORE_COMMIT_QUEUE_H_
#define IPSRT_STORE_COMMIT_QUEUE_H_

#include <cstddef>
#include <deque>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace ipsrt {

// StoreClosingError refuses a commit that comes after Close began.
inline absl::Status StoreClosingError() {
  return absl::UnavailableError("store: closing; retry on another server");
}

template <typename T>
class CommitQueue {
 public:
  // Push moves `item` into the queue and returns true, or returns false
  // (leaving `item` as it was) once Close was called.
  bool Push(T& item) {
    absl::MutexLock lock(&mu_);
    if (closing_) return false;
    queue_.push_back(std::move(item));
    return true;
  }

  // PopUpTo waits until items are queued or the queue is closed, and moves
  // up to `max` of them to `out`. False when closed and drained.
  bool PopUpTo(size_t max, std::vector<T>* out) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](CommitQueue* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->closing_ || !self->queue_.empty();
        },
        this));
    if (queue_.empty()) return false;
    while (!queue_.empty() && out->size() < max) {
      out->push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    return true;
  }

  // Close refuses later pushes; queued items are still popped.
  void Close() {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }

 private:
  absl::Mutex mu_;
  std::deque<T> queue_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ipsrt

#endif  // IPSRT_STORE_COMMIT_QUEUE_H_
