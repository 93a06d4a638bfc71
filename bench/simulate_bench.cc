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
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
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
ABSL_FLAG(absl::Duration, seal_duration, absl::Milliseconds(600),
          "per scenario, how long to time hashing the simulated events "
          "alone (0 skips it)");

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

// SealFloor is what hashing the simulated events alone costs, CPU
// microseconds per event: the event's deterministic bytes
// (`serialize_us`), SHA-256 over the previous hash and those bytes
// (`sha256_us`), and ipsrt::EventHash doing both (`hash_us`, the part of
// sealing every durable or simulated event must pay). Each event is done
// kRepeats times in a row, so that it is in the cache as a freshly built
// event is when it is sealed (a pass over the whole log, a megabyte and
// more, would time cache misses instead): a lower bound. `matches` is
// false when a recomputed hash differs from the one the simulation sealed.
struct SealFloor {
  double hash_us = 0;
  double serialize_us = 0;
  double sha256_us = 0;
  bool matches = true;
};

constexpr int kRepeats = 16;

// TimePerEvent calls `one(i)` kRepeats times for each of `n` events in
// turn, over and over until `budget` seconds of CPU time have gone (at
// least once), and returns the CPU microseconds per call.
template <typename One>
double TimePerEvent(size_t n, double budget, One one) {
  const double began = CpuSeconds();
  long long calls = 0;
  do {
    for (size_t i = 0; i < n; ++i) {
      for (int r = 0; r < kRepeats; ++r) one(i);
    }
    calls += static_cast<long long>(n) * kRepeats;
  } while (CpuSeconds() - began < budget);
  return (CpuSeconds() - began) * 1e6 / static_cast<double>(calls);
}

SealFloor MeasureSealFloor(const ipsrt::cli::Simulation& simulation,
                           absl::Duration duration) {
  SealFloor floor;
  const size_t n = simulation.events.size();
  if (n == 0 || duration <= absl::ZeroDuration()) return floor;
  // As sealing has them: each event without its hash, after the hash of
  // the event before it.
  std::vector<ipsrt::v1::Event> unsealed;
  std::vector<std::string> previous;
  std::vector<std::string> hashed_text;
  unsealed.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    unsealed.push_back(simulation.events[i].event);
    unsealed.back().clear_hash();
    previous.push_back(i == 0 ? "" : simulation.events[i - 1].event.hash());
    hashed_text.push_back(absl::StrCat(
        previous.back(), "\n", ipsrt::DeterministicBytes(unsealed.back())));
    floor.matches = floor.matches &&
                    ipsrt::EventHash(previous.back(), unsealed.back()) ==
                        simulation.events[i].event.hash() &&
                    ipsrt::Sha256Hex(hashed_text.back()) ==
                        simulation.events[i].event.hash();
  }
  const double budget = absl::ToDoubleSeconds(duration) / 3;
  size_t sink = 0;  // keeps the results live
  floor.hash_us = TimePerEvent(n, budget, [&](size_t i) {
    sink += ipsrt::EventHash(previous[i], unsealed[i]).size();
  });
  floor.serialize_us = TimePerEvent(n, budget, [&](size_t i) {
    sink += ipsrt::DeterministicBytes(unsealed[i]).size();
  });
  floor.sha256_us = TimePerEvent(n, budget, [&](size_t i) {
    sink += ipsrt::Sha256Hex(hashed_text[i]).size();
  });
  if (sink == 0) floor.matches = false;
  return floor;
}

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
    SealFloor seal;
    cli::Simulation simulation;  // once more, outside the timing
    if (cli::Simulate(*workflow, c.scenario, &Enrollments::LoadZone,
                      &simulation)
            .ok()) {
      unbounded_bytes = UnboundedBytes(*workflow, simulation);
      last_event_hash = simulation.state.last_event_hash();
      state_sha256 = Sha256Hex(DeterministicBytes(simulation.state));
      seal = MeasureSealFloor(simulation, absl::GetFlag(FLAGS_seal_duration));
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
          "\"last_event_hash\":\"%s\",\"state_sha256\":\"%s\","
          "\"seal_hash_cpu_us_per_event\":%.3f,"
          "\"seal_serialize_cpu_us_per_event\":%.3f,"
          "\"seal_sha256_cpu_us_per_event\":%.3f,\"seal_hash_matches\":%s}\n",
          c.path.c_str(), c.runs, c.events, c.wall, c.cpu, events / c.wall,
          events / c.cpu, c.slices.size(), median, c.snapshot_bytes,
          unbounded_bytes, c.destroy_cpu, last_event_hash.c_str(),
          state_sha256.c_str(), seal.hash_us, seal.serialize_us, seal.sha256_us,
          seal.matches ? "true" : "false");
    } else {
      std::printf(
          "%s: %d runs, %lld events in %.3f s wall (%.0f events/s), %.3f s "
          "CPU (%.0f events/s; median of %zu slices %.2f us/event), final "
          "snapshot %zu bytes (%zu with the closed tasks the unbounded shape "
          "kept); freeing the logs took %.3f s CPU; last event hash %s, "
          "state sha256 %s; hashing the events alone %.2f us/event CPU "
          "(deterministic bytes %.2f, SHA-256 %.2f)%s\n",
          c.path.c_str(), c.runs, c.events, c.wall, events / c.wall, c.cpu,
          events / c.cpu, c.slices.size(), median, c.snapshot_bytes,
          unbounded_bytes, c.destroy_cpu, last_event_hash.c_str(),
          state_sha256.c_str(), seal.hash_us, seal.serialize_us, seal.sha256_us,
          seal.matches ? "" : " (a recomputed hash differs!)");
    }
  }
  return 0;
}
