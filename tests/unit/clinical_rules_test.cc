// The clinical rules of templates: the engine's safety floor, instrument
// scores by id (q("id").score), named conditions with weekly hysteresis,
// course-wide counts and problem areas. Templates go through the real
// loader and events through the real Step.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "instruments/fixed_instruments.h"
#include "model/instrument_context.h"
#include "model/workflow.h"
#include "runtime/step.h"

namespace ipsrt {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::string_view kHeader =
    "id: floor-test\n"
    "version: 1\n"
    "title: Floor test\n";
// kOneStage is a weekly stage "only" (its keys continue at 4 spaces).
constexpr absl::string_view kOneStage =
    "stages:\n"
    "  - id: only\n"
    "    title: Only\n"
    "    cadence: P1W\n";

WorkflowTemplate Parse(const std::string& yaml,
                       const ModelContext& context = BuiltInModelContext()) {
  absl::StatusOr<WorkflowTemplate> t =
      ParseWorkflowTemplate(yaml, "t.yaml", context);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : WorkflowTemplate();
}

// Enrollment steps one enrollment through the real runtime, scoring
// responses of the built-in instruments as the server's plugin does and
// taking other instruments' scores as given.
class Enrollment {
 public:
  explicit Enrollment(const WorkflowTemplate& w)
      : w_(w),
        now_(absl::FromCivil(absl::CivilMinute(2026, 3, 2, 9, 0),
                             absl::UTCTimeZone())) {
    state_.mutable_enrollment()->set_name("tenants/t/enrollments/e1");
    v1::EventPayload p;
    v1::EnrollmentCreated* c = p.mutable_enrollment_created();
    c->set_patient_ref("Patient/1");
    c->set_workflow_id(w.id);
    c->set_workflow_version(w.version);
    c->set_time_zone("UTC");
    c->set_clinician_ref("Practitioner/1");
    Submit(p);
  }

  // Submit applies one event now, with `scores` and `flags` as a plugin
  // would have recorded them (built-in instruments are scored here).
  std::vector<v1::Outcome> Submit(
      v1::EventPayload payload,
      const std::map<std::string, double>& scores = {},
      const std::vector<std::string>& flags = {}) {
    absl::StatusOr<runtime::StepResult> r =
        Step(std::move(payload), scores, flags);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    state_ = std::move(r->state);
    effects_ = r->effects;
    return r->outcomes;
  }
  // TrySubmit is Submit that only reports whether Step accepts the event.
  absl::Status TrySubmit(v1::EventPayload payload) {
    return Step(std::move(payload), {}, {}).status();
  }

  std::vector<v1::Outcome> Phq9(int item9, int others = 0) {
    v1::EventPayload p;
    v1::QuestionnaireResponse* r = p.mutable_questionnaire_response();
    r->set_questionnaire_id("phq9");
    for (int i = 1; i <= 8; ++i)
      (*r->mutable_answers())[absl::StrCat(i)] = others;
    (*r->mutable_answers())["9"] = item9;
    return Submit(p);
  }
  std::vector<v1::Outcome> Tick() {
    v1::EventPayload p;
    p.mutable_time_elapsed();
    return Submit(p);
  }

  void Advance(absl::Duration d) { now_ += d; }
  const internal::EnrollmentState& state() const { return state_; }
  const std::vector<runtime::Effect>& effects() const { return effects_; }
  absl::Time now() const { return now_; }

 private:
  absl::StatusOr<runtime::StepResult> Step(
      v1::EventPayload payload, const std::map<std::string, double>& scores,
      const std::vector<std::string>& flags) const {
    v1::Event event;
    event.set_sequence(state_.enrollment().revision() + 1);
    *event.mutable_record_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now_));
    *event.mutable_payload() = std::move(payload);
    for (const auto& [k, v] : scores) (*event.mutable_scores())[k] = v;
    for (const std::string& f : flags) event.add_flags(f);
    const v1::EventPayload& p = event.payload();
    if (p.has_questionnaire_response() &&
        IsFixedInstrument(p.questionnaire_response().questionnaire_id())) {
      absl::StatusOr<ScoredResponse> scored =
          ScoreFixedInstrument(p.questionnaire_response(), "event");
      EXPECT_TRUE(scored.ok()) << scored.status();
      for (const auto& [k, v] : scored->scores) {
        (*event.mutable_scores())[k] = v;
      }
      for (const std::string& f : scored->flags) event.add_flags(f);
    }
    return runtime::Step(w_, &Enrollments::LoadZone, state_, event);
  }

  const WorkflowTemplate& w_;
  absl::Time now_;
  internal::EnrollmentState state_;
  std::vector<runtime::Effect> effects_;
};

