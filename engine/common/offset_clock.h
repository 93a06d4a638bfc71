// OffsetClock: the system clock moved by a fixed offset. ipsrtd's test
// clock (IPSRT_TEST_CLOCK_OFFSET) and, in ipsrt-plugin-runner, the engine's
// clock as the engine passed it (IPSRT_PLUGIN_CLOCK_OFFSET_US).
#ifndef IPSRT_COMMON_OFFSET_CLOCK_H_
#define IPSRT_COMMON_OFFSET_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ipsrt/clock.h"

namespace ipsrt {

class OffsetClock final : public Clock {
 public:
  explicit OffsetClock(absl::Duration offset) : offset_(offset) {}
  absl::Time Now() const override { return absl::Now() + offset_; }

 private:
  absl::Duration offset_;
};

}  // namespace ipsrt

#endif  // IPSRT_COMMON_OFFSET_CLOCK_H_
