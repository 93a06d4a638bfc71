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

}  // namespace
}  // namespace ipsrt