// Alerts lists "subject/priority/reason" of the alerts raised.
std::vector<std::string> Alerts(const std::vector<v1::Outcome>& outcomes) {
  std::vector<std::string> out;
  for (const v1::Outcome& o : outcomes) {
    if (o.kind() == v1::Outcome::ALERT_RAISED) {
      out.push_back(absl::StrCat(o.subject(), "/", o.to(), "/", o.reason()));
    }
  }
  return out;
}

std::vector<std::string> Cadences(const std::vector<v1::Outcome>& outcomes) {
  std::vector<std::string> out;
  for (const v1::Outcome& o : outcomes) {
    if (o.kind() == v1::Outcome::CADENCE_CHANGED) out.push_back(o.to());
  }
  return out;
}

// ------------------------------------------------------------ safety floor

TEST(SafetyFloorTest, TemplateWithoutAnItem9RuleStillRaisesTheUrgentAlert) {
  WorkflowTemplate w = Parse(absl::StrCat(kHeader, kOneStage));
  ASSERT_EQ(w.safety_floors.size(), 1u);
  EXPECT_EQ(w.safety_floors[0].floor.flag, "phq9.item9_positive");
  EXPECT_TRUE(w.safety_floors[0].refined_by.empty());

  Enrollment e(w);
  std::vector<v1::Outcome> out = e.Phq9(/*item9=*/2);
  EXPECT_THAT(Alerts(out),
              ElementsAre("safety-phq9-item9-positive-2/urgent/rule "
                          "safety-floor:phq9.item9_positive"));
  ASSERT_FALSE(e.effects().empty());
  EXPECT_EQ(e.effects().back().kind,
            runtime::Effect::Kind::kScheduleEscalation);
  EXPECT_EQ(e.effects().back().due, e.now() + absl::Hours(4));
  std::vector<v1::Task> tasks = runtime::OpenTasks(e.state(), false);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].priority(), v1::Task::URGENT);
  EXPECT_EQ(tasks[0].assignee(), v1::Task::CLINICIAN);

  // A negative item 9 raises nothing.
  e.Advance(absl::Hours(1));
  EXPECT_THAT(Alerts(e.Phq9(0, 1)), ElementsAre());
}

TEST(SafetyFloorTest, ARefiningRuleReplacesTheDefaultOnlyWhenItFires) {
  // The template's rule is laxer (item 9 >= 2): for item 9 = 1 it does
  // not fire, so the engine's alert still reaches the clinician.
  WorkflowTemplate w =
      Parse(absl::StrCat(kHeader, kOneStage,
                         "rules:\n"
                         "  - id: item9-team\n"
                         "    on: questionnaire:phq9\n"
                         "    when: phq9.item9 >= 2\n"
                         "    then:\n"
                         "      - raise_alert:\n"
                         "          id: item9-team\n"
                         "          title: Item 9; call the patient today\n"
                         "          priority: urgent\n"
                         "          acknowledge_within: PT1H\n"));
  ASSERT_EQ(w.safety_floors.size(), 1u);
  EXPECT_THAT(w.safety_floors[0].refined_by, ElementsAre("item9-team"));

  Enrollment e(w);
  EXPECT_THAT(Alerts(e.Phq9(2)),
              ElementsAre("item9-team-2/urgent/rule item9-team"));
  e.Advance(absl::Hours(1));
  EXPECT_THAT(Alerts(e.Phq9(1)),
              ElementsAre("safety-phq9-item9-positive-3/urgent/rule "
                          "safety-floor:phq9.item9_positive"));
}

TEST(SafetyFloorTest, ShippedTemplatesRefineTheFloorWithTheirOwnRule) {
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories(
          {std::string(IPSRT_SOURCE_DIR) + "/workflows"});
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  for (const WorkflowTemplate* t : (*catalog)->All()) {
    ASSERT_EQ(t->safety_floors.size(), 1u) << t->id;
    EXPECT_THAT(t->safety_floors[0].refined_by, ElementsAre("phq9-item9"))
        << t->id;
    Enrollment e(*t);
    EXPECT_THAT(Alerts(e.Phq9(1)),
                ElementsAre("phq9-item9-2/urgent/rule phq9-item9"));
  }
}

