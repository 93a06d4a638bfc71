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
//
// Several scenarios (--scenario=a.yaml,b.yaml) are measured interleaved:
// each in turn runs for --slice, until each has had --duration, so they
// share the machine's state (a shared machine's load changes within
// seconds); besides the totals, each reports the median over its slices of
// the CPU time per event, the figure to compare courses by. One line (one
// JSON object with --json) per scenario, in the order given.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
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
ABSL_FLAG(absl::Duration, slice, absl::Milliseconds(100),
          "with several scenarios, how long each runs in its turn");
ABSL_FLAG(bool, json, false, "print one JSON line per scenario");

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

// Course is one scenario under measurement and what its runs added up to.
struct Course {
  std::string path;
  ipsrt::cli::Scenario scenario;
  long long events = 0;
  int runs = 0;
  double wall = 0;
  double cpu = 0;
  double destroy_cpu = 0;
  // CPU microseconds per event of each slice.
  std::vector<double> slices;
  size_t snapshot_bytes = 0;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace ipsrt;
  const std::string template_path = absl::GetFlag(FLAGS_template_file);
  absl::StatusOr<std::string> yaml = ReadFileToString(template_path);
  if (!yaml.ok()) {
    std::fprintf(stderr, "cannot read %s\n", template_path.c_str());
    return 1;
  }
  absl::StatusOr<WorkflowTemplate> workflow =
      ParseWorkflowTemplate(*yaml, template_path);
  if (!workflow.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string(workflow.status().message()).c_str());
    return 1;
  }
  std::vector<Course> courses;
  for (absl::string_view path :
       absl::StrSplit(absl::GetFlag(FLAGS_scenario), ',', absl::SkipEmpty())) {
    Course c;
    c.path = std::string(path);
    absl::StatusOr<std::string> text = ReadFileToString(c.path);
    if (!text.ok()) {
      std::fprintf(stderr, "cannot read %s\n", c.path.c_str());
      return 1;
    }
    absl::StatusOr<cli::Scenario> scenario =
        cli::ParseScenario(*text, c.path, &Enrollments::LoadZone);
    if (!scenario.ok()) {
      std::fprintf(stderr, "%s\n",
                   std::string(scenario.status().message()).c_str());
      return 1;
    }
    c.scenario = *std::move(scenario);
    courses.push_back(std::move(c));
  }
  if (courses.empty()) {
    std::fprintf(stderr, "no --scenario\n");
    return 1;
  }
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration slice =
      courses.size() == 1 ? duration : absl::GetFlag(FLAGS_slice);
  // Turns until every course has had `duration` (at least one run each).
  for (bool more = true; more;) {
    more = false;
    for (Course& c : courses) {
      if (c.runs > 0 && absl::Seconds(c.wall) >= duration) continue;
      const absl::Time began = absl::Now();
      const double cpu_began = CpuSeconds();
      const absl::Time until = began + slice;
      long long slice_events = 0;
      do {
        auto owned = std::make_unique<cli::Simulation>();
        cli::Simulation& simulation = *owned;
        absl::Status status = cli::Simulate(
            *workflow, c.scenario, &Enrollments::LoadZone, &simulation);
        if (!status.ok()) {
          std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
          return 1;
        }
        slice_events += static_cast<long long>(simulation.events.size());
        c.snapshot_bytes = simulation.state.ByteSizeLong();
        ++c.runs;
        const double freeing = CpuSeconds();
        owned.reset();
        c.destroy_cpu += CpuSeconds() - freeing;
      } while (absl::Now() < until);
      const double cpu = CpuSeconds() - cpu_began;
      c.cpu += cpu;
      c.wall += absl::ToDoubleSeconds(absl::Now() - began);
      c.events += slice_events;
      c.slices.push_back(cpu * 1e6 / static_cast<double>(slice_events));
      more = more || absl::Seconds(c.wall) < duration;
    }
  }
  for (const Course& c : courses) {
    size_t unbounded_bytes = 0;
    std::string last_event_hash;
    std::string state_sha256;
    cli::Simulation simulation;  // once more, outside the timing
    if (cli::Simulate(*workflow, c.scenario, &Enrollments::LoadZone,
                      &simulation)
            .ok()) {
      unbounded_bytes = UnboundedBytes(*workflow, simulation);
      last_event_hash = simulation.state.last_event_hash();
      state_sha256 = Sha256Hex(DeterministicBytes(simulation.state));
    }
    const double events = static_cast<double>(c.events);
    const double median = Median(c.slices);
    if (absl::GetFlag(FLAGS_json)) {
      std::printf(
          "{\"scenario\":\"%s\",\"runs\":%d,\"events\":%lld,\"wall_s\":%.3f,"
          "\"cpu_s\":%.3f,\"events_per_s_wall\":%.0f,"
          "\"events_per_s_cpu\":%.0f,\"slices\":%zu,"
          "\"median_cpu_us_per_event\":%.3f,\"snapshot_bytes\":%zu,"
          "\"unbounded_snapshot_bytes\":%zu,\"destroy_cpu_s\":%.3f,"
          "\"last_event_hash\":\"%s\",\"state_sha256\":\"%s\"}\n",
          c.path.c_str(), c.runs, c.events, c.wall, c.cpu, events / c.wall,
          events / c.cpu, c.slices.size(), median, c.snapshot_bytes,
          unbounded_bytes, c.destroy_cpu, last_event_hash.c_str(),
          state_sha256.c_str());
    } else {
      std::printf(
          "%s: %d runs, %lld events in %.3f s wall (%.0f events/s), %.3f s "
          "CPU (%.0f events/s; median of %zu slices %.2f us/event), final "
          "snapshot %zu bytes (%zu with the closed tasks the unbounded shape "
          "kept); freeing the logs took %.3f s CPU; last event hash %s, "
          "state sha256 %s\n",
          c.path.c_str(), c.runs, c.events, c.wall, events / c.wall, c.cpu,
          events / c.cpu, c.slices.size(), median, c.snapshot_bytes,
          unbounded_bytes, c.destroy_cpu, last_event_hash.c_str(),
          state_sha256.c_str());
    }
  }
  return 0;
}
