// core-instruments: the built-in questionnaire plugin. It serves PHQ-9,
// GAD-7, ASRM and the Social Rhythm Metric (SRM-5, SRM-17) and is built and
// loaded exactly like a third-party plugin (ipsrt_add_plugin, ipsrtd.yaml).
//
// Scoring is the engine's own pure code, compiled into this library:
// engine/instruments/fixed_instruments.cc (sums, bands, flags) and
// engine/instruments/srm.cc (the weekly SRM score of docs/domain.md).
// There is one implementation of each rule; this file only describes the
// instruments (texts, options, codes) and adapts the plugin messages.
//
// SRM through ScoreResponse: the response names the instrument ("srm5" or
// "srm17") and carries no answers; the diary week travels in
// ScoreResponseRequest.days (at most 7 distinct dates, activity times
// "HH:MM"). The scores are
//   srm.score (absent when no activity qualifies), srm.qualifying_activities,
//   srm.hits, srm.ali, and per activity srm.<activity>.days,
//   srm.<activity>.hits and srm.<activity>.habitual_minutes (minutes after
//   local midnight; only for a qualifying activity).
// Errors about the days name them from the request's root (`days[2]...`).
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "instruments/fixed_instruments.h"
#include "instruments/srm.h"
#include "ipsrt/plugin/plugin.h"
#include "model/duration.h"

