// Step: the engine's deterministic core.
//
// Step(template, zones, state, event) -> (state', outcomes, effects) is a
// pure function: no I/O, no clock, no randomness. "Now" is the event's
// record time. Production, replay, simulation and tests all run it, so an
// enrollment's snapshot is exactly the fold of its events (Replay).
//
// Per event, in order:
//  1. the event's own change (a response is recorded and completes its
//     task, a session moves the next session date, a clinician's stage
//     change enters that stage, ...);
//  2. time passes: repeating tasks whose due time has passed open their
//     next occurrence, and an occurrence still open when the next one falls
//     due is cancelled as missed;
//  3. rules (template-wide, then the stage's) are evaluated and fire;
//  4. the stage's exit transitions are evaluated; the first that holds
//     enters its stage, whose rules and exits are then evaluated in turn
//     (at most as many times as there are stages, so a template cannot make
//     Step loop).
//
// Time zones: local times of day ("remind_at: 20:00") are read in the
// enrollment's zone with the policy of LocalToAbsolute (model/duration.h):
// a skipped local time moves forward by the gap, a repeated one means its
// first occurrence. A zone change (EnrollmentUpdated) re-plans the future
// reminders of open occurrences at the same local date and time in the new
// zone (a cancel and a schedule effect with a new key); reminders already
// due are untouched, and later occurrences are planned in the new zone.
//
// Sessions (templates with `sessions`, runtime/session_plan.h): the next
// session is planned from the current cadence at `sessions.at` local time
// and reminded `remind_before` ahead. It is planned once per event, after
// the rules and exits, so an event that enters a stage and changes the
// cadence plans one session, from the final cadence. A new plan replaces
// the previous one (its reminder is cancelled unless already due) when:
// the stage is entered (series anchored on today), a session is held
// (anchored on its day), the cadence changes by set_cadence or
// restore_cadence (anchored on the last session held in the stage, or the
// stage entry, skipping sessions whose reminder time has passed), or the
// planned session's time passes (the next of its series). A zone change
// moves a session whose reminder is still ahead to the same local date and
// time in the new zone, like task reminders.
#ifndef IPSRT_RUNTIME_STEP_H_
#define IPSRT_RUNTIME_STEP_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "model/workflow.h"

