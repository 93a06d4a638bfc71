// Session planning: when the next session falls and when it is reminded.
//
// A template with a `sessions` block (SessionSchedule) plans sessions from
// the enrollment's current session cadence. Sessions form a series
// anchored on a local date D (the day a stage was entered, a session was
// held, or the cadence changed from): the k-th session of the series falls
// on D + k x cadence, at `sessions.at` local time, and its reminder falls
// `remind_before` earlier. Counting every session from the anchor, rather
// than from the previous one, keeps a monthly series on its day of the
// month.
//
// Calendar policy (months): a day the target month lacks becomes the last
// day of that month, so a series anchored on 31 January falls on 28 (29 in
// a leap year) February, 31 March, 30 April, 31 May. Years and months are
// added first, then weeks and days.
//
// Daylight-saving policy: the session's local time is converted with
// LocalToAbsolute (model/duration.h): a local time skipped by a
// spring-forward change moves forward by the gap, a repeated one means its
// first occurrence. Calendar parts of remind_before are subtracted in local
// time (P1D before Tuesday 10:00 is Monday 10:00 even across a change);
// clock parts are absolute (PT24H is exactly 24 hours earlier).
//
// Example:
//   SessionSchedule s{.at_minutes = 10 * 60,
//                     .remind_before = *ParseIsoDuration("PT24H")};
//   PlannedTimes next = NextSession(absl::CivilDay(2026, 1, 31), 1,
//                                   *ParseIsoDuration("P1M"), s, zone, now);
//   // next.start: 2026-02-28 10:00 local; next.remind: 24 h before.
#ifndef IPSRT_RUNTIME_SESSION_PLAN_H_
#define IPSRT_RUNTIME_SESSION_PLAN_H_

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "model/duration.h"
#include "model/workflow.h"

namespace ipsrt::runtime {

// AddCadence returns `date` plus `times` x the calendar parts of
// `cadence` (its clock parts are ignored: session cadences are whole days,
// which the template loader enforces), with the month policy above.
// `times` may be negative.
absl::CivilDay AddCadence(absl::CivilDay date, const IsoDuration& cadence,
                          int times);

// RemindBefore returns `start` less `before`: calendar parts in `zone`'s
// local time (month policy above, DST policy of LocalToAbsolute), then
// clock parts as absolute time.
absl::Time RemindBefore(absl::Time start, const IsoDuration& before,
                        absl::TimeZone zone);

// PlannedTimes are one session of a series.
struct PlannedTimes {
  int index = 0;
  absl::Time start;
  absl::Time remind;
};

// SessionAt returns the `index`-th session (1-based) of the series
// anchored on `anchor`.
PlannedTimes SessionAt(absl::CivilDay anchor, int index,
                       const IsoDuration& cadence,
                       const SessionSchedule& schedule, absl::TimeZone zone);

// NextSession returns the first session of the series with an index of at
// least `first_index` whose reminder is not before `now`, so every planned
// session gets its full notice (sessions whose reminder time has already
// passed are skipped, never reminded late).
PlannedTimes NextSession(absl::CivilDay anchor, int first_index,
                         const IsoDuration& cadence,
                         const SessionSchedule& schedule, absl::TimeZone zone,
                         absl::Time now);

}  // namespace ipsrt::runtime

#endif  // IPSRT_RUNTIME_SESSION_PLAN_H_
