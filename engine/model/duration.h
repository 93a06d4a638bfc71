// ISO-8601 durations and local times of day, as written in templates.
//
// Calendar parts (years, months, weeks, days) are added in the patient's
// civil time, so "P1W" from Monday 20:00 is the next Monday 20:00 even
// across a daylight-saving change; clock parts (hours, minutes, seconds)
// are added as absolute time.
#ifndef IPSRT_MODEL_DURATION_H_
#define IPSRT_MODEL_DURATION_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace ipsrt {

struct IsoDuration {
  int years = 0;
  int months = 0;
  int weeks = 0;
  int days = 0;
  int hours = 0;
  int minutes = 0;
  int seconds = 0;

  bool IsZero() const {
    return years == 0 && months == 0 && weeks == 0 && days == 0 && hours == 0 &&
           minutes == 0 && seconds == 0;
  }
  // ToString gives the canonical text, e.g. "P1W", "PT4H", "P1DT12H".
  std::string ToString() const;
};

// ParseIsoDuration reads "PnYnMnWnDTnHnMnS" with any parts present, in
// that order, each at most 10000; nullopt when malformed. "P0D" parses (and
// IsZero); callers that need a positive duration check that.
std::optional<IsoDuration> ParseIsoDuration(absl::string_view text);

// AddIsoDuration adds `d` to `t`: calendar parts in `zone`'s civil time
// (a day that does not exist in the month, such as 31 February, is
// normalised forward as absl::CivilSecond does), then clock parts as
// absolute time. Local times that are skipped or repeated by a
// daylight-saving change resolve as LocalToAbsolute does.
absl::Time AddIsoDuration(absl::Time t, const IsoDuration& d,
                          absl::TimeZone zone);

// LocalToAbsolute converts a civil time in `zone` to absolute time.
// Daylight-saving policy (documented for patients' reminders):
// - a local time skipped by a spring-forward change (02:30 on the day clocks
//   jump from 02:00 to 03:00) is moved forward by the length of the gap
//   (to 03:30), so the reminder still happens, as late as the clocks say;
// - a local time that happens twice at a fall-back change (01:30 on the
//   day clocks go from 02:00 back to 01:00) means its first occurrence
//   (the earlier absolute time), so it fires once, not twice.
absl::Time LocalToAbsolute(absl::CivilSecond local, absl::TimeZone zone);

// ParseLocalTimeOfDay reads "HH:MM" (00:00-23:59) and returns minutes after
// midnight; nullopt when malformed.
std::optional<int> ParseLocalTimeOfDay(absl::string_view text);

}  // namespace ipsrt

#endif  // IPSRT_MODEL_DURATION_H_
