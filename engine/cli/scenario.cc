#include "cli/scenario.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "common/yaml_reader.h"
#include "core/enrollments.h"
#include "google/protobuf/util/time_util.h"
#include "instruments/fixed_instruments.h"

namespace ipsrt::cli {
namespace {

using google::protobuf::util::TimeUtil;

// More injected ticks than this is a mistake (a tick of PT1S over a year).
constexpr int kMaxTicks = 100000;
// The longest virtual span a scenario may cover (start to `until` or the
// last event): ten years, several times the longest IPSRT maintenance
// phase. Refused before anything is simulated.
constexpr absl::Duration kMaxSpan = absl::Hours(24 * 3653);

constexpr absl::string_view kPayloadKeys[] = {
    "session_held", "questionnaire",      "srm_diary",     "goal_set",
    "relapse_plan", "disruption_plan",    "stage_change",  "alert_acknowledged",
    "time_elapsed", "enrollment_updated", "task_completed"};

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

std::string Where(const YamlReader& r, const YAML::Node& node) {
  YAML::Mark m = node.Mark();
  return absl::StrCat(r.file(), ":", m.line + 1, ":", m.column + 1);
}

// ScenarioParser reads one scenario document into `out`, recording every
// problem on the reader.
class ScenarioParser {
 public:
  ScenarioParser(YamlReader& r, const runtime::ZoneLoader& zones)
      : r_(r), zones_(zones) {}

  void Parse(const YAML::Node& root, Scenario& out);

 private:
  // ParseTime reads a time as the scenario writes it (see scenarios.md):
  // "YYYY-MM-DDTHH:MM" local, or "+<N>d [HH:MM]" / "+<N>w [HH:MM]" after
  // the start date. nullopt (after recording an error) when malformed.
  std::optional<absl::Time> ParseTime(const YAML::Node& node,
                                      const std::string& path);
  void ParseEvent(const YAML::Node& node, const std::string& path,
                  absl::Time previous, ScenarioEvent& event);
  // ParseEventTime places the event at its `at` time or `after` the
  // previous event (InfinitePast: the event is not placed yet).
  void ParseEventTime(const YAML::Node& node, const std::string& path,
                      absl::Time previous, ScenarioEvent& event);
  // ParsePayload reads the event's one payload, `key`, at `n` (`p`).
  void ParsePayload(const std::string& key, const YAML::Node& n,
                    const std::string& p, bool placed, ScenarioEvent& event);
  // A payload's map; null (written as `session_held:`) counts as empty.
  bool PayloadMap(const YAML::Node& node, const std::string& path,
                  std::initializer_list<absl::string_view> keys);
  void Questionnaire(const YAML::Node& n, const std::string& path,
                     v1::QuestionnaireResponse& q);
  void SrmDiary(const YAML::Node& n, const std::string& path, absl::Time at,
                v1::SrmDiaryDay& d);
  void Strings(const YAML::Node& n, const std::string& path,
               absl::string_view key,
               google::protobuf::RepeatedPtrField<std::string>* out);
  // ReadExpect reads an `expect` map (`course`: the top-level one).
  void ReadExpect(const YAML::Node& node, const std::string& path,
                  Expectations& out);
  std::optional<std::vector<std::string>> StringList(const YAML::Node& map,
                                                     const std::string& path,
                                                     const char* key);

