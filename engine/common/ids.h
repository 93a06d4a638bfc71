// Identifiers the engine assigns.
#ifndef IPSRT_COMMON_IDS_H_
#define IPSRT_COMMON_IDS_H_

#include <string>

#include "absl/time/time.h"

namespace ipsrt {

// IdGenerator makes resource ids. Implementations are thread-safe.
class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  // NewId returns a fresh id of 26 characters from [0-9a-hjkmnp-tv-z]
  // (Crockford base32, lower case): 48 bits of `now` in milliseconds, then
  // 80 random bits, so ids sort roughly by creation time and never collide
  // in practice.
  virtual std::string NewId(absl::Time now) = 0;
};

// RandomIdGenerator draws its random bits from a seeded absl::BitGen.
class RandomIdGenerator final : public IdGenerator {
 public:
  std::string NewId(absl::Time now) override;
};

}  // namespace ipsrt

#endif  // IPSRT_COMMON_IDS_H_
