#include "instruments/srm.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace ipsrt {
namespace {

constexpr double kDay = 1440.0;
constexpr double kHalfDay = 720.0;
constexpr double kPi = 3.14159265358979323846;
constexpr double kHitWindow = 45.0;

// Wrap maps a difference of clock minutes into (-720, 720].
// (std::fmod is exact, and gives `minutes` itself within (-kDay, kDay):
// the common case skips the call.)
double Wrap(double minutes) {
  double m =
      minutes > -kDay && minutes < kDay ? minutes : std::fmod(minutes, kDay);
  if (m <= -kHalfDay) m += kDay;
  if (m > kHalfDay) m -= kDay;
  return m;
}

double Normalize(double minutes) {
  double m =
      minutes > -kDay && minutes < kDay ? minutes : std::fmod(minutes, kDay);
  return m < 0 ? m + kDay : m;
}

// Angle is a time's sine and cosine on the 24-hour circle.
struct Angle {
  double sin;
  double cos;
};

Angle AngleOf(double minutes) {
  return Angle{std::sin(minutes / kDay * 2 * kPi),
               std::cos(minutes / kDay * 2 * kPi)};
}

// MinuteAngle is AngleOf(minutes), taken for a whole minute (diary times
// are HH:MM) from a table built once with AngleOf itself, so that an entry
// has the very bits the computation gives.
Angle MinuteAngle(double minutes) {
  static const std::vector<Angle>* const table = [] {
    auto* t = new std::vector<Angle>();
    t->reserve(static_cast<size_t>(kDay));
    for (int m = 0; m < static_cast<int>(kDay); ++m) t->push_back(AngleOf(m));
    return t;
  }();
  if (minutes >= 0 && minutes < kDay) {
    const int whole = static_cast<int>(minutes);
    if (whole == minutes) return (*table)[static_cast<size_t>(whole)];
  }
  return AngleOf(minutes);
}

}  // namespace

const std::vector<std::string>& Srm5Activities() {
  static const auto* a = new std::vector<std::string>{
      "out_of_bed", "first_contact", "start_work", "dinner", "to_bed"};
  return *a;
}

const std::vector<std::string>& Srm17Activities() {
  static const auto* a = new std::vector<std::string>{
      "out_of_bed", "first_contact",   "morning_beverage",
      "breakfast",  "go_outside",      "start_work",
      "lunch",      "afternoon_snack", "nap",
      "dinner",     "exercise",        "evening_snack",
      "tv_news",    "return_home",     "to_bed",
      "custom_1",   "custom_2"};
  return *a;
}

SrmWeekScore ScoreSrmWeek(const std::vector<SrmDayTimes>& days) {
  // Each activity's times in day order; names view the days' own strings.
  std::vector<SrmActivityTimes> times;
  for (size_t d = 0; d < days.size() && d < 7; ++d) {
    for (const auto& [activity, minutes] : days[d]) {
      AddSrmTime(times, activity, minutes);
    }
  }
  return ScoreSrmActivities(std::move(times));
}

void AddSrmTime(std::vector<SrmActivityTimes>& times,
                absl::string_view activity, double minutes) {
  auto it = std::find_if(
      times.begin(), times.end(),
      [&](const SrmActivityTimes& t) { return t.activity == activity; });
  if (it == times.end()) {
    // Built in place: moving a temporary with an empty InlinedVector makes
    // g++ 12 warn (-Wmaybe-uninitialized) about its unused inline storage.
    times.emplace_back();
    times.back().activity = activity;
    it = times.end() - 1;
  }
  it->minutes.push_back(minutes);
}

