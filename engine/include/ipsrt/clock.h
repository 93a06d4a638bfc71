// Clock: the one way engine code learns the current time.
//
// Engine code never reads the system clock directly; it is handed a Clock so
// that tests, simulation and replay control time. All times are absl::Time,
// which is absolute (UTC); civil times are derived per patient zone.
#ifndef IPSRT_CLOCK_H_
#define IPSRT_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ipsrt {

// Clock is thread-safe in every implementation.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// SystemClock reads absl::Now(). Process-wide singleton; never destroyed.
class SystemClock final : public Clock {
 public:
  static SystemClock* Get();
  absl::Time Now() const override { return absl::Now(); }
};

// FakeClock returns a time set by the test; it never moves by itself.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_;
};

}  // namespace ipsrt

#endif  // IPSRT_CLOCK_H_