  YamlReader& r_;
  const runtime::ZoneLoader& zones_;
  bool have_zone_ = false;
  absl::TimeZone zone_;
  absl::CivilMinute start_civil_;
  bool have_start_ = false;
  // Set by ParseEvent when the event's time could not be read.
  bool time_failed_ = false;
};

void ScenarioParser::Parse(const YAML::Node& root, Scenario& out) {
  out.file = r_.file();
  if (!r_.ExpectMap(root, "", false)) return;
  r_.ExpectKeys(root, "",
                {"workflow", "patient", "tick", "until", "expect", "events"});
  if (root["expect"].IsDefined()) {
    ReadExpect(root["expect"], "expect", out.expect);
  }
  out.workflow = r_.String(root, "", "workflow", "");

  YAML::Node patient = root["patient"];
  if (r_.ExpectMap(patient, "patient", false)) {
    r_.ExpectKeys(patient, "patient",
                  {"time_zone", "start", "patient_ref", "clinician_ref"});
    out.time_zone = r_.String(patient, "patient", "time_zone", "", true);
    if (!out.time_zone.empty()) {
      absl::StatusOr<absl::TimeZone> zone = zones_(out.time_zone);
      if (zone.ok()) {
        out.zone = *zone;
        zone_ = *zone;
        have_zone_ = true;
      } else {
        r_.Error(patient["time_zone"], "patient.time_zone",
                 zone.status().message());
      }
    }
    std::string start = r_.String(patient, "patient", "start", "", true);
    if (!start.empty()) {
      if (absl::ParseCivilTime(start, &start_civil_)) {
        have_start_ = true;
        if (have_zone_) out.start = LocalToAbsolute(start_civil_, zone_);
      } else {
        r_.Error(patient["start"], "patient.start",
                 absl::StrCat("must be a local time \"YYYY-MM-DDTHH:MM\", not "
                              "\"",
                              start, "\""));
      }
    }
    out.patient_ref =
        r_.String(patient, "patient", "patient_ref", out.patient_ref);
    out.clinician_ref =
        r_.String(patient, "patient", "clinician_ref", out.clinician_ref);
  }
  // Times need both the zone and the start; without them only the shape of
  // the rest is checked.
  const bool can_place = have_zone_ && have_start_;

  std::string tick = r_.String(root, "", "tick", "");
  if (!tick.empty()) {
    if (IsIsoDuration(tick)) {
      out.tick = ParseIsoDuration(tick);
    } else {
      r_.Error(root["tick"], "tick",
               absl::StrCat("must be a positive ISO-8601 duration such as "
                            "\"P1D\" or \"PT12H\", not \"",
                            tick, "\""));
    }
  }
  if (root["until"].IsDefined() && can_place) {
    out.until = ParseTime(root["until"], "until");
  }

  YAML::Node events = root["events"];
  if (!events.IsDefined() || events.IsNull()) {
    r_.Error(root, "events", "is required");
    return;
  }
  if (!events.IsSequence()) {
    r_.Error(events, "events", "must be a list");
    return;
  }
  absl::Time previous = out.start;
  for (size_t i = 0; i < events.size(); ++i) {
    std::string path = YamlReader::Join("events", i);
    ScenarioEvent event;
    event.path = path;
    event.where = Where(r_, events[i]);
    event.time = previous;
    if (!can_place) {
      // Still check keys and payloads; times are checked once fixable.
      ParseEvent(events[i], path, absl::InfinitePast(), event);
      continue;
    }
    time_failed_ = false;
    ParseEvent(events[i], path, previous, event);
    // A time that could not be read leaves the previous one in force, so
    // later events are still checked for order.
    if (!time_failed_) previous = event.time;
    out.events.push_back(std::move(event));
  }
  if (out.until.has_value() && !out.events.empty() &&
      *out.until < out.events.back().time) {
    r_.Error(root["until"], "until", "is earlier than the last event");
  }
}

std::optional<absl::Time> ScenarioParser::ParseTime(const YAML::Node& node,
                                                    const std::string& path) {
  const std::string kHelp =
      "must be a local time \"YYYY-MM-DDTHH:MM\" or a day after the start "
      "date \"+<N>d [HH:MM]\" or \"+<N>w [HH:MM]\"";
  if (!node.IsScalar()) {
    r_.Error(node, path, kHelp);
    return std::nullopt;
  }
  const std::string text = node.Scalar();
  if (!absl::StartsWith(text, "+")) {
    absl::CivilMinute local;
    if (!absl::ParseCivilTime(text, &local)) {
      r_.Error(node, path, absl::StrCat(kHelp, ", not \"", text, "\""));
      return std::nullopt;
    }
    return LocalToAbsolute(local, zone_);
  }
  absl::string_view rest = absl::string_view(text).substr(1);
  size_t digits = 0;
  while (digits < rest.size() && absl::ascii_isdigit(rest[digits])) ++digits;
  int count = 0;
  if (digits == 0 || digits > 5 || digits == rest.size() ||
      !absl::SimpleAtoi(rest.substr(0, digits), &count) ||
      (rest[digits] != 'd' && rest[digits] != 'w')) {
    r_.Error(node, path, absl::StrCat(kHelp, ", not \"", text, "\""));
    return std::nullopt;
  }
  const int days = rest[digits] == 'w' ? count * 7 : count;
  rest.remove_prefix(digits + 1);
  int minutes = start_civil_.hour() * 60 + start_civil_.minute();
  if (!rest.empty()) {
    std::optional<int> at;
    if (absl::StartsWith(rest, " ")) {
      at = ParseLocalTimeOfDay(absl::StripLeadingAsciiWhitespace(rest));
    }
    if (!at.has_value()) {
      r_.Error(node, path, absl::StrCat(kHelp, ", not \"", text, "\""));
      return std::nullopt;
    }
    minutes = *at;
  }
  absl::CivilDay day = absl::CivilDay(start_civil_) + days;
  return LocalToAbsolute(absl::CivilSecond(day.year(), day.month(), day.day(),
                                           minutes / 60, minutes % 60, 0),
                         zone_);
}

bool ScenarioParser::PayloadMap(const YAML::Node& node, const std::string& path,
                                std::initializer_list<absl::string_view> keys) {
  if (node.IsNull()) return true;
  if (!node.IsMap()) {
    r_.Error(node, path, "must be a map (write {} for none)");
    return false;
  }
  r_.ExpectKeys(node, path, keys);
  return true;
}

void ScenarioParser::Strings(
    const YAML::Node& n, const std::string& path, absl::string_view key,
    google::protobuf::RepeatedPtrField<std::string>* out) {
  for (std::string& s : r_.StringList(n, path, key)) out->Add(std::move(s));
}

void ScenarioParser::Questionnaire(const YAML::Node& n, const std::string& path,
                                   v1::QuestionnaireResponse& q) {
  if (!PayloadMap(n, path, {"id", "answers", "task", "version"})) return;
  q.set_questionnaire_id(r_.String(n, path, "id", "", true));
  q.set_task_id(r_.String(n, path, "task", ""));
  q.set_questionnaire_version(
      static_cast<int32_t>(r_.Int(n, path, "version", 0, 0, 1000)));
  const std::string answers_path = YamlReader::Join(path, "answers");
  YAML::Node answers = n.IsMap() ? n["answers"] : YAML::Node();
  if (!answers.IsDefined() || answers.IsNull()) {
    r_.Error(n, answers_path, "is required");
    return;
  }
  auto value_of = [&](const YAML::Node& v, const std::string& p,
                      const std::string& item) {
    int32_t value = 0;
    if (!v.IsScalar() || !YAML::convert<int32_t>::decode(v, value)) {
      r_.Error(v, p, "must be an integer");
      return;
    }
    (*q.mutable_answers())[item] = value;
  };
  if (answers.IsSequence()) {
    // A list gives items "1", "2", ... in order.
    for (size_t i = 0; i < answers.size(); ++i) {
      value_of(answers[i], YamlReader::Join(answers_path, i),
               absl::StrCat(i + 1));
    }
  } else if (answers.IsMap()) {
    for (const auto& kv : answers) {
      const std::string item = kv.first.Scalar();
      value_of(kv.second, absl::StrCat(answers_path, "[\"", item, "\"]"), item);
    }
  } else {
    r_.Error(answers, answers_path,
             "must be a map of item to value or a list of values");
  }
}

void ScenarioParser::SrmDiary(const YAML::Node& n, const std::string& path,
                              absl::Time at, v1::SrmDiaryDay& d) {
  if (!PayloadMap(n, path,
                  {"date", "instrument", "mood", "activities", "correction"})) {
    return;
  }
  std::string date = r_.String(n, path, "date", "");
  if (date.empty()) {
    if (at != absl::InfinitePast()) {
      date = absl::FormatCivilTime(absl::ToCivilDay(at, zone_));
    }
  } else {
    absl::CivilDay day;
    if (!absl::ParseCivilTime(date, &day)) {
      r_.Error(
          n["date"], YamlReader::Join(path, "date"),
          absl::StrCat("must be a date \"YYYY-MM-DD\", not \"", date, "\""));
    }
  }
  d.set_local_date(date);
  d.set_instrument(r_.String(n, path, "instrument", "srm5"));
  d.set_mood(static_cast<int32_t>(r_.Int(n, path, "mood", 0, -5, 5)));
  d.set_correction(r_.Bool(n, path, "correction", false));
  const std::string activities_path = YamlReader::Join(path, "activities");
  YAML::Node activities = n.IsMap() ? n["activities"] : YAML::Node();
  if (!activities.IsDefined() || activities.IsNull()) return;
  if (!activities.IsMap()) {
    r_.Error(activities, activities_path,
             "must be a map of activity to local time \"HH:MM\" (\"\" when "
             "not done)");
    return;
  }
  for (const auto& kv : activities) {
    const std::string name = kv.first.Scalar();
    const std::string p = YamlReader::Join(activities_path, name);
    std::string time;
    if (!kv.second.IsNull()) {
      if (!kv.second.IsScalar()) {
        r_.Error(kv.second, p, "must be a local time \"HH:MM\" or \"\"");
        continue;
      }
      time = kv.second.Scalar();
    }
    if (!time.empty() && !ParseLocalTimeOfDay(time).has_value()) {
      r_.Error(kv.second, p,
               absl::StrCat("must be a local time \"HH:MM\" or \"\", not \"",
                            time, "\""));
      continue;
    }
    v1::SrmActivity* a = d.add_activities();
    a->set_activity(name);
    a->set_local_time(time);
    a->set_people_code(-1);
  }
}

std::optional<std::vector<std::string>> ScenarioParser::StringList(
    const YAML::Node& map, const std::string& path, const char* key) {
  YAML::Node n = map[key];
  if (!n.IsDefined()) return std::nullopt;
  std::vector<std::string> out;
  if (n.IsNull()) return out;
  if (!n.IsSequence()) {
    r_.Error(n, YamlReader::Join(path, key),
             "must be a list, e.g. [] or [early-warning]");
    return out;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) {
      r_.Error(n[i], YamlReader::Join(YamlReader::Join(path, key), i),
               "must be a string");
      continue;
    }
    out.push_back(n[i].Scalar());
  }
  return out;
}

void ScenarioParser::ReadExpect(const YAML::Node& node, const std::string& path,
                                Expectations& out) {
  if (!r_.ExpectMap(node, path, false)) return;
  r_.ExpectKeys(
      node, path,
      {"stage", "cadence", "alerts_raised", "alerts_acknowledged",
       "cadence_changes", "open_tasks", "scores", "reminders_planned"});
  YAML::Mark m = node.Mark();
  out.where = absl::StrCat(r_.file(), ":", m.line + 1, ":", m.column + 1);
  out.path = path;
  out.stage = r_.String(node, path, "stage", "");
  out.cadence = r_.String(node, path, "cadence", "");
  out.alerts_raised = StringList(node, path, "alerts_raised");
  out.alerts_acknowledged = StringList(node, path, "alerts_acknowledged");
  out.cadence_changes = StringList(node, path, "cadence_changes");
  out.open_tasks = StringList(node, path, "open_tasks");
  if (out.open_tasks.has_value()) {
    std::sort(out.open_tasks->begin(), out.open_tasks->end());
  }
  if (node["reminders_planned"].IsDefined()) {
    out.reminders_planned = static_cast<int>(
        r_.Int(node, path, "reminders_planned", 0, 0, 1000000));
  }
  YAML::Node scores = node["scores"];
  const std::string sp = YamlReader::Join(path, "scores");
  if (scores.IsDefined() && !scores.IsMap()) {
    r_.Error(scores, sp, "must be a map of score name to number or absent");
  } else if (scores.IsDefined()) {
    for (const auto& kv : scores) {
      const std::string name = kv.first.Scalar();
      double value = 0;
      if (kv.second.IsScalar() && kv.second.Scalar() == "absent") {
        out.scores[name] = std::nullopt;
      } else if (kv.second.IsScalar() &&
                 absl::SimpleAtod(kv.second.Scalar(), &value)) {
        out.scores[name] = value;
      } else {
        r_.Error(kv.second, YamlReader::Join(sp, name),
                 "must be a number or absent");
      }
    }
  }
}

void ScenarioParser::ParseEvent(const YAML::Node& node, const std::string& path,
                                absl::Time previous, ScenarioEvent& event) {
  if (!r_.ExpectMap(node, path, false)) return;
  r_.ExpectKeys(node, path,
                {"at", "after", "expect", "session_held", "questionnaire",
                 "srm_diary", "goal_set", "relapse_plan", "disruption_plan",
                 "stage_change", "alert_acknowledged", "time_elapsed",
                 "enrollment_updated", "task_completed"});
  ParseEventTime(node, path, previous, event);
  const bool placed = previous != absl::InfinitePast();

  YAML::Node expect = node["expect"];
  if (expect.IsDefined()) {
    ReadExpect(expect, YamlReader::Join(path, "expect"), event.expect);
  }

  std::vector<absl::string_view> given;
  for (absl::string_view key : kPayloadKeys) {
    if (node[std::string(key)].IsDefined()) given.push_back(key);
  }
  if (given.size() != 1) {
    r_.Error(node, path,
             absl::StrCat(
                 given.empty() ? "names no event" : "names several events",
                 "; give exactly one of ", absl::StrJoin(kPayloadKeys, ", ")));
    return;
  }
  const std::string key(given.front());
  const std::string p = YamlReader::Join(path, key);
  const YAML::Node n = node[key];
  ParsePayload(key, n, p, placed, event);
}

void ScenarioParser::ParseEventTime(const YAML::Node& node,
                                    const std::string& path,
                                    absl::Time previous, ScenarioEvent& event) {
  const bool placed = previous != absl::InfinitePast();
  if (node["at"].IsDefined() && node["after"].IsDefined()) {
    r_.Error(node["after"], YamlReader::Join(path, "after"),
             "give either at or after, not both");
  } else if (node["at"].IsDefined() && placed) {
    std::optional<absl::Time> at =
        ParseTime(node["at"], YamlReader::Join(path, "at"));
    time_failed_ = !at.has_value();
    if (at.has_value()) {
      if (*at < previous) {
        r_.Error(node["at"], YamlReader::Join(path, "at"),
                 "is earlier than the previous event; events must be in "
                 "time order");
      }
      event.time = *at;
    }
  } else if (node["after"].IsDefined()) {
    std::string after = r_.String(node, path, "after", "");
    if (!IsIsoDuration(after)) {
      time_failed_ = true;
      r_.Error(node["after"], YamlReader::Join(path, "after"),
               absl::StrCat("must be a positive ISO-8601 duration such as "
                            "\"PT1H\" or \"P1D\", not \"",
                            after, "\""));
    } else if (placed) {
      event.time = AddIsoDuration(previous, *ParseIsoDuration(after), zone_);
    }
  }
}

void ScenarioParser::ParsePayload(const std::string& key, const YAML::Node& n,
                                  const std::string& p, bool placed,
                                  ScenarioEvent& event) {
  v1::EventPayload& payload = event.payload;
  if (key == "session_held") {
    if (!PayloadMap(n, p, {"duration_minutes", "note"})) return;
    v1::SessionHeld* s = payload.mutable_session_held();
    s->set_duration_minutes(
        static_cast<int32_t>(r_.Int(n, p, "duration_minutes", 50, 1, 600)));
    s->set_note(r_.String(n, p, "note", ""));
  } else if (key == "questionnaire") {
    Questionnaire(n, p, *payload.mutable_questionnaire_response());
  } else if (key == "srm_diary") {
    SrmDiary(n, p, placed ? event.time : absl::InfinitePast(),
             *payload.mutable_srm_diary_day());
  } else if (key == "goal_set") {
    if (!PayloadMap(n, p, {"problem_area", "description", "target"})) return;
    v1::GoalSet* g = payload.mutable_goal_set();
    g->set_problem_area(r_.String(n, p, "problem_area", "", true));
    g->set_description(r_.String(n, p, "description", ""));
    g->set_target(r_.String(n, p, "target", ""));
  } else if (key == "relapse_plan") {
    if (!PayloadMap(n, p,
                    {"early_warning_signs", "triggers", "coping_strategies",
                     "supports", "professional_contacts"})) {
      return;
    }
    v1::RelapsePreventionPlan* plan = payload.mutable_relapse_plan();
    Strings(n, p, "early_warning_signs", plan->mutable_early_warning_signs());
    Strings(n, p, "triggers", plan->mutable_triggers());
    Strings(n, p, "coping_strategies", plan->mutable_coping_strategies());
    Strings(n, p, "supports", plan->mutable_supports());
    Strings(n, p, "professional_contacts",
            plan->mutable_professional_contacts());
  } else if (key == "disruption_plan") {
    if (!PayloadMap(n, p, {"kind", "plan"})) return;
    v1::DisruptionPlan* d = payload.mutable_disruption_plan();
    d->set_kind(r_.String(n, p, "kind", "", true));
    d->set_plan(r_.String(n, p, "plan", ""));
  } else if (key == "stage_change") {
    if (!PayloadMap(n, p, {"to", "reason"})) return;
    v1::StageChange* c = payload.mutable_stage_change();
    c->set_to_stage(r_.String(n, p, "to", "", true));
    c->set_reason(r_.String(n, p, "reason", ""));
  } else if (key == "alert_acknowledged") {
    if (!PayloadMap(n, p, {"alert", "latest", "note"})) return;
    v1::AlertAcknowledged* a = payload.mutable_alert_acknowledged();
    a->set_alert_id(r_.String(n, p, "alert", ""));
    event.acknowledge_latest = r_.String(n, p, "latest", "");
    a->set_note(r_.String(n, p, "note", ""));
    if (a->alert_id().empty() == event.acknowledge_latest.empty()) {
      r_.Error(n, p,
               "give exactly one of alert (an alert id such as "
               "\"phq9-item9-12\") and latest (an alert spec id such as "
               "\"phq9-item9\")");
    }
  } else if (key == "time_elapsed") {
    if (!PayloadMap(n, p, {})) return;
    payload.mutable_time_elapsed();
  } else if (key == "task_completed") {
    if (!PayloadMap(n, p, {"task", "note"})) return;
    v1::TaskCompleted* t = payload.mutable_task_completed();
    t->set_task_id(r_.String(n, p, "task", "", true));
    t->set_note(r_.String(n, p, "note", ""));
  } else if (key == "enrollment_updated") {
    if (!PayloadMap(n, p, {"time_zone", "clinician_ref", "reason"})) return;
    v1::EnrollmentUpdated* u = payload.mutable_enrollment_updated();
    u->set_time_zone(r_.String(n, p, "time_zone", ""));
    u->set_clinician_ref(r_.String(n, p, "clinician_ref", ""));
    u->set_reason(r_.String(n, p, "reason", ""));
    if (!u->time_zone().empty()) {
      absl::StatusOr<absl::TimeZone> zone = zones_(u->time_zone());
      if (!zone.ok()) {
        r_.Error(n["time_zone"], YamlReader::Join(p, "time_zone"),
                 zone.status().message());
      }
    }
    if (u->time_zone().empty() && u->clinician_ref().empty()) {
      r_.Error(n, p, "give a new time_zone or clinician_ref");
    }
  }
}

// Scaled multiplies every part of `d` by `k` (k * P1M is kM, so monthly
// ticks keep their day of month).
IsoDuration Scaled(const IsoDuration& d, int k) {
  return IsoDuration{d.years * k, d.months * k,  d.weeks * k,  d.days * k,
                     d.hours * k, d.minutes * k, d.seconds * k};
}

// LatestAlert finds the most recent unacknowledged alert raised from the
// alert spec `spec` (alert ids are "<spec>-<sequence>").
std::string LatestAlert(const internal::EnrollmentState& state,
                        absl::string_view spec) {
  const internal::AlertState* best = nullptr;
  for (const internal::AlertState& a : state.alerts()) {
    absl::string_view id = a.alert_id();
    if (a.acknowledged() || !absl::ConsumePrefix(&id, spec) ||
        !absl::ConsumePrefix(&id, "-") || id.empty() ||
        !std::all_of(id.begin(), id.end(), absl::ascii_isdigit)) {
      continue;
    }
    if (best == nullptr ||
        a.raised_by_sequence() > best->raised_by_sequence()) {
      best = &a;
    }
  }
  return best == nullptr ? "" : best->alert_id();
}

// Simulator applies events as Enrollments::Create and ::Apply do.
class Simulator {
 public:
  Simulator(const WorkflowTemplate& w, const Scenario& s,
            const runtime::ZoneLoader& zones, Simulation& out)
      : w_(w), s_(s), zones_(zones), out_(out) {}