SrmTimesScore ScoreSrmTimes(const double* t, int n) {
  SrmTimesScore a;
  a.qualifies = n >= 3;
  if (!a.qualifies) return a;
  double s = 0, c = 0;
  for (int i = 0; i < n; ++i) {
    const Angle angle = MinuteAngle(t[i]);
    s += angle.sin;
    c += angle.cos;
  }
  double reference = t[0];
  if (std::hypot(s, c) > 1e-9) {
    reference = Normalize(std::atan2(s, c) / (2 * kPi) * kDay);
  }
  // A week has at most 7 times; more (a caller's mistake) go on the heap.
  double week_offsets[7];
  std::unique_ptr<double[]> more;
  double* offsets = week_offsets;
  if (n > 7) {
    more = std::make_unique<double[]>(static_cast<size_t>(n));
    offsets = more.get();
  }
  for (int i = 0; i < n; ++i) offsets[i] = Wrap(t[i] - reference);
  double mean = 0;
  for (int i = 0; i < n; ++i) mean += offsets[i];
  mean /= static_cast<size_t>(n);
  double var = 0;
  for (int i = 0; i < n; ++i) var += (offsets[i] - mean) * (offsets[i] - mean);
  double sd = std::sqrt(var / (static_cast<size_t>(n) - 1));
  double kept_sum = 0;
  int kept = 0;
  for (int i = 0; i < n; ++i) {
    if (sd == 0 || std::fabs(offsets[i] - mean) <= 1.5 * sd) {
      kept_sum += offsets[i];
      ++kept;
    }
  }
  double ht_offset = kept > 0 ? kept_sum / kept : mean;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(Wrap(offsets[i] - ht_offset)) <= kHitWindow) ++a.hits;
  }
  a.habitual_minutes = Normalize(reference + ht_offset);
  return a;
}

double SrmShiftMinutes(double now, double before) { return Wrap(now - before); }

SrmWeekScore ScoreSrmActivities(std::vector<SrmActivityTimes> activities) {
  SrmWeekScore week;
  // Scores are reported in activity id order.
  std::sort(activities.begin(), activities.end(),
            [](const SrmActivityTimes& a, const SrmActivityTimes& b) {
              return a.activity < b.activity;
            });
  week.activities.reserve(activities.size());
  for (const SrmActivityTimes& at : activities) {
    const absl::InlinedVector<double, 7>& t = at.minutes;
    week.ali += static_cast<int>(t.size());
    SrmActivityScore a;
    a.activity = std::string(at.activity);
    a.days_done = static_cast<int>(t.size());
    const SrmTimesScore scored = ScoreSrmTimes(t.data(), a.days_done);
    a.qualifies = scored.qualifies;
    if (a.qualifies) {
      a.hits = scored.hits;
      a.habitual_minutes = scored.habitual_minutes;
      ++week.qualifying_activities;
      week.hits += a.hits;
    }
    week.activities.push_back(std::move(a));
  }
  if (week.qualifying_activities > 0) {
    week.score = static_cast<double>(week.hits) / week.qualifying_activities;
  }
  return week;
}

std::vector<SrmAnchorTrend> SrmAnchorTrends(
    const std::vector<SrmDayTimes>& previous,
    const std::vector<SrmDayTimes>& current) {
  return SrmAnchorTrendsBetween(ScoreSrmWeek(previous), ScoreSrmWeek(current));
}

std::vector<SrmAnchorTrend> SrmAnchorTrendsBetween(const SrmWeekScore& before,
                                                   const SrmWeekScore& now) {
  std::vector<SrmAnchorTrend> trends;
  trends.reserve(now.activities.size());
  for (const SrmActivityScore& a : now.activities) {
    SrmAnchorTrend trend;
    trend.activity = a.activity;
    if (a.qualifies) {
      trend.habitual_minutes = a.habitual_minutes;
      trend.hit_rate = static_cast<double>(a.hits) / a.days_done;
      for (const SrmActivityScore& b : before.activities) {
        if (b.activity == a.activity && b.qualifies) {
          trend.shift_minutes =
              SrmShiftMinutes(*a.habitual_minutes, *b.habitual_minutes);
        }
      }
    }
    trends.push_back(std::move(trend));
  }
  return trends;
}

std::string FormatMinutes(double minutes) {
  int m = static_cast<int>(std::lround(Normalize(minutes))) % 1440;
  return absl::StrFormat("%02d:%02d", m / 60, m % 60);
}

}  // namespace ipsrt
