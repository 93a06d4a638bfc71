// ipsrtd: the IPSRT workflow engine's gRPC server.
//
// Wiring, in order: flags -> config -> store (migrations) -> plugins ->
// workflows (checked against the plugins' instruments) -> server. SIGTERM or
// SIGINT drains in-flight calls (up to server.shutdown_grace), then closes the
// store; the exit status is 0 after a clean drain. Logs carry no patient data.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/offset_clock.h"
#include "core/exports.h"
#include "core/integrity.h"
#include "ipsrt/clock.h"
#include "ipsrt/config.h"
#include "ipsrt/version.h"
#include "ipsrtd/setup.h"
#include "ipsrtd/store_flags.h"
#include "model/instrument_context.h"
#include "model/workflow.h"
#include "ops/operations.h"
#include "reminders/dispatcher.h"
#include "reminders/jsonl_sender.h"
#include "reminders/plugin_sender.h"
#include "service/server.h"
#include "store/open_store.h"

ABSL_FLAG(std::string, config, "config/ipsrtd.yaml",
          "Path of the YAML configuration file.");
ABSL_FLAG(std::string, listen, "",
          "Override server.listen (host:port; port 0 picks a free port).");
ABSL_FLAG(std::string, port_file, "",
          "When set, write the bound port to this file once serving.");
ABSL_FLAG(std::string, metrics_listen, "",
          "Override metrics.listen (host:port; port 0 picks a free port).");
ABSL_FLAG(bool, check_config, false,
          "Load the config, workflows and plugins as a start would, print "
          "every problem, and exit 0 (all good) or 1 without serving.");

