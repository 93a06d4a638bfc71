#include "runtime/step.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <set>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/types/span.h"
#include "google/protobuf/util/time_util.h"
#include "instruments/srm.h"
#include "ipsrt/plugin/time.h"
#include "ipsrt/status_macros.h"
#include "runtime/session_plan.h"

namespace ipsrt::runtime {
namespace {

using google::protobuf::util::TimeUtil;

int64_t Us(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromUs(int64_t us) { return absl::FromUnixMicros(us); }
google::protobuf::Timestamp Ts(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(Us(t));
}

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

// StateFacts answers conditions from the enrollment's state as it stands
// (at the event's time `now`): nothing is copied or built per evaluation,
// and a change to the state is seen by the next condition evaluated.
class StateFacts final : public FactSource {
 public:
  StateFacts(const internal::EnrollmentState& state, const absl::Time& now)
      : st_(state), now_(now) {}

  // Numbers: the scores, and the engine's own counters, which take
  // precedence over a score of the same name.
  std::optional<double> Number(absl::string_view name) const override {
    if (name == "stage.sessions") return Counted(st_.stage_counts());
    if (name == "stage.days") return DaysFrom(st_.stage_entered_us());
    if (name == "alerts.open") {
      int open_alerts = 0;
      for (const internal::AlertState& a : st_.alerts()) {
        if (!a.acknowledged()) ++open_alerts;
      }
      return open_alerts;
    }
    if (name == "course.sessions") return Counted(st_.course_counts());
    if (name == "course.days") return DaysFrom(st_.enrolled_us());
    auto it = st_.scores().find(Key(name));
    if (it == st_.scores().end()) return std::nullopt;
    return it->second;
  }
  std::optional<bool> Boolean(absl::string_view name) const override {
    if (name == "goal.set") return st_.goal_set();
    if (name == "relapse_plan.written") return st_.relapse_plan_written();
    auto it = st_.conditions().find(Key(name));
    if (it == st_.conditions().end()) return std::nullopt;
    return it->second.value();
  }
  const std::string* String(absl::string_view name) const override {
    return name == "goal.problem_area" ? &st_.problem_area() : nullptr;
  }
  double Count(absl::string_view kind) const override {
    auto it = st_.stage_counts().find(Key(kind));
    return it == st_.stage_counts().end() ? 0 : static_cast<double>(it->second);
  }
  std::optional<double> DaysSince(absl::string_view mark) const override {
    int64_t us = 0;
    if (mark == "enrolled") {
      us = st_.enrolled_us();
    } else if (mark == "stage_entered") {
      us = st_.stage_entered_us();
    } else if (mark == "last_session") {
      us = st_.last_session_us();
    } else if (mark == "last_response") {
      us = st_.last_response_us();
    }
    if (us <= 0) return std::nullopt;
    return DaysFrom(us);
  }
  bool TaskDone(absl::string_view task_id) const override {
    for (const std::string& id : st_.stage_tasks_done()) {
      if (id == task_id) return true;
    }
    return false;
  }
  WeekHistory Weeks(absl::string_view named) const override {
    WeekHistory week;
    auto it = st_.conditions().find(Key(named));
    if (it == st_.conditions().end()) return week;
    const internal::ConditionHistory& h = it->second;
    week.weeks_held = h.weeks_held();
    if (h.value()) {
      week.weeks_clear = 0;
    } else if (h.cleared_us() > 0) {
      week.weeks_clear = std::floor(
          absl::ToDoubleHours(now_ - absl::FromUnixMicros(h.cleared_us())) /
          (24.0 * 7));
    }
    return week;
  }

 private:
  // Key is a protobuf map's lookup key without a copy (absl::string_view
  // is not std::string_view here).
  static std::string_view Key(absl::string_view s) {
    return std::string_view(s.data(), s.size());
  }
  static double Counted(
      const google::protobuf::Map<std::string, int64_t>& counts) {
    auto it = counts.find(std::string_view("session_held"));
    return it == counts.end() ? 0 : static_cast<double>(it->second);
  }
  double DaysFrom(int64_t us) const {
    return std::floor(absl::ToDoubleHours(now_ - absl::FromUnixMicros(us)) /
                      24.0);
  }

  const internal::EnrollmentState& st_;
  const absl::Time& now_;
};

// Applier carries one Step's working state.
class Applier {
 public:
  // The state is changed in place; Run checks everything that can refuse
  // the event before it changes anything, so a refused event leaves the
  // state as it was.
  Applier(const WorkflowTemplate& w, const ZoneLoader& zones,
          internal::EnrollmentState& state, const v1::Event& event,
          StepChanges& changes)
      : w_(w), zones_(zones), event_(event), state_(state), result_(changes) {
    now_ = absl::FromUnixMicros(
        TimeUtil::TimestampToMicroseconds(event.record_time()));
  }

  absl::Status Run();

 private:
  internal::EnrollmentState& s() { return state_; }
  v1::Enrollment& e() { return *state_.mutable_enrollment(); }
  const StageTemplate* stage() const {
    return w_.FindStage(state_.enrollment().stage());
  }

  // ApplyPayload dispatches to the payload's own method below. Each checks
  // the payload before it changes the state.
  absl::Status ApplyPayload();
  void Count(const std::string& kind);
  absl::Status Updated(const v1::EnrollmentUpdated& u);
  absl::Status Responded(const v1::QuestionnaireResponse& r);
  absl::Status DiaryDay(const v1::SrmDiaryDay& day);
  absl::Status SessionHeld(const v1::SessionHeld& held);
  absl::Status GoalSet(const v1::GoalSet& goal);
  absl::Status RelapsePlanWritten(const v1::RelapsePreventionPlan& plan);
  absl::Status DisruptionPlanWritten(const v1::DisruptionPlan& plan);
  absl::Status StageChanged(const v1::StageChange& change);
  absl::Status AlertAcknowledged(const v1::AlertAcknowledged& ack);
  absl::Status TaskCompleted(const v1::TaskCompleted& done);
  absl::Status WorkflowMigrated(const v1::WorkflowMigrated& m);
  // PruneClosed moves closed task occurrences and acknowledged alerts out
  // of the state into the step's changes (they can no longer affect a
  // decision; the event log keeps them), keeping the order of the rest.
  void PruneClosed();
  absl::Status RecordDiaryDay(const v1::SrmDiaryDay& day);
  absl::Status Created(const v1::EnrollmentCreated& c);
  void EnterStage(const StageTemplate& to, const std::string& reason);
  // OpenOccurrence opens the next occurrence of `t`, due at `due`, whose
  // window (responses that complete it) starts at `opens`.
  void OpenOccurrence(const TaskTemplate& t, absl::Time due, absl::Time opens);
  absl::Time FirstDue(const TaskTemplate& t) const;
  absl::Time NextDue(const TaskTemplate& t, absl::Time previous) const;
  void ReplanReminders(absl::TimeZone old_zone);
  void CloseTask(internal::TaskState& task, v1::Task::Status status,
                 const std::string& reason);
  internal::TaskState* FindOpen(
      const std::function<bool(const internal::TaskState&)>& match);
  void CompleteFirstOpen(TaskKind kind, const std::string& questionnaire,
                         const std::string& reason);
  void PassTime();
  void SetCadence(const IsoDuration& cadence, const std::string& reason);
  // RequestSessionPlan asks for a new session series anchored on the local
  // day of `anchor`; PlanSessions applies the last request at the end of
  // the step.
  void RequestSessionPlan(absl::Time anchor, std::string reason);
  void PlanSessions();
  void RaiseAlert(const AlertSpec& spec, const std::string& rule_id);
  void RunAction(const Action& a, const std::string& rule_id);
  // Facts are the state itself, read as conditions see it.
  const FactSource& Facts() const { return facts_; }
  // EvaluateNamedConditions evaluates the template's named conditions
  // and records them in their weekly history.
  void EvaluateNamedConditions();
  // ApplySafetyFloors raises the default alert of each safety floor whose
  // flag the event carries, unless a rule refining it fired this event.
  void ApplySafetyFloors();
  void EvaluateRules(const std::vector<RuleTemplate>& rules,
                     const std::string& event_kind);
  void Outcome(v1::Outcome::Kind kind, std::string subject, std::string from,
               std::string to, std::string reason,
               absl::Time due = absl::InfinitePast());
  std::string RuleEventKind() const;

  const WorkflowTemplate& w_;
  const ZoneLoader& zones_;
  const v1::Event& event_;
  internal::EnrollmentState& state_;
  StepChanges& result_;
  absl::Time now_;
  absl::TimeZone zone_;
  const StateFacts facts_{state_, now_};
  bool stage_changed_ = false;
  struct SessionPlanRequest {
    absl::CivilDay anchor;
    std::string reason;
  };
  std::optional<SessionPlanRequest> session_request_;
  bool zone_changed_ = false;
  // Per-event rules fired by this event, by id.
  std::set<std::string> fired_rules_;
  // The last due time Outcome formatted, in which zone, and its text.
  absl::Time formatted_due_ = absl::InfinitePast();
  absl::TimeZone formatted_zone_;
  std::string formatted_local_;
};

void Applier::Outcome(v1::Outcome::Kind kind, std::string subject,
                      std::string from, std::string to, std::string reason,
                      absl::Time due) {
  // Built in place: an outcome is not moved (nor are the earlier ones, as
  // the list grows: StepInPlace reserves room for a typical event's).
  // Empty fields are left unset (the same message in proto3), which saves
  // allocating an empty string for each.
  v1::Outcome& o = result_.outcomes.emplace_back();
  o.set_kind(kind);
  if (!subject.empty()) o.set_subject(std::move(subject));
  if (!from.empty()) o.set_from(std::move(from));
  if (!to.empty()) o.set_to(std::move(to));
  if (!reason.empty()) o.set_reason(std::move(reason));
  if (due != absl::InfinitePast()) {
    *o.mutable_due_time() = Ts(due);
    // A task's opening and its reminder share the due time: formatted once.
    if (due != formatted_due_ || !(zone_ == formatted_zone_)) {
      formatted_due_ = due;
      formatted_zone_ = zone_;
      formatted_local_ = FormatLocal(due, zone_);
    }
    o.set_local_due_time(formatted_local_);
  }
}

absl::Time Applier::FirstDue(const TaskTemplate& t) const {
  absl::Time base = now_;
  if (t.due.has_value()) base = AddIsoDuration(base, *t.due, zone_);
  if (!t.due.has_value() && t.repeat.has_value() &&
      t.remind_at_minutes.has_value()) {
    // The first occurrence falls on the last day of the first period: the
    // same evening for a daily diary, six days on for a weekly scale.
    absl::CivilDay last =
        absl::ToCivilDay(AddIsoDuration(now_, *t.repeat, zone_), zone_) - 1;
    absl::Time at =
        LocalToAbsolute(absl::CivilSecond(last.year(), last.month(), last.day(),
                                          *t.remind_at_minutes / 60,
                                          *t.remind_at_minutes % 60, 0),
                        zone_);
    if (at >= now_) return at;
  }
  if (t.remind_at_minutes.has_value()) {
    // The first local HH:MM at or after `base`.
    absl::CivilDay day = absl::ToCivilDay(base, zone_);
    for (int i = 0; i < 3; ++i) {
      absl::CivilSecond at(day.year(), day.month(), day.day() + i,
                           *t.remind_at_minutes / 60, *t.remind_at_minutes % 60,
                           0);
      absl::Time candidate = LocalToAbsolute(at, zone_);
      if (candidate >= base) return candidate;
    }
  }
  if (!t.due.has_value() && t.repeat.has_value()) {
    return AddIsoDuration(now_, *t.repeat, zone_);
  }
  return base;
}

absl::Time Applier::NextDue(const TaskTemplate& t, absl::Time previous) const {
  if (t.remind_at_minutes.has_value()) {
    // Step whole local days from the previous occurrence's date, then put
    // the wall-clock time back, so a skipped-hour adjustment never drifts.
    absl::CivilDay day = absl::ToCivilDay(previous, zone_);
    absl::CivilSecond civil(day.year(), day.month(), day.day(), 0, 0, 0);
    absl::Time midnight_next =
        AddIsoDuration(LocalToAbsolute(civil, zone_), *t.repeat, zone_);
    absl::CivilDay next = absl::ToCivilDay(midnight_next, zone_);
    return LocalToAbsolute(
        absl::CivilSecond(next.year(), next.month(), next.day(),
                          *t.remind_at_minutes / 60, *t.remind_at_minutes % 60,
                          0),
        zone_);
  }
  return AddIsoDuration(previous, *t.repeat, zone_);
}

void Applier::OpenOccurrence(const TaskTemplate& t, absl::Time due,
                             absl::Time opens) {
  // Occurrences are numbered per stage and task for the whole enrollment
  // (re-entering a stage continues the numbering), so a task key, and the
  // outbox keys derived from it, is never reused.
  std::string counter = absl::StrCat(e().stage(), "/", t.id);
  auto it = s().next_occurrence().find(counter);
  int32_t occurrence = it == s().next_occurrence().end() ? 1 : it->second;
  (*s().mutable_next_occurrence())[counter] = occurrence + 1;
  internal::TaskState* task = s().add_tasks();
  task->set_key(absl::StrCat(e().stage(), ".", t.id, "#", occurrence));
  task->set_task_id(t.id);
  task->set_kind(std::string(TaskKindName(t.kind)));
  task->set_title(t.title);
  task->set_assignee(t.assignee == Assignee::kPatient ? v1::Task::PATIENT
                                                      : v1::Task::CLINICIAN);
  task->set_priority(v1::Task::ROUTINE);
  task->set_status(v1::Task::OPEN);
  task->set_questionnaire_id(t.questionnaire);
  task->set_occurrence(occurrence);
  task->set_stage(e().stage());
  task->set_opens_us(Us(opens));
  bool has_due = t.due.has_value() || t.repeat.has_value() ||
                 t.remind_at_minutes.has_value();
  if (has_due) task->set_due_us(Us(due));
  Outcome(v1::Outcome::TASK_OPENED, task->key(), "", "", "",
          has_due ? due : absl::InfinitePast());
  if (t.remind_at_minutes.has_value()) {
    task->set_reminded(true);
    result_.effects.push_back(Effect{Effect::Kind::kScheduleReminder,
                                     absl::StrCat("reminder/", task->key()),
                                     due, task->key()});
    Outcome(v1::Outcome::REMINDER_SCHEDULED, task->key(), "", "", "", due);
  }
}

// MarkDone records that an occurrence of task `id` was done in the current
// stage (the sorted set stage_tasks_done).
void MarkDone(internal::EnrollmentState& state, const std::string& id) {
  auto* done = state.mutable_stage_tasks_done();
  if (std::find(done->begin(), done->end(), id) != done->end()) return;
  *done->Add() = id;
  std::sort(done->begin(), done->end());
}

std::string ReminderKey(const internal::TaskState& task) {
  return task.reminder_key().empty() ? absl::StrCat("reminder/", task.key())
                                     : task.reminder_key();
}

// ReplanReminders moves the future reminders of open occurrences to the
// same local date and time of day in the new zone: a patient who moves
// keeps "20:00" on their new wall clock. Reminders already due (past) are
// untouched, and so is one whose new time would already have passed (it
// keeps its planned time rather than firing at once). The re-planned
// outbox row gets a new key ("...@<event sequence>"), since an outbox key
// is never reused.
void Applier::ReplanReminders(absl::TimeZone old_zone) {
  for (internal::TaskState& task : *s().mutable_tasks()) {
    if (task.status() != v1::Task::OPEN || !task.reminded() ||
        task.due_us() <= Us(now_)) {
      continue;
    }
    const TaskTemplate* t = w_.FindTask(task.stage(), task.task_id());
    if (t == nullptr || !t->remind_at_minutes.has_value()) continue;
    absl::CivilDay day = absl::ToCivilDay(FromUs(task.due_us()), old_zone);
    absl::Time due =
        LocalToAbsolute(absl::CivilSecond(day.year(), day.month(), day.day(),
                                          *t->remind_at_minutes / 60,
                                          *t->remind_at_minutes % 60, 0),
                        zone_);
    if (due == FromUs(task.due_us()) || due <= now_) continue;
    result_.effects.push_back(Effect{Effect::Kind::kCancelReminder,
                                     ReminderKey(task), FromUs(task.due_us()),
                                     task.key()});
    Outcome(v1::Outcome::REMINDER_CANCELLED, task.key(), "", "",
            "time zone changed");
    task.set_due_us(Us(due));
    task.set_reminder_key(
        absl::StrCat("reminder/", task.key(), "@", event_.sequence()));
    result_.effects.push_back(Effect{Effect::Kind::kScheduleReminder,
                                     task.reminder_key(), due, task.key()});
    Outcome(v1::Outcome::REMINDER_SCHEDULED, task.key(), "", "", "", due);
  }
}

void Applier::CloseTask(internal::TaskState& task, v1::Task::Status status,
                        const std::string& reason) {
  task.set_status(status);
  task.set_closed_us(Us(now_));
  if (status == v1::Task::DONE && !task.stage().empty()) {
    // tasks.done("id") reads this set once the occurrence leaves the state.
    MarkDone(s(), task.task_id());
  }
  Outcome(v1::Outcome::TASK_CLOSED, task.key(), "",
          v1::Task::Status_Name(status), reason);
  if (task.reminded() && Us(now_) < task.due_us()) {
    // A reminder whose task is closed before it fires is never sent.
    result_.effects.push_back(Effect{Effect::Kind::kCancelReminder,
                                     ReminderKey(task), FromUs(task.due_us()),
                                     task.key()});
    Outcome(v1::Outcome::REMINDER_CANCELLED, task.key(), "", "", reason);
  }
}

internal::TaskState* Applier::FindOpen(
    const std::function<bool(const internal::TaskState&)>& match) {
  internal::TaskState* best = nullptr;
  for (internal::TaskState& t : *s().mutable_tasks()) {
    if (t.status() != v1::Task::OPEN || !match(t)) continue;
    if (best == nullptr || t.due_us() < best->due_us()) best = &t;
  }
  return best;
}

void Applier::CompleteFirstOpen(TaskKind kind, const std::string& questionnaire,
                                const std::string& reason) {
  std::string kind_name(TaskKindName(kind));
  // A response completes the earliest open occurrence whose window has
  // started; extra responses within a window are recorded (their scores
  // count) but do not run the schedule forward.
  internal::TaskState* task = FindOpen([&](const internal::TaskState& t) {
    return t.kind() == kind_name &&
           (questionnaire.empty() || t.questionnaire_id() == questionnaire) &&
           t.opens_us() <= Us(now_);
  });
  if (task == nullptr) return;
  CloseTask(*task, v1::Task::DONE, reason);
  const TaskTemplate* tt = w_.FindTask(task->stage(), task->task_id());
  if (tt != nullptr && tt->repeat.has_value() && task->due_us() > 0) {
    // Done early: the next occurrence opens now so its reminder is planned.
    bool next_open = FindOpen([&](const internal::TaskState& t) {
                       return t.task_id() == tt->id;
                     }) != nullptr;
    if (!next_open) {
      OpenOccurrence(*tt, NextDue(*tt, FromUs(task->due_us())),
                     FromUs(task->due_us()));
    }
  }
}

void Applier::EnterStage(const StageTemplate& to, const std::string& reason) {
  std::string from = e().stage();
  for (internal::TaskState& t : *s().mutable_tasks()) {
    if (t.status() == v1::Task::OPEN && !t.stage().empty()) {
      CloseTask(t, v1::Task::CANCELLED, absl::StrCat("left stage ", from));
    }
  }
  // Closed tasks are history (on the timeline); the state keeps only what
  // the current stage and open alerts need.
  PruneClosed();
  s().clear_stage_tasks_done();
  for (const RuleTemplate& r :
       stage() ? stage()->rules : std::vector<RuleTemplate>()) {
    s().mutable_rule_values()->erase(r.id);
  }
  e().set_stage(to.id);
  s().set_stage_entered_us(Us(now_));
  s().clear_stage_counts();
  if (!from.empty()) {
    Outcome(v1::Outcome::STAGE_CHANGED, to.id, from, to.id, reason);
  }
  stage_changed_ = true;
  if (e().session_cadence() != to.session_cadence) {
    if (!from.empty()) {
      Outcome(v1::Outcome::CADENCE_CHANGED, to.id, e().session_cadence(),
              to.cadence.ToString(), absl::StrCat("stage ", to.id));
    }
    e().set_session_cadence(to.cadence.ToString());
  }
  s().set_next_session_due_us(Us(AddIsoDuration(now_, to.cadence, zone_)));
  RequestSessionPlan(now_, absl::StrCat("stage ", to.id));
  for (const TaskTemplate& t : to.tasks) OpenOccurrence(t, FirstDue(t), now_);
}

void Applier::SetCadence(const IsoDuration& cadence,
                         const std::string& reason) {
  std::string text = cadence.ToString();
  if (e().session_cadence() == text) return;
  Outcome(v1::Outcome::CADENCE_CHANGED, e().stage(), e().session_cadence(),
          text, reason);
  e().set_session_cadence(text);
  absl::Time base = s().last_session_us() > s().stage_entered_us()
                        ? FromUs(s().last_session_us())
                        : FromUs(s().stage_entered_us());
  absl::Time next = AddIsoDuration(base, cadence, zone_);
  if (next < now_) next = now_;
  s().set_next_session_due_us(Us(next));
  RequestSessionPlan(base, absl::StrCat("cadence ", text, ", ", reason));
}

void Applier::RequestSessionPlan(absl::Time anchor, std::string reason) {
  session_request_ =
      SessionPlanRequest{absl::ToCivilDay(anchor, zone_), std::move(reason)};
}

// PlanSessions keeps exactly one planned session, with its reminder, for a
// template with `sessions` (see step.h): it applies the step's last
// request, or moves on when the planned session's time has passed, or
// follows a zone change. Planned sessions are numbered per stage in
// next_occurrence under "session:<stage>" (a task id cannot contain ':').
void Applier::PlanSessions() {
  if (const internal::PlannedSession& planned = s().next_session();
      !session_request_.has_value() && w_.sessions.has_value() &&
      !planned.key().empty() && planned.start_us() > Us(now_) &&
      !(zone_changed_ && planned.remind_us() > Us(now_))) {
    // Most events: no new plan was asked for and the planned session is
    // still ahead (no zone change moves it), so it stays as it is; decided
    // before the plan is copied or its anchor date parsed.
    std::optional<IsoDuration> cadence =
        ParseIsoDuration(e().session_cadence());
    if (cadence.has_value() && !cadence->IsZero()) return;
  }
  const internal::PlannedSession old = s().next_session();
  const bool has_old = !old.key().empty();
  auto cancel_old = [&](const std::string& reason) {
    // A reminder already due is left to the dispatcher, which checks at
    // claim time that its session is still the planned one.
    if (!has_old || old.remind_us() <= Us(now_)) return;
    result_.effects.push_back(Effect{Effect::Kind::kCancelReminder,
                                     absl::StrCat("reminder/", old.key()),
                                     FromUs(old.remind_us()), old.key()});
    Outcome(v1::Outcome::REMINDER_CANCELLED, old.key(), "", "", reason);
  };
  std::optional<IsoDuration> cadence = ParseIsoDuration(e().session_cadence());
  if (!w_.sessions.has_value() || !cadence.has_value() || cadence->IsZero()) {
    if (has_old) {
      cancel_old("the workflow plans no sessions");
      s().clear_next_session();
    }
    return;
  }
  absl::CivilDay anchor;
  int first_index = 1;
  bool same_session = false;  // a zone change: the same session, moved
  std::string reason;
  if (session_request_.has_value()) {
    anchor = session_request_->anchor;
    reason = session_request_->reason;
  } else if (!has_old) {
    // The enrollment predates the template's sessions (or a migration).
    absl::Time base = s().last_session_us() > s().stage_entered_us()
                          ? FromUs(s().last_session_us())
                          : FromUs(s().stage_entered_us());
    anchor = absl::ToCivilDay(base, zone_);
    reason = "sessions planned";
  } else {
    if (!absl::ParseCivilTime(old.anchor_date(), &anchor)) {
      anchor = absl::ToCivilDay(FromUs(old.start_us()), zone_);
    }
    if (old.start_us() <= Us(now_)) {
      first_index = old.index() + 1;
      reason = absl::StrCat(old.key(), " passed");
    } else if (zone_changed_ && old.remind_us() > Us(now_)) {
      first_index = old.index();
      same_session = true;
      reason = "time zone changed";
    } else {
      return;
    }
  }
  const PlannedTimes next =
      same_session
          ? SessionAt(anchor, first_index, *cadence, *w_.sessions, zone_)
          : NextSession(anchor, first_index, *cadence, *w_.sessions, zone_,
                        now_);
  // As for task reminders, a moved session whose reminder time would have
  // passed keeps its planned time rather than being reminded at once.
  if (same_session && next.remind <= now_) return;
  const std::string stage_prefix = absl::StrCat("session:", e().stage(), "#");
  if (has_old && absl::StartsWith(old.key(), stage_prefix) &&
      next.start == FromUs(old.start_us()) &&
      next.remind == FromUs(old.remind_us())) {
    // The same time again: keep the planned session and its reminder, on
    // the new series.
    internal::PlannedSession* kept = s().mutable_next_session();
    kept->set_anchor_date(absl::FormatCivilTime(anchor));
    kept->set_index(next.index);
    return;
  }
  cancel_old(reason);
  const std::string counter = absl::StrCat("session:", e().stage());
  auto it = s().next_occurrence().find(counter);
  const int32_t number = it == s().next_occurrence().end() ? 1 : it->second;
  (*s().mutable_next_occurrence())[counter] = number + 1;
  internal::PlannedSession* planned = s().mutable_next_session();
  planned->set_key(absl::StrCat(stage_prefix, number));
  planned->set_anchor_date(absl::FormatCivilTime(anchor));
  planned->set_index(next.index);
  planned->set_start_us(Us(next.start));
  planned->set_remind_us(Us(next.remind));
  s().set_next_session_due_us(Us(next.start));
  Outcome(v1::Outcome::SESSION_PLANNED, planned->key(),
          has_old ? old.key() : "", e().session_cadence(), reason, next.start);
  result_.effects.push_back(Effect{Effect::Kind::kScheduleSessionReminder,
                                   absl::StrCat("reminder/", planned->key()),
                                   next.remind, planned->key()});
  Outcome(v1::Outcome::REMINDER_SCHEDULED, planned->key(), "", "", "",
          next.remind);
}

void Applier::RaiseAlert(const AlertSpec& spec, const std::string& rule_id) {
  std::string id = absl::StrCat(spec.id, "-", event_.sequence());
  internal::AlertState* alert = s().add_alerts();
  alert->set_alert_id(id);
  alert->set_rule_id(rule_id);
  alert->set_title(spec.title);
  alert->set_urgent(spec.urgent);
  alert->set_raised_us(Us(now_));
  alert->set_raised_by_sequence(event_.sequence());
  absl::Time deadline = absl::InfinitePast();
  if (spec.acknowledge_within.has_value()) {
    deadline = AddIsoDuration(now_, *spec.acknowledge_within, zone_);
    alert->set_acknowledge_by_us(Us(deadline));
  }
  internal::TaskState* task = s().add_tasks();
  task->set_key(absl::StrCat("alert:", id));
  task->set_task_id(id);
  task->set_kind("alert");
  task->set_title(spec.title);
  task->set_assignee(v1::Task::CLINICIAN);
  task->set_priority(spec.urgent ? v1::Task::URGENT : v1::Task::ROUTINE);
  task->set_status(v1::Task::OPEN);
  if (deadline != absl::InfinitePast()) {
    task->set_due_us(Us(deadline));
    task->set_acknowledge_by_us(Us(deadline));
    result_.effects.push_back(Effect{Effect::Kind::kScheduleEscalation,
                                     absl::StrCat("escalation/", id), deadline,
                                     id});
  }
  Outcome(v1::Outcome::ALERT_RAISED, id, "", spec.urgent ? "urgent" : "routine",
          absl::StrCat("rule ", rule_id), deadline);
}

void Applier::RunAction(const Action& a, const std::string& rule_id) {
  std::string reason = absl::StrCat("rule ", rule_id);
  switch (a.kind) {
    case Action::Kind::kSetCadence:
      SetCadence(a.cadence, reason);
      break;
    case Action::Kind::kRestoreCadence:
      if (stage() != nullptr) SetCadence(stage()->cadence, reason);
      break;
    case Action::Kind::kMoveTo:
      if (const StageTemplate* to = w_.FindStage(a.stage);
          to != nullptr && to->id != e().stage()) {
        EnterStage(*to, reason);
      }
      break;
    case Action::Kind::kRaiseAlert:
      RaiseAlert(a.alert, rule_id);
      break;
    case Action::Kind::kScheduleQuestionnaire: {
      TaskTemplate t;
      t.id = absl::StrCat(a.questionnaire, "-by-", rule_id);
      t.kind = TaskKind::kQuestionnaire;
      t.title = absl::StrCat("Questionnaire ", a.questionnaire);
      t.assignee = Assignee::kPatient;
      t.questionnaire = a.questionnaire;
      t.due = a.within;
      bool open = FindOpen([&](const internal::TaskState& x) {
                    return x.task_id() == t.id;
                  }) != nullptr;
      if (!open) OpenOccurrence(t, FirstDue(t), now_);
      break;
    }
  }
}

std::string Applier::RuleEventKind() const {
  const v1::EventPayload& p = event_.payload();
  switch (p.payload_case()) {
    case v1::EventPayload::kQuestionnaireResponse:
      return absl::StrCat("questionnaire:",
                          p.questionnaire_response().questionnaire_id());
    case v1::EventPayload::kSrmDiaryDay:
      return "srm_diary";
    case v1::EventPayload::kSessionHeld:
      return "session_held";
    case v1::EventPayload::kGoalSet:
      return "goal_set";
    case v1::EventPayload::kRelapsePlan:
      return "relapse_plan";
    case v1::EventPayload::kDisruptionPlan:
      return "disruption_plan";
    case v1::EventPayload::kStageChange:
      return "stage_change";
    case v1::EventPayload::kAlertAcknowledged:
      return "alert_acknowledged";
    case v1::EventPayload::kTimeElapsed:
      return "time";
    case v1::EventPayload::kTaskCompleted:
      return "task_completed";
    default:
      return "";
  }
}

void Applier::EvaluateNamedConditions() {
  if (w_.conditions.empty()) return;
  const int64_t week = static_cast<int64_t>(std::floor(
      absl::ToDoubleHours(now_ - FromUs(s().enrolled_us())) / (24.0 * 7)));
  for (const NamedCondition& c : w_.conditions) {
    if (c.when.program == nullptr) continue;
    // Each reads the values of the ones before it, as just evaluated.
    bool value = c.when.program->Evaluate(Facts());
    internal::ConditionHistory& h = (*s().mutable_conditions())[c.name];
    if (week > h.week()) {
      int64_t shift = week - h.week();
      h.set_weeks_held(shift >= 64 ? 0 : h.weeks_held() << shift);
      h.set_week(week);
    }
    if (h.value() && !value) h.set_cleared_us(Us(now_));
    h.set_value(value);
    if (value) {
      h.set_weeks_held(h.weeks_held() | 1);
      h.set_last_held_us(Us(now_));
    }
    // The next condition reads this one's new value from the state.
  }
}

void Applier::ApplySafetyFloors() {
  for (const AppliedSafetyFloor& applied : w_.safety_floors) {
    bool flagged = false;
    for (const std::string& f : event_.flags()) {
      flagged = flagged || f == applied.floor.flag;
    }
    if (!flagged) continue;
    bool refined = false;
    for (const std::string& id : applied.refined_by) {
      refined = refined || fired_rules_.count(id) > 0;
    }
    if (refined) continue;
    std::string id = absl::StrCat("safety-", applied.floor.flag);
    for (char& c : id) {
      if (c == '.' || c == '_') c = '-';
    }
    AlertSpec spec;
    spec.id = id;
    spec.title = applied.floor.title;
    spec.urgent = true;
    spec.acknowledge_within = applied.acknowledge_within;
    const std::string rule_id =
        absl::StrCat("safety-floor:", applied.floor.flag);
    Outcome(v1::Outcome::RULE_FIRED, rule_id, "", "then",
            absl::StrCat("questionnaire:", applied.floor.instrument));
    RaiseAlert(spec, rule_id);
  }
}

void Applier::EvaluateRules(const std::vector<RuleTemplate>& rules,
                            const std::string& event_kind) {
  for (const RuleTemplate& rule : rules) {
    if (rule.when.program == nullptr) continue;
    if (!rule.on.empty()) {
      if (rule.on != event_kind) continue;
      if (!rule.when.program->Evaluate(Facts())) continue;
      Outcome(v1::Outcome::RULE_FIRED, rule.id, "", "then", rule.on);
      fired_rules_.insert(rule.id);
      for (const Action& a : rule.then) RunAction(a, rule.id);
      continue;
    }
    bool value = rule.when.program->Evaluate(Facts());
    auto it = s().rule_values().find(rule.id);
    bool previous = it != s().rule_values().end() && it->second;
    if (value == previous) continue;
    (*s().mutable_rule_values())[rule.id] = value;
    Outcome(v1::Outcome::RULE_FIRED, rule.id, "", value ? "then" : "otherwise",
            "condition changed");
    for (const Action& a : value ? rule.then : rule.otherwise) {
      RunAction(a, rule.id);
    }
  }
}

// The most occurrences PassTime opens or cancels for one event. A gap long
// enough to reach it (a daily task left for more than about 13 years)
// raises the alert kCatchUpAlert, so the stop is never silent; the next
// event continues from where this one stopped.
constexpr int kMaxCatchUp = 10000;
constexpr absl::string_view kCatchUpAlert = "schedule-catch-up";

void Applier::PassTime() {
  // Repeating tasks: when an occurrence falls due, the next one opens (so
  // its reminder is planned a full period ahead); an occurrence still open
  // when its successor falls due was missed.
  //
  // Only open occurrences can fall due, and the state holds only those
  // (closed ones leave it as they close, PruneClosed), so each round visits
  // the open occurrences of the current stage and the open alerts: the
  // work is independent of the course's age, and a long gap costs one round
  // per occurrence that falls due in it. Rounds take the first occurrence
  // in state order that changes, as they always have, so outcomes keep
  // their order.
  const int64_t now = Us(now_);
  for (int round = 0;; ++round) {
    PruneClosed();
    auto* tasks = s().mutable_tasks();
    int found = -1;
    bool missed = false;
    const TaskTemplate* found_template = nullptr;
    for (int i = 0; i < tasks->size() && found < 0; ++i) {
      const internal::TaskState& task = tasks->Get(i);
      if (task.due_us() == 0 || task.due_us() > now) continue;
      const TaskTemplate* tt = w_.FindTask(task.stage(), task.task_id());
      if (tt == nullptr || !tt->repeat.has_value()) continue;
      bool successor_open = false;
      bool successor_due = false;
      for (const internal::TaskState& other : *tasks) {
        if (other.occurrence() > task.occurrence() &&
            other.task_id() == task.task_id()) {
          successor_open = true;
          successor_due = successor_due || other.due_us() <= now;
        }
      }
      if (!successor_open || successor_due) {
        found = i;
        found_template = tt;
        missed = successor_due;
      }
    }
    if (found < 0) return;
    if (round == kMaxCatchUp) {
      const internal::TaskState& behind = tasks->Get(found);
      AlertSpec spec;
      spec.id = std::string(kCatchUpAlert);
      spec.title = absl::StrCat(
          "Repeating tasks are caught up only to ",
          FormatLocal(FromUs(behind.due_us()), zone_), ": more than ",
          kMaxCatchUp,
          " occurrences fell due since the previous event; the next event "
          "continues");
      RaiseAlert(spec, absl::StrCat("engine:", kCatchUpAlert));
      return;
    }
    internal::TaskState& task = *tasks->Mutable(found);
    if (missed) {
      CloseTask(task, v1::Task::CANCELLED, "missed");
    } else {
      const int64_t due = task.due_us();
      OpenOccurrence(*found_template, NextDue(*found_template, FromUs(due)),
                     FromUs(due));
    }
  }
}

void PruneClosedInto(internal::EnrollmentState& state,
                     std::vector<internal::TaskState>* closed) {
  auto* tasks = state.mutable_tasks();
  int kept = 0;
  for (int i = 0; i < tasks->size(); ++i) {
    internal::TaskState* t = tasks->Mutable(i);
    if (t->status() != v1::Task::OPEN) {
      if (closed != nullptr) closed->push_back(std::move(*t));
      continue;
    }
    if (kept != i) tasks->SwapElements(kept, i);
    ++kept;
  }
  if (kept < tasks->size()) tasks->DeleteSubrange(kept, tasks->size() - kept);
  auto* alerts = state.mutable_alerts();
  kept = 0;
  for (int i = 0; i < alerts->size(); ++i) {
    if (alerts->Get(i).acknowledged()) continue;
    if (kept != i) alerts->SwapElements(kept, i);
    ++kept;
  }
  if (kept < alerts->size()) {
    alerts->DeleteSubrange(kept, alerts->size() - kept);
  }
}

void Applier::PruneClosed() { PruneClosedInto(s(), &result_.closed_tasks); }

absl::Status Applier::Created(const v1::EnrollmentCreated& c) {
  if (s().enrollment().revision() != 0) {
    return absl::FailedPreconditionError("enrollment already created");
  }
  if (w_.stages.empty()) {
    return absl::FailedPreconditionError("workflow has no stages");
  }
  IPSRT_ASSIGN_OR_RETURN(zone_, zones_(c.time_zone()));
  e().set_patient_ref(c.patient_ref());
  e().set_workflow_id(c.workflow_id());
  e().set_workflow_version(c.workflow_version());
  e().set_time_zone(c.time_zone());
  e().set_clinician_ref(c.clinician_ref());
  *e().mutable_labels() = c.labels();
  e().set_state(v1::Enrollment::ACTIVE);
  *e().mutable_create_time() = event_.record_time();
  s().set_enrolled_us(Us(now_));
  EnterStage(w_.stages.front(), "enrolled");
  return absl::OkStatus();
}

// DiaryDate reads a stored diary date ("YYYY-MM-DD", checked when it was
// recorded) without the cost of a general time parser.
absl::CivilDay DiaryDate(absl::string_view d) {
  auto digits = [&](size_t at, size_t n) {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) v = v * 10 + (d[i] - '0');
    return v;
  };
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') {
    absl::CivilDay c;
    absl::ParseCivilTime(d, &c);
    return c;
  }
  return absl::CivilDay(digits(0, 4), digits(5, 2), digits(8, 2));
}

// DiaryDayNumber is DiaryDate(d) as days since 1970-01-01, for comparing
// and subtracting the window's dates without building civil times. A real
// date is counted directly (days_from_civil, H. Hinnant, "chrono-Compatible
// Low-Level Date Algorithms"); anything else goes through DiaryDate, which
// gives the same count for the same date.
int64_t DiaryDayNumber(absl::string_view d) {
  if (d.size() == 10 && d[4] == '-' && d[7] == '-') {
    int64_t y = 0;
    int m = 0, day = 0;
    bool digits = true;
    for (int i : {0, 1, 2, 3}) {
      digits = digits && absl::ascii_isdigit(d[i]);
      y = y * 10 + (d[i] - '0');
    }
    for (int i : {5, 6}) {
      digits = digits && absl::ascii_isdigit(d[i]);
      m = m * 10 + (d[i] - '0');
    }
    for (int i : {8, 9}) {
      digits = digits && absl::ascii_isdigit(d[i]);
      day = day * 10 + (d[i] - '0');
    }
    const bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    const int month_days =
        m == 2 ? (leap ? 29 : 28)
               : (m == 4 || m == 6 || m == 9 || m == 11 ? 30 : 31);
    if (digits && m >= 1 && m <= 12 && day >= 1 && day <= month_days) {
      y -= m <= 2 ? 1 : 0;
      const int64_t era = (y >= 0 ? y : y - 399) / 400;
      const int64_t yoe = y - era * 400;
      const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + day - 1;
      const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
      return era * 146097 + doe - 719468;
    }
  }
  return DiaryDate(d) - absl::CivilDay(1970, 1, 1);
}

// SrmTrendKeys are the score names of one activity's rhythm analytics.
struct SrmTrendKeys {
  std::string shift_minutes;  // "srm.<activity>.shift_minutes"
  std::string hit_rate;       // "srm.<activity>.hit_rate"
};

// Srm17TrendKeys are the trend score names of every SRM-17 activity (SRM-5's
// are among them), in Srm17Activities() order, built once.
const std::vector<SrmTrendKeys>& Srm17TrendKeys() {
  static const auto* keys = [] {
    auto* k = new std::vector<SrmTrendKeys>();
    for (const std::string& activity : Srm17Activities()) {
      k->push_back(
          SrmTrendKeys{absl::StrCat("srm.", activity, ".shift_minutes"),
                       absl::StrCat("srm.", activity, ".hit_rate")});
    }
    return k;
  }();
  return *keys;
}

// SetScore sets (or, with no value, removes) one score.
void SetScore(google::protobuf::Map<std::string, double>* scores,
              const std::string& key, std::optional<double> value) {
  if (!value.has_value()) {
    scores->erase(key);
    return;
  }
  auto it = scores->find(key);
  if (it != scores->end()) {
    it->second = *value;
  } else {
    (*scores)[key] = *value;
  }
}

// SetSrmTrendScores replaces the rhythm analytics in `scores`:
// "srm.<activity>.shift_minutes" and "srm.<activity>.hit_rate" for every
// SRM-17 activity (SRM-5's are among them), absent when not computable.
void SetSrmTrendScores(const std::vector<SrmAnchorTrend>& trends,
                       google::protobuf::Map<std::string, double>* scores) {
  const std::vector<std::string>& activities = Srm17Activities();
  const std::vector<SrmTrendKeys>& keys = Srm17TrendKeys();
  for (size_t i = 0; i < activities.size(); ++i) {
    const SrmAnchorTrend* trend = nullptr;
    for (const SrmAnchorTrend& t : trends) {
      if (t.activity == activities[i]) trend = &t;
    }
    SetScore(scores, keys[i].shift_minutes,
             trend ? trend->shift_minutes : std::nullopt);
    SetScore(scores, keys[i].hit_rate, trend ? trend->hit_rate : std::nullopt);
  }
  for (const SrmAnchorTrend& t : trends) {
    // Diary days are checked against the SRM-17 list when recorded; any
    // other activity is scored under its own name all the same.
    if (std::find(activities.begin(), activities.end(), t.activity) !=
        activities.end()) {
      continue;
    }
    if (t.shift_minutes.has_value()) {
      (*scores)[absl::StrCat("srm.", t.activity, ".shift_minutes")] =
          *t.shift_minutes;
    }
    if (t.hit_rate.has_value()) {
      (*scores)[absl::StrCat("srm.", t.activity, ".hit_rate")] = *t.hit_rate;
    }
  }
}

// ExactDiaryDate reads a date written exactly as absl::FormatCivilTime
// writes it ("YYYY-MM-DD", a day that exists): what parsing it and
// formatting it back to the same text accepts. Years 1000-9999 are read
// digit by digit (a general time parser cost more than the rest of the
// check); others take the general round trip.
bool ExactDiaryDate(absl::string_view d, absl::CivilDay* date) {
  auto digits = [&](size_t at, size_t n, int* v) {
    *v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (!absl::ascii_isdigit(d[i])) return false;
      *v = *v * 10 + (d[i] - '0');
    }
    return true;
  };
  int y = 0, m = 0, day = 0;
  if (d.size() == 10 && d[4] == '-' && d[7] == '-' && digits(0, 4, &y) &&
      digits(5, 2, &m) && digits(8, 2, &day) && y >= 1000) {
    const absl::CivilDay c(y, m, day);
    if (c.year() != y || c.month() != m || c.day() != day) return false;
    *date = c;
    return true;
  }
  return absl::ParseCivilTime(d, date) && absl::FormatCivilTime(*date) == d;
}

