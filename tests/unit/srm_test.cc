#include "instruments/srm.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/duration.h"

namespace ipsrt {
namespace {

// Days builds diary days from per-activity columns of "HH:MM" ("" = not
// done), Monday first.
std::vector<SrmDayTimes> Days(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& cols) {
  std::vector<SrmDayTimes> days(7);
  for (const auto& [activity, times] : cols) {
    for (size_t d = 0; d < times.size(); ++d) {
      if (times[d].empty()) continue;
      days[d][activity] = *ParseLocalTimeOfDay(times[d]);
    }
  }
  return days;
}

const SrmActivityScore& Activity(const SrmWeekScore& w, const std::string& id) {
  for (const SrmActivityScore& a : w.activities) {
    if (a.activity == id) return a;
  }
  static const SrmActivityScore none;
  ADD_FAILURE() << "no activity " << id;
  return none;
}

// The worked example of the project's clinical rules (docs/domain.md,
// "Social Rhythm Metric"): score 26 / 5 = 5.2, ALI 34.
TEST(SrmTest, WorkedExampleFromTheDomainReference) {
  SrmWeekScore w = ScoreSrmWeek(Days({
      {"out_of_bed",
       {"07:00", "07:15", "06:50", "07:05", "09:30", "07:10", "07:00"}},
      {"first_contact",
       {"07:30", "08:00", "07:45", "07:40", "11:00", "07:50", ""}},
      {"start_work", {"09:00", "09:10", "08:55", "09:05", "09:00", "", ""}},
      {"dinner",
       {"18:30", "19:00", "18:45", "20:30", "18:40", "21:00", "19:00"}},
      {"to_bed",
       {"23:00", "23:15", "22:50", "23:30", "01:30", "00:45", "23:10"}},
      {"exercise", {"", "17:00", "", "", "", "10:00", ""}},
  }));
  ASSERT_TRUE(w.score.has_value());
  EXPECT_DOUBLE_EQ(*w.score, 5.2);
  EXPECT_EQ(w.ali, 34);
  EXPECT_EQ(w.qualifying_activities, 5);
  EXPECT_EQ(w.hits, 26);
  EXPECT_EQ(Activity(w, "out_of_bed").hits, 6);
  EXPECT_EQ(Activity(w, "first_contact").hits, 5);
  EXPECT_EQ(Activity(w, "start_work").hits, 5);
  EXPECT_EQ(Activity(w, "dinner").hits, 5);
  EXPECT_EQ(Activity(w, "to_bed").hits, 5);
  EXPECT_FALSE(Activity(w, "exercise").qualifies);
  EXPECT_EQ(Activity(w, "exercise").days_done, 2);
}

TEST(SrmTest, BedtimesAroundMidnightAreCircular) {
  SrmWeekScore w = ScoreSrmWeek(Days({
      {"to_bed",
       {"23:40", "00:10", "23:50", "00:20", "23:55", "00:05", "00:00"}},
  }));
  const SrmActivityScore& bed = Activity(w, "to_bed");
  EXPECT_EQ(bed.hits, 7);  // all within 45 minutes of about midnight
  ASSERT_TRUE(bed.habitual_minutes.has_value());
  std::string ht = FormatMinutes(*bed.habitual_minutes);
  EXPECT_TRUE(ht == "00:00" || ht == "00:01" || ht == "23:59") << ht;
  EXPECT_DOUBLE_EQ(*w.score, 7.0);
}

TEST(SrmTest, FewerThanThreeDaysDoesNotQualifyAndNothingMeansAbsent) {
  SrmWeekScore w = ScoreSrmWeek(Days({
      {"dinner", {"18:00", "", "19:00", "", "", "", ""}},
  }));
  EXPECT_FALSE(w.score.has_value());
  EXPECT_EQ(w.qualifying_activities, 0);
  EXPECT_EQ(w.ali, 2);
  EXPECT_FALSE(ScoreSrmWeek({}).score.has_value());
}

TEST(SrmTest, IdenticalTimesSkipTheOutlierDrop) {
  SrmWeekScore w = ScoreSrmWeek(Days({
      {"out_of_bed", {"07:00", "07:00", "07:00", "", "", "", ""}},
  }));
  EXPECT_EQ(Activity(w, "out_of_bed").hits, 3);
  EXPECT_EQ(FormatMinutes(*Activity(w, "out_of_bed").habitual_minutes),
            "07:00");
  EXPECT_DOUBLE_EQ(*w.score, 3.0);
}

TEST(SrmTest, HitWindowIsInclusiveAt45Minutes) {
  // Mean and HT 08:00 (symmetric); 07:15 and 08:45 are exactly 45 minutes
  // away and count; nothing is more than 1.5 SD out.
  SrmWeekScore w = ScoreSrmWeek(Days({
      {"start_work", {"07:15", "08:00", "08:45", "08:00", "", "", ""}},
  }));
  EXPECT_EQ(Activity(w, "start_work").hits, 4);
}

// ---------------------------------------------------------------- trends

const SrmAnchorTrend& Trend(const std::vector<SrmAnchorTrend>& trends,
                            const std::string& id) {
  for (const SrmAnchorTrend& t : trends) {
    if (t.activity == id) return t;
  }
  static const SrmAnchorTrend none;
  ADD_FAILURE() << "no trend for " << id;
  return none;
}

// Bedtime moves from 23:00 to 00:15: 75 minutes later, not 1365 earlier.
TEST(SrmTrendTest, BedtimeAfterMidnightShiftsForwardAcrossMidnight) {
  std::vector<SrmAnchorTrend> trends = SrmAnchorTrends(
      Days({{"to_bed",
             {"23:00", "23:00", "23:00", "23:00", "23:00", "23:00", "23:00"}}}),
      Days(
          {{"to_bed",
            {"00:15", "00:15", "00:15", "00:15", "00:15", "00:15", "00:15"}}}));
  const SrmAnchorTrend& t = Trend(trends, "to_bed");
  ASSERT_TRUE(t.habitual_minutes.has_value());
  EXPECT_NEAR(*t.habitual_minutes, 15, 1e-6);
  ASSERT_TRUE(t.shift_minutes.has_value());
  EXPECT_NEAR(*t.shift_minutes, 75, 1e-6);
  ASSERT_TRUE(t.hit_rate.has_value());
  EXPECT_DOUBLE_EQ(*t.hit_rate, 1.0);
}

// This week's bedtimes straddle midnight symmetrically: offsets -30, +30,
// -15, +15, 0 from 00:00, SD 23.7, nothing dropped, HT 00:00, every day a
// hit. Last week's three 01:00 bedtimes give HT 01:00: shift -60.
TEST(SrmTrendTest, BedtimesAroundMidnightAndAnEarlierShift) {
  std::vector<SrmAnchorTrend> trends = SrmAnchorTrends(
      Days({{"to_bed", {"01:00", "", "01:00", "", "01:00", "", ""}}}),
      Days(
          {{"to_bed", {"23:30", "00:30", "23:45", "00:15", "00:00", "", ""}}}));
  const SrmAnchorTrend& t = Trend(trends, "to_bed");
  ASSERT_TRUE(t.habitual_minutes.has_value());
  EXPECT_NEAR(*t.habitual_minutes, 0, 1e-6);
  ASSERT_TRUE(t.shift_minutes.has_value());
  EXPECT_NEAR(*t.shift_minutes, -60, 1e-6);
  EXPECT_DOUBLE_EQ(*t.hit_rate, 1.0);
}

// Out of bed 07:00 on four days and 09:00 once: offsets from the mean
// 07:24 are -24 x4 and +96, SD 53.7, so 09:00 (beyond 1.5 SD) is dropped
// from the habitual time (07:00) and is the one miss: hit rate 4/5. Last
// week 06:30 on three days: shift +30.
TEST(SrmTrendTest, HitRateCountsTheOutlierAsAMiss) {
  std::vector<SrmAnchorTrend> trends = SrmAnchorTrends(
      Days({{"out_of_bed", {"06:30", "06:30", "06:30", "", "", "", ""}}}),
      Days({{"out_of_bed",
             {"07:00", "07:00", "07:00", "07:00", "09:00", "", ""}}}));
  const SrmAnchorTrend& t = Trend(trends, "out_of_bed");
  EXPECT_NEAR(*t.habitual_minutes, 420, 1e-6);
  EXPECT_NEAR(*t.shift_minutes, 30, 1e-6);
  EXPECT_DOUBLE_EQ(*t.hit_rate, 0.8);
}

// Fewer than 3 days this week: no habitual time, so neither measure;
// an activity not qualifying last week gives a hit rate but no shift.
TEST(SrmTrendTest, MeasuresNeedThreeDaysInTheirWeeks) {
  std::vector<SrmAnchorTrend> trends = SrmAnchorTrends(
      Days({{"dinner", {"19:00", "", "", "", "", "", ""}}}),
      Days({{"dinner", {"19:00", "19:10", "18:50", "", "", "", ""}},
            {"to_bed", {"23:00", "23:00", "", "", "", "", ""}}}));
  const SrmAnchorTrend& dinner = Trend(trends, "dinner");
  EXPECT_NEAR(*dinner.habitual_minutes, 1140, 1e-6);
  EXPECT_DOUBLE_EQ(*dinner.hit_rate, 1.0);
  EXPECT_FALSE(dinner.shift_minutes.has_value());
  const SrmAnchorTrend& bed = Trend(trends, "to_bed");
  EXPECT_FALSE(bed.habitual_minutes.has_value());
  EXPECT_FALSE(bed.hit_rate.has_value());
  EXPECT_FALSE(bed.shift_minutes.has_value());
  EXPECT_TRUE(SrmAnchorTrends({}, {}).empty());
}

}  // namespace
}  // namespace ipsrt