  absl::Status Run();

 private:
  absl::Status Create();
  // Apply builds the event of `payload` (with `acknowledge` as its alert
  // id when set) on the simulation's arena and applies it.
  absl::Status Apply(const v1::EventPayload& payload, absl::Time at,
                     const std::string& where, bool tick,
                     const std::string& acknowledge = "");
  absl::Status TicksUntil(absl::Time limit, bool inclusive);
  // Check records every unmet expectation of `x` (each message after
  // `prefix`) over the events of `scope` and the current state; unless
  // check_all, the first one is returned as FAILED_PRECONDITION.
  absl::Status Check(const Expectations& x, const std::string& prefix,
                     const std::vector<const SimulatedEvent*>& scope);

  const WorkflowTemplate& w_;
  const Scenario& s_;
  const runtime::ZoneLoader& zones_;
  Simulation& out_;
  absl::Time last_ = absl::InfinitePast();
  int next_tick_ = 1;
};

absl::Status Simulator::Create() {
  v1::Event& event =
      *google::protobuf::Arena::CreateMessage<v1::Event>(out_.arena.get());
  event.set_sequence(1);
  event.set_type("enrollment.created");
  event.mutable_actor()->set_subject("simulation");
  event.mutable_actor()->set_role("clinician");
  *event.mutable_record_time() = ToProto(s_.start);
  event.set_request_id("simulation-1");
  v1::EnrollmentCreated* created =
      event.mutable_payload()->mutable_enrollment_created();
  created->set_patient_ref(s_.patient_ref);
  created->set_workflow_id(w_.id);
  created->set_workflow_version(w_.version);
  created->set_time_zone(s_.time_zone);
  created->set_clinician_ref(s_.clinician_ref);
  event.set_summary(absl::StrCat("Enrolled in ", w_.id, "@", w_.version,
                                 " at stage ", w_.stages.front().id));
  internal::EnrollmentState initial;
  initial.mutable_enrollment()->set_name(
      "tenants/simulation/enrollments/scenario");
  absl::StatusOr<runtime::StepResult> stepped =
      runtime::Step(w_, zones_, initial, event);
  if (!stepped.ok()) {
    return absl::Status(stepped.status().code(),
                        absl::StrCat(s_.file, ": error: patient: ",
                                     stepped.status().message()));
  }
  SealEvent("", *stepped, event);
  out_.state = std::move(stepped->state);
  out_.events.push_back(SimulatedEvent{
      event, "", false, out_.state.enrollment().stage(),
      out_.state.enrollment().session_cadence(), std::move(stepped->effects)});
  last_ = s_.start;
  return absl::OkStatus();
}

absl::Status Simulator::Apply(const v1::EventPayload& payload, absl::Time at,
                              const std::string& where, bool tick,
                              const std::string& acknowledge) {
  const internal::EnrollmentState& state = out_.state;
  v1::Event& event =
      *google::protobuf::Arena::CreateMessage<v1::Event>(out_.arena.get());
  event.set_sequence(state.enrollment().revision() + 1);
  event.set_type(runtime::EventTypeFor(payload));
  const bool by_patient =
      payload.has_questionnaire_response() || payload.has_srm_diary_day();
  event.mutable_actor()->set_subject(tick ? "scheduler" : "simulation");
  event.mutable_actor()->set_role(tick         ? "integration"
                                  : by_patient ? "patient"
                                               : "clinician");
  *event.mutable_record_time() = ToProto(at);
  event.set_request_id(absl::StrCat("simulation-", event.sequence()));
  *event.mutable_payload() = payload;
  if (!acknowledge.empty()) {
    event.mutable_payload()->mutable_alert_acknowledged()->set_alert_id(
        acknowledge);
  }
  // The simulator loads no plugins: it scores with the engine's
  // compiled-in copy of the core instruments' scoring code.
  if (absl::Status scored = ScoreEvent(event, /*questionnaires=*/nullptr);
      !scored.ok()) {
    return scored;
  }
  // In place: the state is not copied per event (a refused event leaves it
  // unchanged).
  const std::string previous_hash = state.last_event_hash();
  absl::StatusOr<runtime::StepChanges> changes =
      runtime::StepInPlace(w_, zones_, out_.state, event);
  if (!changes.ok()) return changes.status();
  SealEvent(previous_hash, *changes, out_.state, event);
  out_.events.push_back(SimulatedEvent{
      event, where, tick, out_.state.enrollment().stage(),
      out_.state.enrollment().session_cadence(), std::move(changes->effects)});
  last_ = at;
  return absl::OkStatus();
}

absl::Status Simulator::TicksUntil(absl::Time limit, bool inclusive) {
  if (!s_.tick.has_value()) return absl::OkStatus();
  for (;; ++next_tick_) {
    if (next_tick_ > kMaxTicks) {
      return absl::InvalidArgumentError(
          absl::StrCat(s_.file, ": error: tick: more than ", kMaxTicks,
                       " time.elapsed events; use a longer tick"));
    }
    absl::Time t =
        AddIsoDuration(s_.start, Scaled(*s_.tick, next_tick_), s_.zone);
    if (t > limit || (t == limit && !inclusive)) return absl::OkStatus();
    if (t <= last_) continue;
    static const v1::EventPayload* const kTick = [] {
      auto* payload = new v1::EventPayload();
      payload->mutable_time_elapsed();
      return payload;
    }();
    absl::Status status = Apply(*kTick, t, "", true);
    if (!status.ok()) {
      return absl::Status(
          status.code(),
          absl::StrCat(s_.file, ": error: tick at ", absl::FormatTime(t), ": ",
                       status.message()));
    }
  }
}

absl::Status Simulator::Run() {
  if (!s_.workflow.empty() && s_.workflow != w_.id) {
    return absl::InvalidArgumentError(
        absl::StrCat(s_.file,
                     ": error: workflow: the scenario is written for "
                     "\"",
                     s_.workflow, "\", not \"", w_.id, "\""));
  }
  absl::Time end = s_.start;
  if (!s_.events.empty()) end = std::max(end, s_.events.back().time);
  if (s_.until.has_value()) end = std::max(end, *s_.until);
  if (end - s_.start > kMaxSpan) {
    return absl::InvalidArgumentError(absl::StrCat(
        s_.file, ": error: ", s_.until.has_value() ? "until" : "events",
        ": the scenario spans ", absl::ToInt64Hours(end - s_.start) / 24,
        " days from patient.start; the limit is 3653 days (10 years)"));
  }
  if (s_.tick.has_value() &&
      AddIsoDuration(s_.start, Scaled(*s_.tick, kMaxTicks), s_.zone) < end) {
    return absl::InvalidArgumentError(absl::StrCat(
        s_.file, ": error: tick: more than ", kMaxTicks,
        " time.elapsed events before the end of the scenario; use a longer "
        "tick"));
  }
  // Room for the scripted events and the creation (ticks may add more).
  out_.events.reserve(out_.events.size() + s_.events.size() + 1);
  absl::Status status = Create();
  if (!status.ok()) return status;
  for (const ScenarioEvent& e : s_.events) {
    status = TicksUntil(e.time, /*inclusive=*/false);
    if (!status.ok()) return status;
    auto prefix = [&] {
      return absl::StrCat(e.where, ": error: ", e.path, ": ");
    };
    std::string acknowledge;
    if (!e.acknowledge_latest.empty()) {
      acknowledge = LatestAlert(out_.state, e.acknowledge_latest);
      if (acknowledge.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            prefix(), "alert_acknowledged.latest: no unacknowledged alert \"",
            e.acknowledge_latest, "-<n>\" is open"));
      }
    }
    status = Apply(e.payload, e.time, e.where, false, acknowledge);
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat(prefix(), status.message()));
    }
    if (e.expect.empty()) continue;
    status = Check(e.expect, prefix(), {&out_.events.back()});
    if (!status.ok()) return status;
  }
  if (s_.until.has_value()) {
    status = TicksUntil(*s_.until, /*inclusive=*/true);
    if (!status.ok()) return status;
  }
  if (s_.expect.empty()) return absl::OkStatus();
  std::vector<const SimulatedEvent*> course;
  for (const SimulatedEvent& e : out_.events) course.push_back(&e);
  return Check(s_.expect, absl::StrCat(s_.expect.where, ": error: "), course);
}

