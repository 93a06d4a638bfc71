// Shared set-up of the fuzz targets: the shipped template, time zones, and
// plugins loaded in process from the build's plugin directory.
#ifndef IPSRT_TESTS_FUZZ_FUZZ_COMMON_H_
#define IPSRT_TESTS_FUZZ_FUZZ_COMMON_H_

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/files.h"
#include "core/enrollments.h"
#include "model/workflow.h"
#include "plugin_host/registry.h"

namespace ipsrt::fuzz {

inline const runtime::ZoneLoader& Zones() {
  static const runtime::ZoneLoader* zones =
      new runtime::ZoneLoader(&Enrollments::LoadZone);
  return *zones;
}

// workflows/ipsrt-standard.yaml, parsed once; aborts when it does not load.
inline const WorkflowTemplate* StandardTemplate() {
  absl::StatusOr<std::string> yaml = ReadFileToString(
      std::string(IPSRT_SOURCE_DIR) + "/workflows/ipsrt-standard.yaml");
  if (!yaml.ok()) std::abort();
  absl::StatusOr<WorkflowTemplate> w =
      ParseWorkflowTemplate(*yaml, "ipsrt-standard.yaml");
  if (!w.ok()) std::abort();
  return new WorkflowTemplate(*std::move(w));
}

// Loads plugin libraries (bare names from the build's plugin directory)
// in process, as ipsrtd does; aborts when one does not load.
inline std::unique_ptr<PluginRegistry> LoadPlugins(
    std::vector<PluginConfig> configs) {
  PluginHostOptions options;
  options.plugin_dir = IPSRT_PLUGIN_DIR;
  for (PluginConfig& c : configs) {
    if (c.location.empty()) c.location = "fuzz.yaml:1:1";
  }
  absl::StatusOr<std::unique_ptr<PluginRegistry>> registry =
      PluginRegistry::Load(configs, options);
  if (!registry.ok()) {
    std::fprintf(stderr, "fuzz: %s\n",
                 std::string(registry.status().message()).c_str());
    std::abort();
  }
  return *std::move(registry);
}

inline PluginConfig Library(const std::string& name,
                            const std::string& config_json = "{}") {
  PluginConfig c;
  c.path = name;
  c.config_json = config_json;
  return c;
}

}  // namespace ipsrt::fuzz

#endif  // IPSRT_TESTS_FUZZ_FUZZ_COMMON_H_