// DiaryDayDate reads a diary day's local date: a real "YYYY-MM-DD" date,
// not after `today` (the patient's) and at most 7 days before it.
absl::StatusOr<absl::CivilDay> DiaryDayDate(const v1::SrmDiaryDay& day,
                                            const std::string& field,
                                            absl::CivilDay today) {
  absl::CivilDay date;
  if (!ExactDiaryDate(day.local_date(), &date)) {
    return Invalid(absl::StrCat(field, ".local_date"),
                   "must be a date \"YYYY-MM-DD\"");
  }
  if (date > today) {
    return Invalid(absl::StrCat(field, ".local_date"),
                   absl::StrCat(day.local_date(),
                                " is after today in the patient's zone (",
                                absl::FormatCivilTime(today), ")"));
  }
  if (today - date > 7) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ".local_date: ", day.local_date(),
        " is more than 7 days ago; diary days are recorded within a week"));
  }
  return date;
}

// CheckDiaryContent checks a diary day's instrument (srm5 or srm17), mood
// (-5 to +5) and activities: each one of the instrument's, once, with an
// HH:MM time or none, and a people code 0-3 (-1: not recorded).
absl::Status CheckDiaryContent(const v1::SrmDiaryDay& day,
                               const std::string& field) {
  std::string instrument = day.instrument().empty() ? "srm5" : day.instrument();
  const std::vector<std::string>* known = nullptr;
  if (instrument == "srm5") known = &Srm5Activities();
  if (instrument == "srm17") known = &Srm17Activities();
  if (known == nullptr) {
    return Invalid(absl::StrCat(field, ".instrument"), "must be srm5 or srm17");
  }
  if (day.mood() < -5 || day.mood() > 5) {
    return Invalid(absl::StrCat(field, ".mood"), "must be between -5 and +5");
  }
  // Activities seen, by their index in the instrument's list (at most 17).
  uint32_t seen = 0;
  for (int i = 0; i < day.activities_size(); ++i) {
    const v1::SrmActivity& a = day.activities(i);
    auto f = [&] { return absl::StrCat(field, ".activities[", i, "]"); };
    const auto known_at = std::find(known->begin(), known->end(), a.activity());
    if (known_at == known->end()) {
      return Invalid(
          absl::StrCat(f(), ".activity"),
          absl::StrCat(instrument, " has no activity \"", a.activity(), "\""));
    }
    const uint32_t bit = uint32_t{1} << (known_at - known->begin());
    const bool repeated = (seen & bit) != 0;
    seen |= bit;
    if (repeated) {
      return Invalid(absl::StrCat(f(), ".activity"),
                     absl::StrCat("\"", a.activity(), "\" is repeated"));
    }
    if (!a.local_time().empty() &&
        !ParseLocalTimeOfDay(a.local_time()).has_value()) {
      return Invalid(absl::StrCat(f(), ".local_time"),
                     "must be HH:MM, or empty when not done");
    }
    if (a.people_code() < -1 || a.people_code() > 3) {
      return Invalid(absl::StrCat(f(), ".people_code"),
                     "must be 0-3 (or -1 when not recorded)");
    }
  }
  return absl::OkStatus();
}

