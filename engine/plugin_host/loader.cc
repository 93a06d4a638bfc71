// PluginRegistry::Load and the two transports it chooses between: kept
// apart from registry.cc so that the layers which only use loaded plugins
// (core, reminders) link neither gRPC nor dlopen (target ipsrt_plugin_loader
// in engine/CMakeLists.txt).
#include <unistd.h>

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/hash.h"
#include "common/log.h"
#include "google/protobuf/util/json_util.h"
#include "plugin_host/in_process.h"
#include "plugin_host/out_of_process.h"
#include "plugin_host/registry.h"

namespace ipsrt {
namespace {

absl::Status AtEntry(const PluginConfig& config, const absl::Status& s) {
  return absl::Status(s.code(),
                      absl::StrCat(config.location, ": ", s.message()));
}

bool IsSharedLibrary(const std::string& path) {
  std::string file = std::filesystem::path(path).filename().string();
  return absl::EndsWith(file, ".so") || absl::StrContains(file, ".so.");
}

absl::StatusOr<std::unique_ptr<LoadedPlugin>> LoadOne(
    const PluginConfig& config, const PluginHostOptions& options) {
  std::string path = config.path;
  if (path.find('/') == std::string::npos) {
    path = (std::filesystem::path(options.plugin_dir) / path).string();
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(
        absl::StrCat("plugin file ", path, " does not exist"));
  }
  if (!config.sha256.empty()) {
    absl::StatusOr<std::string> bytes = ReadFileToString(path);
    if (!bytes.ok()) return bytes.status();
    std::string actual = Sha256Hex(*bytes);
    if (actual != absl::AsciiStrToLower(config.sha256)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin file ", path, " has sha256 ", actual,
          " but the config expects ", config.sha256, "; refusing to load it"));
    }
  }

  plugin::v1::ConfigureRequest configure;
  if (auto s = google::protobuf::util::JsonStringToMessage(
          config.config_json, configure.mutable_config());
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: not representable as JSON: ", s.ToString()));
  }
  // config_dir lets a plugin resolve relative paths the way the engine does.
  size_t colon = config.location.find(':');
  std::filesystem::path config_file =
      colon == std::string::npos ? "" : config.location.substr(0, colon);
  std::error_code cwd_error;
  std::filesystem::path config_dir = config_file.parent_path();
  if (config_dir.empty()) config_dir = ".";
  configure.set_config_dir(
      std::filesystem::absolute(config_dir, cwd_error).string());

  std::unique_ptr<PluginTransport> transport;
  if (config.transport == PluginTransportKind::kOutOfProcess) {
    OutOfProcessOptions o;
    if (IsSharedLibrary(path)) {
      o.argv = {options.runner_path, path};
    } else {
      o.argv = {path};
    }
    o.argv.insert(o.argv.end(), config.args.begin(), config.args.end());
    o.display_name = path;
    o.health_interval = options.health_interval;
    o.restart_backoff_initial = options.restart_backoff_initial;
    o.restart_backoff_max = options.restart_backoff_max;
    o.configure = configure;
    o.handshake_timeout = config.handshake_timeout;
    o.clock = options.clock;
    o.memory_limit_bytes = static_cast<uint64_t>(config.memory_limit_mb) << 20;
    o.cpu_limit_seconds = static_cast<uint64_t>(config.cpu_limit_seconds);
    absl::StatusOr<std::unique_ptr<PluginTransport>> t =
        StartOutOfProcessPlugin(std::move(o));
    if (!t.ok()) return t.status();
    transport = std::move(*t);
  } else {
    absl::StatusOr<std::unique_ptr<PluginTransport>> t =
        LoadInProcessPlugin(path, options.clock, config.max_concurrent_calls);
    if (!t.ok()) return t.status();
    transport = std::move(*t);
  }

  plugin::v1::DescribeResponse description;
  if (absl::Status s = transport->Call(PluginMethod::kDescribe,
                                       plugin::v1::DescribeRequest(),
                                       &description, config.call_timeout);
      !s.ok()) {
    transport->Shutdown();
    return absl::FailedPreconditionError(
        absl::StrCat("plugin ", path, " failed Describe: ", s.message()));
  }
  if (description.name().empty() || description.kinds().empty()) {
    transport->Shutdown();
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin ", path, " described itself without a name or kinds"));
  }
  if (config.transport != PluginTransportKind::kOutOfProcess) {
    plugin::v1::ConfigureResponse ignored;
    if (absl::Status s = transport->Call(PluginMethod::kConfigure, configure,
                                         &ignored, config.call_timeout);
        !s.ok()) {
      transport->Shutdown();
      return absl::FailedPreconditionError(
          absl::StrCat("plugin ", description.name(),
                       " refused its configuration: ", s.message()));
    }
  }
  return std::make_unique<LoadedPlugin>(
      std::move(transport), std::move(description), path, config.call_timeout);
}

}  // namespace

PluginHostOptions DefaultPluginHostOptions() {
  PluginHostOptions options;
  std::error_code ec;
  std::filesystem::path exe =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path dir =
      ec ? std::filesystem::current_path() : exe.parent_path();
  options.plugin_dir =
      (dir / ".." / "lib" / "ipsrt" / "plugins").lexically_normal().string();
  options.runner_path = (dir / "ipsrt-plugin-runner").string();
  return options;
}

absl::StatusOr<std::unique_ptr<PluginRegistry>> PluginRegistry::Load(
    const std::vector<PluginConfig>& configs,
    const PluginHostOptions& options) {
  std::unique_ptr<PluginRegistry> registry(new PluginRegistry());
  for (const PluginConfig& config : configs) {
    absl::StatusOr<std::unique_ptr<LoadedPlugin>> plugin =
        LoadOne(config, options);
    if (!plugin.ok()) return AtEntry(config, plugin.status());
    if (LoadedPlugin* other = registry->Find((*plugin)->name())) {
      return AtEntry(
          config,
          absl::FailedPreconditionError(absl::StrCat(
              "a plugin named ", (*plugin)->name(), " is already loaded (from ",
              other->Info().path(), "); plugin names must be unique")));
    }
    IPSRT_LOG(INFO) << "plugin " << (*plugin)->name() << " "
                    << (*plugin)->description().version() << " loaded ("
                    << (config.transport == PluginTransportKind::kOutOfProcess
                            ? "out of process"
                            : "in process")
                    << ")";
    registry->plugins_.push_back(std::move(*plugin));
  }
  return registry;
}

}  // namespace ipsrt
