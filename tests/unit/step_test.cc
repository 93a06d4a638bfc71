#include "runtime/step.h"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "instruments/fixed_instruments.h"
#include "instruments/srm.h"
#include "ipsrt/plugin/time.h"

namespace ipsrt {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const WorkflowTemplate& Shipped(const std::string& id) {
  static auto* catalog = new std::shared_ptr<const WorkflowCatalog>(
      *WorkflowCatalog::LoadDirectories(
          {std::string(IPSRT_SOURCE_DIR) + "/workflows"}));
  const WorkflowTemplate* t = (*catalog)->Find(id, 0);
  EXPECT_NE(t, nullptr) << id;
  return *t;
}

// Course drives one enrollment through Step as the server does, keeping
// every event so the log can be replayed.
class Course {
 public:
  Course(const WorkflowTemplate& w, const std::string& zone, absl::Time start)
      : w_(w), now_(start) {
    state_.mutable_enrollment()->set_name("tenants/t/enrollments/e1");
    v1::EventPayload p;
    v1::EnrollmentCreated* c = p.mutable_enrollment_created();
    c->set_patient_ref("Patient/1");
    c->set_workflow_id(w.id);
    c->set_workflow_version(w.version);
    c->set_time_zone(zone);
    c->set_clinician_ref("Practitioner/1");
    Submit(p);
  }

  // Submit applies one event at the current time and returns its outcomes.
  std::vector<v1::Outcome> Submit(v1::EventPayload payload) {
    v1::Event event;
    event.set_sequence(state_.enrollment().revision() + 1);
    event.set_type(runtime::EventTypeFor(payload));
    *event.mutable_record_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now_));
    *event.mutable_payload() = std::move(payload);
    if (event.payload().has_questionnaire_response()) {
      absl::StatusOr<ScoredResponse> scored = ScoreFixedInstrument(
          event.payload().questionnaire_response(), "event");
      EXPECT_TRUE(scored.ok()) << scored.status();
      for (const auto& [k, v] : scored->scores)
        (*event.mutable_scores())[k] = v;
      for (const auto& f : scored->flags) event.add_flags(f);
    }
    absl::StatusOr<runtime::StepResult> r =
        runtime::Step(w_, &Enrollments::LoadZone, state_, event);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    SealEvent(state_.last_event_hash(), *r, event);
    state_ = std::move(r->state);
    effects_.insert(effects_.end(), r->effects.begin(), r->effects.end());
    events_.push_back(event);
    return r->outcomes;
  }
  absl::Status TrySubmit(v1::EventPayload payload) {
    v1::Event event;
    event.set_sequence(state_.enrollment().revision() + 1);
    *event.mutable_record_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now_));
    *event.mutable_payload() = std::move(payload);
    return runtime::Step(w_, &Enrollments::LoadZone, state_, event).status();
  }

  void Advance(absl::Duration d) { now_ += d; }
  std::vector<v1::Outcome> Session() {
    v1::EventPayload p;
    p.mutable_session_held();
    return Submit(p);
  }
  std::vector<v1::Outcome> Done(const std::string& task) {
    v1::EventPayload p;
    p.mutable_task_completed()->set_task_id(task);
    return Submit(p);
  }
  std::vector<v1::Outcome> Answer(const std::string& instrument,
                                  std::vector<int> values) {
    v1::EventPayload p;
    v1::QuestionnaireResponse* r = p.mutable_questionnaire_response();
    r->set_questionnaire_id(instrument);
    for (size_t i = 0; i < values.size(); ++i) {
      (*r->mutable_answers())[absl::StrCat(i + 1)] = values[i];
    }
    return Submit(p);
  }
  std::vector<v1::Outcome> Tick() {
    v1::EventPayload p;
    p.mutable_time_elapsed();
    return Submit(p);
  }

  const internal::EnrollmentState& state() const { return state_; }
  const std::string& stage() const { return state_.enrollment().stage(); }
  const std::string& cadence() const {
    return state_.enrollment().session_cadence();
  }
  const std::vector<v1::Event>& events() const { return events_; }
  const std::vector<runtime::Effect>& effects() const { return effects_; }
  absl::Time now() const { return now_; }

 private:
  const WorkflowTemplate& w_;
  absl::Time now_;
  internal::EnrollmentState state_;
  std::vector<v1::Event> events_;
  std::vector<runtime::Effect> effects_;
};

bool Has(const std::vector<v1::Outcome>& outcomes, v1::Outcome::Kind kind,
         const std::string& to = "") {
  for (const v1::Outcome& o : outcomes) {
    if (o.kind() == kind && (to.empty() || o.to() == to)) return true;
  }
  return false;
}

const v1::Outcome* Find(const std::vector<v1::Outcome>& outcomes,
                        v1::Outcome::Kind kind) {
  for (const v1::Outcome& o : outcomes) {
    if (o.kind() == kind) return &o;
  }
  return nullptr;
}

absl::Time At(const char* local, const char* zone) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone(zone, &tz));
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M", local, tz, &t, &err)) << err;
  return t;
}

void ExpectReplayEqualsState(const WorkflowTemplate& w, const Course& c) {
  absl::StatusOr<internal::EnrollmentState> replayed = runtime::Replay(
      w, &Enrollments::LoadZone, "tenants/t/enrollments/e1", c.events());
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_EQ(DeterministicBytes(*replayed), DeterministicBytes(c.state()));
}