// StoredTimeOfDay reads a stored activity time, "HH:MM" (checked by
// ParseLocalTimeOfDay when the day was recorded), as minutes after
// midnight, as ParseLocalTimeOfDay does.
int StoredTimeOfDay(absl::string_view t) {
  if (t.size() != 5) return *ParseLocalTimeOfDay(t);
  return ((t[0] - '0') * 10 + (t[1] - '0')) * 60 + (t[3] - '0') * 10 +
         (t[4] - '0');
}

// Srm17Windows are the two weeks' times grouped by SRM-17 activity (the
// index in Srm17Activities()), each in day order: what ScoreSrmActivities
// groups by name, without strings, vectors or a sort per diary day.
struct Srm17Windows {
  static constexpr int kActivities = 17;
  static constexpr int kDays = 7;
  double now[kActivities][kDays];
  double before[kActivities][kDays];
  int now_n[kActivities] = {};
  int before_n[kActivities] = {};
};

// Srm17NameOrder is the SRM-17 activities' indices in activity id order
// (the order ScoreSrmActivities reports them in); empty when the list is
// not of Srm17Windows::kActivities.
const std::vector<int>& Srm17NameOrder() {
  static const auto* order = [] {
    auto* o = new std::vector<int>();
    const std::vector<std::string>& all = Srm17Activities();
    if (all.size() != Srm17Windows::kActivities) return o;
    for (int i = 0; i < Srm17Windows::kActivities; ++i) o->push_back(i);
    std::sort(o->begin(), o->end(),
              [&](int a, int b) { return all[a] < all[b]; });
    return o;
  }();
  return *order;
}

