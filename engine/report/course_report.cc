#include "report/course_report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "google/protobuf/util/time_util.h"
#include "instruments/srm.h"
#include "model/duration.h"

namespace ipsrt::report {
namespace {

using ::google::protobuf::util::TimeUtil;

// Chart geometry, in SVG user units (the SVG scales to its container).
constexpr double kWidth = 760;
constexpr double kLeft = 52;
constexpr double kRight = 14;
constexpr double kTop = 10;
constexpr double kBottom = 26;

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

std::string Num(double v) {
  if (std::fabs(v - std::round(v)) < 1e-9) {
    return absl::StrCat(static_cast<long long>(std::llround(v)));
  }
  return absl::StrFormat("%.2f", v);
}

std::string Date(absl::Time t, absl::TimeZone zone) {
  return absl::FormatTime("%Y-%m-%d", t, zone);
}
std::string DateTime(absl::Time t, absl::TimeZone zone) {
  return absl::FormatTime("%Y-%m-%d %H:%M", t, zone);
}

// Cadence in words: "P1W" is "weekly (P1W)".
std::string CadenceText(absl::string_view iso) {
  std::optional<IsoDuration> d = ParseIsoDuration(iso);
  if (!d.has_value()) return std::string(iso);
  IsoDuration only_weeks;
  only_weeks.weeks = d->weeks;
  IsoDuration only_days;
  only_days.days = d->days;
  std::string words;
  if (d->ToString() == only_weeks.ToString() && d->weeks > 0) {
    words =
        d->weeks == 1 ? "weekly" : absl::StrCat("every ", d->weeks, " weeks");
  } else if (d->ToString() == only_days.ToString() && d->days > 0) {
    words = d->days == 1 ? "daily" : absl::StrCat("every ", d->days, " days");
  }
  return words.empty() ? std::string(iso) : absl::StrCat(words, " (", iso, ")");
}

// ------------------------------------------------------------ chart frame

// TimeAxis maps absolute times onto the x axis.
struct TimeAxis {
  absl::Time start;
  absl::Time end;
  absl::TimeZone zone;

  double X(absl::Time t) const {
    double span = absl::ToDoubleSeconds(end - start);
    double f = span <= 0 ? 0 : absl::ToDoubleSeconds(t - start) / span;
    f = std::clamp(f, 0.0, 1.0);
    return kLeft + f * (kWidth - kLeft - kRight);
  }

  // Ticks draws about six date ticks and labels along y = `bottom`.
  std::string Ticks(double top, double bottom) const {
    std::string out;
    const int n = 6;
    for (int i = 0; i <= n; ++i) {
      absl::Time t = start + (end - start) * i / n;
      double x = X(t);
      absl::StrAppend(&out, "<line class=\"grid\" x1=\"", Num(x), "\" y1=\"",
                      Num(top), "\" x2=\"", Num(x), "\" y2=\"", Num(bottom),
                      "\"/>");
      const char* anchor = i == 0 ? "start" : (i == n ? "end" : "middle");
      absl::StrAppend(&out, "<text class=\"tick\" x=\"", Num(x), "\" y=\"",
                      Num(bottom + 16), "\" text-anchor=\"", anchor, "\">",
                      absl::FormatTime("%d %b %Y", t, zone), "</text>");
    }
    return out;
  }
};

// ValueAxis maps values onto the y axis of a chart `height` high.
// With `downward`, larger values are drawn lower (times of day, as in a
// diary).
struct ValueAxis {
  double min = 0;
  double max = 1;
  double height = 200;
  bool downward = false;

