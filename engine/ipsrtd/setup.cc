#include "ipsrtd/setup.h"

#include <cstdio>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "auth/authenticator.h"
#include "common/files.h"
#include "common/json_string.h"
#include "common/log.h"
#include "core/exports.h"
#include "core/questionnaires.h"
#include "ipsrt/clock.h"
#include "model/workflow.h"
#include "plugin_host/registry.h"
#include "reminders/plugin_sender.h"

namespace ipsrt {

absl::StatusOr<std::unique_ptr<Metrics>> StartMetrics(const Config& config) {
  if (config.metrics.listen.empty()) return std::unique_ptr<Metrics>();
  absl::StatusOr<std::unique_ptr<Metrics>> m = Metrics::Start(config.metrics);
  if (!m.ok()) return m.status();
  (*m)->Install();
  std::string listen = config.metrics.listen;
  IPSRT_LOG(INFO) << "metrics: serving /metrics on "
                  << listen.substr(0, listen.rfind(':')) << ":" << (*m)->port();
  return m;
}

absl::Status CheckExportTargets(const Config& config,
                                const PluginRegistry& plugins,
                                const QuestionnaireCatalog& questionnaires) {
  // CheckTargets reads no store.
  return Exports({.store = nullptr,
                  .clock = SystemClock::Get(),
                  .plugins = &plugins,
                  .questionnaires = &questionnaires,
                  .config = config.export_})
      .CheckTargets();
}

std::string UseJsonlChannel(Config& config, const std::string& config_path) {
  RemindersConfig& rc = config.reminders;
  if (!rc.enabled || !rc.channel.empty()) return "";
  std::string path = rc.jsonl_path;
  if (path.empty() && config.store.kind == StoreKind::kSqlite) {
    path = (std::filesystem::path(config.store.sqlite.path).parent_path() /
            "reminders.jsonl")
               .string();
  }
  if (path.empty()) return "";
  std::error_code ignored;  // absolute() fails only without a cwd
  path = std::filesystem::absolute(path, ignored).lexically_normal().string();
  PluginConfig jsonl;
  jsonl.path = "libipsrt_reminder_jsonl.so";
  jsonl.config_json = JsonText(Json{{"path", path}, {"sync", rc.jsonl_sync}});
  jsonl.location = absl::StrCat(config_path, ": reminders.jsonl");
  config.plugins.push_back(std::move(jsonl));
  rc.channel = "reminder-jsonl";
  rc.channel_location = config.plugins.back().location;
  return path;
}

namespace {

void Problem(int* problems, absl::string_view text) {
  ++*problems;
  std::fprintf(stderr, "%.*s\n", static_cast<int>(text.size()), text.data());
}

}  // namespace

int CheckConfig(const std::string& config_path) {
  int problems = 0;
  absl::StatusOr<Config> config = LoadConfigFile(config_path);
  if (!config.ok()) {
    Problem(&problems, config.status().message());
    std::fprintf(stderr, "ipsrtd: %s: configuration refused\n",
                 config_path.c_str());
    return 1;
  }
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories(config->workflows.directories);
  if (!catalog.ok()) {
    Problem(&problems, catalog.status().message());
  }
  if (config->server.tls.has_value()) {
    const TlsConfig& tls = *config->server.tls;
    for (const std::string& path :
         {tls.cert_file, tls.key_file, tls.client_ca_file}) {
      if (path.empty()) continue;
      absl::StatusOr<std::string> pem = ReadFileToString(path);
      if (!pem.ok() || pem->empty()) {
        Problem(&problems, absl::StrCat("server.tls: cannot read ", path));
      }
    }
  }
  if (config->auth.mode != AuthMode::kNone) {
    absl::StatusOr<std::unique_ptr<Authenticator>> auth =
        Authenticator::Create(config->auth);
    if (!auth.ok()) Problem(&problems, auth.status().message());
  }
  if (config->store.kind == StoreKind::kPostgres) {
    absl::StatusOr<std::string> password =
        ResolvePostgresPassword(config->store.postgres);
    if (!password.ok()) Problem(&problems, password.status().message());
  }
  UseJsonlChannel(*config, config_path);
  absl::StatusOr<std::unique_ptr<PluginRegistry>> plugins =
      PluginRegistry::Load(config->plugins, DefaultPluginHostOptions());
  if (!plugins.ok()) {
    Problem(&problems,
            absl::StrCat("plugin refused: ", plugins.status().message()));
  } else {
    absl::StatusOr<std::unique_ptr<QuestionnaireCatalog>> questionnaires =
        QuestionnaireCatalog::Build(**plugins);
    if (!questionnaires.ok()) {
      Problem(&problems, questionnaires.status().message());
    } else if (absl::Status targets =
                   CheckExportTargets(*config, **plugins, **questionnaires);
               !targets.ok()) {
      Problem(&problems, absl::StrCat("export refused: ", targets.message()));
    }
    const RemindersConfig& rc = config->reminders;
    if (rc.enabled && !rc.channel.empty()) {
      absl::StatusOr<std::unique_ptr<reminders::PluginSender>> channel =
          reminders::PluginSender::Create(**plugins, rc.channel,
                                          rc.channel_location);
      if (!channel.ok()) {
        Problem(&problems, absl::StrCat("reminders refused: ",
                                        channel.status().message()));
      }
    }
    (*plugins)->Shutdown();
  }
  if (problems > 0) {
    std::fprintf(stderr, "ipsrtd: %s: %d problem(s)\n", config_path.c_str(),
                 problems);
    return 1;
  }
  std::printf(
      "ipsrtd: %s: configuration OK (%zu workflow template(s), %zu "
      "plugin(s))\n",
      config_path.c_str(), (*catalog)->All().size(), config->plugins.size());
  return 0;
}

}  // namespace ipsrt