// Srm17Index finds `activity` in Srm17Activities(), trying `hint` first (a
// diary lists its activities in the same order day after day); -1 when it
// is none of them.
int Srm17Index(absl::string_view activity, int hint) {
  const std::vector<std::string>& all = Srm17Activities();
  if (hint >= 0 && all[hint] == activity) return hint;
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i] == activity) return static_cast<int>(i);
  }
  return -1;
}

// SetSrmWeekScores erases the diary days `old` (those before the two
// weeks kept) and sets the scored week's srm.days_recorded (diary days in
// the window: a score from few days is shown, but templates gate cadence
// decisions on it, srm.days_recorded >= 4), srm.score, srm.ali and
// srm.weeks_recorded.
void SetSrmWeekScores(absl::Span<const std::string> old, int window_days,
                      std::optional<double> score, int ali,
                      internal::EnrollmentState& state) {
  static const std::string kDaysRecorded = "srm.days_recorded";
  static const std::string kScore = "srm.score";
  static const std::string kAli = "srm.ali";
  static const std::string kWeeksRecorded = "srm.weeks_recorded";
  for (const std::string& d : old) state.mutable_srm_days()->erase(d);
  auto* scores = state.mutable_scores();
  SetScore(scores, kDaysRecorded, static_cast<double>(window_days));
  SetScore(scores, kScore, score);
  SetScore(scores, kAli, static_cast<double>(ali));
  SetScore(scores, kWeeksRecorded,
           static_cast<double>(state.srm_days_recorded() / 7));
}

