// Session planning arithmetic (runtime/session_plan.h): the month policy,
// the daylight-saving policy and the reminder offset, in the zones of the
// reminder tests.
#include "runtime/session_plan.h"

#include <string>
#include <vector>

#include "absl/time/civil_time.h"
#include "gtest/gtest.h"
#include "ipsrt/plugin/time.h"

namespace ipsrt::runtime {
namespace {

IsoDuration Iso(const char* text) {
  std::optional<IsoDuration> d = ParseIsoDuration(text);
  EXPECT_TRUE(d.has_value()) << text;
  return d.value_or(IsoDuration{});
}

absl::TimeZone Zone(const char* name) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone(name, &tz)) << name;
  return tz;
}

// Local renders `t` as the engine does: "YYYY-MM-DDTHH:MM (+HH:MM)".
std::string Local(absl::Time t, absl::TimeZone zone) {
  return LocalTimeText(t, zone);
}

SessionSchedule At(const char* hhmm, const char* before) {
  SessionSchedule s;
  s.at_minutes = *ParseLocalTimeOfDay(hhmm);
  s.remind_before = Iso(before);
  return s;
}

TEST(SessionPlanTest, MonthlyFromThe31stClampsToTheLastDayWithoutDrift) {
  const absl::CivilDay jan31(2026, 1, 31);
  const IsoDuration monthly = Iso("P1M");
  std::vector<std::string> days;
  for (int k = 1; k <= 4; ++k) {
    days.push_back(absl::FormatCivilTime(AddCadence(jan31, monthly, k)));
  }
  EXPECT_EQ(days, (std::vector<std::string>{"2026-02-28", "2026-03-31",
                                            "2026-04-30", "2026-05-31"}));
  // Leap year, two-monthly, yearly from 29 February, and backwards.
  EXPECT_EQ(AddCadence(absl::CivilDay(2028, 1, 31), monthly, 1),
            absl::CivilDay(2028, 2, 29));
  EXPECT_EQ(AddCadence(absl::CivilDay(2026, 12, 31), Iso("P2M"), 1),
            absl::CivilDay(2027, 2, 28));
  EXPECT_EQ(AddCadence(absl::CivilDay(2028, 2, 29), Iso("P1Y"), 1),
            absl::CivilDay(2029, 2, 28));
  EXPECT_EQ(AddCadence(absl::CivilDay(2026, 3, 31), monthly, -1),
            absl::CivilDay(2026, 2, 28));
  // Weeks and days are plain days, after the months.
  EXPECT_EQ(AddCadence(absl::CivilDay(2026, 1, 31), Iso("P1M1W"), 1),
            absl::CivilDay(2026, 3, 7));
  EXPECT_EQ(AddCadence(absl::CivilDay(2026, 12, 28), Iso("P2W"), 1),
            absl::CivilDay(2027, 1, 11));
}

// Weekly sessions at 10:00 keep 10:00 on the wall clock across both
// changes in New York; a session at a skipped time moves forward by the
// gap, one at a repeated time is the first occurrence.
TEST(SessionPlanTest, NewYorkAcrossBothChanges) {
  const absl::TimeZone ny = Zone("America/New_York");
  const IsoDuration weekly = Iso("P1W");
  const SessionSchedule ten = At("10:00", "P1D");
  const absl::CivilDay sunday(2026, 3, 1);  // clocks spring forward 8 March
  std::vector<std::string> starts, reminders;
  for (int k = 1; k <= 2; ++k) {
    PlannedTimes p = SessionAt(sunday - 7, k + 1, weekly, ten, ny);
    starts.push_back(Local(p.start, ny));
    reminders.push_back(Local(p.remind, ny));
  }
  EXPECT_EQ(starts, (std::vector<std::string>{"2026-03-08T10:00 (-04:00)",
                                              "2026-03-15T10:00 (-04:00)"}));
  EXPECT_EQ(reminders, (std::vector<std::string>{"2026-03-07T10:00 (-05:00)",
                                                 "2026-03-14T10:00 (-04:00)"}));
  // P1D before is the same wall-clock time the day before: 23 hours here.
  PlannedTimes change = SessionAt(sunday, 1, weekly, ten, ny);
  EXPECT_EQ(change.start - change.remind, absl::Hours(23));

  PlannedTimes skipped = SessionAt(sunday, 1, weekly, At("02:30", "P1D"), ny);
  EXPECT_EQ(Local(skipped.start, ny), "2026-03-08T03:30 (-04:00)");
  EXPECT_EQ(Local(skipped.remind, ny), "2026-03-07T03:30 (-05:00)");

  const absl::CivilDay fall_sunday(2026, 10, 25);  // back on 1 November
  PlannedTimes repeated =
      SessionAt(fall_sunday, 1, weekly, At("01:30", "PT24H"), ny);
  EXPECT_EQ(Local(repeated.start, ny), "2026-11-01T01:30 (-04:00)");
  EXPECT_EQ(Local(repeated.remind, ny), "2026-10-31T01:30 (-04:00)");
  PlannedTimes after_fall = SessionAt(fall_sunday, 1, weekly, ten, ny);
  EXPECT_EQ(Local(after_fall.start, ny), "2026-11-01T10:00 (-05:00)");
  // PT24H is elapsed time: 24 hours before 10:00 EST is 11:00 EDT.
  EXPECT_EQ(Local(RemindBefore(after_fall.start, Iso("PT24H"), ny), ny),
            "2026-10-31T11:00 (-04:00)");
}