TEST(StepTest, StandardCourseFromIntakeToMaintenanceAndBackToWeekly) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "America/New_York", At("2026-03-02T09:00", "America/New_York"));
  EXPECT_EQ(c.stage(), "initial");
  EXPECT_EQ(c.cadence(), "P1W");
  EXPECT_EQ(c.state().enrollment().revision(), 1);

  // Initial: four clinician forms, baseline questionnaires, three sessions.
  for (const char* task : {"history", "interpersonal-inventory", "life-chart",
                           "routines-review"}) {
    c.Advance(absl::Hours(1));
    c.Done(task);
  }
  c.Answer("phq9", {1, 1, 0, 1, 0, 0, 1, 0, 0});
  c.Answer("gad7", {1, 0, 1, 0, 0, 1, 0});
  c.Answer("asrm", {0, 1, 0, 0, 1});
  for (int i = 0; i < 2; ++i) {
    c.Advance(absl::Hours(24 * 7));
    c.Session();
    EXPECT_EQ(c.stage(), "initial");
  }
  c.Advance(absl::Hours(24 * 7));
  std::vector<v1::Outcome> moved = c.Session();
  EXPECT_TRUE(Has(moved, v1::Outcome::STAGE_CHANGED, "intermediate"));
  EXPECT_EQ(c.stage(), "intermediate");
  const v1::Outcome* change = Find(moved, v1::Outcome::STAGE_CHANGED);
  EXPECT_EQ(change->reason(), "exit condition of initial");

  // Intermediate: goal, disruption plan, ten sessions.
  v1::EventPayload goal;
  goal.mutable_goal_set()->set_problem_area("role_transition");
  goal.mutable_goal_set()->set_description("Keep a regular bedtime");
  c.Submit(goal);
  v1::EventPayload plan;
  plan.mutable_disruption_plan()->set_kind("travel");
  plan.mutable_disruption_plan()->set_plan("Keep home-time meals");
  c.Submit(plan);
  for (int i = 0; i < 10; ++i) {
    c.Advance(absl::Hours(24 * 7));
    c.Session();
  }
  EXPECT_EQ(c.stage(), "final");

  // Final: a relapse-prevention plan and two sessions.
  v1::EventPayload relapse;
  relapse.mutable_relapse_plan()->add_early_warning_signs("sleeping < 6 h");
  c.Submit(relapse);
  c.Advance(absl::Hours(24 * 7));
  c.Session();
  c.Advance(absl::Hours(24 * 7));
  moved = c.Session();
  EXPECT_TRUE(Has(moved, v1::Outcome::STAGE_CHANGED, "maintenance"));
  EXPECT_TRUE(Has(moved, v1::Outcome::CADENCE_CHANGED, "P2W"));
  EXPECT_EQ(c.cadence(), "P2W");

  // Maintenance: PHQ-9 of 12 is an early warning: weekly again, an alert.
  c.Advance(absl::Hours(24 * 14));
  std::vector<v1::Outcome> warning =
      c.Answer("phq9", {2, 2, 1, 2, 1, 1, 2, 1, 0});
  EXPECT_TRUE(Has(warning, v1::Outcome::CADENCE_CHANGED, "P1W"));
  const v1::Outcome* alert = Find(warning, v1::Outcome::ALERT_RAISED);
  ASSERT_NE(alert, nullptr);
  EXPECT_EQ(alert->to(), "routine");
  EXPECT_EQ(alert->reason(), "rule early-warning");
  EXPECT_EQ(c.cadence(), "P1W");
  // A second high score does not raise the alert again (edge-triggered).
  c.Advance(absl::Hours(24 * 7));
  EXPECT_FALSE(Has(c.Answer("phq9", {2, 2, 1, 2, 1, 1, 2, 1, 0}),
                   v1::Outcome::ALERT_RAISED));
  // Recovered: still weekly until the sign has stayed clear for two whole
  // weeks (no flapping), then back to twice a month.
  c.Advance(absl::Hours(24 * 7));
  std::vector<v1::Outcome> recovered =
      c.Answer("phq9", {0, 1, 0, 1, 0, 0, 1, 0, 0});
  EXPECT_FALSE(Has(recovered, v1::Outcome::CADENCE_CHANGED));
  EXPECT_EQ(c.cadence(), "P1W");
  c.Advance(absl::Hours(24 * 13));
  EXPECT_FALSE(Has(c.Tick(), v1::Outcome::CADENCE_CHANGED));
  c.Advance(absl::Hours(24 * 1));
  EXPECT_TRUE(Has(c.Tick(), v1::Outcome::CADENCE_CHANGED, "P2W"));
  EXPECT_EQ(c.cadence(), "P2W");
  EXPECT_EQ(c.stage(), "maintenance");

  ExpectReplayEqualsState(w, c);
}

TEST(StepTest, PhqItem9RaisesUrgentAlertWithDeadlineAndAcknowledgement) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/London", At("2026-06-01T10:00", "Europe/London"));
  std::vector<v1::Outcome> out = c.Answer("phq9", {0, 0, 0, 0, 0, 0, 0, 0, 1});
  const v1::Outcome* alert = Find(out, v1::Outcome::ALERT_RAISED);
  ASSERT_NE(alert, nullptr);
  EXPECT_EQ(alert->to(), "urgent");
  std::string alert_id = alert->subject();
  EXPECT_EQ(alert_id,
            absl::StrCat("phq9-item9-", c.events().back().sequence()));
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(alert->due_time()),
            absl::ToUnixMicros(c.now() + absl::Hours(4)));
  EXPECT_EQ(alert->local_due_time(), "2026-06-01T14:00 (+01:00)");
  ASSERT_FALSE(c.effects().empty());
  const runtime::Effect& escalation = c.effects().back();
  EXPECT_EQ(escalation.kind, runtime::Effect::Kind::kScheduleEscalation);
  EXPECT_EQ(escalation.due, c.now() + absl::Hours(4));

  std::vector<v1::Task> tasks = runtime::OpenTasks(c.state(), false);
  ASSERT_FALSE(tasks.empty());
  EXPECT_EQ(tasks[0].priority(), v1::Task::URGENT);  // urgent first
  EXPECT_EQ(tasks[0].assignee(), v1::Task::CLINICIAN);

  // Every positive answer raises its own alert (rule with `on:`).
  c.Advance(absl::Hours(1));
  EXPECT_TRUE(Has(c.Answer("phq9", {0, 0, 0, 0, 0, 0, 0, 0, 2}),
                  v1::Outcome::ALERT_RAISED));

  c.Advance(absl::Hours(1));
  v1::EventPayload ack;
  ack.mutable_alert_acknowledged()->set_alert_id(alert_id);
  std::vector<v1::Outcome> acked = c.Submit(ack);
  EXPECT_TRUE(Has(acked, v1::Outcome::ALERT_ACKNOWLEDGED));
  EXPECT_EQ(c.effects().back().kind, runtime::Effect::Kind::kCancelEscalation);
  EXPECT_EQ(c.effects().back().key, absl::StrCat("escalation/", alert_id));
  // Acknowledged alerts leave the state; a second acknowledgement is
  // refused as not fitting the state.
  absl::Status again = c.TrySubmit(ack);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      again.message(),
      absl::StrCat("event.alert_acknowledged.alert_id: alert \"", alert_id,
                   "\" is not open (already acknowledged, or never "
                   "raised)"));
  for (const internal::AlertState& a : c.state().alerts()) {
    EXPECT_NE(a.alert_id(), alert_id);  // the second alert is still open
  }
  ExpectReplayEqualsState(w, c);
}

// Scores are computed once, when the response is recorded (by the
// instrument's plugin in the server), and stored on the event; Step and
// Replay read them from the event and never score again. An event whose
// recorded total differs from what the answers sum to replays to the
// recorded total: a later change of scoring code cannot rewrite history.
TEST(StepTest, ReplayUsesTheRecordedScoresAndNeverRescores) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/London", At("2026-06-01T10:00", "Europe/London"));
  c.Answer("gad7", {1, 1, 1, 1, 1, 1, 1});
  ASSERT_EQ(c.state().scores().at("gad7.total"), 7);
  std::vector<v1::Event> events = c.events();
  v1::Event& response = events.back();
  ASSERT_TRUE(response.payload().has_questionnaire_response());
  (*response.mutable_scores())["gad7.total"] = 12;
  absl::StatusOr<internal::EnrollmentState> replayed = runtime::Replay(
      w, &Enrollments::LoadZone, "tenants/t/enrollments/e1", events);
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_EQ(replayed->scores().at("gad7.total"), 12);
  // Without recorded scores, replay has no total: it does not score.
  response.mutable_scores()->clear();
  replayed = runtime::Replay(w, &Enrollments::LoadZone,
                             "tenants/t/enrollments/e1", events);
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_EQ(replayed->scores().count("gad7.total"), 0u);
}

