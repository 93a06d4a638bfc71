#include "runtime/session_plan.h"

#include <algorithm>
#include <cstdint>

namespace ipsrt::runtime {
namespace {

// AddMonths moves `date` by `months`, clamping the day to the target
// month's last day (31 January + 1 month = 28 or 29 February).
absl::CivilDay AddMonths(absl::CivilDay date, int64_t months) {
  const absl::CivilMonth month = absl::CivilMonth(date) + months;
  const int64_t days_in_month =
      absl::CivilDay(month + 1) - absl::CivilDay(month);
  return absl::CivilDay(month.year(), month.month(),
                        std::min<int64_t>(date.day(), days_in_month));
}

}  // namespace

absl::CivilDay AddCadence(absl::CivilDay date, const IsoDuration& cadence,
                          int times) {
  const int64_t n = times;
  absl::CivilDay moved =
      AddMonths(date, n * (12 * int64_t{cadence.years} + cadence.months));
  return moved + n * (7 * int64_t{cadence.weeks} + cadence.days);
}

absl::Time RemindBefore(absl::Time start, const IsoDuration& before,
                        absl::TimeZone zone) {
  absl::Time t = start;
  if (before.years || before.months || before.weeks || before.days) {
    const absl::CivilSecond local = absl::ToCivilSecond(start, zone);
    const absl::CivilDay day = AddCadence(absl::CivilDay(local), before, -1);
    t = LocalToAbsolute(
        absl::CivilSecond(day.year(), day.month(), day.day(), local.hour(),
                          local.minute(), local.second()),
        zone);
  }
  return t - absl::Hours(before.hours) - absl::Minutes(before.minutes) -
         absl::Seconds(before.seconds);
}

PlannedTimes SessionAt(absl::CivilDay anchor, int index,
                       const IsoDuration& cadence,
                       const SessionSchedule& schedule, absl::TimeZone zone) {
  const absl::CivilDay day = AddCadence(anchor, cadence, index);
  PlannedTimes p;
  p.index = index;
  p.start = LocalToAbsolute(
      absl::CivilSecond(day.year(), day.month(), day.day(),
                        schedule.at_minutes / 60, schedule.at_minutes % 60, 0),
      zone);
  p.remind = RemindBefore(p.start, schedule.remind_before, zone);
  return p;
}

PlannedTimes NextSession(absl::CivilDay anchor, int first_index,
                         const IsoDuration& cadence,
                         const SessionSchedule& schedule, absl::TimeZone zone,
                         absl::Time now) {
  int index = std::max(first_index, 1);
  PlannedTimes p = SessionAt(anchor, index, cadence, schedule, zone);
  // A cadence is at least a day, so this ends after about as many steps as
  // cadences have passed since the anchor; the bound only guards against a
  // zero cadence, which the loader rejects.
  for (int guard = 0; p.remind < now && guard < 1000000; ++guard) {
    p = SessionAt(anchor, ++index, cadence, schedule, zone);
  }
  return p;
}

}  // namespace ipsrt::runtime