// Lord Howe Island shifts by 30 minutes: forward at 02:00 on 4 October
// 2026, back at 02:00 on 5 April 2026.
TEST(SessionPlanTest, LordHoweThirtyMinuteShifts) {
  const absl::TimeZone lh = Zone("Australia/Lord_Howe");
  const IsoDuration weekly = Iso("P1W");
  PlannedTimes spring =
      SessionAt(absl::CivilDay(2026, 9, 27), 1, weekly, At("10:00", "P1D"), lh);
  EXPECT_EQ(Local(spring.start, lh), "2026-10-04T10:00 (+11:00)");
  EXPECT_EQ(Local(spring.remind, lh), "2026-10-03T10:00 (+10:30)");
  EXPECT_EQ(spring.start - spring.remind, absl::Minutes(23 * 60 + 30));
  PlannedTimes gap =
      SessionAt(absl::CivilDay(2026, 9, 27), 1, weekly, At("02:15", "P1D"), lh);
  EXPECT_EQ(Local(gap.start, lh), "2026-10-04T02:45 (+11:00)");

  PlannedTimes fall = SessionAt(absl::CivilDay(2026, 3, 29), 1, weekly,
                                At("10:00", "PT24H"), lh);
  EXPECT_EQ(Local(fall.start, lh), "2026-04-05T10:00 (+10:30)");
  // PT24H is elapsed time: the day of the change has 24.5 hours.
  EXPECT_EQ(Local(fall.remind, lh), "2026-04-04T10:30 (+11:00)");
  PlannedTimes twice =
      SessionAt(absl::CivilDay(2026, 3, 29), 1, weekly, At("01:45", "P1D"), lh);
  EXPECT_EQ(Local(twice.start, lh), "2026-04-05T01:45 (+11:00)");
}

TEST(SessionPlanTest, NextSessionSkipsSessionsWhoseReminderHasPassed) {
  const absl::TimeZone kolkata = Zone("Asia/Kolkata");
  const SessionSchedule ten = At("10:00", "P1D");
  const absl::CivilDay anchor(2026, 1, 1);
  // 2026-01-14 09:00: the session of the 15th is still reminded in full
  // (reminder 14th 10:00); that of the 8th is past.
  absl::Time now =
      absl::FromCivil(absl::CivilSecond(2026, 1, 14, 9, 0, 0), kolkata);
  PlannedTimes p = NextSession(anchor, 1, Iso("P1W"), ten, kolkata, now);
  EXPECT_EQ(p.index, 2);
  EXPECT_EQ(Local(p.start, kolkata), "2026-01-15T10:00 (+05:30)");
  // At 10:00 exactly the reminder is due now: still planned.
  now = absl::FromCivil(absl::CivilSecond(2026, 1, 14, 10, 0, 0), kolkata);
  EXPECT_EQ(NextSession(anchor, 1, Iso("P1W"), ten, kolkata, now).index, 2);
  // A minute later its reminder has passed: the next week's.
  now += absl::Minutes(1);
  p = NextSession(anchor, 1, Iso("P1W"), ten, kolkata, now);
  EXPECT_EQ(p.index, 3);
  EXPECT_EQ(Local(p.remind, kolkata), "2026-01-21T10:00 (+05:30)");
  // first_index bounds from below.
  EXPECT_EQ(NextSession(anchor, 5, Iso("P1W"), ten, kolkata, now).index, 5);
}

}  // namespace
}  // namespace ipsrt::runtime