TEST(StepTest, SecondTemplateRunsItsOwnStageOrder) {
  const WorkflowTemplate& w = Shipped("ipsrt-preventive-first");
  Course c(w, "Asia/Kolkata", At("2026-01-05T10:00", "Asia/Kolkata"));
  c.Done("history");
  c.Answer("phq9", {0, 0, 0, 0, 0, 0, 0, 0, 0});
  for (int i = 0; i < 3; ++i) {
    c.Advance(absl::Hours(24 * 7));
    c.Session();
  }
  EXPECT_EQ(c.stage(), "intermediate");
  v1::EventPayload goal;
  goal.mutable_goal_set()->set_problem_area("grief_for_lost_healthy_self");
  goal.mutable_goal_set()->set_description("x");
  c.Submit(goal);
  for (int i = 0; i < 8; ++i) {
    c.Advance(absl::Hours(24 * 7));
    c.Session();
  }
  EXPECT_EQ(c.stage(), "maintenance");
  EXPECT_EQ(c.cadence(), "P1M");
  v1::EventPayload relapse;
  relapse.mutable_relapse_plan()->add_early_warning_signs("racing thoughts");
  c.Submit(relapse);
  c.Advance(absl::Hours(24 * 179));
  c.Tick();
  EXPECT_EQ(c.stage(), "maintenance");
  c.Advance(absl::Hours(24 * 2));
  c.Tick();
  EXPECT_EQ(c.stage(), "final");  // maintenance came before final here
  ExpectReplayEqualsState(w, c);
}

TEST(StepTest, ClinicianStageChangeNeedsKnownStageAndReason) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "UTC", At("2026-01-05T10:00", "UTC"));
  v1::EventPayload p;
  p.mutable_stage_change()->set_to_stage("nowhere");
  p.mutable_stage_change()->set_reason("x");
  EXPECT_EQ(c.TrySubmit(p).message(),
            "event.stage_change.to_stage: workflow ipsrt-standard@1 has no "
            "stage \"nowhere\"");
  p.mutable_stage_change()->set_to_stage("maintenance");
  p.mutable_stage_change()->clear_reason();
  EXPECT_EQ(c.TrySubmit(p).message(),
            "event.stage_change.reason: a clinician's stage change needs a "
            "reason");
  p.mutable_stage_change()->set_reason("stable for a year");
  std::vector<v1::Outcome> out = c.Submit(p);
  const v1::Outcome* moved = Find(out, v1::Outcome::STAGE_CHANGED);
  ASSERT_NE(moved, nullptr);
  EXPECT_EQ(moved->from(), "initial");
  EXPECT_EQ(moved->to(), "maintenance");
  EXPECT_EQ(moved->reason(), "clinician");
  // The intake tasks were cancelled, with their reminders.
  EXPECT_TRUE(Has(out, v1::Outcome::TASK_CLOSED, "CANCELLED"));
  EXPECT_TRUE(Has(out, v1::Outcome::REMINDER_CANCELLED));
  v1::EventPayload done;
  done.mutable_task_completed()->set_task_id("history");
  EXPECT_EQ(c.TrySubmit(done).message(),
            "event.task_completed.task_id: no open task \"history\" in stage "
            "\"maintenance\"");
}

// The daily diary reminder falls at 20:00 local time every day, across
// both daylight-saving changes, in zones with 1-hour, 30-minute and no
// shifts.
TEST(StepTest, DiaryReminderAt2000LocalAcrossDaylightSavingChanges) {
  struct Case {
    const char* zone;
    const char* spring_start;  // a few days before the spring change
    const char* fall_start;
  };
  const Case cases[] = {
      {"America/New_York", "2026-03-05T09:00", "2026-10-29T09:00"},
      {"Europe/London", "2026-03-26T09:00", "2026-10-22T09:00"},
      {"Australia/Lord_Howe", "2026-09-30T09:00", "2026-04-02T09:00"},
      {"Asia/Kolkata", "2026-03-05T09:00", "2026-10-29T09:00"},
  };
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  for (const Case& k : cases) {
    for (const char* start : {k.spring_start, k.fall_start}) {
      SCOPED_TRACE(absl::StrCat(k.zone, " from ", start));
      Course c(w, k.zone, At(start, k.zone));
      std::vector<std::string> local_times;
      std::vector<int64_t> utc_hours;
      auto collect = [&](const std::vector<v1::Outcome>& out) {
        for (const v1::Outcome& o : out) {
          if (o.kind() == v1::Outcome::REMINDER_SCHEDULED &&
              absl::StrContains(o.subject(), "srm-diary")) {
            local_times.push_back(o.local_due_time().substr(11, 5));
          }
        }
      };
      for (const v1::Event& e : c.events()) {
        collect({e.outcomes().begin(), e.outcomes().end()});
      }
      for (int day = 0; day < 10; ++day) {
        c.Advance(absl::Hours(24));
        collect(c.Tick());
      }
      ASSERT_GE(local_times.size(), 10u);
      for (const std::string& t : local_times) EXPECT_EQ(t, "20:00");
    }
  }
}

TEST(StepTest, SkippedAndRepeatedLocalTimesFollowThePolicy) {
  absl::TimeZone ny;
  ASSERT_TRUE(absl::LoadTimeZone("America/New_York", &ny));
  // 02:30 does not exist on 2026-03-08: it moves forward by the gap.
  absl::Time skipped =
      LocalToAbsolute(absl::CivilSecond(2026, 3, 8, 2, 30, 0), ny);
  EXPECT_EQ(absl::FormatTime("%H:%M %Ez", skipped, ny), "03:30 -04:00");
  // 01:30 happens twice on 2026-11-01: the first occurrence (EDT) is used.
  absl::Time repeated =
      LocalToAbsolute(absl::CivilSecond(2026, 11, 1, 1, 30, 0), ny);
  EXPECT_EQ(absl::FormatTime("%H:%M %Ez", repeated, ny), "01:30 -04:00");
  // P1D from 20:00 the day before the change is 20:00 again (civil days),
  // 23 hours of absolute time.
  absl::Time before =
      LocalToAbsolute(absl::CivilSecond(2026, 3, 7, 20, 0, 0), ny);
  absl::Time after = AddIsoDuration(before, *ParseIsoDuration("P1D"), ny);
  EXPECT_EQ(after - before, absl::Hours(23));
  EXPECT_EQ(absl::FormatTime("%H:%M", after, ny), "20:00");
}