namespace {

namespace pv1 = ::ipsrt::plugin::v1;
namespace v1 = ::ipsrt::v1;

constexpr char kLoinc[] = "http://loinc.org";
// Local code system for instruments and items without a LOINC code.
constexpr char kLocal[] = "urn:ipsrt:instruments";

void SetCode(v1::Coding* c, const char* system, std::string code,
             const char* display) {
  c->set_system(system);
  c->set_code(std::move(code));
  c->set_display(display);
}

struct ItemText {
  const char* text;
  const char* loinc;  // empty: a local code "<instrument>.<item>"
};

// Items 1..N of a fixed instrument with the same options each, values
// 0..spec.max_value, and the bands of the scoring spec.
v1::Questionnaire FixedInstrument(const char* id, const char* title,
                                  const char* preamble, const char* recall,
                                  const std::vector<ItemText>& items,
                                  const std::vector<const char*>& labels) {
  const ipsrt::FixedInstrumentSpec& spec = *ipsrt::FindFixedInstrument(id);
  v1::Questionnaire q;
  q.set_id(id);
  q.set_version(1);
  q.set_title(title);
  q.set_preamble(preamble);
  q.set_recall_period(recall);
  for (int n = 1; n <= spec.scored_items; ++n) {
    const ItemText& t = items[n - 1];
    v1::QuestionnaireItem* item = q.add_items();
    item->set_id(absl::StrCat(n));
    item->set_text(t.text);
    item->set_required(true);
    item->set_scored(true);
    for (int v = 0; v <= spec.max_value; ++v) {
      v1::AnswerOption* o = item->add_options();
      o->set_value(v);
      o->set_label(labels[v]);
    }
    if (*t.loinc != '\0') {
      SetCode(item->mutable_code(), kLoinc, t.loinc, t.text);
    } else {
      SetCode(item->mutable_code(), kLocal, absl::StrCat(id, ".", n), t.text);
    }
  }
  for (const auto& b : spec.bands) {
    v1::ScoreBand* band = q.add_bands();
    band->set_min(b.min);
    band->set_max(b.max);
    band->set_name(b.name);
  }
  ipsrt::DeclareFixedInstrumentOutputs(spec, &q);
  return q;
}

const std::vector<const char*>& FrequencyLabels() {
  static const auto* labels = new std::vector<const char*>{
      "Not at all", "Several days", "More than half the days",
      "Nearly every day"};
  return *labels;
}

v1::Questionnaire Phq9() {
  v1::Questionnaire q = FixedInstrument(
      "phq9", "Patient Health Questionnaire (PHQ-9)",
      "Over the last 2 weeks, how often have you been bothered by any of the "
      "following problems?",
      "P2W",
      {{"Little interest or pleasure in doing things", "44250-9"},
       {"Feeling down, depressed, or hopeless", "44255-8"},
       {"Trouble falling or staying asleep, or sleeping too much", "44259-0"},
       {"Feeling tired or having little energy", "44254-1"},
       {"Poor appetite or overeating", "44251-7"},
       {"Feeling bad about yourself - or that you are a failure or have let "
        "yourself or your family down",
        "44258-2"},
       {"Trouble concentrating on things, such as reading the newspaper or "
        "watching television",
        "44252-5"},
       {"Moving or speaking so slowly that other people could have noticed? "
        "Or the opposite - being so fidgety or restless that you have been "
        "moving around a lot more than usual",
        "44253-3"},
       {"Thoughts that you would be better off dead or of hurting yourself "
        "in some way",
        "44260-8"}},
      FrequencyLabels());
  // Item 10: recorded, not scored, not required.
  v1::QuestionnaireItem* difficulty = q.add_items();
  difficulty->set_id("10");
  difficulty->set_text(
      "If you checked off any problems, how difficult have these problems "
      "made it for you to do your work, take care of things at home, or get "
      "along with other people?");
  difficulty->set_required(false);
  difficulty->set_scored(false);
  int v = 0;
  for (const char* label : {"Not difficult at all", "Somewhat difficult",
                            "Very difficult", "Extremely difficult"}) {
    v1::AnswerOption* o = difficulty->add_options();
    o->set_value(v++);
    o->set_label(label);
  }
  SetCode(difficulty->mutable_code(), kLoinc, "69722-7",
          "Difficulty doing work, taking care of things at home, or getting "
          "along with other people");
  SetCode(q.mutable_panel_code(), kLoinc, "44249-1",
          "PHQ-9 quick depression assessment panel");
  SetCode(q.mutable_total_code(), kLoinc, "44261-6", "PHQ-9 total score");
  q.set_copyright(
      "PHQ-9: developed by Drs. Robert L. Spitzer, Janet B.W. Williams, Kurt "
      "Kroenke and colleagues; free to reproduce, no permission needed.");
  return q;
}

v1::Questionnaire Gad7() {
  v1::Questionnaire q = FixedInstrument(
      "gad7", "Generalized Anxiety Disorder scale (GAD-7)",
      "Over the last 2 weeks, how often have you been bothered by the "
      "following problems?",
      "P2W",
      {{"Feeling nervous, anxious, or on edge", "69725-0"},
       {"Not being able to stop or control worrying", "68509-9"},
       {"Worrying too much about different things", "69733-4"},
       {"Trouble relaxing", "69734-2"},
       {"Being so restless that it is hard to sit still", "69735-9"},
       {"Becoming easily annoyed or irritable", "69689-8"},
       {"Feeling afraid, as if something awful might happen", "69736-7"}},
      FrequencyLabels());
  SetCode(q.mutable_panel_code(), kLoinc, "69737-5",
          "Generalized anxiety disorder 7 item (GAD-7)");
  SetCode(q.mutable_total_code(), kLoinc, "70274-6", "GAD-7 total score");
  q.set_copyright(
      "GAD-7: developed by Drs. Robert L. Spitzer, Janet B.W. Williams, Kurt "
      "Kroenke and colleagues; free to reproduce.");
  return q;
}

// ASRM: item topics and neutral frequency labels in the project's own
// words; the published statements are the licence holder's to grant (see
// the copyright text), so a deployment that has permission shows them.
v1::Questionnaire Asrm() {
  v1::Questionnaire q = FixedInstrument(
      "asrm", "Altman Self-Rating Mania Scale (ASRM)",
      "For each item, choose the answer that best describes how you have "
      "been feeling over the past week, compared with how you usually feel.",
      "P1W",
      {{"Feeling happier or more cheerful than usual", ""},
       {"Feeling more self-confident than usual", ""},
       {"Needing less sleep than usual", ""},
       {"Talking more than usual", ""},
       {"Being more active than usual (socially, sexually, at work, at home "
        "or at school)",
        ""}},
      {"Not more than usual", "Occasionally", "Often", "Most of the time",
       "All of the time"});
  SetCode(q.mutable_panel_code(), kLocal, "asrm",
          "Altman Self-Rating Mania Scale");
  SetCode(q.mutable_total_code(), kLocal, "asrm.total", "ASRM total score");
  q.set_copyright(
      "ASRM (Altman et al. 1997): clinicians and researchers may reproduce it "
      "for their patients; check the terms before commercial distribution. "
      "A total of 6 or more suggests hypomania or mania (flag "
      "asrm.at_or_above_6).");
  return q;
}

const char* ActivityLabel(const std::string& a) {
  static const auto* labels = new std::map<std::string, const char*>{
      {"out_of_bed", "Out of bed"},
      {"first_contact",
       "First contact (in person or by phone) with another "
       "person"},
      {"morning_beverage", "Morning beverage"},
      {"breakfast", "Breakfast"},
      {"go_outside", "Go outside for the first time"},
      {"start_work",
       "Start work, school, housework, volunteering or family "
       "care"},
      {"lunch", "Lunch"},
      {"afternoon_snack", "Afternoon snack or beverage"},
      {"nap", "Nap"},
      {"dinner", "Dinner"},
      {"exercise", "Physical exercise"},
      {"evening_snack", "Evening snack or beverage"},
      {"tv_news", "Watch the evening TV news"},
      {"return_home", "Return home for the last time"},
      {"to_bed", "To bed"},
      {"custom_1", "An activity you name (1)"},
      {"custom_2", "An activity you name (2)"}};
  auto it = labels->find(a);
  return it == labels->end() ? a.c_str() : it->second;
}

// An SRM diary: one item per activity, answered with a clock time, so the
// items have no options; the weekly score has no bands (0-7, higher is
// more regular).
v1::Questionnaire Srm(const char* id, const char* title,
                      const std::vector<std::string>& activities) {
  v1::Questionnaire q;
  q.set_id(id);
  q.set_version(1);
  q.set_title(title);
  q.set_preamble(
      "Each day, write down the time you did each activity, or leave it "
      "empty if you did not do it today; note who was there (0 alone, 1 "
      "others present, 2 others actively involved, 3 others very "
      "stimulating) and rate your mood from -5 (very depressed) to +5 (very "
      "elated). The weekly score (0-7) counts how regular your times were.");
  q.set_recall_period("P1D");
  for (const std::string& a : activities) {
    v1::QuestionnaireItem* item = q.add_items();
    item->set_id(a);
    item->set_text(ActivityLabel(a));
    item->set_required(false);
    item->set_scored(true);
    SetCode(item->mutable_code(), kLocal, absl::StrCat("srm.", a),
            ActivityLabel(a));
  }
  SetCode(q.mutable_panel_code(), kLocal, id, title);
  SetCode(q.mutable_total_code(), kLocal, "srm.score",
          "Social Rhythm Metric weekly score");
  q.set_copyright(
      "Social Rhythm Metric: Monk et al. 1990 (SRM-17), Monk, "
      "Frank, Potts and Kupfer 2002 (SRM-5).");
  for (const v1::Questionnaire& built_in : ipsrt::BuiltInInstrumentOutputs()) {
    if (built_in.id() == id) {
      *q.mutable_score_definitions() = built_in.score_definitions();
    }
  }
  return q;
}

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

absl::StatusOr<pv1::ScoreResponseResponse> ScoreSrm(
    const pv1::ScoreResponseRequest& request,
    const std::vector<std::string>& known) {
  const v1::QuestionnaireResponse& r = request.response();
  if (!r.answers().empty()) {
    return Invalid(
        absl::StrCat("answers[\"", r.answers().begin()->first, "\"]"),
        absl::StrCat(r.questionnaire_id(),
                     " is a diary: send the week in `days`, not "
                     "answers"));
  }
  if (request.days_size() > 7) {
    return Invalid("days", absl::StrCat(request.days_size(),
                                        " days given; a week is at most 7"));
  }
  std::set<std::string> dates;
  std::vector<ipsrt::SrmDayTimes> window;
  for (int d = 0; d < request.days_size(); ++d) {
    const v1::SrmDiaryDay& day = request.days(d);
    std::string f = absl::StrCat("days[", d, "]");
    absl::CivilDay date;
    if (!absl::ParseCivilTime(day.local_date(), &date) ||
        absl::FormatCivilTime(date) != day.local_date()) {
      return Invalid(absl::StrCat(f, ".local_date"),
                     "must be a date \"YYYY-MM-DD\"");
    }
    if (!dates.insert(day.local_date()).second) {
      return Invalid(absl::StrCat(f, ".local_date"),
                     absl::StrCat(day.local_date(), " is given twice"));
    }
    if (!day.instrument().empty() && day.instrument() != r.questionnaire_id()) {
      return Invalid(absl::StrCat(f, ".instrument"),
                     absl::StrCat("\"", day.instrument(), "\" differs from ",
                                  r.questionnaire_id()));
    }
    if (day.mood() < -5 || day.mood() > 5) {
      return Invalid(absl::StrCat(f, ".mood"), "must be between -5 and +5");
    }
    ipsrt::SrmDayTimes times;
    for (int i = 0; i < day.activities_size(); ++i) {
      const v1::SrmActivity& a = day.activities(i);
      std::string af = absl::StrCat(f, ".activities[", i, "]");
      if (std::find(known.begin(), known.end(), a.activity()) == known.end()) {
        return Invalid(absl::StrCat(af, ".activity"),
                       absl::StrCat(r.questionnaire_id(), " has no activity \"",
                                    a.activity(), "\""));
      }
      if (times.count(a.activity()) > 0) {
        return Invalid(absl::StrCat(af, ".activity"),
                       absl::StrCat("\"", a.activity(), "\" is repeated"));
      }
      if (a.people_code() < -1 || a.people_code() > 3) {
        return Invalid(absl::StrCat(af, ".people_code"),
                       "must be 0-3 (or -1 when not recorded)");
      }
      if (a.local_time().empty()) continue;
      std::optional<int> minutes = ipsrt::ParseLocalTimeOfDay(a.local_time());
      if (!minutes.has_value()) {
        return Invalid(absl::StrCat(af, ".local_time"),
                       "must be HH:MM, or empty when not done");
      }
      times[a.activity()] = *minutes;
    }
    window.push_back(std::move(times));
  }
  // The patient's local week: all dates within 7 consecutive days.
  if (!dates.empty()) {
    absl::CivilDay first, last;
    absl::ParseCivilTime(*dates.begin(), &first);
    absl::ParseCivilTime(*dates.rbegin(), &last);
    if (last - first > 6) {
      return Invalid(
          "days", absl::StrCat("from ", *dates.begin(), " to ", *dates.rbegin(),
                               " is more than one 7-day window"));
    }
  }
  ipsrt::SrmWeekScore week = ipsrt::ScoreSrmWeek(window);
  pv1::ScoreResponseResponse out;
  auto& scores = *out.mutable_scores();
  if (week.score.has_value()) scores["srm.score"] = *week.score;
  scores["srm.qualifying_activities"] = week.qualifying_activities;
  scores["srm.hits"] = week.hits;
  scores["srm.ali"] = week.ali;
  for (const ipsrt::SrmActivityScore& a : week.activities) {
    scores[absl::StrCat("srm.", a.activity, ".days")] = a.days_done;
    scores[absl::StrCat("srm.", a.activity, ".hits")] = a.hits;
    if (a.habitual_minutes.has_value()) {
      scores[absl::StrCat("srm.", a.activity, ".habitual_minutes")] =
          *a.habitual_minutes;
    }
  }
  return out;
}

class CoreInstruments final : public ipsrt::plugin::Plugin {
 public:
  CoreInstruments()
      : instruments_{Phq9(), Gad7(), Asrm(),
                     Srm("srm5", "Social Rhythm Metric (SRM-5)",
                         ipsrt::Srm5Activities()),
                     Srm("srm17", "Social Rhythm Metric (SRM-17)",
                         ipsrt::Srm17Activities())} {}

