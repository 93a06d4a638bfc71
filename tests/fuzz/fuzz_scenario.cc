// The scenario parser and simulator of `ipsrt simulate`, on the shipped
// ipsrt-standard template (events, ticks, scoring, the runtime's steps).
#include <cstddef>
#include <cstdint>
#include <string>

#include "cli/scenario.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ipsrt::WorkflowTemplate* workflow =
      ipsrt::fuzz::StandardTemplate();
  std::string yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ipsrt::cli::Scenario> scenario =
      ipsrt::cli::ParseScenario(yaml, "fuzz.yaml", ipsrt::fuzz::Zones());
  if (!scenario.ok()) return 0;
  ipsrt::cli::Simulation simulation;
  (void)ipsrt::cli::Simulate(*workflow, *scenario, ipsrt::fuzz::Zones(),
                             &simulation);
  return 0;
}