TEST(StepTest, DoneTaskCancelsItsReminderAndOpensTheNext) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "UTC", At("2026-01-05T09:00", "UTC"));
  v1::EventPayload diary;
  diary.mutable_srm_diary_day()->set_local_date("2026-01-05");
  diary.mutable_srm_diary_day()->set_instrument("srm5");
  c.Advance(absl::Hours(2));
  std::vector<v1::Outcome> out = c.Submit(diary);
  const v1::Outcome* closed = Find(out, v1::Outcome::TASK_CLOSED);
  ASSERT_NE(closed, nullptr);
  EXPECT_EQ(closed->subject(), "initial.srm-diary#1");
  EXPECT_EQ(closed->to(), "DONE");
  const v1::Outcome* cancelled = Find(out, v1::Outcome::REMINDER_CANCELLED);
  ASSERT_NE(cancelled, nullptr);
  EXPECT_EQ(cancelled->subject(), "initial.srm-diary#1");
  const v1::Outcome* next = Find(out, v1::Outcome::REMINDER_SCHEDULED);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->subject(), "initial.srm-diary#2");
  EXPECT_EQ(next->local_due_time(), "2026-01-06T20:00 (+00:00)");
}

// Session planning (templates with `sessions`; the shipped ones plan at
// 10:00 local and remind the day before, P1D).

// Outcomes of `kind` about planned sessions, as "subject local-due-time".
std::vector<std::string> SessionOutcomes(const std::vector<v1::Outcome>& out,
                                         v1::Outcome::Kind kind) {
  std::vector<std::string> lines;
  for (const v1::Outcome& o : out) {
    if (o.kind() == kind && absl::StartsWith(o.subject(), "session:")) {
      lines.push_back(o.local_due_time().empty()
                          ? o.subject()
                          : absl::StrCat(o.subject(), " ", o.local_due_time()));
    }
  }
  return lines;
}

std::vector<v1::Outcome> CreationOutcomes(const Course& c) {
  const v1::Event& created = c.events().front();
  return {created.outcomes().begin(), created.outcomes().end()};
}

v1::EventPayload StageChange(const std::string& to) {
  v1::EventPayload p;
  p.mutable_stage_change()->set_to_stage(to);
  p.mutable_stage_change()->set_reason("clinical judgement");
  return p;
}

TEST(StepSessionTest, PlansTheNextSessionAtLocalTimeAndRemindsTheDayBefore) {
  const WorkflowTemplate& w = Shipped("ipsrt-preventive-first");
  // Monday 2 March 2026; New York springs forward on Sunday 8 March.
  Course c(w, "America/New_York", At("2026-03-02T09:00", "America/New_York"));
  std::vector<v1::Outcome> created = CreationOutcomes(c);
  const v1::Outcome* planned = Find(created, v1::Outcome::SESSION_PLANNED);
  ASSERT_NE(planned, nullptr);
  EXPECT_EQ(planned->subject(), "session:initial#1");
  EXPECT_EQ(planned->local_due_time(), "2026-03-09T10:00 (-04:00)");
  EXPECT_EQ(planned->from(), "");
  EXPECT_EQ(planned->to(), "P1W");
  EXPECT_EQ(planned->reason(), "stage initial");
  EXPECT_THAT(SessionOutcomes(created, v1::Outcome::REMINDER_SCHEDULED),
              ElementsAre("session:initial#1 2026-03-08T10:00 (-04:00)"));
  ASSERT_FALSE(c.effects().empty());
  const runtime::Effect* effect = nullptr;
  for (const runtime::Effect& e : c.effects()) {
    if (e.kind == runtime::Effect::Kind::kScheduleSessionReminder) effect = &e;
  }
  ASSERT_NE(effect, nullptr);
  EXPECT_EQ(effect->key, "reminder/session:initial#1");
  EXPECT_EQ(effect->subject, "session:initial#1");
  EXPECT_EQ(runtime::OutboxKind(effect->kind), "session");
  EXPECT_EQ(c.state().next_session().key(), "session:initial#1");
  EXPECT_EQ(c.state().next_session_due_us(),
            absl::ToUnixMicros(At("2026-03-09T10:00", "America/New_York")));

  // A session held on Thursday starts a new series from that day; the
  // reminder planned for Sunday is cancelled.
  c.Advance(absl::Hours(3 * 24 + 2));
  std::vector<v1::Outcome> held = c.Session();
  EXPECT_THAT(SessionOutcomes(held, v1::Outcome::REMINDER_CANCELLED),
              ElementsAre("session:initial#1"));
  EXPECT_THAT(SessionOutcomes(held, v1::Outcome::SESSION_PLANNED),
              ElementsAre("session:initial#2 2026-03-12T10:00 (-04:00)"));
  EXPECT_EQ(Find(held, v1::Outcome::SESSION_PLANNED)->from(),
            "session:initial#1");
  EXPECT_EQ(Find(held, v1::Outcome::SESSION_PLANNED)->reason(), "session held");
  EXPECT_THAT(SessionOutcomes(held, v1::Outcome::REMINDER_SCHEDULED),
              ElementsAre("session:initial#2 2026-03-11T10:00 (-04:00)"));

  // Its time passes with no session held: the next of the series is
  // planned at the next event; the sent reminder is not cancelled.
  c.Advance(absl::Hours(7 * 24));  // Thursday 12 March, 12:00 EDT
  std::vector<v1::Outcome> passed = c.Tick();
  EXPECT_TRUE(SessionOutcomes(passed, v1::Outcome::REMINDER_CANCELLED).empty());
  EXPECT_THAT(SessionOutcomes(passed, v1::Outcome::SESSION_PLANNED),
              ElementsAre("session:initial#3 2026-03-19T10:00 (-04:00)"));
  EXPECT_EQ(Find(passed, v1::Outcome::SESSION_PLANNED)->reason(),
            "session:initial#2 passed");
  // An event before then changes nothing.
  c.Advance(absl::Hours(1));
  EXPECT_TRUE(SessionOutcomes(c.Tick(), v1::Outcome::SESSION_PLANNED).empty());
  ExpectReplayEqualsState(w, c);
}

