// PluginRegistry: the plugins one engine has loaded, by name.
//
// Loading is all or nothing: the engine starts with every configured plugin
// serving (or, out of process, supervised) or refuses to start with an
// error that names the config entry (file:line:col).
#ifndef IPSRT_PLUGIN_HOST_REGISTRY_H_
#define IPSRT_PLUGIN_HOST_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ipsrt/clock.h"
#include "ipsrt/config.h"
#include "plugin_host/plugin.h"

namespace ipsrt {

struct PluginHostOptions {
  // Where bare library names are looked up.
  std::string plugin_dir;
  // The runner that serves a shared library out of process.
  std::string runner_path;
  const Clock* clock = SystemClock::Get();
  // Supervision of out-of-process plugins (see out_of_process.h).
  absl::Duration health_interval = absl::Seconds(1);
  absl::Duration restart_backoff_initial = absl::Milliseconds(200);
  absl::Duration restart_backoff_max = absl::Seconds(30);
};

// DefaultPluginHostOptions derives the plugin directory and runner path
// from the running executable: <dir>/../lib/ipsrt/plugins and
// <dir>/ipsrt-plugin-runner.
PluginHostOptions DefaultPluginHostOptions();

class PluginRegistry {
 public:
  // Load loads `configs` in order. Errors (with the entry's location):
  // FAILED_PRECONDITION for a refused library (ABI, entry points, init,
  // config rejected, sha256 mismatch, duplicate name), NOT_FOUND for a
  // missing file, UNAVAILABLE for a child that died at start.
  static absl::StatusOr<std::unique_ptr<PluginRegistry>> Load(
      const std::vector<PluginConfig>& configs,
      const PluginHostOptions& options);

  ~PluginRegistry();

  // In load order.
  std::vector<v1::PluginInfo> List() const;
  // nullptr when no plugin has that name.
  LoadedPlugin* Find(absl::string_view name) const;
  std::vector<LoadedPlugin*> WithKind(plugin::v1::Kind kind) const;

  // Stops every plugin (out-of-process children are killed). Idempotent.
  void Shutdown();

  // A registry of already loaded plugins, for tests and fuzzers that drive
  // the host through their own PluginTransport.
  static std::unique_ptr<PluginRegistry> ForTesting(
      std::vector<std::unique_ptr<LoadedPlugin>> plugins);

 private:
  PluginRegistry() = default;
  std::vector<std::unique_ptr<LoadedPlugin>> plugins_;
};

}  // namespace ipsrt

#endif  // IPSRT_PLUGIN_HOST_REGISTRY_H_
