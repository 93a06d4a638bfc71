#include "model/duration.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace ipsrt {

std::string IsoDuration::ToString() const {
  std::string out = "P";
  auto part = [&](int v, char unit) {
    if (v != 0) absl::StrAppend(&out, v, std::string(1, unit));
  };
  part(years, 'Y');
  part(months, 'M');
  part(weeks, 'W');
  part(days, 'D');
  if (hours || minutes || seconds) {
    out += "T";
    part(hours, 'H');
    part(minutes, 'M');
    part(seconds, 'S');
  }
  if (out == "P") out = "P0D";
  return out;
}

std::optional<IsoDuration> ParseIsoDuration(absl::string_view text) {
  if (text.size() < 3 || text[0] != 'P') return std::nullopt;
  IsoDuration d;
  // Units in the order they may appear; a unit may appear once.
  static constexpr absl::string_view kDateUnits = "YMWD";
  static constexpr absl::string_view kTimeUnits = "HMS";
  bool in_time = false;
  size_t last = 0;  // 1 + index of the last unit seen in the current part
  bool any = false;
  size_t i = 1;
  while (i < text.size()) {
    if (text[i] == 'T') {
      if (in_time || i + 1 == text.size()) return std::nullopt;
      in_time = true;
      last = 0;
      ++i;
      continue;
    }
    size_t start = i;
    int value = 0;
    while (i < text.size() && absl::ascii_isdigit(text[i])) {
      value = value * 10 + (text[i] - '0');
      if (value > 10000) return std::nullopt;
      ++i;
    }
    if (i == start || i == text.size()) return std::nullopt;
    absl::string_view units = in_time ? kTimeUnits : kDateUnits;
    size_t unit = units.find(text[i]);
    if (unit == absl::string_view::npos || unit + 1 <= last) {
      return std::nullopt;
    }
    last = unit + 1;
    any = true;
    int* const date_fields[] = {&d.years, &d.months, &d.weeks, &d.days};
    int* const time_fields[] = {&d.hours, &d.minutes, &d.seconds};
    *(in_time ? time_fields : date_fields)[unit] = value;
    ++i;
  }
  if (!any) return std::nullopt;
  return d;
}

absl::Time LocalToAbsolute(absl::CivilSecond local, absl::TimeZone zone) {
  absl::TimeZone::TimeInfo info = zone.At(local);
  switch (info.kind) {
    case absl::TimeZone::TimeInfo::UNIQUE:
      return info.pre;
    case absl::TimeZone::TimeInfo::SKIPPED:
      // `pre` uses the offset in force before the gap, which lands the
      // time as far past the transition as it was past the gap's start.
      return info.pre;
    case absl::TimeZone::TimeInfo::REPEATED:
      return info.pre;  // the first (earlier) occurrence
  }
  return info.pre;
}

absl::Time AddIsoDuration(absl::Time t, const IsoDuration& d,
                          absl::TimeZone zone) {
  if (d.years || d.months || d.weeks || d.days) {
    absl::CivilSecond local = absl::ToCivilSecond(t, zone);
    absl::CivilSecond moved(local.year() + d.years, local.month() + d.months,
                            local.day() + 7 * d.weeks + d.days, local.hour(),
                            local.minute(), local.second());
    t = LocalToAbsolute(moved, zone);
  }
  return t + absl::Hours(d.hours) + absl::Minutes(d.minutes) +
         absl::Seconds(d.seconds);
}

std::optional<int> ParseLocalTimeOfDay(absl::string_view text) {
  if (text.size() != 5 || text[2] != ':') return std::nullopt;
  for (int i : {0, 1, 3, 4}) {
    if (!absl::ascii_isdigit(text[i])) return std::nullopt;
  }
  int h = (text[0] - '0') * 10 + (text[1] - '0');
  int m = (text[3] - '0') * 10 + (text[4] - '0');
  if (h > 23 || m > 59) return std::nullopt;
  return h * 60 + m;
}

}  // namespace ipsrt