// A clinician's stage change re-plans with the new stage's cadence; the
// maintenance rule goes weekly and back, each time cancelling the future
// reminder of the old cadence and planning the new one, in the event that
// fired it. A monthly series anchored on the 31st falls on the last day of
// shorter months.
TEST(StepSessionTest, StageChangeAndMaintenanceRuleReplanSessions) {
  const WorkflowTemplate& w = Shipped("ipsrt-preventive-first");
  const char* london = "Europe/London";
  Course c(w, london, At("2026-01-28T09:00", london));
  ASSERT_EQ(c.state().next_session().key(), "session:initial#1");

  c.Advance(absl::Hours(3 * 24));  // Saturday 31 January, 09:00
  std::vector<v1::Outcome> moved = c.Submit(StageChange("maintenance"));
  EXPECT_EQ(c.cadence(), "P1M");
  EXPECT_THAT(SessionOutcomes(moved, v1::Outcome::REMINDER_CANCELLED),
              ElementsAre("session:initial#1"));
  EXPECT_THAT(SessionOutcomes(moved, v1::Outcome::SESSION_PLANNED),
              ElementsAre("session:maintenance#1 2026-02-28T10:00 (+00:00)"));
  EXPECT_EQ(Find(moved, v1::Outcome::SESSION_PLANNED)->reason(),
            "stage maintenance");
  EXPECT_THAT(SessionOutcomes(moved, v1::Outcome::REMINDER_SCHEDULED),
              ElementsAre("session:maintenance#1 2026-02-27T10:00 (+00:00)"));

  // 28 February passes: the series goes on to 31 March (not 28 March).
  c.Advance(absl::Hours(28 * 24 + 2));
  EXPECT_THAT(SessionOutcomes(c.Tick(), v1::Outcome::SESSION_PLANNED),
              ElementsAre("session:maintenance#2 2026-03-31T10:00 (+01:00)"));

  // 2 March: an early warning sign (PHQ-9 12): weekly from the stage
  // entry (31 January), the first still reminded in full being 7 March.
  c.Advance(absl::Hours(2 * 24 - 2));
  const size_t effects_before = c.effects().size();
  std::vector<v1::Outcome> warning =
      c.Answer("phq9", {2, 2, 2, 2, 2, 2, 0, 0, 0});
  EXPECT_TRUE(Has(warning, v1::Outcome::CADENCE_CHANGED, "P1W"));
  EXPECT_EQ(c.cadence(), "P1W");
  EXPECT_THAT(SessionOutcomes(warning, v1::Outcome::REMINDER_CANCELLED),
              ElementsAre("session:maintenance#2"));
  EXPECT_THAT(SessionOutcomes(warning, v1::Outcome::SESSION_PLANNED),
              ElementsAre("session:maintenance#3 2026-03-07T10:00 (+00:00)"));
  EXPECT_EQ(Find(warning, v1::Outcome::SESSION_PLANNED)->reason(),
            "cadence P1W, rule early-warning");
  std::vector<std::string> keys;
  for (size_t i = effects_before; i < c.effects().size(); ++i) {
    const runtime::Effect& e = c.effects()[i];
    if (absl::StrContains(e.key, "session:")) {
      keys.push_back(absl::StrCat(
          e.kind == runtime::Effect::Kind::kCancelReminder ? "cancel "
                                                           : "schedule ",
          e.key));
    }
  }
  EXPECT_THAT(keys, ElementsAre("cancel reminder/session:maintenance#2",
                                "schedule reminder/session:maintenance#3"));

  // 4 March: it has passed (PHQ-9 3), but sessions stay weekly until it
  // has stayed clear for two whole weeks (no flapping).
  c.Advance(absl::Hours(2 * 24));
  std::vector<v1::Outcome> cleared =
      c.Answer("phq9", {1, 1, 1, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(c.cadence(), "P1W");
  EXPECT_FALSE(Has(cleared, v1::Outcome::CADENCE_CHANGED));
  // 18 March, two weeks on: monthly again, on the series of the stage
  // entry (the weekly session of 7 March has passed, its reminder sent).
  c.Advance(absl::Hours(14 * 24));
  std::vector<v1::Outcome> monthly = c.Tick();
  EXPECT_EQ(c.cadence(), "P1M");
  EXPECT_THAT(SessionOutcomes(monthly, v1::Outcome::REMINDER_CANCELLED),
              ElementsAre());
  EXPECT_THAT(SessionOutcomes(monthly, v1::Outcome::SESSION_PLANNED),
              ElementsAre("session:maintenance#4 2026-03-31T10:00 (+01:00)"));
  EXPECT_THAT(SessionOutcomes(monthly, v1::Outcome::REMINDER_SCHEDULED),
              ElementsAre("session:maintenance#4 2026-03-30T10:00 (+01:00)"));
  ExpectReplayEqualsState(w, c);
}

// A patient who moves keeps the session's local date and time in the new
// zone, like task reminders; a new key replaces the old reminder.
TEST(StepSessionTest, ZoneChangeMovesThePlannedSessionToTheNewWallClock) {
  const WorkflowTemplate& w = Shipped("ipsrt-preventive-first");
  Course c(w, "America/New_York", At("2026-01-12T09:00", "America/New_York"));
  c.Advance(absl::Hours(24));
  v1::EventPayload move;
  move.mutable_enrollment_updated()->set_time_zone("Europe/London");
  std::vector<v1::Outcome> out = c.Submit(move);
  EXPECT_THAT(SessionOutcomes(out, v1::Outcome::REMINDER_CANCELLED),
              ElementsAre("session:initial#1"));
  EXPECT_THAT(SessionOutcomes(out, v1::Outcome::SESSION_PLANNED),
              ElementsAre("session:initial#2 2026-01-19T10:00 (+00:00)"));
  EXPECT_EQ(Find(out, v1::Outcome::SESSION_PLANNED)->reason(),
            "time zone changed");
  EXPECT_THAT(SessionOutcomes(out, v1::Outcome::REMINDER_SCHEDULED),
              ElementsAre("session:initial#2 2026-01-18T10:00 (+00:00)"));
  ExpectReplayEqualsState(w, c);
}

// Weekly sessions stay at 10:00 on the wall clock across the spring change
// in New York and both changes on Lord Howe Island (30-minute shifts).
TEST(StepSessionTest, WeeklySessionsKeepLocalTimeAcrossDaylightSavingChanges) {
  struct Case {
    const char* zone;
    const char* start;
  };
  const Case cases[] = {{"America/New_York", "2026-02-25T09:00"},
                        {"Australia/Lord_Howe", "2026-09-23T09:00"},
                        {"Australia/Lord_Howe", "2026-03-25T09:00"}};
  const WorkflowTemplate& w = Shipped("ipsrt-preventive-first");
  for (const Case& k : cases) {
    SCOPED_TRACE(absl::StrCat(k.zone, " from ", k.start));
    Course c(w, k.zone, At(k.start, k.zone));
    std::vector<v1::Outcome> all = CreationOutcomes(c);
    for (int week = 0; week < 3; ++week) {
      c.Advance(absl::Hours(7 * 24 + 3));
      std::vector<v1::Outcome> out = c.Tick();
      all.insert(all.end(), out.begin(), out.end());
    }
    std::set<std::string> local_times, offsets;
    int planned = 0;
    for (const v1::Outcome& o : all) {
      if ((o.kind() == v1::Outcome::SESSION_PLANNED ||
           o.kind() == v1::Outcome::REMINDER_SCHEDULED) &&
          absl::StartsWith(o.subject(), "session:")) {
        planned += o.kind() == v1::Outcome::SESSION_PLANNED;
        local_times.insert(o.local_due_time().substr(11, 5));
        offsets.insert(o.local_due_time().substr(17));
      }
    }
    EXPECT_EQ(planned, 4);
    EXPECT_THAT(local_times, ElementsAre("10:00"));
    EXPECT_EQ(offsets.size(), 2u);  // before and after the change
  }
}

// FormatLocal writes the local due time without the general formatter; its
// text must stay LocalTimeText's, across offsets east and west, with
// minutes (+05:30, +12:45), daylight-saving changes, and the historical
// offsets with seconds that take the general path.
TEST(FormatLocalTest, IsLocalTimeTextInEveryKindOfZone) {
  int compared = 0;
  for (const char* name :
       {"UTC", "America/Chicago", "America/St_Johns", "Asia/Kolkata",
        "Pacific/Chatham", "Europe/Amsterdam", "America/Santiago"}) {
    absl::TimeZone zone;
    ASSERT_TRUE(absl::LoadTimeZone(name, &zone)) << name;
    // Every 31 hours 13 minutes from 1880 (local mean times) to 2100.
    for (absl::Time t = absl::FromCivil(absl::CivilSecond(1880, 1, 1, 0, 0, 0),
                                        absl::UTCTimeZone());
         t < absl::FromCivil(absl::CivilSecond(2100, 1, 1, 0, 0, 0),
                             absl::UTCTimeZone());
         t += absl::Hours(31) + absl::Minutes(13)) {
      ASSERT_EQ(runtime::FormatLocal(t, zone), LocalTimeText(t, zone))
          << name << " " << absl::FormatTime(t);
      ++compared;
    }
  }
  EXPECT_GT(compared, 400000);
}

}  // namespace
}  // namespace ipsrt

