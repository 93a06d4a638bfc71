#include "store/request_window.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/hash.h"

namespace ipsrt {

int64_t RequestKey(absl::string_view tenant, absl::string_view request_id) {
  std::string hex = Sha256Hex(absl::StrCat(tenant, "\n", request_id));
  uint64_t key = 0;
  for (char c : hex.substr(0, 16)) {
    key = key << 4 | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return static_cast<int64_t>(key);
}

absl::Status ExpiredRequestError(absl::string_view request_id,
                                 absl::Duration retention) {
  return absl::AlreadyExistsError(absl::StrCat(
      "request_id: \"", request_id,
      "\" was applied before, and its first response is no longer kept (it "
      "is older than store.request_retention, ",
      absl::FormatDuration(retention),
      "); the request is not applied again. Read the current state instead, "
      "and use a new request id for a new request"));
}

absl::Time PruneBefore(absl::Time now, absl::Duration retention) {
  if (retention <= absl::ZeroDuration() ||
      retention == absl::InfiniteDuration()) {
    return absl::InfinitePast();
  }
  return now - retention;
}

void PauseInMigration(int version) {
  const char* spec = std::getenv("IPSRT_TEST_PAUSE_MIGRATION");
  if (spec == nullptr) return;
  std::pair<std::string, std::string> parts =
      absl::StrSplit(spec, absl::MaxSplits(':', 1));
  int at = 0;
  if (!absl::SimpleAtoi(parts.first, &at) || at != version) return;
  std::ofstream(parts.second) << version << "\n";
  while (true) absl::SleepFor(absl::Seconds(1));
}

}  // namespace ipsrt