// ScoreDiaryWeek keeps the diary days of the 14 dates ending with the
// latest recorded one (`date` or later) and scores the week of 7 ending
// with it: srm.score (when enough days), srm.ali, srm.days_recorded,
// srm.weeks_recorded and the anchors' trends against the week before.
void ScoreDiaryWeek(absl::CivilDay date, internal::EnrollmentState& state) {
  // Keep 14 days before the latest; score the 7 ending with it.
  // Dates as day numbers (DiaryDayNumber).
  struct Day {
    int64_t date;
    const std::string* key;
    const v1::SrmDiaryDay* entry;
  };
  absl::InlinedVector<Day, 16> days;
  int64_t latest = date - absl::CivilDay(1970, 1, 1);
  for (const auto& [d, entry] : state.srm_days()) {
    days.push_back(Day{DiaryDayNumber(d), &d, &entry});
    if (days.back().date > latest) latest = days.back().date;
  }
  // Date order, so that the scores (sums of floating-point terms) do not
  // depend on the order the map happens to iterate in.
  std::sort(days.begin(), days.end(), [](const Day& a, const Day& b) {
    return a.date != b.date ? a.date < b.date : *a.key < *b.key;
  });
  absl::InlinedVector<std::string, 4> old;

  // The common case: every activity recorded is an SRM-17 one, at most
  // once a day. The weeks are grouped by activity index and scored with
  // ScoreSrmTimes, ScoreSrmActivities' own computation for each activity,
  // so the scores are the same bits; anything else takes the general path
  // below.
  if (!Srm17NameOrder().empty()) {
    Srm17Windows w;
    int hints[Srm17Windows::kActivities];
    std::fill(std::begin(hints), std::end(hints), -1);
    bool grouped = true;
    int window_days = 0;
    for (const Day& day : days) {
      if (latest - day.date >= 14) continue;
      const bool current = latest - day.date < 7;
      if (current) ++window_days;
      const auto& activities = day.entry->activities();
      for (int i = 0; grouped && i < activities.size(); ++i) {
        const v1::SrmActivity& a = activities[i];
        if (a.local_time().empty()) continue;
        const int hint = i < Srm17Windows::kActivities ? hints[i] : -1;
        const int k = Srm17Index(a.activity(), hint);
        if (k < 0) {
          grouped = false;
          break;
        }
        if (i < Srm17Windows::kActivities) hints[i] = k;
        int& n = current ? w.now_n[k] : w.before_n[k];
        if (n == Srm17Windows::kDays) {
          grouped = false;
          break;
        }
        (current ? w.now[k] : w.before[k])[n++] =
            StoredTimeOfDay(a.local_time());
      }
      if (!grouped) break;
    }
    if (grouped) {
      // The current week's score, in activity id order.
      SrmTimesScore now[Srm17Windows::kActivities];
      int ali = 0, qualifying = 0, hits = 0;
      for (int k : Srm17NameOrder()) {
        if (w.now_n[k] == 0) continue;
        now[k] = ScoreSrmTimes(w.now[k], w.now_n[k]);
        ali += w.now_n[k];
        if (now[k].qualifies) {
          ++qualifying;
          hits += now[k].hits;
        }
      }
      std::optional<double> score;
      if (qualifying > 0) score = static_cast<double>(hits) / qualifying;
      for (const Day& day : days) {
        if (latest - day.date >= 14) old.push_back(*day.key);
      }
      SetSrmWeekScores(old, window_days, score, ali, state);
      auto* scores = state.mutable_scores();
      // The trends (SetSrmTrendScores over SrmAnchorTrendsBetween): the
      // week before is scored only where a shift needs it. Which trend
      // scores are set now (bit 2k: activity k's shift, 2k + 1: its hit
      // rate) is read in one pass over the scores, which spares a lookup
      // for each absent score that has no value to set.
      uint64_t present = 0;
      for (const auto& [name, value] : *scores) {
        absl::string_view n = name;
        if (!absl::ConsumePrefix(&n, "srm.")) continue;
        int bit = 0;
        if (absl::ConsumeSuffix(&n, ".hit_rate")) {
          bit = 1;
        } else if (!absl::ConsumeSuffix(&n, ".shift_minutes")) {
          continue;
        }
        const int k = Srm17Index(n, -1);
        if (k >= 0) present |= uint64_t{1} << (2 * k + bit);
      }
      const std::vector<SrmTrendKeys>& keys = Srm17TrendKeys();
      for (int k = 0; k < Srm17Windows::kActivities; ++k) {
        std::optional<double> shift, hit_rate;
        if (w.now_n[k] > 0 && now[k].qualifies) {
          hit_rate = static_cast<double>(now[k].hits) / w.now_n[k];
          const SrmTimesScore before =
              ScoreSrmTimes(w.before[k], w.before_n[k]);
          if (before.qualifies) {
            shift = SrmShiftMinutes(now[k].habitual_minutes,
                                    before.habitual_minutes);
          }
        }
        if (shift.has_value() || (present >> (2 * k) & 1) != 0) {
          SetScore(scores, keys[k].shift_minutes, shift);
        }
        if (hit_rate.has_value() || (present >> (2 * k + 1) & 1) != 0) {
          SetScore(scores, keys[k].hit_rate, hit_rate);
        }
      }
      return;
    }
  }

  // Room for SRM-5's activities (SRM-17's grow the windows).
  std::vector<SrmActivityTimes> window;
  std::vector<SrmActivityTimes> previous_window;  // the 7 days before
  window.reserve(Srm5Activities().size());
  previous_window.reserve(Srm5Activities().size());
  int window_days = 0;
  for (const Day& day : days) {
    if (latest - day.date >= 14) {
      old.push_back(*day.key);
      continue;
    }
    const bool current = latest - day.date < 7;
    if (current) ++window_days;
    std::vector<SrmActivityTimes>& times = current ? window : previous_window;
    for (const v1::SrmActivity& a : day.entry->activities()) {
      if (a.local_time().empty()) continue;
      AddSrmTime(times, a.activity(), StoredTimeOfDay(a.local_time()));
    }
  }
  // Score before the old days are erased: the activities' names view them
  // only within the windows, which keep no old day.
  SrmWeekScore week = ScoreSrmActivities(std::move(window));
  SrmWeekScore before = ScoreSrmActivities(std::move(previous_window));
  SetSrmWeekScores(old, window_days, week.score, week.ali, state);
  // The current week is scored once, for its score and for the trends.
  SetSrmTrendScores(SrmAnchorTrendsBetween(before, week),
                    state.mutable_scores());
}