TEST(SafetyFloorTest, ARefinementMayNotLengthenTheDeadline) {
  absl::StatusOr<WorkflowTemplate> t =
      ParseWorkflowTemplate(absl::StrCat(kHeader, kOneStage,
                                         "rules:\n"
                                         "  - id: slow\n"
                                         "    on: questionnaire:phq9\n"
                                         "    when: phq9.item9 > 0\n"
                                         "    then:\n"
                                         "      - raise_alert:\n"
                                         "          id: slow\n"
                                         "          title: Item 9\n"
                                         "          priority: urgent\n"
                                         "          acknowledge_within: P2D\n"),
                            "t.yaml");
  EXPECT_EQ(t.status().message(),
            "t.yaml:13:9: error: rules[0].then[0].raise_alert."
            "acknowledge_within: this rule refines the safety floor of "
            "phq9.item9_positive, whose alert is acknowledged within PT4H; "
            "a refinement may shorten the deadline, never lengthen it");
}

TEST(SafetyFloorTest, APluginDeclaresItsOwnSafetyCriticalFlag) {
  v1::Questionnaire q;
  q.set_id("routine-disruption");
  q.set_version(1);
  v1::QuestionnaireItem* item = q.add_items();
  item->set_id("4");
  item->set_scored(true);
  v1::FlagDefinition* flag = q.add_flag_definitions();
  flag->set_name("routine-disruption.harm");
  flag->set_title("Harm thoughts reported");
  flag->set_safety_critical(true);
  flag->add_scores("routine-disruption.item4");
  ModelContext context = ModelContextFromInstruments({&q});
  EXPECT_THAT(
      context.scores.at("routine-disruption"),
      ElementsAre("routine-disruption.total", "routine-disruption.item4"));
  WorkflowTemplate w = Parse(absl::StrCat(kHeader, kOneStage), context);
  Enrollment e(w);
  v1::EventPayload p;
  p.mutable_questionnaire_response()->set_questionnaire_id(
      "routine-disruption");
  EXPECT_THAT(Alerts(e.Submit(p, {{"routine-disruption.item4", 3}},
                              {"routine-disruption.harm"})),
              ElementsAre("safety-routine-disruption-harm-2/urgent/rule "
                          "safety-floor:routine-disruption.harm"));
}

// ------------------------------------------------- instruments of plugins

TEST(InstrumentScoresTest, QNamesAnInstrumentWhoseIdHasADash) {
  v1::Questionnaire q;
  q.set_id("routine-disruption");
  q.set_version(1);
  ModelContext context = ModelContextFromInstruments({&q});
  WorkflowTemplate w =
      Parse(absl::StrCat(kHeader, kOneStage,
                         "    tasks:\n"
                         "      - id: rd\n"
                         "        kind: questionnaire\n"
                         "        questionnaire: routine-disruption\n"
                         "        title: Routine disruption\n"
                         "    rules:\n"
                         "      - id: disrupted\n"
                         "        on: questionnaire:routine-disruption\n"
                         "        when: q(\"routine-disruption\").total >= 8\n"
                         "        then:\n"
                         "          - raise_alert: {id: disrupted, title: "
                         "Routine disrupted}\n"),
            context);
  ASSERT_EQ(w.stages.size(), 1u);
  EXPECT_EQ(w.stages[0].rules[0].when.program->ToString(),
            "(q(\"routine-disruption\").total >= 8)");
  EXPECT_THAT(w.instruments_used, ElementsAre("routine-disruption"));

  Enrollment e(w);
  v1::EventPayload p;
  p.mutable_questionnaire_response()->set_questionnaire_id(
      "routine-disruption");
  EXPECT_THAT(Alerts(e.Submit(p, {{"routine-disruption.total", 7}})),
              ElementsAre());
  EXPECT_THAT(Alerts(e.Submit(p, {{"routine-disruption.total", 9}})),
              ElementsAre("disrupted-3/routine/rule disrupted"));

  // Misspelt: the suggestion is written the way an author writes it; and
  // the built-in instruments do not know the plugin's.
  absl::StatusOr<WorkflowTemplate> bad = ParseWorkflowTemplate(
      absl::StrCat(kHeader, kOneStage,
                   "    exit:\n"
                   "      - to: only\n"
                   "        when: q(\"routine-disruption\").totl >= 8\n"),
      "t.yaml", context);
  EXPECT_EQ(bad.status().message(),
            "t.yaml:10:15: error: stages[0].exit[0].when: unknown identifier "
            "q(\"routine-disruption\").totl; did you mean "
            "q(\"routine-disruption\").total?");
  absl::StatusOr<WorkflowTemplate> unknown = ParseWorkflowTemplate(
      absl::StrCat(kHeader, kOneStage,
                   "    tasks:\n"
                   "      - id: rd\n"
                   "        kind: questionnaire\n"
                   "        questionnaire: routine-disruption\n"
                   "        title: Routine disruption\n"),
      "t.yaml");
  EXPECT_EQ(unknown.status().message(),
            "t.yaml:11:24: error: stages[0].tasks[0].questionnaire: unknown "
            "questionnaire \"routine-disruption\" (known: asrm, gad7, phq9, "
            "srm17, srm5)");
}

