// ipsrt_validate_bench: template validation time against template size.
//
// Generates chain templates of --stages stages (each: one task, an exit to
// the next stage on tasks.done of its task) and parses each with
// ParseWorkflowTemplate, as `ipsrt validate` does: once with the limits
// raised (to show that time grows linearly with size) and once with the
// documented limits (to show the refusal's cost). Prints one line per size:
// bytes, milliseconds, microseconds per stage, and the process's peak RSS.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "model/workflow.h"
#include "tests/testing/chain_template.h"

ABSL_FLAG(std::string, stages, "5000,20000,50000",
          "Comma-separated template sizes in stages.");

namespace {

// PeakRssMb is VmHWM from /proc/self/status.
double PeakRssMb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      long kb = std::strtol(line.c_str() + 6, nullptr, 10);
      return kb / 1024.0;
    }
  }
  return 0;
}

double Millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// CpuMillis is this process's user + system CPU time so far: on a shared
// machine it grows with the work done, not with the wait for a core.
double CpuMillis() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  ipsrt::WorkflowLimits unbounded;
  unbounded.yaml.max_bytes = size_t{1} << 30;
  unbounded.yaml.max_nodes = int64_t{1} << 40;
  unbounded.max_stages = 1 << 30;
  unbounded.max_tasks = 1 << 30;
  std::printf("%8s %10s %11s %10s %10s %13s %10s %11s\n", "stages", "bytes",
              "yaml_cpu_ms", "wall_ms", "cpu_ms", "cpu_us/stage", "refused_ms",
              "peak_rss_mb");
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_stages), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n < 1) {
      std::fprintf(stderr, "--stages: \"%s\" is not a positive number\n",
                   std::string(s).c_str());
      return 2;
    }
    const std::string yaml = ipsrt::testing::ChainTemplate(n);
    // The YAML reader alone (screening and yaml-cpp's tree).
    double cpu = CpuMillis();
    {
      ipsrt::YamlReader r("chain.yaml", unbounded.yaml);
      YAML::Node root = r.Parse(yaml);
      if (!r.ok()) return 1;
    }
    const double yaml_cpu_ms = CpuMillis() - cpu;
    cpu = CpuMillis();
    auto start = std::chrono::steady_clock::now();
    absl::StatusOr<ipsrt::WorkflowTemplate> t = ipsrt::ParseWorkflowTemplate(
        yaml, "chain.yaml", ipsrt::ModelContext(), unbounded);
    const double ms = Millis(std::chrono::steady_clock::now() - start);
    const double cpu_ms = CpuMillis() - cpu;
    if (!t.ok() || static_cast<int>(t->stages.size()) != n) {
      std::fprintf(stderr, "unexpected result for %d stages: %s\n", n,
                   std::string(t.status().message().substr(0, 300)).c_str());
      return 1;
    }
    start = std::chrono::steady_clock::now();
    absl::StatusOr<ipsrt::WorkflowTemplate> refused =
        ipsrt::ParseWorkflowTemplate(yaml, "chain.yaml");
    double refused_ms = Millis(std::chrono::steady_clock::now() - start);
    std::printf("%8d %10zu %11.1f %10.1f %10.1f %13.1f %10s %11.0f\n", n,
                yaml.size(), yaml_cpu_ms, ms, cpu_ms, 1000.0 * cpu_ms / n,
                refused.ok()
                    ? "(within)"
                    : absl::StrCat(absl::SixDigits(refused_ms)).c_str(),
                PeakRssMb());
  }
  return 0;
}