// RecordDiaryDay validates one diary day, stores it, and scores the week
// of 7 local dates ending with the latest recorded date.
//
// Late and corrected entries: a day may be recorded up to 7 days after its
// date (a later entry is refused); a date already recorded is replaced only
// by an entry marked `correction`, and a correction needs an earlier entry.
// Either way the week is scored again, so srm.* always reflect the diary as
// it now stands.
absl::Status Applier::RecordDiaryDay(const v1::SrmDiaryDay& day) {
  const std::string field = "event.srm_diary_day";
  IPSRT_ASSIGN_OR_RETURN(
      absl::CivilDay date,
      DiaryDayDate(day, field, absl::ToCivilDay(now_, zone_)));
  IPSRT_RETURN_IF_ERROR(CheckDiaryContent(day, field));
  bool recorded = s().srm_days().count(day.local_date()) > 0;
  if (recorded && !day.correction()) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ".local_date: ", day.local_date(),
        " is already recorded; send it with correction: true to replace it"));
  }
  if (!recorded && day.correction()) {
    return Invalid(
        absl::StrCat(field, ".correction"),
        absl::StrCat("nothing recorded for ", day.local_date(), " to correct"));
  }
  if (!recorded) s().set_srm_days_recorded(s().srm_days_recorded() + 1);
  (*s().mutable_srm_days())[day.local_date()] = day;

  ScoreDiaryWeek(date, s());
  return absl::OkStatus();
}

void Applier::Count(const std::string& kind) {
  (*s().mutable_stage_counts())[kind] += 1;
  (*s().mutable_course_counts())[kind] += 1;
}

absl::Status Applier::Updated(const v1::EnrollmentUpdated& u) {
  if (!u.time_zone().empty()) {
    absl::TimeZone old_zone = zone_;
    IPSRT_ASSIGN_OR_RETURN(zone_, zones_(u.time_zone()));
    e().set_time_zone(u.time_zone());
    ReplanReminders(old_zone);
    zone_changed_ = true;
  }
  if (!u.clinician_ref().empty()) e().set_clinician_ref(u.clinician_ref());
  return absl::OkStatus();
}

absl::Status Applier::Responded(const v1::QuestionnaireResponse& r) {
  if (!r.task_id().empty()) {
    internal::TaskState* task = FindOpen([&](const internal::TaskState& t) {
      return t.task_id() == r.task_id() &&
             t.questionnaire_id() == r.questionnaire_id();
    });
    if (task == nullptr) {
      return Invalid("event.questionnaire_response.task_id",
                     absl::StrCat("no open ", r.questionnaire_id(), " task \"",
                                  r.task_id(), "\""));
    }
  }
  for (const auto& [name, value] : event_.scores()) {
    (*s().mutable_scores())[name] = value;
  }
  Count("questionnaire");
  Count(absl::StrCat("questionnaire:", r.questionnaire_id()));
  s().set_last_response_us(Us(now_));
  CompleteFirstOpen(TaskKind::kQuestionnaire, r.questionnaire_id(), "response");
  return absl::OkStatus();
}

absl::Status Applier::DiaryDay(const v1::SrmDiaryDay& day) {
  IPSRT_RETURN_IF_ERROR(RecordDiaryDay(day));
  Count("srm_diary");
  std::string instrument = day.instrument().empty() ? "srm5" : day.instrument();
  CompleteFirstOpen(TaskKind::kQuestionnaire, instrument, "diary");
  return absl::OkStatus();
}