// ------------------------------------------- hysteresis and named checks

// A maintenance stage that returns to weekly sessions on a warning and to
// the stage's cadence only after two clear weeks.
constexpr absl::string_view kLatch =
    "conditions:\n"
    "  warning: srm.days_recorded >= 4 && srm.score < 3\n"
    "stages:\n"
    "  - id: maintenance\n"
    "    title: Maintenance\n"
    "    cadence: P2W\n"
    "    open_ended: true\n"
    "    rules:\n"
    "      - id: weekly-on-warning\n"
    "        when: warning || weeks_clear(\"warning\") < 2\n"
    "        then: [{set_cadence: P1W}]\n"
    "        otherwise: [{restore_cadence: true}]\n";

v1::EventPayload Diary(absl::Time now, bool regular) {
  v1::EventPayload p;
  v1::SrmDiaryDay* d = p.mutable_srm_diary_day();
  d->set_local_date(
      absl::FormatCivilTime(absl::ToCivilDay(now, absl::UTCTimeZone())));
  static int day = 0;
  ++day;
  for (const char* a :
       {"out_of_bed", "first_contact", "start_work", "dinner", "to_bed"}) {
    v1::SrmActivity* act = d->add_activities();
    act->set_activity(a);
    // Irregular days swing by three hours every other day.
    int shift = regular ? 0 : (day % 2) * 180;
    int minutes = 7 * 60 + shift + 60 * (std::string(a) == "to_bed" ? 15 : 0);
    act->set_local_time(
        absl::StrFormat("%02d:%02d", (minutes / 60) % 24, minutes % 60));
  }
  return p;
}

TEST(HysteresisTest, WeeklyOnAWarningBackOnlyAfterTwoClearWeeks) {
  WorkflowTemplate w = Parse(absl::StrCat(kHeader, kLatch));
  Enrollment e(w);
  std::vector<std::string> cadences;
  // Ten irregular days, then regular ones for three weeks.
  for (int day = 0; day < 31; ++day) {
    std::vector<v1::Outcome> out = e.Submit(Diary(e.now(), day >= 10));
    for (const std::string& c : Cadences(out)) cadences.push_back(c);
    if (day == 5) {
      EXPECT_TRUE(e.state().conditions().at("warning").value());
    }
    e.Advance(absl::Hours(24));
  }
  // One switch to weekly, one back; never a flip in between.
  EXPECT_THAT(cadences, ElementsAre("P1W", "P2W"));
}

TEST(HysteresisTest, ThreeDiaryDaysNeverWarn) {
  WorkflowTemplate w = Parse(absl::StrCat(kHeader, kLatch));
  Enrollment e(w);
  std::vector<std::string> cadences;
  for (int day = 0; day < 3; ++day) {
    for (const std::string& c : Cadences(e.Submit(Diary(e.now(), false)))) {
      cadences.push_back(c);
    }
    e.Advance(absl::Hours(24));
  }
  EXPECT_EQ(e.state().scores().at("srm.days_recorded"), 3);
  EXPECT_THAT(cadences, ElementsAre());
}