namespace ipsrt {
namespace {

v1::EventPayload Diary(
    const std::string& date,
    const std::vector<std::pair<std::string, std::string>>& activities,
    bool correction = false) {
  v1::EventPayload p;
  v1::SrmDiaryDay* d = p.mutable_srm_diary_day();
  d->set_local_date(date);
  d->set_instrument("srm5");
  d->set_correction(correction);
  for (const auto& [activity, time] : activities) {
    v1::SrmActivity* a = d->add_activities();
    a->set_activity(activity);
    a->set_local_time(time);
  }
  return p;
}

// A diary week that spans the spring-forward change in New York: the times
// are wall-clock times, so the change does not move them, and the weekly
// score is the same as any week's.
TEST(StepSrmTest, WeeklyScoreAcrossDaylightSavingChangeAndCorrections) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "America/New_York", At("2026-03-05T09:00", "America/New_York"));
  const char* dates[] = {"2026-03-05", "2026-03-06", "2026-03-07", "2026-03-08",
                         "2026-03-09", "2026-03-10", "2026-03-11"};
  for (int d = 0; d < 7; ++d) {
    c.Advance(absl::Hours(24));
    c.Submit(Diary(dates[d], {{"out_of_bed", "07:00"},
                              {"to_bed", d == 3 ? "01:30" : "23:00"}}));
  }
  const auto& scores = c.state().scores();
  ASSERT_TRUE(scores.count("srm.score"));
  EXPECT_DOUBLE_EQ(scores.at("srm.score"), 6.5);  // (7 + 6) / 2
  EXPECT_EQ(scores.at("srm.ali"), 14);
  EXPECT_EQ(scores.at("srm.weeks_recorded"), 1);
  EXPECT_EQ(c.events().back().scores().at("srm.score"), 6.5);

  // The late bedtime is corrected: every day is a hit now.
  EXPECT_EQ(c.TrySubmit(Diary("2026-03-08", {{"to_bed", "23:00"}})).message(),
            "event.srm_diary_day.local_date: 2026-03-08 is already recorded; "
            "send it with correction: true to replace it");
  c.Submit(Diary("2026-03-08", {{"out_of_bed", "07:00"}, {"to_bed", "23:00"}},
                 /*correction=*/true));
  EXPECT_DOUBLE_EQ(c.state().scores().at("srm.score"), 7.0);
  EXPECT_EQ(c.state().scores().at("srm.weeks_recorded"), 1);

  EXPECT_EQ(c.TrySubmit(Diary("2026-03-01", {{"dinner", "18:00"}})).message(),
            "event.srm_diary_day.local_date: 2026-03-01 is more than 7 days "
            "ago; diary days are recorded within a week");
  EXPECT_EQ(c.TrySubmit(Diary("2026-03-12", {{"lunch", "12:00"}})).message(),
            "event.srm_diary_day.activities[0].activity: srm5 has no activity "
            "\"lunch\"");
  EXPECT_EQ(c.TrySubmit(Diary("2026-03-12", {{"dinner", "7pm"}})).message(),
            "event.srm_diary_day.activities[0].local_time: must be HH:MM, or "
            "empty when not done");
  ExpectReplayEqualsState(w, c);
}

// A diary date is a real day written exactly "YYYY-MM-DD", and an activity
// is recorded once a day; a refused day changes nothing.
TEST(StepSrmTest, DiaryDateMustBeARealDayWrittenExactly) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/Paris", At("2026-03-05T09:00", "Europe/Paris"));
  c.Advance(absl::Hours(24));
  const int64_t revision = c.state().enrollment().revision();
  for (const char* date :
       {"2026-02-30", "2026-13-01", "2026-00-10", "2026-03-00", "2026-3-05",
        "2026/03/05", " 2026-03-05", "2026-03-05 ", "2026-03-5x", "0999-01-01",
        "+026-03-05", ""}) {
    EXPECT_EQ(c.TrySubmit(Diary(date, {{"dinner", "19:00"}})).message(),
              "event.srm_diary_day.local_date: must be a date \"YYYY-MM-DD\"")
        << "\"" << date << "\"";
  }
  EXPECT_EQ(c.TrySubmit(Diary("2026-03-06", {{"dinner", "19:00"},
                                             {"to_bed", "23:00"},
                                             {"dinner", "19:30"}}))
                .message(),
            "event.srm_diary_day.activities[2].activity: \"dinner\" is "
            "repeated");
  EXPECT_EQ(c.state().enrollment().revision(), revision);
  c.Submit(Diary("2026-03-06", {{"dinner", "19:00"}, {"to_bed", "23:00"}}));
  c.Submit(Diary("2026-03-05", {{"dinner", "19:00"}}));
  EXPECT_EQ(c.state().srm_days_recorded(), 2);
  ExpectReplayEqualsState(w, c);
}