namespace ipsrt::runtime {

namespace v1 = ::ipsrt::v1;
namespace internal = ::ipsrt::internal;

// A side effect to perform after the event commits (transactional outbox).
struct Effect {
  enum class Kind {
    kScheduleReminder,
    // A planned session's reminder (subject: the session key); it is
    // cancelled with kCancelReminder like a task's.
    kScheduleSessionReminder,
    kCancelReminder,
    kScheduleEscalation,
    kCancelEscalation,
  };
  Kind kind = Kind::kScheduleReminder;
  // Unique per effect target within the enrollment; the outbox row's
  // idempotency key is "<enrollment name>/<key>".
  std::string key;
  absl::Time due;
  // The task (reminders) or alert (escalations) concerned.
  std::string subject;
};

// OutboxKind names the outbox row a scheduling effect writes: "reminder"
// (a task's), "session" (a planned session's) or "alert.escalation"; empty
// for cancellations, which write no row.
absl::string_view OutboxKind(Effect::Kind kind);

// StepChanges is what one event changed besides the state.
struct StepChanges {
  std::vector<v1::Outcome> outcomes;
  std::vector<Effect> effects;
  // Task occurrences (alert tasks included) the event closed: they left
  // the state, which keeps only open ones. In the order they were kept.
  std::vector<internal::TaskState> closed_tasks;
};

struct StepResult {
  internal::EnrollmentState state;
  std::vector<v1::Outcome> outcomes;
  std::vector<Effect> effects;
  std::vector<internal::TaskState> closed_tasks;
};

// ZoneLoader returns the zone of an IANA name; the caller caches.
using ZoneLoader =
    std::function<absl::StatusOr<absl::TimeZone>(const std::string&)>;

// EventTypeFor names an event by its payload: "enrollment.created",
// "questionnaire.responded", "srm.diary_day", "session.held", "goal.set",
// "relapse_plan.written", "disruption_plan.written", "stage.changed",
// "alert.acknowledged", "time.elapsed", "enrollment.updated",
// "task.completed", "workflow.migrated", "reminder.acknowledged".
std::string EventTypeFor(const v1::EventPayload& payload);

// Step applies `event` (its sequence must be the state's revision + 1, its
// record_time must not be earlier than the previous event's). Errors:
// INVALID_ARGUMENT naming the payload field (unknown stage, unknown alert,
// missing reason, ...), FAILED_PRECONDITION when the event does not fit the
// state (an enrollment created twice, an ended enrollment).
absl::StatusOr<StepResult> Step(const WorkflowTemplate& workflow,
                                const ZoneLoader& zones,
                                const internal::EnrollmentState& state,
                                const v1::Event& event);

// StepInPlace is Step applied to `state` itself, with no copy: the same
// state and event give the same state and changes as Step. On an error
// `state` is unchanged (every check that can refuse the event runs before
// the first change).
absl::StatusOr<StepChanges> StepInPlace(const WorkflowTemplate& workflow,
                                        const ZoneLoader& zones,
                                        internal::EnrollmentState& state,
                                        const v1::Event& event);

// BoundState converts a snapshot stored before the state was bounded to
// the current shape, exactly what replaying its events now gives: done
// occurrences of the current stage are recorded in stage_tasks_done, and
// closed task occurrences and acknowledged alerts leave the state. A pure
// function of the snapshot; returns false (and changes nothing) when the
// snapshot already has the current shape, so applying it on every load is
// cheap and idempotent.
bool BoundState(internal::EnrollmentState& state);

// Step leaves `last_event_hash` to the caller, since the event's hash
// covers the outcomes Step returns.
//
// Replay folds `events` from the empty state (the enrollment's name is
// `name`), setting last_event_hash from each event.
absl::StatusOr<internal::EnrollmentState> Replay(
    const WorkflowTemplate& workflow, const ZoneLoader& zones,
    const std::string& name, const std::vector<v1::Event>& events);

// Replay across migrations: `versions` returns the template of a version
// of the enrollment's workflow (nullptr when not loaded); a
// "workflow.migrated" event is applied with its target version.
absl::StatusOr<internal::EnrollmentState> Replay(
    const std::function<const WorkflowTemplate*(int version)>& versions,
    const ZoneLoader& zones, const std::string& name,
    const std::vector<v1::Event>& events);

// OpenTasks lists the state's open tasks as the API shows them, earliest
// due first (tasks without a due time last), for the enrollment `name`.
std::vector<v1::Task> OpenTasks(const internal::EnrollmentState& state,
                                bool include_closed);

// ClosedTasks are the task occurrences ListTasks shows with include_closed:
// those closed since the current stage was last entered, and every closed
// alert task. The state no longer keeps them; ClosedTasks folds the
// enrollment's events as Replay does and collects what each event closed.
absl::StatusOr<std::vector<internal::TaskState>> ClosedTasks(
    const std::function<const WorkflowTemplate*(int version)>& versions,
    const ZoneLoader& zones, const std::string& name,
    const std::vector<v1::Event>& events);

// TaskList lists the open tasks of `state` and the `closed` ones as the
// API shows them, urgent first, then earliest due first (tasks without a
// due time last).
std::vector<v1::Task> TaskList(const internal::EnrollmentState& state,
                               const std::vector<internal::TaskState>& closed);

// FormatLocal renders `t` in `zone` as "YYYY-MM-DDTHH:MM (+HH:MM)".
std::string FormatLocal(absl::Time t, absl::TimeZone zone);

}  // namespace ipsrt::runtime

#endif  // IPSRT_RUNTIME_STEP_H_