// AlertBase is an alert's id as the template names it: "early-warning-12"
// -> "early-warning".
std::string AlertBase(const std::string& id) {
  size_t dash = id.rfind('-');
  if (dash == std::string::npos || dash + 1 == id.size()) return id;
  for (size_t i = dash + 1; i < id.size(); ++i) {
    if (!absl::ascii_isdigit(id[i])) return id;
  }
  return id.substr(0, dash);
}

std::string List(const std::vector<std::string>& items) {
  return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
}

absl::Status Simulator::Check(const Expectations& x, const std::string& prefix,
                              const std::vector<const SimulatedEvent*>& scope) {
  std::vector<std::string> unmet;
  const v1::Enrollment& now = out_.state.enrollment();
  auto outcomes = [&](v1::Outcome::Kind kind, bool base) {
    std::vector<std::string> out;
    for (const SimulatedEvent* e : scope) {
      for (const v1::Outcome& o : e->event.outcomes()) {
        if (o.kind() != kind) continue;
        out.push_back(base ? AlertBase(o.subject()) : o.to());
      }
    }
    return out;
  };
  auto check_list = [&](const char* key,
                        const std::optional<std::vector<std::string>>& want,
                        const std::vector<std::string>& got) {
    if (!want.has_value()) return;
    ++out_.expectations_checked;
    if (*want != got) {
      unmet.push_back(absl::StrCat("expect.", key, ": expected ", List(*want),
                                   ", got ", List(got)));
    }
  };
  if (!x.stage.empty()) {
    ++out_.expectations_checked;
    if (x.stage != now.stage()) {
      unmet.push_back(absl::StrCat("expect.stage: expected stage \"", x.stage,
                                   "\", but the enrollment is in stage \"",
                                   now.stage(), "\""));
    }
  }
  if (!x.cadence.empty()) {
    ++out_.expectations_checked;
    if (x.cadence != now.session_cadence()) {
      unmet.push_back(absl::StrCat("expect.cadence: expected cadence ",
                                   x.cadence, ", but the session cadence is ",
                                   now.session_cadence()));
    }
  }
  check_list("alerts_raised", x.alerts_raised,
             outcomes(v1::Outcome::ALERT_RAISED, true));
  check_list("alerts_acknowledged", x.alerts_acknowledged,
             outcomes(v1::Outcome::ALERT_ACKNOWLEDGED, true));
  check_list("cadence_changes", x.cadence_changes,
             outcomes(v1::Outcome::CADENCE_CHANGED, false));
  if (x.open_tasks.has_value()) {
    std::vector<std::string> open;
    for (const v1::Task& t : runtime::OpenTasks(out_.state, false)) {
      open.push_back(t.kind() == "alert" ? AlertBase(t.task_id())
                                         : t.task_id());
    }
    std::sort(open.begin(), open.end());
    check_list("open_tasks", x.open_tasks, open);
  }
  for (const auto& [name, want] : x.scores) {
    ++out_.expectations_checked;
    auto it = out_.state.scores().find(name);
    std::optional<double> got;
    if (it != out_.state.scores().end()) got = it->second;
    auto show = [](const std::optional<double>& v) {
      return v.has_value() ? absl::StrCat(*v) : std::string("absent");
    };
    bool same = want.has_value() == got.has_value() &&
                (!want.has_value() || std::abs(*want - *got) < 1e-9);
    if (!same) {
      unmet.push_back(absl::StrCat("expect.scores.", name, ": expected ",
                                   show(want), ", got ", show(got)));
    }
  }
  if (x.reminders_planned.has_value()) {
    ++out_.expectations_checked;
    int planned = 0;
    for (const SimulatedEvent* e : scope) {
      for (const runtime::Effect& f : e->effects) {
        planned += f.kind == runtime::Effect::Kind::kScheduleReminder ||
                   f.kind == runtime::Effect::Kind::kScheduleSessionReminder;
      }
    }
    if (planned != *x.reminders_planned) {
      unmet.push_back(absl::StrCat("expect.reminders_planned: expected ",
                                   *x.reminders_planned, ", got ", planned));
    }
  }
  for (const std::string& m : unmet) {
    out_.unmet.push_back(absl::StrCat(prefix, m));
  }
  if (unmet.empty() || out_.check_all) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(prefix, unmet.front()));
}

}  // namespace