// The diary week's scores as Step keeps them (grouped by SRM-17 activity,
// issue 15) are those of ScoreSrmWeek and SrmAnchorTrends over the same
// two weeks, bit for bit: SRM-17 days in changing activity order, times
// left empty, days skipped, across a month's end.
TEST(StepSrmTest, WeekScoresEqualTheInstrumentsScoringOfTheSameDays) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  absl::TimeZone zone;
  ASSERT_TRUE(absl::LoadTimeZone("Europe/Berlin", &zone));
  Course c(w, "Europe/Berlin", At("2026-01-12T09:00", "Europe/Berlin"));
  std::map<absl::CivilDay, SrmDayTimes> recorded;
  uint32_t seed = 12345;
  auto next = [&](uint32_t n) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) % n;
  };
  const std::vector<std::string>& all = Srm17Activities();
  // Shifts and hit rates compared while set (the course reaches them).
  int shifts_set = 0, hit_rates_set = 0;
  for (int d = 0; d < 40; ++d) {
    c.Advance(absl::Hours(24));
    if (next(5) == 0) continue;  // a day not recorded
    const absl::CivilDay today = absl::ToCivilDay(c.now(), zone);
    v1::EventPayload p;
    v1::SrmDiaryDay* day = p.mutable_srm_diary_day();
    day->set_local_date(absl::FormatCivilTime(today));
    day->set_instrument("srm17");
    SrmDayTimes times;
    const size_t first = next(static_cast<uint32_t>(all.size()));
    for (size_t i = 0; i < all.size(); ++i) {
      const std::string& activity = all[(first + i) % all.size()];
      v1::SrmActivity* a = day->add_activities();
      a->set_activity(activity);
      if (next(4) == 0) continue;  // not done that day
      // Around a habit of (index) hours, with the odd outlier.
      const int minutes =
          static_cast<int>(((first % 3) * 40 + (i * 83) % 1440 + next(90) +
                            (next(9) == 0 ? 600 : 0)) %
                           1440);
      a->set_local_time(
          absl::StrFormat("%02d:%02d", minutes / 60, minutes % 60));
      times[activity] = minutes;
    }
    recorded[today] = times;
    c.Submit(p);

    std::vector<SrmDayTimes> week, before;
    int days_in_week = 0;
    for (const auto& [date, t] : recorded) {
      if (today - date < 7) {
        week.push_back(t);
        ++days_in_week;
      } else if (today - date < 14) {
        before.push_back(t);
      }
    }
    const SrmWeekScore want = ScoreSrmWeek(week);
    const std::vector<SrmAnchorTrend> trends = SrmAnchorTrends(before, week);
    const auto& scores = c.state().scores();
    auto got = [&](const std::string& key) -> std::optional<double> {
      auto it = scores.find(key);
      if (it == scores.end()) return std::nullopt;
      return it->second;
    };
    SCOPED_TRACE(absl::StrCat("day ", d));
    EXPECT_EQ(got("srm.score"), want.score);
    EXPECT_EQ(got("srm.ali"), std::optional<double>(want.ali));
    EXPECT_EQ(got("srm.days_recorded"), std::optional<double>(days_in_week));
    for (const std::string& activity : all) {
      std::optional<double> shift, hit_rate;
      for (const SrmAnchorTrend& t : trends) {
        if (t.activity != activity) continue;
        shift = t.shift_minutes;
        hit_rate = t.hit_rate;
      }
      shifts_set += shift.has_value() ? 1 : 0;
      hit_rates_set += hit_rate.has_value() ? 1 : 0;
      EXPECT_EQ(got(absl::StrCat("srm.", activity, ".shift_minutes")), shift)
          << activity;
      EXPECT_EQ(got(absl::StrCat("srm.", activity, ".hit_rate")), hit_rate)
          << activity;
    }
  }
  EXPECT_GT(shifts_set, 100);
  EXPECT_GT(hit_rates_set, 100);
  ExpectReplayEqualsState(w, c);
}

}  // namespace

// ---------------------------------------------------- bounded state (#15)

// LiveDays runs `days` days of a course: a diary day every evening, a
// session and a PHQ-9 once a week.
void LiveDays(Course& c, absl::TimeZone zone, int days) {
  for (int d = 0; d < days; ++d) {
    c.Advance(absl::Hours(24));
    v1::EventPayload p;
    v1::SrmDiaryDay* day = p.mutable_srm_diary_day();
    day->set_local_date(absl::FormatCivilTime(absl::ToCivilDay(c.now(), zone)));
    for (const char* a :
         {"out_of_bed", "first_contact", "start_work", "dinner", "to_bed"}) {
      v1::SrmActivity* act = day->add_activities();
      act->set_activity(a);
      act->set_local_time(std::string(a) == "to_bed" ? "23:00" : "08:00");
    }
    c.Submit(p);
    if (d % 7 == 0) c.Session();
    if (d % 7 == 6) c.Answer("phq9", {1, 1, 0, 1, 0, 0, 0, 0, 0});
  }
}

absl::TimeZone London() {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone("Europe/London", &tz));
  return tz;
}

void MoveTo(Course& c, const std::string& stage) {
  v1::EventPayload p;
  p.mutable_stage_change()->set_to_stage(stage);
  p.mutable_stage_change()->set_reason("test");
  c.Submit(p);
}

TEST(BoundedStateTest, SnapshotDoesNotGrowWithTheCourseAge) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/London", At("2026-01-05T21:00", "Europe/London"));
  MoveTo(c, "maintenance");
  LiveDays(c, London(), 365);
  const size_t one_year = c.state().ByteSizeLong();
  const int tasks = c.state().tasks_size();
  LiveDays(c, London(), 365);
  // Only counters grow, by a byte of encoding when one passes 127.
  EXPECT_LE(c.state().ByteSizeLong(), one_year + 8);
  EXPECT_EQ(c.state().tasks_size(), tasks);
  for (const internal::TaskState& t : c.state().tasks()) {
    EXPECT_EQ(t.status(), v1::Task::OPEN) << t.key();
  }
  ExpectReplayEqualsState(w, c);
}

TEST(BoundedStateTest, StepInPlaceEqualsStepAndIsDeterministic) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/London", At("2026-01-05T21:00", "Europe/London"));
  LiveDays(c, London(), 20);
  MoveTo(c, "maintenance");
  LiveDays(c, London(), 30);
  internal::EnrollmentState copied, in_place;
  copied.mutable_enrollment()->set_name("tenants/t/enrollments/e1");
  in_place = copied;
  for (const v1::Event& event : c.events()) {
    absl::StatusOr<runtime::StepResult> a =
        runtime::Step(w, &Enrollments::LoadZone, copied, event);
    internal::EnrollmentState twin = in_place;
    absl::StatusOr<runtime::StepChanges> b =
        runtime::StepInPlace(w, &Enrollments::LoadZone, in_place, event);
    absl::StatusOr<runtime::StepChanges> b2 =
        runtime::StepInPlace(w, &Enrollments::LoadZone, twin, event);
    ASSERT_TRUE(a.ok() && b.ok() && b2.ok()) << event.sequence();
    copied = std::move(a->state);
    EXPECT_EQ(DeterministicBytes(copied), DeterministicBytes(in_place));
    EXPECT_EQ(DeterministicBytes(twin), DeterministicBytes(in_place));
    ASSERT_EQ(a->outcomes.size(), b->outcomes.size());
    for (size_t i = 0; i < b->outcomes.size(); ++i) {
      EXPECT_EQ(a->outcomes[i].SerializeAsString(),
                b->outcomes[i].SerializeAsString());
      EXPECT_EQ(b2->outcomes[i].SerializeAsString(),
                b->outcomes[i].SerializeAsString());
    }
    ASSERT_EQ(a->effects.size(), b->effects.size());
    for (size_t i = 0; i < b->effects.size(); ++i) {
      EXPECT_EQ(a->effects[i].key, b->effects[i].key);
      EXPECT_EQ(a->effects[i].due, b->effects[i].due);
    }
    ASSERT_EQ(a->closed_tasks.size(), b->closed_tasks.size());
  }
}

