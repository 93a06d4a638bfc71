// Scripted patient courses for `ipsrt simulate`: the scenario format and the
// offline simulation that runs it through runtime::Step.
//
// A scenario (documented in workflows/scenarios.md) is a YAML file naming
// the patient's time zone and start, an optional tick period, and a list of
// events at local times. Simulate builds each v1::Event as the server's
// Enrollments does (sequence = revision + 1, record_time, payload, the
// scores, band and flags of questionnaire responses, outcomes, hash chain)
// and folds it with the same runtime::Step, with no store and no server, so
// a clinician can see what a template does before deploying it.
//
// Example:
//   absl::StatusOr<Scenario> scenario =
//       ParseScenario(yaml, "course.yaml", &Enrollments::LoadZone);
//   Simulation simulation;
//   absl::Status status = Simulate(workflow, *scenario, &simulation);
//   for (const SimulatedEvent& e : simulation.events) ...
#ifndef IPSRT_CLI_SCENARIO_H_
#define IPSRT_CLI_SCENARIO_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/arena.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "model/duration.h"
#include "model/workflow.h"
#include "runtime/step.h"

namespace ipsrt::cli {

// Expectations are what an `expect:` asserts (workflows/scenarios.md); an
// unset member is not checked. On an event they concern that event (the
// alerts it raised, ...) and the state right after it; at the scenario's
// top level, the whole course and the final state.
struct Expectations {
  // "file:line:col" of the `expect` key, and its YAML path.
  std::string where;
  std::string path;
  std::string stage;
  std::string cadence;
  // Alert ids as the template names them (without the "-<event>" suffix),
  // in the order raised.
  std::optional<std::vector<std::string>> alerts_raised;
  std::optional<std::vector<std::string>> alerts_acknowledged;
  // The cadences the session cadence changed to, in order.
  std::optional<std::vector<std::string>> cadence_changes;
  // Task ids of the open tasks (alert tasks by their alert id), sorted.
  std::optional<std::vector<std::string>> open_tasks;
  // Score values; nullopt asserts the score is absent.
  std::map<std::string, std::optional<double>> scores;
  // Reminders planned (task and session reminders scheduled).
  std::optional<int> reminders_planned;

  bool empty() const {
    return stage.empty() && cadence.empty() && !alerts_raised &&
           !alerts_acknowledged && !cadence_changes && !open_tasks &&
           scores.empty() && !reminders_planned;
  }
};

// ScenarioEvent is one scripted event, already placed in absolute time.
struct ScenarioEvent {
  // "file:line:col" of the list entry, and its YAML path ("events[3]"),
  // for messages about this event.
  std::string where;
  std::string path;
  absl::Time time;
  v1::EventPayload payload;
  // alert_acknowledged by `latest`: the alert spec id whose most recent
  // unacknowledged alert is acknowledged (resolved when the event runs).
  std::string acknowledge_latest;
  // Expectations checked after the event.
  Expectations expect;
};

struct Scenario {
  std::string file;
  // Template id the scenario was written for; empty means any.
  std::string workflow;
  std::string time_zone;
  absl::TimeZone zone;
  absl::Time start;
  std::string patient_ref = "Patient/simulated";
  std::string clinician_ref = "Practitioner/simulated";
  // When set, a time.elapsed event is injected at start + k * tick between
  // scripted events, and after the last one up to `until`.
  std::optional<IsoDuration> tick;
  std::optional<absl::Time> until;
  std::vector<ScenarioEvent> events;
  // Checked at the end of the course.
  Expectations expect;
};

// ParseScenario reads a scenario. Zones are loaded with `zones` (the
// server's cached loader in production). INVALID_ARGUMENT lists every
// problem as file:line:col: error: path: message, one a line; unknown keys
// are errors.
absl::StatusOr<Scenario> ParseScenario(absl::string_view yaml,
                                       absl::string_view file_name,
                                       const runtime::ZoneLoader& zones);

// SimulatedEvent is one event of the simulated log with the enrollment's
// stage and cadence right after it.
struct SimulatedEvent {
  // Owned by the Simulation's arena (valid as long as the Simulation).
  const v1::Event& event;
  // Where the scenario wrote it ("file:line:col"); empty for the
  // enrollment's creation and for injected ticks.
  std::string where;
  bool tick = false;
  std::string stage;
  std::string session_cadence;
  // What the engine would put in the outbox with it (reminders and alert
  // escalations).
  std::vector<runtime::Effect> effects;
};

struct Simulation {
  Simulation();
  Simulation(Simulation&&) = default;
  Simulation& operator=(Simulation&&) = default;

  // The simulated events live on this arena, which is freed as a few
  // blocks: freeing a long course's log one message and field at a time
  // cost more per event the longer the course (and the more memory its
  // log spanned). Declared first, so it outlives `events`.
  std::unique_ptr<google::protobuf::Arena> arena;
  // Input: when true, an unmet expectation does not stop the simulation;
  // every one is recorded in `unmet` (`ipsrt simulate --check`).
  bool check_all = false;
  // Unmet expectations, as "file:line:col: error: path: message".
  std::vector<std::string> unmet;
  // Expectations checked (each key of each `expect` counts once).
  int expectations_checked = 0;
  std::vector<SimulatedEvent> events;
  internal::EnrollmentState state;
  // Wall time spent building, scoring, stepping and hashing the events.
  absl::Duration elapsed;
};

// Simulate enrolls a patient at scenario.start and applies every event in
// order. It stops at the first event that is refused (by scoring, by Step,
// or by an unmet expectation), returning INVALID_ARGUMENT or
// FAILED_PRECONDITION whose message starts with the event's
// "file:line:col: error: events[i]: "; `out` then holds the events applied
// before it. `out` must not be null.
absl::Status Simulate(const WorkflowTemplate& workflow,
                      const Scenario& scenario,
                      const runtime::ZoneLoader& zones, Simulation* out);

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_SCENARIO_H_
