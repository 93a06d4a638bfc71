#include "common/ids.h"

#include <cstdint>

#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"

namespace ipsrt {
namespace {
constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
}  // namespace

std::string RandomIdGenerator::NewId(absl::Time now) {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  uint64_t hi, lo;
  {
    absl::MutexLock lock(&mu);
    hi = absl::Uniform<uint64_t>(*gen);
    lo = absl::Uniform<uint64_t>(*gen);
  }
  uint64_t ms = static_cast<uint64_t>(absl::ToUnixMillis(now)) &
                ((uint64_t{1} << 48) - 1);
  std::string id(26, '0');
  // 10 characters of time (50 bits, top 2 zero), 16 of randomness (80 bits).
  for (int i = 9; i >= 0; --i) {
    id[i] = kAlphabet[ms & 31];
    ms >>= 5;
  }
  for (int i = 25; i >= 10; --i) {
    id[i] = kAlphabet[lo & 31];
    lo = (lo >> 5) | ((hi & 31) << 59);
    hi >>= 5;
  }
  return id;
}

}  // namespace ipsrt