  absl::StatusOr<pv1::DescribeResponse> Describe() override {
    pv1::DescribeResponse d;
    d.set_summary(
        "PHQ-9, GAD-7, ASRM and the Social Rhythm Metric (SRM-5, SRM-17)");
    return d;
  }

  absl::StatusOr<pv1::ListInstrumentsResponse> ListInstruments(
      const pv1::ListInstrumentsRequest&) override {
    pv1::ListInstrumentsResponse response;
    for (const v1::Questionnaire& q : instruments_) {
      *response.add_instruments() = q;
    }
    return response;
  }

  absl::StatusOr<pv1::ScoreResponseResponse> ScoreResponse(
      const pv1::ScoreResponseRequest& request) override {
    const v1::QuestionnaireResponse& r = request.response();
    const std::string& id = r.questionnaire_id();
    if (r.questionnaire_version() < 0 || r.questionnaire_version() > 1) {
      return Invalid(
          "questionnaire_version",
          absl::StrCat(id, " has version 1, not ", r.questionnaire_version()));
    }
    if (id == "srm5") return ScoreSrm(request, ipsrt::Srm5Activities());
    if (id == "srm17") return ScoreSrm(request, ipsrt::Srm17Activities());
    if (!ipsrt::IsFixedInstrument(id)) {
      return absl::NotFoundError(
          absl::StrCat("questionnaire_id: \"", id,
                       "\" is not an instrument of this plugin"));
    }
    if (request.days_size() > 0) {
      return Invalid("days",
                     absl::StrCat(id, " takes answers, not diary days"));
    }
    absl::StatusOr<ipsrt::ScoredResponse> scored =
        ipsrt::ScoreFixedInstrument(r, "");
    if (!scored.ok()) return scored.status();
    pv1::ScoreResponseResponse out;
    out.mutable_scores()->insert(scored->scores.begin(), scored->scores.end());
    out.set_band(scored->band);
    for (const std::string& f : scored->flags) out.add_flags(f);
    return out;
  }

 private:
  const std::vector<v1::Questionnaire> instruments_;
};

}  // namespace

IPSRT_PLUGIN(CoreInstruments, "core-instruments", "1.0.0",
             IPSRT_KIND_QUESTIONNAIRE)