absl::Status Applier::SessionHeld(const v1::SessionHeld& session) {
  Count("session_held");
  absl::Time held = now_;
  if (session.has_start_time()) {
    held = absl::FromUnixMicros(
        TimeUtil::TimestampToMicroseconds(session.start_time()));
  }
  s().set_last_session_us(Us(held));
  std::optional<IsoDuration> cadence = ParseIsoDuration(e().session_cadence());
  if (cadence.has_value()) {
    s().set_next_session_due_us(Us(AddIsoDuration(held, *cadence, zone_)));
  }
  RequestSessionPlan(held, "session held");
  CompleteFirstOpen(TaskKind::kSession, "", "session held");
  return absl::OkStatus();
}

absl::Status Applier::GoalSet(const v1::GoalSet& goal) {
  if (goal.description().empty()) {
    return Invalid("event.goal_set.description", "must not be empty");
  }
  if (const std::string& area = goal.problem_area();
      !area.empty() &&
      std::find(w_.problem_areas.begin(), w_.problem_areas.end(), area) ==
          w_.problem_areas.end()) {
    return Invalid(
        "event.goal_set.problem_area",
        absl::StrCat("\"", area, "\" is not a problem area of workflow ", w_.id,
                     "@", w_.version, " (use ",
                     absl::StrJoin(w_.problem_areas, ", "), ")"));
  }
  Count("goal_set");
  s().set_goal_set(true);
  s().set_problem_area(goal.problem_area());
  CompleteFirstOpen(TaskKind::kGoal, "", "goal set");
  return absl::OkStatus();
}

absl::Status Applier::RelapsePlanWritten(
    const v1::RelapsePreventionPlan& plan) {
  if (plan.early_warning_signs().empty()) {
    return Invalid("event.relapse_plan.early_warning_signs",
                   "must name at least one early warning sign");
  }
  Count("relapse_plan");
  s().set_relapse_plan_written(true);
  CompleteFirstOpen(TaskKind::kRelapsePlan, "", "plan written");
  return absl::OkStatus();
}

absl::Status Applier::DisruptionPlanWritten(const v1::DisruptionPlan& plan) {
  if (plan.plan().empty()) {
    return Invalid("event.disruption_plan.plan", "must not be empty");
  }
  Count("disruption_plan");
  CompleteFirstOpen(TaskKind::kDisruptionPlan, "", "plan written");
  return absl::OkStatus();
}

absl::Status Applier::StageChanged(const v1::StageChange& c) {
  const StageTemplate* to = w_.FindStage(c.to_stage());
  if (to == nullptr) {
    return Invalid("event.stage_change.to_stage",
                   absl::StrCat("workflow ", w_.id, "@", w_.version,
                                " has no stage \"", c.to_stage(), "\""));
  }
  if (c.reason().empty()) {
    return Invalid("event.stage_change.reason",
                   "a clinician's stage change needs a reason");
  }
  if (to->id == e().stage()) {
    return Invalid(
        "event.stage_change.to_stage",
        absl::StrCat("the enrollment is already in stage \"", to->id, "\""));
  }
  EnterStage(*to, "clinician");
  return absl::OkStatus();
}

// RaisedBySpec tells whether `id` has the shape of an alert this template
// raises ("<alert spec id>-<sequence>") with a sequence before `sequence`.
bool RaisedBySpec(const WorkflowTemplate& w, absl::string_view id,
                  int64_t sequence) {
  size_t dash = id.rfind('-');
  int64_t raised = 0;
  if (dash == absl::string_view::npos ||
      !absl::SimpleAtoi(id.substr(dash + 1), &raised) || raised <= 0 ||
      raised >= sequence) {
    return false;
  }
  absl::string_view spec = id.substr(0, dash);
  auto in = [&](const std::vector<RuleTemplate>& rules) {
    for (const RuleTemplate& r : rules) {
      for (const auto* actions : {&r.then, &r.otherwise}) {
        for (const Action& a : *actions) {
          if (a.kind == Action::Kind::kRaiseAlert && a.alert.id == spec) {
            return true;
          }
        }
      }
    }
    return false;
  };
  if (in(w.rules)) return true;
  for (const StageTemplate& st : w.stages) {
    if (in(st.rules)) return true;
  }
  return absl::StartsWith(spec, "safety-");
}

absl::Status Applier::AlertAcknowledged(const v1::AlertAcknowledged& ack) {
  const std::string& id = ack.alert_id();
  for (internal::AlertState& a : *s().mutable_alerts()) {
    if (a.alert_id() != id || a.acknowledged()) continue;
    a.set_acknowledged(true);
    a.set_acknowledged_us(Us(now_));
    Outcome(v1::Outcome::ALERT_ACKNOWLEDGED, id, "", "", "clinician");
    if (a.acknowledge_by_us() > Us(now_)) {
      result_.effects.push_back(Effect{Effect::Kind::kCancelEscalation,
                                       absl::StrCat("escalation/", id),
                                       FromUs(a.acknowledge_by_us()), id});
    }
    const std::string key = absl::StrCat("alert:", id);
    for (internal::TaskState& t : *s().mutable_tasks()) {
      if (t.key() == key && t.status() == v1::Task::OPEN) {
        CloseTask(t, v1::Task::DONE, "acknowledged");
      }
    }
    return absl::OkStatus();
  }
  // Acknowledged alerts leave the state (bounded state), so an alert id of
  // this template's shape from an earlier event is taken as acknowledged
  // already; the event log has the acknowledgement.
  if (RaisedBySpec(w_, id, event_.sequence())) {
    return absl::FailedPreconditionError(
        absl::StrCat("event.alert_acknowledged.alert_id: alert \"", id,
                     "\" is not open (already acknowledged, or never raised)"));
  }
  return Invalid("event.alert_acknowledged.alert_id",
                 absl::StrCat("no alert \"", id, "\""));
}

absl::Status Applier::TaskCompleted(const v1::TaskCompleted& done) {
  const std::string& id = done.task_id();
  internal::TaskState* task = FindOpen([&](const internal::TaskState& t) {
    return t.task_id() == id && !t.stage().empty();
  });
  if (task == nullptr) {
    return Invalid("event.task_completed.task_id",
                   absl::StrCat("no open task \"", id, "\" in stage \"",
                                e().stage(), "\""));
  }
  Count("task_completed");
  CloseTask(*task, v1::Task::DONE, "completed");
  return absl::OkStatus();
}

absl::Status Applier::WorkflowMigrated(const v1::WorkflowMigrated& m) {
  if (m.to_version() != w_.version) {
    return absl::FailedPreconditionError(
        absl::StrCat("a migration to version ", m.to_version(),
                     " must be applied with that version of the workflow, not ",
                     w_.version));
  }
  const StageTemplate* to = w_.FindStage(m.to_stage());
  if (to == nullptr) {
    return Invalid("event.workflow_migrated.to_stage",
                   absl::StrCat("workflow ", w_.id, "@", w_.version,
                                " has no stage \"", m.to_stage(), "\""));
  }
  e().set_workflow_version(w_.version);
  // Edge-triggered rules start afresh under the new version's rules.
  s().clear_rule_values();
  EnterStage(*to, absl::StrCat("migrated from ", w_.id, "@", m.from_version()));
  return absl::OkStatus();
}

absl::Status Applier::ApplyPayload() {
  const v1::EventPayload& p = event_.payload();
  switch (p.payload_case()) {
    case v1::EventPayload::kEnrollmentCreated:
      return Created(p.enrollment_created());
    case v1::EventPayload::kEnrollmentUpdated:
      return Updated(p.enrollment_updated());
    case v1::EventPayload::kQuestionnaireResponse:
      return Responded(p.questionnaire_response());
    case v1::EventPayload::kSrmDiaryDay:
      return DiaryDay(p.srm_diary_day());
    case v1::EventPayload::kSessionHeld:
      return SessionHeld(p.session_held());
    case v1::EventPayload::kGoalSet:
      return GoalSet(p.goal_set());
    case v1::EventPayload::kRelapsePlan:
      return RelapsePlanWritten(p.relapse_plan());
    case v1::EventPayload::kDisruptionPlan:
      return DisruptionPlanWritten(p.disruption_plan());
    case v1::EventPayload::kStageChange:
      return StageChanged(p.stage_change());
    case v1::EventPayload::kAlertAcknowledged:
      return AlertAcknowledged(p.alert_acknowledged());
    case v1::EventPayload::kTaskCompleted:
      return TaskCompleted(p.task_completed());
    case v1::EventPayload::kWorkflowMigrated:
      return WorkflowMigrated(p.workflow_migrated());
    case v1::EventPayload::kTimeElapsed:
      return absl::OkStatus();
    case v1::EventPayload::kReminderAcknowledged:
      // On the timeline for the record; it changes no task.
      return absl::OkStatus();
    case v1::EventPayload::PAYLOAD_NOT_SET:
      break;
  }
  return Invalid("event", "must set one payload");
}

absl::Status Applier::Run() {
  const v1::Enrollment& before = state_.enrollment();
  bool creating =
      event_.payload().payload_case() == v1::EventPayload::kEnrollmentCreated;
  if (event_.sequence() != before.revision() + 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("event sequence ", event_.sequence(),
                     " does not follow revision ", before.revision()));
  }
  if (!creating) {
    if (before.state() == v1::Enrollment::ENDED) {
      return absl::FailedPreconditionError("the enrollment has ended");
    }
    if (before.has_update_time() &&
        TimeUtil::TimestampToMicroseconds(event_.record_time()) <
            TimeUtil::TimestampToMicroseconds(before.update_time())) {
      return absl::FailedPreconditionError(
          "event record_time is earlier than the previous event");
    }
    IPSRT_ASSIGN_OR_RETURN(zone_, zones_(before.time_zone()));
  }
  IPSRT_RETURN_IF_ERROR(ApplyPayload());
  PassTime();
  std::string kind = RuleEventKind();
  for (size_t round = 0; round <= w_.stages.size(); ++round) {
    stage_changed_ = false;
    std::string stage_before = e().stage();
    EvaluateNamedConditions();
    EvaluateRules(w_.rules, round == 0 ? kind : "");
    if (stage() != nullptr && e().stage() == stage_before) {
      EvaluateRules(stage()->rules, round == 0 ? kind : "");
    }
    if (round == 0) ApplySafetyFloors();
    if (!stage_changed_ && stage() != nullptr) {
      const FactSource& facts = Facts();
      for (const ExitTemplate& exit : stage()->exits) {
        if (exit.when.program != nullptr &&
            exit.when.program->Evaluate(facts)) {
          EnterStage(*w_.FindStage(exit.to),
                     absl::StrCat("exit condition of ", stage_before));
          break;
        }
      }
    }
    if (!stage_changed_) break;
  }
  PlanSessions();
  PruneClosed();
  e().set_revision(event_.sequence());
  *e().mutable_update_time() = event_.record_time();
  return absl::OkStatus();
}

}  // namespace

