// The Social Rhythm Metric (SRM): activities, and the weekly score.
//
// The weekly score follows the project's clinical rules (docs/domain.md,
// "Social Rhythm Metric"; Monk et al. 1990, 2002), for one patient and one
// 7-day window:
//  1. an activity qualifies when it was done on at least 3 of the 7 days;
//  2. times are circular: each is expressed as a signed offset from the
//     activity's circular mean, in (-12 h, +12 h], so 23:30 and 00:45 are
//     75 minutes apart;
//  3. the habitual time (HT) is the mean of the offsets after dropping
//     offsets more than 1.5 sample standard deviations (n-1) from their
//     mean (no drop when the SD is 0);
//  4. a hit is any recorded occurrence within 45 minutes (inclusive) of HT,
//     dropped outliers included;
//  5. score = hits over qualifying activities / qualifying activities
//     (0-7), absent when no activity qualifies;
//  6. Activity Level Index (ALI) = occurrences recorded in the window.
// When the times of an activity are spread so evenly that they have no
// circular mean (their vectors cancel), the first recorded time is the
// reference instead; the result is then still well defined.
#ifndef IPSRT_INSTRUMENTS_SRM_H_
#define IPSRT_INSTRUMENTS_SRM_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"

namespace ipsrt {

// Activity ids of SRM-5 and SRM-17 (SRM-17: 15 fixed activities and two
// the patient names, "custom_1" and "custom_2").
const std::vector<std::string>& Srm5Activities();
const std::vector<std::string>& Srm17Activities();

// One day of the diary: activity id -> minutes after local midnight
// (0-1439); an activity not done is absent.
using SrmDayTimes = std::map<std::string, int>;

struct SrmActivityScore {
  std::string activity;
  int days_done = 0;
  bool qualifies = false;
  // Habitual time, minutes after midnight in [0, 1440); set when it
  // qualifies.
  std::optional<double> habitual_minutes;
  int hits = 0;
};

struct SrmWeekScore {
  std::optional<double> score;  // absent when nothing qualifies
  int qualifying_activities = 0;
  int hits = 0;
  int ali = 0;
  std::vector<SrmActivityScore> activities;  // in activity id order
};

// ScoreSrmWeek scores up to 7 diary days (the window); days beyond 7 are a
// programming error and are ignored.
SrmWeekScore ScoreSrmWeek(const std::vector<SrmDayTimes>& days);

// SrmActivityTimes is one activity's times (minutes after local midnight)
// in a window, in day order.
struct SrmActivityTimes {
  absl::string_view activity;
  absl::InlinedVector<double, 7> minutes;
};

// AddSrmTime appends one day's time of `activity` to its entry in `times`
// (a new entry when the activity has none yet).
void AddSrmTime(std::vector<SrmActivityTimes>& times,
                absl::string_view activity, double minutes);

// ScoreSrmActivities is ScoreSrmWeek over a window already grouped by
// activity (each activity once, in any order, with at most 7 times), for a
// caller that reads diary days without building SrmDayTimes maps. The
// activities' names must outlive the call.
SrmWeekScore ScoreSrmActivities(std::vector<SrmActivityTimes> activities);

// SrmTimesScore is one activity's part of a week's score (rules 1-4 above)
// from its times in day order.
struct SrmTimesScore {
  bool qualifies = false;
  int hits = 0;
  // Habitual time, minutes after midnight in [0, 1440); set when it
  // qualifies.
  double habitual_minutes = 0;
};

// ScoreSrmTimes scores one activity's `n` times (7 at most in a week), minutes
// after local midnight in day order: ScoreSrmActivities' computation for each
// activity, for a caller that groups the times itself.
SrmTimesScore ScoreSrmTimes(const double* minutes, int n);

// SrmShiftMinutes is the shift between two habitual times on the 24-hour
// circle, in (-720, +720] (SrmAnchorTrend::shift_minutes).
double SrmShiftMinutes(double now, double before);

// SrmAnchorTrend is one anchor activity's change from one 7-day window to
// the next (the rhythm analytics exposed to conditions as
// srm.<activity>.shift_minutes and srm.<activity>.hit_rate).
struct SrmAnchorTrend {
  std::string activity;
  // Habitual time this week, minutes after midnight; set when the activity
  // qualifies this week (done on at least 3 days).
  std::optional<double> habitual_minutes;
  // This week's habitual time minus last week's, on the 24-hour circle, in
  // (-720, +720] minutes: +75 means 75 minutes later. Set when the activity
  // qualifies in both weeks. 23:30 -> 00:45 is +75, not -1365.
  std::optional<double> shift_minutes;
  // Share (0-1) of this week's recorded occurrences within 45 minutes of
  // this week's habitual time; set when the activity qualifies this week.
  std::optional<double> hit_rate;
};

// SrmAnchorTrends compares two consecutive windows of up to 7 diary days
// each (`previous` may be empty) and gives a trend for every activity
// recorded in `current`, in activity id order.
std::vector<SrmAnchorTrend> SrmAnchorTrends(
    const std::vector<SrmDayTimes>& previous,
    const std::vector<SrmDayTimes>& current);

// SrmAnchorTrendsBetween is SrmAnchorTrends over the two windows' scores
// (ScoreSrmWeek of each), for a caller that has scored them already.
std::vector<SrmAnchorTrend> SrmAnchorTrendsBetween(const SrmWeekScore& before,
                                                   const SrmWeekScore& now);

// FormatMinutes renders minutes after midnight as "HH:MM" (rounded).
std::string FormatMinutes(double minutes);

}  // namespace ipsrt

#endif  // IPSRT_INSTRUMENTS_SRM_H_