namespace ipsrt {
namespace {

// OffsetClock (common/offset_clock.h) is TEST ONLY here: used when
// IPSRT_TEST_CLOCK_OFFSET is set (end-to-end tests make a reminder due
// within seconds); ipsrtd logs a warning when it is.

// TestDuration reads a test-only duration from the environment: nullopt
// when unset; exits the process on a malformed value.
std::optional<absl::Duration> TestDuration(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  absl::Duration d;
  if (!absl::ParseDuration(v, &d)) {
    std::fprintf(stderr, "ipsrtd: %s: not a duration: %s\n", name, v);
    std::exit(1);
  }
  IPSRT_LOG(WARNING) << "TEST HOOK " << name << "=" << v
                     << " is set: never use it in production";
  return d;
}

// UnservedQuestionnaires lists, sorted and comma-separated, the instrument
// ids that workflow diagnostics report as unknown questionnaires.
std::string UnservedQuestionnaires(absl::string_view diagnostics) {
  std::set<std::string> names;
  for (absl::string_view marker :
       {"unknown questionnaire \"", "unknown event kind \"questionnaire:"}) {
    for (size_t at = diagnostics.find(marker); at != absl::string_view::npos;
         at = diagnostics.find(marker, at + 1)) {
      size_t begin = at + marker.size();
      size_t end = diagnostics.find('"', begin);
      if (end != absl::string_view::npos) {
        names.emplace(diagnostics.substr(begin, end - begin));
      }
    }
  }
  return absl::StrJoin(names, ", ");
}

LogLevel ParseLevel(const std::string& level) {
  if (level == "debug") return LogLevel::kDebug;
  if (level == "warning") return LogLevel::kWarning;
  if (level == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

int Run() {
  // Block the shutdown signals before any thread starts, so that every
  // thread inherits the mask and only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (absl::GetFlag(FLAGS_check_config)) return CheckConfig(config_path);
  absl::StatusOr<Config> config = LoadConfigFile(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "ipsrtd: invalid configuration:\n%s\n",
                 std::string(config.status().message()).c_str());
    return 1;
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    config->server.listen = absl::GetFlag(FLAGS_listen);
  }
  SetMinLogLevel(ParseLevel(config->logging.level));
  ApplyStoreFlags(*config);
  SetLogFormat(config->logging.format == "json" ? LogFormat::kJson
                                                : LogFormat::kText);
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    config->metrics.listen = absl::GetFlag(FLAGS_metrics_listen);
  }
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = StartMetrics(*config);
  if (!metrics.ok()) {
    std::fprintf(stderr, "ipsrtd: %s\n",
                 std::string(metrics.status().message()).c_str());
    return 1;
  }
  IPSRT_LOG(INFO) << "ipsrtd " << IPSRT_VERSION << " starting with "
                  << config_path;
  // Before any file is created: the database, its WAL, reminder files and
  // exports hold patient data (server.umask, default 0077).
  ::umask(static_cast<mode_t>(config->server.umask));
  IPSRT_LOG(INFO) << "file mode mask "
                  << absl::StrFormat("%04o", config->server.umask);

  std::string store_description;
  absl::StatusOr<std::unique_ptr<Store>> store =
      OpenStore(config->store, &store_description);
  if (!store.ok()) {
    IPSRT_LOG(ERROR) << "cannot open store: " << store.status();
    return 1;
  }
  IPSRT_LOG(INFO) << store_description;

  const Clock* clock = SystemClock::Get();
  std::optional<OffsetClock> offset_clock;
  if (std::optional<absl::Duration> offset =
          TestDuration("IPSRT_TEST_CLOCK_OFFSET")) {
    clock = &offset_clock.emplace(*offset);
  }
  // Plugins load all or nothing, before the server accepts a call. Their
  // host().Now() is the engine's clock.
  PluginHostOptions plugin_options = DefaultPluginHostOptions();
  plugin_options.clock = clock;
  absl::StatusOr<std::unique_ptr<PluginRegistry>> plugins =
      PluginRegistry::Load(config->plugins, plugin_options);
  if (!plugins.ok()) {
    std::fprintf(stderr, "ipsrtd: plugin refused: %s\n",
                 std::string(plugins.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<QuestionnaireCatalog>> questionnaires =
      QuestionnaireCatalog::Build(**plugins);
  if (!questionnaires.ok()) {
    std::fprintf(stderr, "ipsrtd: %s\n",
                 std::string(questionnaires.status().message()).c_str());
    return 1;
  }
  IPSRT_LOG(INFO) << "loaded " << (*plugins)->List().size() << " plugin(s), "
                  << (*questionnaires)->List().size() << " questionnaire(s)";

  // Templates are checked against the instruments the plugins serve.
  const ModelContext instruments =
      ModelContextFromInstruments((*questionnaires)->List());
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories(config->workflows.directories,
                                       instruments);
  if (!catalog.ok()) {
    std::fprintf(stderr, "ipsrtd: workflows refused:\n%s\n",
                 std::string(catalog.status().message()).c_str());
    if (std::string unserved =
            UnservedQuestionnaires(catalog.status().message());
        !unserved.empty()) {
      std::fprintf(stderr,
                   "ipsrtd: the templates name questionnaires no loaded "
                   "plugin serves: %s (served: %s); load a questionnaire "
                   "plugin that serves them under plugins:\n",
                   unserved.c_str(),
                   absl::StrJoin(instruments.instruments, ", ").c_str());
    }
    return 1;
  }
  IPSRT_LOG(INFO) << "loaded " << (*catalog)->All().size()
                  << " workflow template(s)";
  WorkflowRegistry workflows(*catalog, config->workflows.directories,
                             instruments);
  RandomIdGenerator ids;
  // Push targets name loaded exporter plugins; a typo refuses the start.
  if (absl::Status targets =
          CheckExportTargets(*config, **plugins, **questionnaires);
      !targets.ok()) {
    std::fprintf(stderr, "ipsrtd: export refused: %s\n",
                 std::string(targets.message()).c_str());
    return 1;
  }
  // Integrity (docs/integrity.md): verify the chains before serving when
  // asked, and anchor the store's heads outside the database.
  absl::StatusOr<std::optional<AnchorWriter::Options>> anchor_options =
      StartIntegrity(config->integrity, **store);
  if (!anchor_options.ok()) {
    IPSRT_LOG(ERROR) << anchor_options.status().message();
    return 1;
  }
  std::unique_ptr<AnchorWriter> anchor;
  if (anchor_options->has_value()) {
    absl::StatusOr<std::unique_ptr<AnchorWriter>> started =
        StartAnchorWriter(**anchor_options, store->get(), clock);
    if (!started.ok()) {
      IPSRT_LOG(ERROR) << started.status().message();
      return 1;
    }
    anchor = *std::move(started);
  }
  // Reminder delivery: the reminder plugin named by reminders.channel
  // (loaded above), or else the built-in JSON Lines channel.
  std::unique_ptr<reminders::ReminderSender> sender;
  std::unique_ptr<reminders::Dispatcher> dispatcher;
  std::string jsonl_path = config->reminders.jsonl_path;
  if (jsonl_path.empty() && config->store.kind == "sqlite") {
    jsonl_path =
        (std::filesystem::path(config->store.sqlite.path).parent_path() /
         "reminders.jsonl")
            .string();
  }
  if (config->reminders.enabled && config->reminders.channel.empty() &&
      jsonl_path.empty()) {
    // A PostgreSQL deployment has no data directory to default to, and a
    // file shared by several replicas is no place for their deliveries:
    // the channel must be chosen explicitly. Not an error: a replica may
    // serve calls only while others on the same database deliver.
    IPSRT_LOG(WARNING)
        << "reminders: this replica delivers none: store.kind "
        << config->store.kind
        << " has no default reminder file; set reminders.channel (e.g. "
           "reminder-webhook) or reminders.jsonl.path (a file of this "
           "replica's own), or reminders.enabled: false. Due reminders "
           "stay scheduled until a replica that delivers claims them";
  } else if (config->reminders.enabled) {
    const RemindersConfig& rc = config->reminders;
    std::string destination;
    if (!rc.channel.empty()) {
      absl::StatusOr<std::unique_ptr<reminders::PluginSender>> channel =
          reminders::PluginSender::Create(**plugins, rc.channel,
                                          rc.channel_location);
      if (!channel.ok()) {
        std::fprintf(stderr, "ipsrtd: reminders refused: %s\n",
                     std::string(channel.status().message()).c_str());
        return 1;
      }
      sender = *std::move(channel);
      destination = absl::StrCat("plugin ", rc.channel);
    } else {
      absl::StatusOr<std::unique_ptr<reminders::JsonlFileSender>> opened =
          reminders::JsonlFileSender::Open(jsonl_path, rc.jsonl_sync, clock);
      if (!opened.ok()) {
        IPSRT_LOG(ERROR) << opened.status();
        return 1;
      }
      sender = *std::move(opened);
      destination = jsonl_path;
    }
    reminders::DispatcherOptions d;
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    d.owner = absl::StrCat(host, "/", getpid(), "/", ids.NewId(clock->Now()));
    d.poll_interval = rc.poll_interval;
    d.lease = rc.lease;
    d.batch_size = rc.batch_size;
    d.max_attempts = rc.max_attempts;
    d.initial_backoff = rc.initial_backoff;
    d.max_backoff = rc.max_backoff;
    d.channel = rc.channel.empty() ? "jsonl" : rc.channel;
    if (std::optional<absl::Duration> pause =
            TestDuration("IPSRT_TEST_REMINDER_PAUSE")) {
      d.test_pause_after_deliver = *pause;
    }
    dispatcher = std::make_unique<reminders::Dispatcher>(store->get(), clock,
                                                         sender.get(), d);
    IPSRT_LOG(INFO) << "reminders: delivering to " << destination << " (poll "
                    << rc.poll_interval << ", lease " << rc.lease << ")";
  }

  ServerOptions server_options;
  server_options.listen = config->server.listen;
  if (!config->server.tls.has_value() && !IsLoopback(config->server.listen)) {
    IPSRT_LOG(ERROR) << "--listen " << config->server.listen
                     << " is not a loopback address; listening beyond this "
                        "machine needs server.tls";
    return 1;
  }
  if (config->server.tls.has_value()) {
    const TlsConfig& tls = *config->server.tls;
    for (auto [path, out] :
         {std::pair{tls.cert_file, &server_options.tls_cert_pem},
          std::pair{tls.key_file, &server_options.tls_key_pem},
          std::pair{tls.client_ca_file, &server_options.tls_client_ca_pem}}) {
      if (path.empty()) continue;
      absl::StatusOr<std::string> pem = ReadFileToString(path);
      if (!pem.ok() || pem->empty()) {
        IPSRT_LOG(ERROR) << "server.tls: cannot read " << path;
        return 1;
      }
      *out = *std::move(pem);
    }
    IPSRT_LOG(INFO) << "TLS on"
                    << (tls.client_ca_file.empty() ? ""
                                                   : ", client certificates "
                                                     "required (mutual TLS)");
  }
  if (config->auth.mode == "none" && !IsLoopback(config->server.listen)) {
    IPSRT_LOG(ERROR) << "--listen " << config->server.listen
                     << " is not a loopback address; listening beyond this "
                        "machine needs auth.mode: required";
    return 1;
  }
  std::unique_ptr<Authenticator> authenticator;
  if (config->auth.mode != "none") {
    absl::StatusOr<std::unique_ptr<Authenticator>> created =
        Authenticator::Create(config->auth);
    if (!created.ok()) {
      IPSRT_LOG(ERROR) << created.status();
      return 1;
    }
    authenticator = *std::move(created);
    IPSRT_LOG(INFO) << "authentication required: "
                    << (config->auth.jwt.has_value() ? "JWT" : "no JWT") << ", "
                    << config->auth.api_tokens.size() << " API token(s)";
  } else {
    IPSRT_LOG(INFO) << "authentication off (auth.mode: none, loopback): "
                       "callers act as the local admin";
  }
  server_options.observe = ServerObserveOptions(*config, metrics->get());
  server_options.max_receive_message_bytes =
      static_cast<int>(config->server.max_receive_message_bytes);
  server_options.max_metadata_bytes =
      static_cast<int>(config->server.max_metadata_bytes);
  ServerDeps deps{store->get(), clock, &ids, &workflows,
                  Enrollments::Safety{config->safety.crisis_resources}};
  deps.plugins = plugins->get();
  deps.questionnaires = questionnaires->get();
  deps.authenticator = authenticator.get();
  deps.exports = &config->export_;
  if (anchor_options->has_value()) deps.anchor = &**anchor_options;
  deps.future_leeway = config->events.future_leeway;
  absl::StatusOr<std::unique_ptr<IpsrtServer>> server =
      IpsrtServer::Start(server_options, deps);
  if (!server.ok()) {
    IPSRT_LOG(ERROR) << server.status();
    return 1;
  }
  std::string host =
      config->server.listen.substr(0, config->server.listen.rfind(':'));
  IPSRT_LOG(INFO) << "serving on " << host << ":" << (*server)->port();
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    // Written whole to a temporary name and renamed, so a reader never sees
    // a partial number.
    std::string tmp = port_file + ".tmp";
    bool written = false;
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << (*server)->port() << "\n";
      out.flush();
      written = out.good();
    }
    if (!written || std::rename(tmp.c_str(), port_file.c_str()) != 0) {
      IPSRT_LOG(ERROR) << "cannot write --port_file " << port_file;
      (*server)->Shutdown(absl::ZeroDuration());
      (*store)->Close();
      return 1;
    }
  }

  if (dispatcher) dispatcher->Start();
  std::unique_ptr<Operations> operations = Operations::Start(
      *config, {store->get(), plugins->get(), server->get(), metrics->get()});

  int received = 0;
  while (true) {
    sigwait(&signals, &received);
    if (received != SIGHUP) break;
    // SIGHUP reloads the workflow templates; a set with any error is
    // refused whole and the last good set keeps serving.
    WorkflowRegistry::ReloadResult r = workflows.Reload();
    if (r.reloaded) {
      IPSRT_LOG(INFO) << "SIGHUP: workflows reloaded; serving "
                      << r.serving.size() << " template version(s)";
    } else {
      IPSRT_LOG(WARNING) << "SIGHUP: workflow reload refused; the last good "
                            "set keeps serving";
      for (const YamlDiagnostic& d : r.diagnostics) {
        IPSRT_LOG(WARNING) << d.ToString();
      }
    }
  }
  IPSRT_LOG(INFO) << "received " << (received == SIGTERM ? "SIGTERM" : "SIGINT")
                  << "; draining for up to " << config->server.shutdown_grace;
  operations.reset();
  (*server)->Shutdown(config->server.shutdown_grace);
  if (dispatcher) dispatcher->Stop();
  anchor.reset();
  (*store)->Close();
  IPSRT_LOG(INFO) << "stopped cleanly";
  return 0;
}

}  // namespace
}  // namespace ipsrt

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ipsrtd --config=FILE: serve the IPSRT workflow engine over gRPC");
  absl::ParseCommandLine(argc, argv);
  return ipsrt::Run();
}
