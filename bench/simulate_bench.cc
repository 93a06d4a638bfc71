// In-process throughput of `ipsrt simulate`: the scenario is parsed once,
// then the whole course is simulated again and again (each time from a
// fresh enrollment, exactly as `ipsrt simulate` does: build, score, Step,
// seal and hash every event) for --duration, and the events per second are
// reported over wall time and over this process's CPU time (on a shared
// machine the CPU figure is the steadier one). The CPU time spent freeing
// each simulated log is reported on its own (destroy_cpu_s), since it is the
// part of a run's cost that depends on how much memory the log spans.
// last_event_hash (which chains every event, outcomes and scores included)
// and state_sha256 (of the final snapshot's deterministic bytes) identify
// the simulated course, so two builds can be compared for the same result.
//
//   ipsrt_simulate_bench --template=workflows/ipsrt-standard.yaml
//       --scenario=tests/scenarios/year-long.yaml [--duration=2s] [--json]
#include <time.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/scenario.h"
#include "common/files.h"
#include "common/hash.h"
#include "core/enrollments.h"
#include "model/workflow.h"

ABSL_FLAG(std::string, template_file, "workflows/ipsrt-standard.yaml",
          "workflow template");
ABSL_FLAG(std::string, scenario, "tests/scenarios/year-long.yaml",
          "scenario to simulate repeatedly");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(2),
          "how long to keep simulating");
ABSL_FLAG(bool, json, false, "print one JSON line");

namespace {

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// UnboundedBytes is the size the snapshot would have in the shape stored
// before it was bounded: the state plus the closed task occurrences it kept
// (those of the current stage and every closed alert task), derived from
// the log (acknowledged alerts' own records are not counted).
size_t UnboundedBytes(const ipsrt::WorkflowTemplate& w,
                      const ipsrt::cli::Simulation& simulation) {
  std::vector<ipsrt::v1::Event> log;
  for (const ipsrt::cli::SimulatedEvent& e : simulation.events) {
    log.push_back(e.event);
  }
  absl::StatusOr<std::vector<ipsrt::internal::TaskState>> closed =
      ipsrt::runtime::ClosedTasks(
          [&](int version) { return version == w.version ? &w : nullptr; },
          &ipsrt::Enrollments::LoadZone, simulation.state.enrollment().name(),
          log);
  if (!closed.ok()) return 0;
  ipsrt::internal::EnrollmentState old = simulation.state;
  for (const ipsrt::internal::TaskState& t : *closed) *old.add_tasks() = t;
  return old.ByteSizeLong();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace ipsrt;
  const std::string template_path = absl::GetFlag(FLAGS_template_file);
  const std::string scenario_path = absl::GetFlag(FLAGS_scenario);
  absl::StatusOr<std::string> yaml = ReadFileToString(template_path);
  absl::StatusOr<std::string> course = ReadFileToString(scenario_path);
  if (!yaml.ok() || !course.ok()) {
    std::fprintf(stderr, "cannot read %s or %s\n", template_path.c_str(),
                 scenario_path.c_str());
    return 1;
  }
  absl::StatusOr<WorkflowTemplate> workflow =
      ParseWorkflowTemplate(*yaml, template_path);
  if (!workflow.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string(workflow.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<cli::Scenario> scenario =
      cli::ParseScenario(*course, scenario_path, &Enrollments::LoadZone);
  if (!scenario.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string(scenario.status().message()).c_str());
    return 1;
  }
  long long events = 0;
  double destroy_cpu = 0;
  int runs = 0;
  size_t snapshot_bytes = 0;
  size_t unbounded_bytes = 0;
  std::string last_event_hash;
  std::string state_sha256;
  const absl::Time began = absl::Now();
  const double cpu_began = CpuSeconds();
  const absl::Time until = began + absl::GetFlag(FLAGS_duration);
  do {
    auto owned = std::make_unique<cli::Simulation>();
    cli::Simulation& simulation = *owned;
    absl::Status status = cli::Simulate(*workflow, *scenario,
                                        &Enrollments::LoadZone, &simulation);
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
      return 1;
    }
    events += static_cast<long long>(simulation.events.size());
    snapshot_bytes = simulation.state.ByteSizeLong();
    ++runs;
    const double freeing = CpuSeconds();
    owned.reset();
    destroy_cpu += CpuSeconds() - freeing;
  } while (absl::Now() < until);
  const double wall = absl::ToDoubleSeconds(absl::Now() - began);
  const double cpu = CpuSeconds() - cpu_began;
  {
    cli::Simulation simulation;  // once more, outside the timing
    if (cli::Simulate(*workflow, *scenario, &Enrollments::LoadZone, &simulation)
            .ok()) {
      unbounded_bytes = UnboundedBytes(*workflow, simulation);
      last_event_hash = simulation.state.last_event_hash();
      state_sha256 = Sha256Hex(DeterministicBytes(simulation.state));
    }
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::printf(
        "{\"scenario\":\"%s\",\"runs\":%d,\"events\":%lld,\"wall_s\":%.3f,"
        "\"cpu_s\":%.3f,\"events_per_s_wall\":%.0f,\"events_per_s_cpu\":%.0f,"
        "\"snapshot_bytes\":%zu,\"unbounded_snapshot_bytes\":%zu,"
        "\"destroy_cpu_s\":%.3f,\"last_event_hash\":\"%s\","
        "\"state_sha256\":\"%s\"}\n",
        scenario_path.c_str(), runs, events, wall, cpu, events / wall,
        events / cpu, snapshot_bytes, unbounded_bytes, destroy_cpu,
        last_event_hash.c_str(), state_sha256.c_str());
  } else {
    std::printf(
        "%s: %d runs, %lld events in %.3f s wall (%.0f events/s), %.3f s CPU "
        "(%.0f events/s), final snapshot %zu bytes (%zu with the closed "
        "tasks the unbounded shape kept); freeing the logs took %.3f s CPU; "
        "last event hash %s, state sha256 %s\n",
        scenario_path.c_str(), runs, events, wall, events / wall, cpu,
        events / cpu, snapshot_bytes, unbounded_bytes, destroy_cpu,
        last_event_hash.c_str(), state_sha256.c_str());
  }
  return 0;
}
