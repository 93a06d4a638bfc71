#include "ipsrt/clock.h"

namespace ipsrt {

SystemClock* SystemClock::Get() {
  static SystemClock* const clock = new SystemClock();
  return clock;
}

}  // namespace ipsrt