TEST(HysteresisTest, WeekFunctionsCountCourseWeeks) {
  WorkflowTemplate w = Parse(absl::StrCat(
      kHeader,
      "conditions:\n"
      "  high: phq9.total >= 10\n"
      "  twice: weeks_held(\"high\", 4) >= 2\n",
      kOneStage,
      "    rules:\n"
      "      - id: two-of-four\n"
      "        when: twice\n"
      "        then: [{raise_alert: {id: two-of-four, title: Two of four}}]\n"
      "      - id: three-in-a-row\n"
      "        when: consecutive_weeks(\"high\") >= 3\n"
      "        then: [{raise_alert: {id: three-in-a-row, title: Three}}]\n"));
  Enrollment e(w);
  std::vector<std::string> alerts;
  for (int week = 0; week < 5; ++week) {
    for (const std::string& a : Alerts(e.Phq9(0, week == 1 ? 0 : 2))) {
      alerts.push_back(absl::StrCat("week ", week, ": ", a));
    }
    e.Advance(absl::Hours(24 * 7));
  }
  // High (16) in weeks 0, 2, 3, 4; low in week 1.
  EXPECT_THAT(alerts,
              ElementsAre("week 2: two-of-four-4/routine/rule two-of-four",
                          "week 4: three-in-a-row-6/routine/rule "
                          "three-in-a-row"));
  absl::StatusOr<WorkflowTemplate> bad = ParseWorkflowTemplate(
      absl::StrCat(kHeader,
                   "conditions:\n"
                   "  stage.days: true\n",
                   kOneStage,
                   "    exit:\n"
                   "      - to: only\n"
                   "        when: weeks_clear(\"hgih\") > 1\n"),
      "t.yaml");
  EXPECT_EQ(bad.status().message(),
            "t.yaml:5:3: error: conditions.stage.days: a condition name is "
            "1-63 characters of a-z, 0-9 and '_', starting with a letter\n"
            "t.yaml:12:27: error: stages[0].exit[0].when: "
            "weeks_clear(\"hgih\"): unknown named condition (declare it under "
            "`conditions`)");
}

TEST(CourseTest, SessionsCountAcrossStagesAndProblemAreasAreChecked) {
  WorkflowTemplate w = Parse(absl::StrCat(
      kHeader,
      "problem_areas: [self_care]\n"
      "stages:\n"
      "  - id: first\n"
      "    title: First\n"
      "    cadence: P1W\n"
      "    exit:\n"
      "      - to: second\n"
      "        when: stage.sessions >= 2\n"
      "  - id: second\n"
      "    title: Second\n"
      "    cadence: P1W\n"
      "    rules:\n"
      "      - id: twenty\n"
      "        when: course.sessions >= 3 && goal.problem_area == \"grief\"\n"
      "        then: [{raise_alert: {id: review, title: Review}}]\n"));
  EXPECT_THAT(w.problem_areas,
              ElementsAre("grief", "role_dispute", "role_transition",
                          "interpersonal_deficits",
                          "grief_for_lost_healthy_self", "self_care"));
  Enrollment e(w);
  v1::EventPayload goal;
  goal.mutable_goal_set()->set_problem_area("grief");
  goal.mutable_goal_set()->set_description("Mourn a parent");
  e.Submit(goal);
  v1::EventPayload session;
  session.mutable_session_held();
  e.Submit(session);
  e.Submit(session);
  EXPECT_EQ(e.state().enrollment().stage(), "second");
  EXPECT_THAT(Alerts(e.Submit(session)),
              ElementsAre("review-5/routine/rule twenty"));
  v1::EventPayload bad_goal;
  bad_goal.mutable_goal_set()->set_problem_area("role transition");
  bad_goal.mutable_goal_set()->set_description("x");
  EXPECT_EQ(e.TrySubmit(bad_goal).message(),
            "event.goal_set.problem_area: \"role transition\" is not a "
            "problem area of workflow floor-test@1 (use grief, role_dispute, "
            "role_transition, interpersonal_deficits, "
            "grief_for_lost_healthy_self, self_care)");
}

TEST(StageGraphTest, AnOpenEndedStageMayLoopWithItsWeeklyStage) {
  const std::string loop =
      "stages:\n"
      "  - id: maintenance\n"
      "    title: Maintenance\n"
      "    cadence: P2W\n"
      "OPEN"
      "    exit:\n"
      "      - to: weekly\n"
      "        when: phq9.total >= 10\n"
      "  - id: weekly\n"
      "    title: Weekly\n"
      "    cadence: P1W\n"
      "    exit:\n"
      "      - to: maintenance\n"
      "        when: phq9.total < 10\n";
  absl::StatusOr<WorkflowTemplate> closed = ParseWorkflowTemplate(
      absl::StrCat(kHeader, absl::StrReplaceAll(loop, {{"OPEN", ""}})),
      "t.yaml");
  EXPECT_THAT(closed.status().message(),
              HasSubstr("stages maintenance, weekly form a cycle with no "
                        "exit"));
  absl::StatusOr<WorkflowTemplate> open = ParseWorkflowTemplate(
      absl::StrCat(kHeader, absl::StrReplaceAll(
                                loop, {{"OPEN", "    open_ended: true\n"}})),
      "t.yaml");
  EXPECT_TRUE(open.ok()) << open.status();
}

}  // namespace
}  // namespace ipsrt