absl::StatusOr<Scenario> ParseScenario(absl::string_view yaml,
                                       absl::string_view file_name,
                                       const runtime::ZoneLoader& zones) {
  YamlReader r{std::string(file_name)};
  YAML::Node root = r.Parse(yaml);
  Scenario scenario;
  if (r.ok()) ScenarioParser(r, zones).Parse(root, scenario);
  if (r.ok()) return scenario;
  return r.ToStatus();
}

namespace {

std::unique_ptr<google::protobuf::Arena> NewLogArena() {
  // Blocks grow to 64 KiB: a year-long course's log takes a few dozen.
  google::protobuf::ArenaOptions options;
  options.start_block_size = 4096;
  options.max_block_size = 64 * 1024;
  return std::make_unique<google::protobuf::Arena>(options);
}

}  // namespace

Simulation::Simulation() : arena(NewLogArena()) {}

absl::Status Simulate(const WorkflowTemplate& workflow,
                      const Scenario& scenario,
                      const runtime::ZoneLoader& zones, Simulation* out) {
  // A moved-from Simulation has no arena left: give it a new one.
  if (out->arena == nullptr) out->arena = NewLogArena();
  const absl::Time began = absl::Now();
  absl::Status status = Simulator(workflow, scenario, zones, *out).Run();
  out->elapsed = absl::Now() - began;
  return status;
}

}  // namespace ipsrt::cli