TEST(BoundedStateTest, ARefusedEventLeavesTheStateUnchanged) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/London", At("2026-01-05T21:00", "Europe/London"));
  LiveDays(c, London(), 3);
  std::vector<v1::EventPayload> refused(3);
  refused[0].mutable_questionnaire_response()->set_questionnaire_id("gad7");
  refused[0].mutable_questionnaire_response()->set_task_id("no-such-task");
  refused[1].mutable_enrollment_updated()->set_time_zone("Nowhere/Atlantis");
  refused[2].mutable_alert_acknowledged()->set_alert_id("phq9-item9-1");
  for (v1::EventPayload& p : refused) {
    internal::EnrollmentState state = c.state();
    v1::Event event;
    event.set_sequence(state.enrollment().revision() + 1);
    *event.mutable_record_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(c.now()));
    *event.mutable_payload() = p;
    absl::StatusOr<runtime::StepChanges> r =
        runtime::StepInPlace(w, &Enrollments::LoadZone, state, event);
    EXPECT_FALSE(r.ok()) << p.ShortDebugString();
    EXPECT_EQ(DeterministicBytes(state), DeterministicBytes(c.state()))
        << p.ShortDebugString();
  }
}

TEST(BoundedStateTest, ClosedTasksAreDerivedFromTheEventLog) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/London", At("2026-06-01T10:00", "Europe/London"));
  c.Advance(absl::Hours(1));
  c.Done("history");
  std::vector<v1::Outcome> out = c.Answer("phq9", {0, 0, 0, 0, 0, 0, 0, 0, 1});
  const std::string alert_id = Find(out, v1::Outcome::ALERT_RAISED)->subject();
  v1::EventPayload ack;
  ack.mutable_alert_acknowledged()->set_alert_id(alert_id);
  c.Submit(ack);
  auto versions = [&](int version) -> const WorkflowTemplate* {
    return version == w.version ? &w : nullptr;
  };
  auto closed_ids = [&]() {
    absl::StatusOr<std::vector<internal::TaskState>> closed =
        runtime::ClosedTasks(versions, &Enrollments::LoadZone,
                             "tenants/t/enrollments/e1", c.events());
    EXPECT_TRUE(closed.ok()) << closed.status();
    std::set<std::string> ids;
    for (const v1::Task& t : runtime::TaskList(c.state(), *closed)) {
      if (t.status() != v1::Task::OPEN) ids.insert(t.task_id());
    }
    return ids;
  };
  EXPECT_EQ(c.state().stage_tasks_done_size(), 2);  // history, baseline-phq9
  EXPECT_THAT(closed_ids(), ::testing::UnorderedElementsAre(
                                "history", "baseline-phq9", alert_id));
  for (const v1::Task& t : runtime::OpenTasks(c.state(), true)) {
    EXPECT_EQ(t.status(), v1::Task::OPEN) << t.task_id();
  }
  // Entering a stage makes the old stage's tasks history; the closed
  // alert task stays listed.
  MoveTo(c, "intermediate");
  EXPECT_THAT(closed_ids(), ::testing::Contains(alert_id));
  EXPECT_THAT(closed_ids(), ::testing::Not(::testing::Contains("history")));
  EXPECT_EQ(c.state().stage_tasks_done_size(), 0);
}

TEST(BoundedStateTest, AnOldShapeSnapshotConvertsToTheReplayedState) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/London", At("2026-06-01T10:00", "Europe/London"));
  c.Advance(absl::Hours(1));
  c.Done("history");
  LiveDays(c, London(), 10);
  std::vector<v1::Outcome> out = c.Answer("phq9", {0, 0, 0, 0, 0, 0, 0, 0, 1});
  const std::string alert_id = Find(out, v1::Outcome::ALERT_RAISED)->subject();
  v1::EventPayload ack;
  ack.mutable_alert_acknowledged()->set_alert_id(alert_id);
  c.Submit(ack);
  // The shape stored before: closed occurrences of the stage and closed
  // alert tasks kept among the open ones, acknowledged alerts kept, no
  // stage_tasks_done.
  absl::StatusOr<std::vector<internal::TaskState>> closed =
      runtime::ClosedTasks([&](int v) { return v == w.version ? &w : nullptr; },
                           &Enrollments::LoadZone, "tenants/t/enrollments/e1",
                           c.events());
  ASSERT_TRUE(closed.ok()) << closed.status();
  ASSERT_GT(closed->size(), 10u);
  internal::EnrollmentState old = c.state();
  old.clear_stage_tasks_done();
  old.clear_tasks();
  size_t k = 0;
  for (const internal::TaskState& open : c.state().tasks()) {
    // Interleaved with the open ones, as they were kept.
    if (k < closed->size()) *old.add_tasks() = (*closed)[k++];
    *old.add_tasks() = open;
  }
  while (k < closed->size()) *old.add_tasks() = (*closed)[k++];
  internal::AlertState* acked = old.add_alerts();
  acked->set_alert_id(alert_id);
  acked->set_acknowledged(true);

  internal::EnrollmentState converted = old;
  EXPECT_TRUE(runtime::BoundState(converted));
  EXPECT_EQ(DeterministicBytes(converted), DeterministicBytes(c.state()));
  EXPECT_THAT(converted.stage_tasks_done(),
              ElementsAre("baseline-phq9", "history", "srm-diary"));
  EXPECT_EQ(converted.alerts_size(), 0);
  internal::EnrollmentState again = converted;
  EXPECT_FALSE(runtime::BoundState(again));
  EXPECT_EQ(DeterministicBytes(again), DeterministicBytes(converted));
  internal::EnrollmentState current = c.state();
  EXPECT_FALSE(runtime::BoundState(current));
  EXPECT_EQ(DeterministicBytes(current), DeterministicBytes(c.state()));
}

TEST(BoundedStateTest, ACatchUpPastTheLimitIsReportedAsAnAlert) {
  const WorkflowTemplate& w = Shipped("ipsrt-standard");
  Course c(w, "Europe/London", At("2026-01-05T21:00", "Europe/London"));
  MoveTo(c, "maintenance");
  // Eight years without an event: caught up in full, no alert.
  c.Advance(absl::Hours(24 * 365 * 8));
  std::vector<v1::Outcome> out = c.Tick();
  EXPECT_EQ(Find(out, v1::Outcome::ALERT_RAISED), nullptr);
  EXPECT_GT(out.size(), 2 * 365 * 8u);
  // Twenty more: more than the limit fell due, so the step stops and says
  // so; the next event continues.
  c.Advance(absl::Hours(24 * 365 * 20));
  out = c.Tick();
  const v1::Outcome* alert = Find(out, v1::Outcome::ALERT_RAISED);
  ASSERT_NE(alert, nullptr);
  EXPECT_THAT(alert->subject(), ::testing::StartsWith("schedule-catch-up-"));
  ASSERT_EQ(c.state().alerts_size(), 1);
  EXPECT_THAT(c.state().alerts(0).title(), HasSubstr("caught up only to"));
  out = c.Tick();
  EXPECT_NE(Find(out, v1::Outcome::TASK_OPENED), nullptr);
  ExpectReplayEqualsState(w, c);
}

}  // namespace ipsrt