  double Y(double v) const {
    double f = max > min ? (v - min) / (max - min) : 0;
    f = std::clamp(f, 0.0, 1.0);
    if (downward) f = 1 - f;
    return height - kBottom - f * (height - kTop - kBottom);
  }
};

std::string SvgOpen(const std::string& id, double height,
                    const std::string& label) {
  return absl::StrCat("<svg id=\"", id, "\" role=\"img\" aria-labelledby=\"",
                      id, "-title\" viewBox=\"0 0 ", Num(kWidth), " ",
                      Num(height), "\" preserveAspectRatio=\"xMidYMid meet\">",
                      "<title id=\"", id, "-title\">", HtmlEscape(label),
                      "</title>");
}

std::string EmptyNote(double height, const std::string& text) {
  return absl::StrCat("<text class=\"empty\" x=\"", Num(kWidth / 2), "\" y=\"",
                      Num(height / 2), "\" text-anchor=\"middle\">",
                      HtmlEscape(text), "</text>");
}

// ------------------------------------------------------------ score charts

struct Band {
  double from;
  double to;
  const char* label;
  const char* color;
};

struct Instrument {
  const char* id;
  const char* name;
  double max;
  std::vector<Band> bands;
  const char* source;
};

const std::vector<Instrument>& Instruments() {
  static const auto* const kInstruments = new std::vector<Instrument>{
      {"phq9",
       "PHQ-9 (depression)",
       27,
       {{0, 5, "minimal", "#e8f5e9"},
        {5, 10, "mild", "#fffde7"},
        {10, 15, "moderate", "#fff3e0"},
        {15, 20, "moderately severe", "#ffe0b2"},
        {20, 27, "severe", "#ffcdd2"}},
       "bands 0-4, 5-9, 10-14, 15-19, 20-27 (Kroenke et al. 2001)"},
      {"gad7",
       "GAD-7 (anxiety)",
       21,
       {{0, 5, "minimal", "#e8f5e9"},
        {5, 10, "mild", "#fffde7"},
        {10, 15, "moderate", "#fff3e0"},
        {15, 21, "severe", "#ffcdd2"}},
       "bands 0-4, 5-9, 10-14, 15-21 (Spitzer et al. 2006)"},
      {"asrm",
       "ASRM (mania)",
       20,
       {{0, 6, "below cut-off", "#e8f5e9"},
        {6, 20, "cut-off 6 or more: possible (hypo)mania", "#ffe0b2"}},
       "cut-off 6 (Altman et al. 1997)"},
  };
  return *kInstruments;
}

// Threshold is a comparison of a score with a number in one of the
// template's conditions, drawn as a line on that score's chart.
struct Threshold {
  std::string score;  // "phq9.total", "srm.score"
  std::string op;
  double value = 0;
  std::string where;  // "rule early-warning", "exit initial -> intermediate"
};

std::vector<Threshold> TemplateThresholds(const WorkflowTemplate& w) {
  static const std::regex kComparison(
      R"(\b(phq9\.total|gad7\.total|asrm\.total|srm\.score)\s*(>=|<=|==|>|<)\s*([0-9]+(\.[0-9]+)?))");
  std::vector<Threshold> out;
  auto scan = [&](const std::string& text, const std::string& where) {
    for (std::sregex_iterator it(text.begin(), text.end(), kComparison), end;
         it != end; ++it) {
      out.push_back(
          {(*it)[1].str(), (*it)[2].str(), std::stod((*it)[3].str()), where});
    }
  };
  for (const StageTemplate& stage : w.stages) {
    for (const ExitTemplate& exit : stage.exits) {
      scan(exit.when.text, absl::StrCat("exit ", stage.id, " -> ", exit.to));
    }
    for (const RuleTemplate& rule : stage.rules) {
      scan(rule.when.text, absl::StrCat("rule ", rule.id));
    }
  }
  for (const RuleTemplate& rule : w.rules) {
    scan(rule.when.text, absl::StrCat("rule ", rule.id));
  }
  // Thresholds a template keeps in named conditions (read by rules and
  // exits by name) are drawn under the condition's name.
  for (const NamedCondition& c : w.conditions) {
    scan(c.when.text, absl::StrCat("condition ", c.name));
  }
  return out;
}

struct Point {
  absl::Time time;
  double value;
  std::string note;  // tooltip and table text
};

// ScoreChart draws one score series over time with shaded bands and
// threshold lines, plus its caption and data table.
std::string ScoreChart(const std::string& id, const std::string& series,
                       const std::string& title, double max,
                       const std::vector<Band>& bands,
                       const std::vector<Threshold>& thresholds,
                       const std::string& score_name,
                       const std::vector<Point>& points, const TimeAxis& axis,
                       const std::string& source) {
  constexpr double kHeight = 200;
  ValueAxis y{0, max, kHeight};
  std::string svg = SvgOpen(id, kHeight, absl::StrCat(title, " over time"));
  for (const Band& b : bands) {
    absl::StrAppend(&svg, "<rect x=\"", Num(kLeft), "\" y=\"", Num(y.Y(b.to)),
                    "\" width=\"", Num(kWidth - kLeft - kRight), "\" height=\"",
                    Num(y.Y(b.from) - y.Y(b.to)), "\" fill=\"", b.color,
                    "\"><title>", HtmlEscape(b.label), "</title></rect>");
    absl::StrAppend(&svg, "<text class=\"band\" x=\"", Num(kWidth - kRight - 4),
                    "\" y=\"", Num(y.Y(b.to) + 11), "\" text-anchor=\"end\">",
                    HtmlEscape(b.label), "</text>");
  }
  for (double v = 0; v <= max; v += max > 10 ? 5 : 1) {
    absl::StrAppend(&svg, "<text class=\"tick\" x=\"", Num(kLeft - 6),
                    "\" y=\"", Num(y.Y(v) + 4), "\" text-anchor=\"end\">",
                    Num(v), "</text>");
  }
  absl::StrAppend(&svg, axis.Ticks(kTop, kHeight - kBottom));
  std::vector<std::string> threshold_text;
  for (const Threshold& t : thresholds) {
    if (t.score != score_name) continue;
    absl::StrAppend(&svg, "<line class=\"threshold\" data-threshold=\"",
                    Num(t.value), "\" x1=\"", Num(kLeft), "\" y1=\"",
                    Num(y.Y(t.value)), "\" x2=\"", Num(kWidth - kRight),
                    "\" y2=\"", Num(y.Y(t.value)), "\"/>");
    absl::StrAppend(&svg, "<text class=\"threshold-label\" x=\"",
                    Num(kLeft + 4), "\" y=\"", Num(y.Y(t.value) - 3), "\">",
                    HtmlEscape(absl::StrCat(t.where, ": ", t.score, " ", t.op,
                                            " ", Num(t.value))),
                    "</text>");
    threshold_text.push_back(absl::StrCat(t.where, " (", t.score, " ", t.op,
                                          " ", Num(t.value), ")"));
  }
  if (points.empty()) {
    absl::StrAppend(
        &svg, EmptyNote(kHeight, absl::StrCat("No ", title, " recorded yet")));
  } else {
    std::string path;
    for (const Point& p : points) {
      absl::StrAppend(&path, path.empty() ? "M" : " L", Num(axis.X(p.time)),
                      ",", Num(y.Y(p.value)));
    }
    absl::StrAppend(&svg, "<path class=\"series\" d=\"", path, "\"/>");
    for (const Point& p : points) {
      absl::StrAppend(&svg, "<circle class=\"point\" data-point=\"", series,
                      "\" data-value=\"", Num(p.value), "\" cx=\"",
                      Num(axis.X(p.time)), "\" cy=\"", Num(y.Y(p.value)),
                      "\" r=\"", points.size() > 60 ? "2" : "3.5", "\"><title>",
                      HtmlEscape(absl::StrCat(DateTime(p.time, axis.zone), ": ",
                                              Num(p.value), " ", p.note)),
                      "</title></circle>");
    }
  }
  absl::StrAppend(&svg, "</svg>");

  std::string caption = absl::StrCat(
      title, ": ",
      points.empty() ? "no responses recorded yet"
                     : absl::StrCat(points.size(), " recorded, latest ",
                                    Num(points.back().value), " on ",
                                    Date(points.back().time, axis.zone)),
      ". ", source, ".");
  if (!threshold_text.empty()) {
    absl::StrAppend(&caption, " Template thresholds: ",
                    absl::StrJoin(threshold_text, "; "), ".");
  }
  std::string table;
  if (!points.empty()) {
    absl::StrAppend(&table, "<details><summary>Data table</summary><table>",
                    "<tr><th>Date</th><th>Score</th><th>Note</th></tr>");
    for (const Point& p : points) {
      absl::StrAppend(&table, "<tr><td>", DateTime(p.time, axis.zone),
                      "</td><td>", Num(p.value), "</td><td>",
                      HtmlEscape(p.note), "</td></tr>");
    }
    absl::StrAppend(&table, "</table></details>");
  }
  return absl::StrCat("<figure>", svg, "<figcaption>", HtmlEscape(caption),
                      "</figcaption>", table, "</figure>\n");
}

// ------------------------------------------------------------ course data

struct StageSpan {
  std::string stage;
  absl::Time start;
  absl::Time end;
};

struct CadenceChange {
  absl::Time time;
  std::string from;
  std::string to;
  std::string reason;
};

struct Session {
  absl::Time time;
  int minutes = 0;
  std::string note;
};

struct AlertRow {
  std::string id;
  std::string priority;
  std::string reason;
  absl::Time raised;
  std::optional<absl::Time> acknowledge_by;
  std::optional<absl::Time> acknowledged;
  std::string note;
};

// DiaryDay is the latest entry of one local date.
struct DiaryDay {
  absl::CivilDay date;
  SrmDayTimes times;
};

struct Course {
  std::vector<StageSpan> stages;
  std::vector<CadenceChange> cadence_changes;
  std::vector<Session> sessions;
  std::map<std::string, std::vector<Point>> scores;  // by series
  std::vector<AlertRow> alerts;
  std::map<absl::CivilDay, DiaryDay> diary;
  const v1::GoalSet* goal = nullptr;
  const v1::RelapsePreventionPlan* relapse_plan = nullptr;
  std::vector<const v1::DisruptionPlan*> disruption_plans;
};

Course ReadCourse(const CourseReportInput& in, absl::Time start,
                  absl::Time end) {
  Course c;
  std::string stage;
  absl::Time stage_start = start;
  for (const v1::Event& e : in.events) {
    const absl::Time at = ToTime(e.record_time());
    const v1::EventPayload& p = e.payload();
    if (p.has_questionnaire_response()) {
      const std::string& id = p.questionnaire_response().questionnaire_id();
      auto total = e.scores().find(absl::StrCat(id, ".total"));
      if (total != e.scores().end()) {
        c.scores[id].push_back({at, total->second, e.band()});
      }
    }
    if (p.has_srm_diary_day()) {
      auto score = e.scores().find("srm.score");
      if (score != e.scores().end()) {
        c.scores["srm"].push_back(
            {at, score->second,
             absl::StrCat("7 days to ", p.srm_diary_day().local_date())});
      }
      absl::CivilDay date;
      if (absl::ParseCivilTime(p.srm_diary_day().local_date(), &date)) {
        DiaryDay day{date, {}};
        for (const v1::SrmActivity& a : p.srm_diary_day().activities()) {
          if (std::optional<int> m = ParseLocalTimeOfDay(a.local_time())) {
            day.times[a.activity()] = *m;
          }
        }
        c.diary[date] = std::move(day);  // a correction replaces the date
      }
    }
    if (p.has_session_held()) {
      const v1::SessionHeld& s = p.session_held();
      c.sessions.push_back({s.has_start_time() ? ToTime(s.start_time()) : at,
                            s.duration_minutes(), s.note()});
    }
    if (p.has_goal_set()) c.goal = &p.goal_set();
    if (p.has_relapse_plan()) c.relapse_plan = &p.relapse_plan();
    if (p.has_disruption_plan()) {
      c.disruption_plans.push_back(&p.disruption_plan());
    }
    for (const v1::Outcome& o : e.outcomes()) {
      switch (o.kind()) {
        case v1::Outcome::STAGE_CHANGED:
          if (stage.empty()) stage = o.from();  // the stage enrolled in
          if (!stage.empty()) c.stages.push_back({stage, stage_start, at});
          stage = o.to();
          stage_start = at;
          break;
        case v1::Outcome::CADENCE_CHANGED:
          c.cadence_changes.push_back({at, o.from(), o.to(), o.reason()});
          break;
        case v1::Outcome::ALERT_RAISED: {
          AlertRow a{o.subject(), o.to(), o.reason(), at, {}, {}, ""};
          if (o.has_due_time()) a.acknowledge_by = ToTime(o.due_time());
          c.alerts.push_back(std::move(a));
          break;
        }
        case v1::Outcome::ALERT_ACKNOWLEDGED:
          for (AlertRow& a : c.alerts) {
            if (a.id != o.subject()) continue;
            a.acknowledged = at;
            if (p.has_alert_acknowledged())
              a.note = p.alert_acknowledged().note();
          }
          break;
        default:
          break;
      }
    }
  }
  if (stage.empty()) stage = in.enrollment.stage();
  if (!stage.empty()) c.stages.push_back({stage, stage_start, end});
  return c;
}

// ------------------------------------------------------------ sections

std::string Header(const CourseReportInput& in, const TimeAxis& axis) {
  const v1::Enrollment& e = in.enrollment;
  const WorkflowTemplate& w = *in.workflow;
  const StageTemplate* stage = w.FindStage(e.stage());
  auto row = [](const std::string& k, const std::string& v) {
    return absl::StrCat("<dt>", k, "</dt><dd>", v, "</dd>");
  };
  std::string out = absl::StrCat(
      "<header><h1>Course report</h1>",
      in.note.empty()
          ? ""
          : absl::StrCat("<p class=\"note\">", HtmlEscape(in.note), "</p>"),
      "<dl class=\"facts\">", row("Patient", HtmlEscape(e.patient_ref())),
      row("Workflow",
          HtmlEscape(absl::StrCat(w.title.empty() ? w.id : w.title, " (", w.id,
                                  " version ", w.version, ")"))),
      row("Current stage",
          HtmlEscape(stage != nullptr && !stage->title.empty()
                         ? absl::StrCat(stage->title, " (", e.stage(), ")")
                         : e.stage())),
      row("Session cadence", HtmlEscape(CadenceText(e.session_cadence()))),
      row("State", HtmlEscape(v1::Enrollment::State_Name(e.state()))),
      row("Clinician", HtmlEscape(e.clinician_ref())),
      row("Enrolled", HtmlEscape(Date(axis.start, axis.zone))),
      row("Last change",
          e.has_update_time()
              ? HtmlEscape(DateTime(ToTime(e.update_time()), axis.zone))
              : "-"),
      row("Report as of", HtmlEscape(absl::StrCat(DateTime(in.as_of, axis.zone),
                                                  " (", e.time_zone(), ")"))),
      "</dl></header>\n");
  return out;
}

const char* StageColor(int index) {
  static const char* const kColors[] = {"#bbdefb", "#c8e6c9", "#fff9c4",
                                        "#d1c4e9", "#ffccbc", "#b2dfdb"};
  return kColors[(index < 0 ? 0 : index) % 6];
}

// RuleCondition is the source text of the rule named in a reason such as
// "rule early-warning"; empty when the reason names no rule.
std::string RuleCondition(const WorkflowTemplate& w, absl::string_view reason) {
  if (!absl::StartsWith(reason, "rule ")) return "";
  absl::string_view id = reason.substr(5);
  for (const StageTemplate& stage : w.stages) {
    for (const RuleTemplate& rule : stage.rules) {
      if (rule.id == id) return rule.when.text;
    }
  }
  for (const RuleTemplate& rule : w.rules) {
    if (rule.id == id) return rule.when.text;
  }
  return "";
}

// TimelineSvg draws the stages as coloured bands, each session as a mark
// and each cadence change as a diamond along the report's time axis.
std::string TimelineSvg(const WorkflowTemplate& w, const Course& c,
                        const TimeAxis& axis) {
  constexpr double kHeight = 120;
  constexpr double kBandTop = 14, kBandBottom = 62;
  std::string svg = SvgOpen("timeline", kHeight,
                            "Stages over time with sessions and cadence "
                            "changes");
  for (const StageSpan& s : c.stages) {
    double x0 = axis.X(s.start), x1 = axis.X(s.end);
    absl::StrAppend(
        &svg, "<rect class=\"stage\" data-stage=\"", HtmlEscape(s.stage),
        "\" x=\"", Num(x0), "\" y=\"", Num(kBandTop), "\" width=\"",
        Num(std::max(x1 - x0, 1.0)), "\" height=\"",
        Num(kBandBottom - kBandTop), "\" fill=\"",
        StageColor(w.StageIndex(s.stage)), "\"><title>",
        HtmlEscape(absl::StrCat(s.stage, ": ", Date(s.start, axis.zone), " to ",
                                Date(s.end, axis.zone))),
        "</title></rect>");
    if (x1 - x0 > 40) {
      absl::StrAppend(&svg, "<text class=\"stage-label\" x=\"", Num(x0 + 4),
                      "\" y=\"", Num(kBandTop + 16), "\">", HtmlEscape(s.stage),
                      "</text>");
    }
  }
  for (const Session& s : c.sessions) {
    double x = axis.X(s.time);
    absl::StrAppend(
        &svg, "<line class=\"session\" data-point=\"session\" x1=\"", Num(x),
        "\" y1=\"", Num(kBandBottom - 18), "\" x2=\"", Num(x), "\" y2=\"",
        Num(kBandBottom), "\"><title>",
        HtmlEscape(absl::StrCat("Session ", DateTime(s.time, axis.zone))),
        "</title></line>");
  }
  for (const CadenceChange& cc : c.cadence_changes) {
    double x = axis.X(cc.time), y = kBandBottom + 10;
    absl::StrAppend(
        &svg, "<path class=\"cadence\" data-point=\"cadence\" d=\"M", Num(x),
        ",", Num(y - 6), " L", Num(x + 6), ",", Num(y), " L", Num(x), ",",
        Num(y + 6), " L", Num(x - 6), ",", Num(y), " Z\"><title>",
        HtmlEscape(absl::StrCat(DateTime(cc.time, axis.zone), ": cadence ",
                                cc.from, " -> ", cc.to, " (", cc.reason, ")")),
        "</title></path>");
  }
  absl::StrAppend(&svg, axis.Ticks(kBandTop, kHeight - kBottom), "</svg>");

  return svg;
}

// CadenceChangesTable lists the cadence changes with why each happened (the
// rule and its condition, or the stage entered).
std::string CadenceChangesTable(const WorkflowTemplate& w, const Course& c,
                                const TimeAxis& axis) {
  std::string out;
  absl::StrAppend(&out, "<h3>Cadence changes</h3>");
  if (c.cadence_changes.empty()) {
    absl::StrAppend(&out, "<p>No cadence changes.</p>");
  } else {
    absl::StrAppend(&out,
                    "<table><tr><th>Date</th><th>From</th><th>To</th>"
                    "<th>Why</th></tr>");
    for (const CadenceChange& cc : c.cadence_changes) {
      std::string why = cc.reason;
      std::string condition = RuleCondition(w, cc.reason);
      if (!condition.empty()) absl::StrAppend(&why, ": when ", condition);
      if (absl::StartsWith(cc.reason, "stage ")) {
        why = absl::StrCat("entering ", cc.reason);
      }
      absl::StrAppend(&out, "<tr><td>", DateTime(cc.time, axis.zone),
                      "</td><td>", HtmlEscape(CadenceText(cc.from)),
                      "</td><td>", HtmlEscape(CadenceText(cc.to)), "</td><td>",
                      HtmlEscape(why), "</td></tr>");
    }
    absl::StrAppend(&out, "</table>");
  }
  return out;
}

// SessionsHeld lists the session notes and, folded, every session held.
std::string SessionsHeld(const Course& c, const TimeAxis& axis) {
  std::string out;
  absl::StrAppend(&out, "<h3>Sessions held</h3>");
  if (c.sessions.empty()) {
    absl::StrAppend(&out, "<p>No sessions recorded.</p>");
  } else {
    std::string notes;
    for (const Session& s : c.sessions) {
      if (s.note.empty()) continue;
      absl::StrAppend(&notes, "<li>", Date(s.time, axis.zone), ": ",
                      HtmlEscape(s.note), "</li>");
    }
    if (!notes.empty()) {
      absl::StrAppend(&out, "<p>Session notes:</p><ul>", notes, "</ul>");
    }
    absl::StrAppend(&out, "<details><summary>All ", c.sessions.size(),
                    " sessions</summary>"
                    "<table><tr><th>Date</th><th>Minutes</th><th>Note</th>"
                    "</tr>");
    for (const Session& s : c.sessions) {
      absl::StrAppend(&out, "<tr><td>", DateTime(s.time, axis.zone),
                      "</td><td>", s.minutes > 0 ? Num(s.minutes) : "-",
                      "</td><td>", HtmlEscape(s.note), "</td></tr>");
    }
    absl::StrAppend(&out, "</table></details>");
  }
  return out;
}

std::string Timeline(const CourseReportInput& in, const Course& c,
                     const TimeAxis& axis) {
  const WorkflowTemplate& w = *in.workflow;
  std::string svg = TimelineSvg(w, c, axis);
  std::string stages_text;
  for (const StageSpan& s : c.stages) {
    if (!stages_text.empty()) absl::StrAppend(&stages_text, "; ");
    absl::StrAppend(&stages_text, s.stage, " from ", Date(s.start, axis.zone));
  }
  std::string out = absl::StrCat(
      "<section id=\"course\"><h2>Stages, sessions and cadence</h2><figure>",
      svg, "<figcaption>",
      HtmlEscape(absl::StrCat(
          "Stages as bands: ", stages_text.empty() ? "none" : stages_text, ". ",
          c.sessions.size(), " sessions held (marks), ",
          c.cadence_changes.size(), " cadence changes (diamonds).")),
      "</figcaption></figure>\n");
  absl::StrAppend(&out, CadenceChangesTable(w, c, axis));
  absl::StrAppend(&out, SessionsHeld(c, axis));
  absl::StrAppend(&out, "</section>\n");
  return out;
}

std::string Questionnaires(const CourseReportInput& in, const Course& c,
                           const TimeAxis& axis) {
  std::vector<Threshold> thresholds = TemplateThresholds(*in.workflow);
  std::string out = "<section id=\"questionnaires\"><h2>Questionnaires</h2>";
  for (const Instrument& i : Instruments()) {
    auto it = c.scores.find(i.id);
    static const std::vector<Point> kNone;
    absl::StrAppend(
        &out,
        ScoreChart(absl::StrCat("chart-", i.id), i.id, i.name, i.max, i.bands,
                   thresholds, absl::StrCat(i.id, ".total"),
                   it == c.scores.end() ? kNone : it->second, axis, i.source));
  }
  absl::StrAppend(&out, "</section>\n");
  return out;
}

// AnchorName is an SRM activity in words ("to_bed": "To bed").
std::string AnchorName(const std::string& activity) {
  static const auto* const kNames = new std::map<std::string, std::string>{
      {"out_of_bed", "Out of bed"},
      {"first_contact", "First contact with another person"},
      {"start_work", "Start of work or the day's main activity"},
      {"dinner", "Dinner"},
      {"to_bed", "To bed"}};
  auto it = kNames->find(activity);
  return it != kNames->end() ? it->second : activity;
}

// AnchorDay is one diary date's recorded time of an activity (minutes
// after local midnight).
struct AnchorDay {
  absl::CivilDay date;
  int minutes;
};

// AnchorDays lists the diary dates that record `activity`, in date order.
std::vector<AnchorDay> AnchorDays(const std::string& activity,
                                  const Course& c) {
  std::vector<AnchorDay> days;
  for (const auto& [date, day] : c.diary) {
    auto it = day.times.find(activity);
    if (it != day.times.end()) days.push_back({date, it->second});
  }
  return days;
}

// ClockOffset measures a time of day as the signed offset, in (-720, 720]
// minutes, from `center` (so 23:30 and 00:30 sit an hour apart).
struct ClockOffset {
  double center;
  double operator()(double minutes) const {
    double m = std::fmod(minutes - center, 1440.0);
    if (m <= -720) m += 1440;
    if (m > 720) m -= 1440;
    return m;
  }
};

// CircularMeanMinutes is the circular mean of the days' times of day; the
// first day's time when they cancel out. `days` is not empty.
double CircularMeanMinutes(const std::vector<AnchorDay>& days) {
  double s = 0, co = 0;
  for (const AnchorDay& d : days) {
    s += std::sin(d.minutes / 1440.0 * 2 * M_PI);
    co += std::cos(d.minutes / 1440.0 * 2 * M_PI);
  }
  return std::hypot(s, co) > 1e-9 ? std::atan2(s, co) / (2 * M_PI) * 1440.0
                                  : days.front().minutes;
}

// DiaryWeek is a window of 7 local dates from the first diary date, with
// the activity's times on the dates recorded in it.
struct DiaryWeek {
  absl::CivilDay first;
  std::vector<SrmDayTimes> days;
};

// DiaryWeeks splits the diary into weeks from its first date; `c.diary` is
// not empty.
std::vector<DiaryWeek> DiaryWeeks(const std::string& activity,
                                  const Course& c) {
  std::vector<DiaryWeek> windows;
  const absl::CivilDay first = c.diary.begin()->first;
  for (const auto& [date, day] : c.diary) {
    int index = static_cast<int>((date - first) / 7);
    while (static_cast<int>(windows.size()) <= index) {
      windows.push_back({first + 7 * static_cast<int>(windows.size()), {}});
    }
    SrmDayTimes only;
    auto it = day.times.find(activity);
    if (it != day.times.end()) only[activity] = it->second;
    windows[index].days.push_back(only);
  }
  return windows;
}

// Noon is the middle of local date `d`, where a day's point is drawn.
absl::Time Noon(absl::CivilDay d, absl::TimeZone zone) {
  return absl::FromCivil(absl::CivilSecond(d) + 12 * 3600, zone);
}

// OffsetAxis is the y axis of an anchor chart: at least +/-2 hours around
// the mean, an hour beyond the farthest day, on whole hours.
ValueAxis OffsetAxis(const std::vector<AnchorDay>& days,
                     const ClockOffset& offset, double height) {
  double lo = -120, hi = 120;
  for (const AnchorDay& d : days) {
    lo = std::min(lo, offset(d.minutes) - 60);
    hi = std::max(hi, offset(d.minutes) + 60);
  }
  lo = std::floor(lo / 60) * 60;
  hi = std::ceil(hi / 60) * 60;
  return ValueAxis{lo, hi, height, /*downward=*/true};
}

// ClockTicks labels the y axis on whole hours of the clock.
std::string ClockTicks(const ValueAxis& y, const ClockOffset& offset) {
  std::string svg;
  const double lo = y.min, hi = y.max, center = offset.center;
  const double first_tick = std::ceil((center + lo) / 60) * 60 - center;
  for (double v = first_tick; v <= hi; v += (hi - lo) > 360 ? 120 : 60) {
    absl::StrAppend(&svg, "<text class=\"tick\" x=\"", Num(kLeft - 6),
                    "\" y=\"", Num(y.Y(v) + 4), "\" text-anchor=\"end\">",
                    FormatMinutes(center + v), "</text>");
  }
  return svg;
}

// HabitualWeeks draws each week's habitual time +/-45 min as a shaded band
// on `svg`, lists the weeks in a folded table, and returns each diary
// date's habitual time (nullopt where its week has none).
std::map<absl::CivilDay, std::optional<double>> HabitualWeeks(
    const std::vector<DiaryWeek>& windows, const ClockOffset& offset,
    const TimeAxis& axis, const ValueAxis& y, std::string& svg,
    std::string& table) {
  table =
      "<details><summary>Weekly habitual time</summary><table><tr>"
      "<th>Week from</th><th>Days recorded</th><th>Habitual time</th>"
      "<th>Shift from the week before</th><th>Within 45 min</th></tr>";
  std::map<absl::CivilDay, std::optional<double>> habitual_by_date;
  for (size_t i = 0; i < windows.size(); ++i) {
    const DiaryWeek& win = windows[i];
    std::vector<SrmAnchorTrend> trends = SrmAnchorTrends(
        i == 0 ? std::vector<SrmDayTimes>{} : windows[i - 1].days, win.days);
    const SrmAnchorTrend* t = trends.empty() ? nullptr : &trends.front();
    int recorded = 0;
    for (const SrmDayTimes& d : win.days) recorded += d.empty() ? 0 : 1;
    for (int k = 0; k < 7; ++k) {
      habitual_by_date[win.first + k] =
          t != nullptr ? t->habitual_minutes : std::nullopt;
    }
    if (t != nullptr && t->habitual_minutes.has_value()) {
      double ht = offset(*t->habitual_minutes);
      double x0 = axis.X(Noon(win.first, axis.zone) - absl::Hours(12));
      double x1 = axis.X(Noon(win.first + 7, axis.zone) - absl::Hours(12));
      absl::StrAppend(
          &svg, "<rect class=\"hit-band\" x=\"", Num(x0), "\" y=\"",
          Num(y.Y(ht - 45)), "\" width=\"", Num(std::max(x1 - x0, 1.0)),
          "\" height=\"", Num(y.Y(ht + 45) - y.Y(ht - 45)), "\"><title>",
          HtmlEscape(absl::StrCat(
              "Habitual time ", FormatMinutes(*t->habitual_minutes),
              " +/-45 min, week from ", absl::FormatCivilTime(win.first))),
          "</title></rect>");
      absl::StrAppend(&svg, "<line class=\"habitual\" x1=\"", Num(x0),
                      "\" y1=\"", Num(y.Y(ht)), "\" x2=\"", Num(x1), "\" y2=\"",
                      Num(y.Y(ht)), "\"/>");
    }
    absl::StrAppend(&table, "<tr><td>", absl::FormatCivilTime(win.first),
                    "</td><td>", recorded, "</td><td>",
                    t != nullptr && t->habitual_minutes.has_value()
                        ? FormatMinutes(*t->habitual_minutes)
                        : "fewer than 3 days",
                    "</td><td>",
                    t != nullptr && t->shift_minutes.has_value()
                        ? absl::StrFormat("%+.0f min", *t->shift_minutes)
                        : "-",
                    "</td><td>",
                    t != nullptr && t->hit_rate.has_value()
                        ? absl::StrFormat("%.0f%%", *t->hit_rate * 100)
                        : "-",
                    "</td></tr>");
  }
  absl::StrAppend(&table, "</table></details>");
  return habitual_by_date;
}

// AnchorSeries draws the days' times as a line with one point per day, a
// miss where the time is more than 45 min from its week's habitual time;
// returns the number of hits.
int AnchorSeries(
    const std::string& activity, const std::vector<AnchorDay>& days,
    const std::map<absl::CivilDay, std::optional<double>>& habitual_by_date,
    const ClockOffset& offset, const TimeAxis& axis, const ValueAxis& y,
    std::string& svg) {
  std::string path;
  for (const AnchorDay& d : days) {
    absl::StrAppend(&path, path.empty() ? "M" : " L",
                    Num(axis.X(Noon(d.date, axis.zone))), ",",
                    Num(y.Y(offset(d.minutes))));
  }
  absl::StrAppend(&svg, "<path class=\"series\" d=\"", path, "\"/>");
  int hits = 0;
  for (const AnchorDay& d : days) {
    auto found = habitual_by_date.find(d.date);
    std::optional<double> ht =
        found != habitual_by_date.end() ? found->second : std::nullopt;
    bool hit =
        ht.has_value() && std::fabs(offset(d.minutes) - offset(*ht)) <= 45;
    hits += hit ? 1 : 0;
    absl::StrAppend(&svg, "<circle class=\"point", hit ? "" : " miss",
                    "\" data-point=\"srm-", activity, "\" cx=\"",
                    Num(axis.X(Noon(d.date, axis.zone))), "\" cy=\"",
                    Num(y.Y(offset(d.minutes))), "\" r=\"",
                    days.size() > 60 ? "2" : "3", "\"><title>",
                    absl::FormatCivilTime(d.date), ": ",
                    FormatMinutes(d.minutes), hit ? "" : " (outside +/-45 min)",
                    "</title></circle>");
  }
  return hits;
}

// AnchorChart draws one activity's daily times: y is the offset from the
// activity's circular mean over the whole diary (so 23:30 and 00:30 sit an
// hour apart), with each 7-day window's habitual time +/-45 min shaded.
std::string AnchorChart(const std::string& activity, const Course& c,
                        const TimeAxis& axis) {
  const std::vector<AnchorDay> days = AnchorDays(activity, c);
  const std::string title = absl::StrCat("Daily time of ", activity);
  const std::string heading =
      absl::StrCat("<h3>", HtmlEscape(AnchorName(activity)), "</h3>");
  constexpr double kHeight = 170;
  std::string svg = SvgOpen(absl::StrCat("chart-srm-", activity), kHeight,
                            absl::StrCat(title, " around the habitual time"));
  if (days.empty()) {
    absl::StrAppend(&svg, axis.Ticks(kTop, kHeight - kBottom),
                    EmptyNote(kHeight, absl::StrCat("No diary times for ",
                                                    activity, " yet")),
                    "</svg>");
    return absl::StrCat(heading, "<figure>", svg, "<figcaption>",
                        HtmlEscape(absl::StrCat(title, ": no diary days yet.")),
                        "</figcaption></figure>\n");
  }
  const ClockOffset offset{CircularMeanMinutes(days)};
  const ValueAxis y = OffsetAxis(days, offset, kHeight);
  absl::StrAppend(&svg, ClockTicks(y, offset),
                  axis.Ticks(kTop, kHeight - kBottom));
  std::string table;
  const std::map<absl::CivilDay, std::optional<double>> habitual_by_date =
      HabitualWeeks(DiaryWeeks(activity, c), offset, axis, y, svg, table);
  int hits =
      AnchorSeries(activity, days, habitual_by_date, offset, axis, y, svg);
  absl::StrAppend(&svg, "</svg>");
  std::string caption = absl::StrCat(
      title, ": ", days.size(), " days recorded, latest ",
      FormatMinutes(days.back().minutes), " on ",
      absl::FormatCivilTime(days.back().date), "; ", hits,
      " within 45 minutes of their week's habitual time (shaded band).");
  return absl::StrCat(heading, "<figure>", svg, "<figcaption>",
                      HtmlEscape(caption), "</figcaption>", table,
                      "</figure>\n");
}

std::string Rhythm(const CourseReportInput& in, const Course& c,
                   const TimeAxis& axis) {
  std::vector<Threshold> thresholds = TemplateThresholds(*in.workflow);
  auto it = c.scores.find("srm");
  static const std::vector<Point> kNone;
  std::string out = absl::StrCat(
      "<section id=\"rhythm\"><h2>Social rhythm</h2>",
      ScoreChart("chart-srm", "srm", "SRM score", 7, {}, thresholds,
                 "srm.score", it == c.scores.end() ? kNone : it->second, axis,
                 "Score of the 7 days ending with each diary day: 0-7, "
                 "higher is more regular"));
  std::vector<std::string> activities = Srm5Activities();
  std::set<std::string> recorded;
  for (const auto& [date, day] : c.diary) {
    for (const auto& [a, m] : day.times) recorded.insert(a);
  }
  for (const std::string& a : recorded) {
    if (std::find(activities.begin(), activities.end(), a) ==
        activities.end()) {
      activities.push_back(a);
    }
  }
  for (const std::string& a : activities) {
    absl::StrAppend(&out, AnchorChart(a, c, axis));
  }
  absl::StrAppend(&out, "</section>\n");
  return out;
}

std::string AlertTitle(const WorkflowTemplate& w, const std::string& id) {
  auto match = [&](const std::vector<Action>& actions) -> std::string {
    for (const Action& a : actions) {
      if (a.kind == Action::Kind::kRaiseAlert &&
          absl::StartsWith(id, absl::StrCat(a.alert.id, "-"))) {
        return a.alert.title;
      }
    }
    return "";
  };
  std::vector<const RuleTemplate*> rules;
  for (const StageTemplate& s : w.stages) {
    for (const RuleTemplate& r : s.rules) rules.push_back(&r);
  }
  for (const RuleTemplate& r : w.rules) rules.push_back(&r);
  for (const RuleTemplate* r : rules) {
    std::string t = match(r->then);
    if (t.empty()) t = match(r->otherwise);
    if (!t.empty()) return t;
  }
  return "";
}

std::string AlertsAndTasks(const CourseReportInput& in, const Course& c,
                           const TimeAxis& axis) {
  std::string out = "<section id=\"alerts\"><h2>Alerts</h2>";
  if (c.alerts.empty()) {
    absl::StrAppend(&out, "<p>No alerts raised.</p>");
  } else {
    absl::StrAppend(&out,
                    "<table><tr><th>Raised</th><th>Alert</th><th>Priority"
                    "</th><th>Status</th><th>Note</th></tr>");
    for (const AlertRow& a : c.alerts) {
      std::string status;
      const bool late =
          a.acknowledge_by.has_value() &&
          (a.acknowledged.has_value() ? *a.acknowledged > *a.acknowledge_by
                                      : in.as_of >= *a.acknowledge_by);
      if (a.acknowledged.has_value()) {
        status =
            absl::StrCat("acknowledged ", DateTime(*a.acknowledged, axis.zone));
      } else {
        status = "open";
      }
      if (late) {
        absl::StrAppend(&status, "; escalated ",
                        DateTime(*a.acknowledge_by, axis.zone),
                        " (not acknowledged in time)");
      } else if (!a.acknowledged.has_value() && a.acknowledge_by.has_value()) {
        absl::StrAppend(&status, "; acknowledge by ",
                        DateTime(*a.acknowledge_by, axis.zone));
      }
      std::string title = AlertTitle(*in.workflow, a.id);
      absl::StrAppend(
          &out, "<tr class=\"", a.priority == "urgent" ? "urgent" : "",
          "\"><td>", DateTime(a.raised, axis.zone), "</td><td>",
          HtmlEscape(title.empty() ? a.id
                                   : absl::StrCat(title, " (", a.id, ")")),
          "<br><small>", HtmlEscape(a.reason), "</small></td><td>",
          HtmlEscape(a.priority), "</td><td>", HtmlEscape(status), "</td><td>",
          HtmlEscape(a.note), "</td></tr>");
    }
    absl::StrAppend(&out, "</table>");
  }
  absl::StrAppend(&out,
                  "</section>\n<section id=\"tasks\"><h2>Open tasks</h2>");
  if (in.open_tasks.empty()) {
    absl::StrAppend(&out, "<p>No open tasks.</p>");
  } else {
    absl::StrAppend(&out,
                    "<table><tr><th>Priority</th><th>Task</th><th>For</th>"
                    "<th>Due</th></tr>");
    for (const v1::Task& t : in.open_tasks) {
      absl::StrAppend(
          &out, "<tr><td>", HtmlEscape(v1::Task::Priority_Name(t.priority())),
          "</td><td>", HtmlEscape(t.title()), "</td><td>",
          HtmlEscape(v1::Task::Assignee_Name(t.assignee())), "</td><td>",
          t.has_due_time() ? DateTime(ToTime(t.due_time()), axis.zone) : "-",
          "</td></tr>");
    }
    absl::StrAppend(&out, "</table>");
  }
  absl::StrAppend(&out, "</section>\n");
  return out;
}

std::string List(const google::protobuf::RepeatedPtrField<std::string>& items) {
  if (items.empty()) return "<p>-</p>";
  std::string out = "<ul>";
  for (const std::string& i : items) {
    absl::StrAppend(&out, "<li>", HtmlEscape(i), "</li>");
  }
  return absl::StrCat(out, "</ul>");
}

std::string GoalAndPlan(const Course& c) {
  std::string out = "<section id=\"goal\"><h2>Goal</h2>";
  if (c.goal == nullptr) {
    absl::StrAppend(&out, "<p>No goal set yet.</p>");
  } else {
    absl::StrAppend(&out, "<dl class=\"facts\"><dt>Problem area</dt><dd>",
                    HtmlEscape(c.goal->problem_area()),
                    "</dd><dt>Goal</dt><dd>", HtmlEscape(c.goal->description()),
                    "</dd><dt>Target</dt><dd>", HtmlEscape(c.goal->target()),
                    "</dd></dl>");
  }
  if (!c.disruption_plans.empty()) {
    absl::StrAppend(&out, "<h3>Plans for disruptions</h3><ul>");
    for (const v1::DisruptionPlan* p : c.disruption_plans) {
      absl::StrAppend(&out, "<li><strong>", HtmlEscape(p->kind()),
                      "</strong>: ", HtmlEscape(p->plan()), "</li>");
    }
    absl::StrAppend(&out, "</ul>");
  }
  absl::StrAppend(&out,
                  "</section>\n<section id=\"relapse-plan\"><h2>"
                  "Relapse-prevention plan</h2>");
  if (c.relapse_plan == nullptr) {
    absl::StrAppend(&out, "<p>No relapse-prevention plan written yet.</p>");
  } else {
    const v1::RelapsePreventionPlan& p = *c.relapse_plan;
    absl::StrAppend(&out, "<div class=\"plan\"><h3>Early warning signs</h3>",
                    List(p.early_warning_signs()), "<h3>Triggers</h3>",
                    List(p.triggers()), "<h3>Coping strategies</h3>",
                    List(p.coping_strategies()), "<h3>Supports</h3>",
                    List(p.supports()), "<h3>Professional contacts</h3>",
                    List(p.professional_contacts()), "</div>");
  }
  absl::StrAppend(&out, "</section>\n");
  return out;
}

constexpr char kStyle[] = R"css(
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1a1a1a; margin: 0 auto; max-width: 60rem; padding: 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.25rem; border-bottom: 2px solid #1565c0; padding-bottom: .2rem;
  margin-top: 1.8rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 .3rem; }
.note { color: #6a1b9a; font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: .8rem 0; }
figure svg { width: 100%; height: auto; display: block; background: #fff; }
figcaption { font-size: .9rem; color: #333; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; margin: .3rem 0; }
th, td { border: 1px solid #ccc; padding: .2rem .4rem; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; }
th { background: #eef3fa; }
tr.urgent td { background: #ffebee; }
details summary { cursor: pointer; font-size: .85rem; color: #1565c0; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .tick { fill: #555; }
svg .grid { stroke: #e0e0e0; stroke-width: 1; }
svg .series { fill: none; stroke: #1565c0; stroke-width: 1.5; }
svg .point { fill: #1565c0; stroke: #fff; stroke-width: 1; }
svg .point.miss { fill: #c62828; }
svg .threshold { stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 6 3; }
svg .threshold-label { fill: #c62828; font-weight: 600; }
svg .band { fill: #777; font-size: 10px; }
svg .empty { fill: #777; font-size: 14px; font-style: italic; }
svg .stage { stroke: #fff; stroke-width: 1; }
svg .stage-label { font-weight: 600; }
svg .session { stroke: #1a1a1a; stroke-width: 2; }
svg .cadence { fill: #ef6c00; }
svg .hit-band { fill: #c8e6c9; opacity: .7; }
svg .habitual { stroke: #2e7d32; stroke-width: 1; stroke-dasharray: 3 2; }
.graph svg { max-width: 100%; height: auto; }
footer { margin-top: 2rem; font-size: .8rem; color: #555; }
@media (max-width: 40rem) {
  body { font-size: 14px; padding: .5rem; }
  dl.facts { grid-template-columns: 1fr; }
  dl.facts dd { margin-bottom: .3rem; }
  table { font-size: .8rem; }
}
@media print {
  @page { size: A4; margin: 14mm 12mm; }
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  h2 { break-after: avoid; }
  figure, tr, .plan ul { break-inside: avoid; }
  details > *:not(summary) { display: none; }
  details summary { display: none; }
  a { color: inherit; text-decoration: none; }
}
)css";

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderCourseReport(const CourseReportInput& in) {
  absl::Time start = in.enrollment.has_create_time()
                         ? ToTime(in.enrollment.create_time())
                         : in.as_of;
  absl::Time end = in.as_of;
  for (const v1::Event& e : in.events) {
    start = std::min(start, ToTime(e.record_time()));
    end = std::max(end, ToTime(e.record_time()));
  }
  if (end <= start) end = start + absl::Hours(24);
  const TimeAxis axis{start, end, in.zone};
  const Course course = ReadCourse(in, start, end);

  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\">"
      // Nothing is fetched and no script runs, whatever the data holds.
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
      "'none'; style-src 'unsafe-inline'; img-src data:\">"
      "<title>",
      HtmlEscape(absl::StrCat("Course report: ", in.enrollment.patient_ref())),
      "</title><style>", kStyle, "</style></head><body>\n", Header(in, axis),
      Timeline(in, course, axis), Questionnaires(in, course, axis),
      Rhythm(in, course, axis), AlertsAndTasks(in, course, axis),
      GoalAndPlan(course));
  if (!in.graph_svg.empty()) {
    absl::StrAppend(&html,
                    "<section id=\"graph\" class=\"graph\"><h2>The workflow "
                    "</h2><figure>",
                    in.graph_svg,
                    "<figcaption>Stages of the workflow with their tasks; "
                    "arrows are exits labelled with their condition as the "
                    "template states it, rules are listed in their "
                    "stage.</figcaption></figure></section>\n");
  }
  absl::StrAppend(&html,
                  "<footer>Generated by ipsrt from the enrollment's "
                  "event log. Contains patient data: store and share "
                  "it as a clinical record.</footer>\n</body></html>\n");
  return html;
}

}  // namespace ipsrt::report