absl::string_view OutboxKind(Effect::Kind kind) {
  switch (kind) {
    case Effect::Kind::kScheduleReminder:
      return "reminder";
    case Effect::Kind::kScheduleSessionReminder:
      return "session";
    case Effect::Kind::kScheduleEscalation:
      return "alert.escalation";
    case Effect::Kind::kCancelReminder:
    case Effect::Kind::kCancelEscalation:
      break;
  }
  return "";
}

std::string EventTypeFor(const v1::EventPayload& payload) {
  switch (payload.payload_case()) {
    case v1::EventPayload::kEnrollmentCreated:
      return "enrollment.created";
    case v1::EventPayload::kEnrollmentUpdated:
      return "enrollment.updated";
    case v1::EventPayload::kQuestionnaireResponse:
      return "questionnaire.responded";
    case v1::EventPayload::kSrmDiaryDay:
      return "srm.diary_day";
    case v1::EventPayload::kSessionHeld:
      return "session.held";
    case v1::EventPayload::kGoalSet:
      return "goal.set";
    case v1::EventPayload::kRelapsePlan:
      return "relapse_plan.written";
    case v1::EventPayload::kDisruptionPlan:
      return "disruption_plan.written";
    case v1::EventPayload::kStageChange:
      return "stage.changed";
    case v1::EventPayload::kAlertAcknowledged:
      return "alert.acknowledged";
    case v1::EventPayload::kTimeElapsed:
      return "time.elapsed";
    case v1::EventPayload::kTaskCompleted:
      return "task.completed";
    case v1::EventPayload::kWorkflowMigrated:
      return "workflow.migrated";
    case v1::EventPayload::kReminderAcknowledged:
      return "reminder.acknowledged";
    case v1::EventPayload::PAYLOAD_NOT_SET:
      break;
  }
  return "unknown";
}

absl::StatusOr<StepChanges> StepInPlace(const WorkflowTemplate& workflow,
                                        const ZoneLoader& zones,
                                        internal::EnrollmentState& state,
                                        const v1::Event& event) {
  StepChanges changes;
  changes.outcomes.reserve(8);
  IPSRT_RETURN_IF_ERROR(Applier(workflow, zones, state, event, changes).Run());
  return changes;
}

absl::StatusOr<StepResult> Step(const WorkflowTemplate& workflow,
                                const ZoneLoader& zones,
                                const internal::EnrollmentState& state,
                                const v1::Event& event) {
  StepResult result;
  result.state = state;
  IPSRT_ASSIGN_OR_RETURN(StepChanges changes,
                         StepInPlace(workflow, zones, result.state, event));
  result.outcomes = std::move(changes.outcomes);
  result.effects = std::move(changes.effects);
  result.closed_tasks = std::move(changes.closed_tasks);
  return result;
}

absl::StatusOr<internal::EnrollmentState> Replay(
    const WorkflowTemplate& workflow, const ZoneLoader& zones,
    const std::string& name, const std::vector<v1::Event>& events) {
  return Replay(
      [&](int version) -> const WorkflowTemplate* {
        return version == workflow.version ? &workflow : nullptr;
      },
      zones, name, events);
}

namespace {

// FoldEvents folds `events` from the empty state; `closed` (optional)
// receives what each event closed, and is cleared at each stage entry
// except for alert tasks.
absl::Status FoldEvents(
    const std::function<const WorkflowTemplate*(int version)>& versions,
    const ZoneLoader& zones, const std::vector<v1::Event>& events,
    internal::EnrollmentState& state,
    std::vector<internal::TaskState>* closed) {
  for (const v1::Event& event : events) {
    int version = state.enrollment().workflow_version();
    if (event.payload().has_enrollment_created()) {
      version = event.payload().enrollment_created().workflow_version();
    } else if (event.payload().has_workflow_migrated()) {
      version = event.payload().workflow_migrated().to_version();
    }
    const WorkflowTemplate* workflow = versions(version);
    if (workflow == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "replay of event ", event.sequence(), " needs workflow version ",
          version, ", which is not loaded"));
    }
    const std::string stage_before = state.enrollment().stage();
    const int64_t entered_before = state.stage_entered_us();
    IPSRT_ASSIGN_OR_RETURN(StepChanges changes,
                           StepInPlace(*workflow, zones, state, event));
    state.set_last_event_hash(event.hash());
    if (closed == nullptr) continue;
    if (state.enrollment().stage() != stage_before ||
        state.stage_entered_us() != entered_before) {
      // A stage was entered: the tasks of the stage left are history;
      // closed alert tasks stay listed.
      auto history = [](const internal::TaskState& t) {
        return !t.stage().empty();
      };
      closed->erase(std::remove_if(closed->begin(), closed->end(), history),
                    closed->end());
      for (internal::TaskState& t : changes.closed_tasks) {
        if (!history(t)) closed->push_back(std::move(t));
      }
      continue;
    }
    for (internal::TaskState& t : changes.closed_tasks) {
      closed->push_back(std::move(t));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<internal::EnrollmentState> Replay(
    const std::function<const WorkflowTemplate*(int version)>& versions,
    const ZoneLoader& zones, const std::string& name,
    const std::vector<v1::Event>& events) {
  internal::EnrollmentState state;
  state.mutable_enrollment()->set_name(name);
  IPSRT_RETURN_IF_ERROR(FoldEvents(versions, zones, events, state, nullptr));
  return state;
}

absl::StatusOr<std::vector<internal::TaskState>> ClosedTasks(
    const std::function<const WorkflowTemplate*(int version)>& versions,
    const ZoneLoader& zones, const std::string& name,
    const std::vector<v1::Event>& events) {
  internal::EnrollmentState state;
  state.mutable_enrollment()->set_name(name);
  std::vector<internal::TaskState> closed;
  IPSRT_RETURN_IF_ERROR(FoldEvents(versions, zones, events, state, &closed));
  return closed;
}

bool BoundState(internal::EnrollmentState& state) {
  bool old_shape = false;
  for (const internal::TaskState& t : state.tasks()) {
    if (t.status() != v1::Task::OPEN) {
      old_shape = true;
      if (t.status() == v1::Task::DONE && !t.stage().empty()) {
        MarkDone(state, t.task_id());
      }
    }
  }
  for (const internal::AlertState& a : state.alerts()) {
    old_shape = old_shape || a.acknowledged();
  }
  if (old_shape) PruneClosedInto(state, nullptr);
  return old_shape;
}

namespace {

std::vector<v1::Task> ToApiTasks(
    const internal::EnrollmentState& state,
    std::vector<const internal::TaskState*> tasks) {
  std::stable_sort(tasks.begin(), tasks.end(), [](auto* a, auto* b) {
    int64_t da = a->due_us() == 0 ? INT64_MAX : a->due_us();
    int64_t db = b->due_us() == 0 ? INT64_MAX : b->due_us();
    if (a->priority() != b->priority()) return a->priority() > b->priority();
    return da < db;
  });
  std::vector<v1::Task> out;
  for (const internal::TaskState* t : tasks) {
    v1::Task task;
    task.set_name(absl::StrCat(state.enrollment().name(), "/tasks/", t->key()));
    task.set_task_id(t->task_id());
    task.set_kind(t->kind());
    task.set_title(t->title());
    task.set_assignee(t->assignee());
    task.set_priority(t->priority());
    task.set_status(t->status());
    task.set_questionnaire_id(t->questionnaire_id());
    if (t->due_us() > 0) *task.mutable_due_time() = Ts(FromUs(t->due_us()));
    if (t->acknowledge_by_us() > 0) {
      *task.mutable_acknowledge_by() = Ts(FromUs(t->acknowledge_by_us()));
    }
    out.push_back(std::move(task));
  }
  return out;
}

}  // namespace

std::vector<v1::Task> OpenTasks(const internal::EnrollmentState& state,
                                bool include_closed) {
  std::vector<const internal::TaskState*> tasks;
  for (const internal::TaskState& t : state.tasks()) {
    if (include_closed || t.status() == v1::Task::OPEN) tasks.push_back(&t);
  }
  return ToApiTasks(state, std::move(tasks));
}

std::vector<v1::Task> TaskList(const internal::EnrollmentState& state,
                               const std::vector<internal::TaskState>& closed) {
  std::vector<const internal::TaskState*> tasks;
  for (const internal::TaskState& t : closed) tasks.push_back(&t);
  for (const internal::TaskState& t : state.tasks()) tasks.push_back(&t);
  return ToApiTasks(state, std::move(tasks));
}

std::string FormatLocal(absl::Time t, absl::TimeZone zone) {
  // LocalTimeText's text, written digit by digit: the general time format
  // cost about a third of an outcome. Offsets with seconds (historical
  // local mean time) and years outside 1000-9999 take the general format.
  const absl::TimeZone::CivilInfo local = zone.At(t);
  const absl::CivilSecond& cs = local.cs;
  if (local.offset % 60 != 0 || cs.year() < 1000 || cs.year() > 9999) {
    return LocalTimeText(t, zone);
  }
  const int offset = std::abs(local.offset) / 60;
  // "YYYY-MM-DDTHH:MM (+HH:MM)"
  std::string text = "0000-00-00T00:00 (+00:00)";
  auto put = [&](size_t at, int value, int digits) {
    for (int i = digits - 1; i >= 0; --i, value /= 10) {
      text[at + i] = static_cast<char>('0' + value % 10);
    }
  };
  put(0, static_cast<int>(cs.year()), 4);
  put(5, cs.month(), 2);
  put(8, cs.day(), 2);
  put(11, cs.hour(), 2);
  put(14, cs.minute(), 2);
  text[18] = local.offset < 0 ? '-' : '+';
  put(19, offset / 60, 2);
  put(22, offset % 60, 2);
  return text;
}

}  // namespace ipsrt::runtime
