// ipsrtd: the IPSRT workflow engine's gRPC server.
//
// Wiring, in order (one step function each, see Run): flags -> config ->
// store (migrations) -> plugins -> workflows (checked against the plugins'
// instruments) -> integrity -> reminders -> TLS and auth -> server. SIGTERM or
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
#include "absl/synchronization/mutex.h"
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

// Daemon is everything ipsrtd runs with, set up step by step by Run. The
// members are declared in set-up order, so they are destroyed in the
// reverse order (the server before the plugins and the store it uses).
struct Daemon {
  std::string config_path;
  Config config;
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<Store> store;
  const Clock* clock = SystemClock::Get();
  std::optional<OffsetClock> offset_clock;
  std::unique_ptr<PluginRegistry> plugins;
  std::unique_ptr<QuestionnaireCatalog> questionnaires;
  ModelContext instruments;
  std::unique_ptr<WorkflowRegistry> workflows;
  RandomIdGenerator ids;
  std::optional<AnchorWriter::Options> anchor_options;
  std::unique_ptr<AnchorWriter> anchor;
  std::unique_ptr<reminders::ReminderSender> sender;
  std::unique_ptr<reminders::Dispatcher> dispatcher;
  ServerOptions server_options;
  std::unique_ptr<Authenticator> authenticator;
  std::unique_ptr<IpsrtServer> server;
};

// Each step below sets up one part of `d`; false after it has reported
// why it cannot (ipsrtd then exits 1).

// LoadConfig reads the config file and applies the command-line overrides
// and the logging settings.
bool LoadConfig(Daemon& d) {
  absl::StatusOr<Config> config = LoadConfigFile(d.config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "ipsrtd: invalid configuration:\n%s\n",
                 std::string(config.status().message()).c_str());
    return false;
  }
  d.config = *std::move(config);
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    d.config.server.listen = absl::GetFlag(FLAGS_listen);
  }
  SetMinLogLevel(d.config.logging.level);
  ApplyStoreFlags(d.config);
  SetLogFormat(d.config.logging.format);
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    d.config.metrics.listen = absl::GetFlag(FLAGS_metrics_listen);
  }
  return true;
}

// OpenStoreAndClock starts the metrics endpoint, sets the file mode mask,
// opens (migrates) the store and picks the clock.
bool OpenStoreAndClock(Daemon& d) {
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = StartMetrics(d.config);
  if (!metrics.ok()) {
    std::fprintf(stderr, "ipsrtd: %s\n",
                 std::string(metrics.status().message()).c_str());
    return false;
  }
  d.metrics = *std::move(metrics);
  IPSRT_LOG(INFO) << "ipsrtd " << IPSRT_VERSION << " starting with "
                  << d.config_path;
  // Before any file is created: the database, its WAL, reminder files and
  // exports hold patient data (server.umask, default 0077).
  ::umask(static_cast<mode_t>(d.config.server.umask));
  IPSRT_LOG(INFO) << "file mode mask "
                  << absl::StrFormat("%04o", d.config.server.umask);

  std::string store_description;
  absl::StatusOr<std::unique_ptr<Store>> store =
      OpenStore(d.config.store, &store_description);
  if (!store.ok()) {
    IPSRT_LOG(ERROR) << "cannot open store: " << store.status();
    return false;
  }
  d.store = *std::move(store);
  IPSRT_LOG(INFO) << store_description;

  if (std::optional<absl::Duration> offset =
          TestDuration("IPSRT_TEST_CLOCK_OFFSET")) {
    d.clock = &d.offset_clock.emplace(*offset);
  }
  return true;
}

// LoadPluginsAndWorkflows loads the plugins (all or nothing, before the
// server accepts a call; their host().Now() is the engine's clock), their
// questionnaires, and the workflow templates checked against them.
bool LoadPluginsAndWorkflows(Daemon& d) {
  PluginHostOptions plugin_options = DefaultPluginHostOptions();
  plugin_options.clock = d.clock;
  absl::StatusOr<std::unique_ptr<PluginRegistry>> plugins =
      PluginRegistry::Load(d.config.plugins, plugin_options);
  if (!plugins.ok()) {
    std::fprintf(stderr, "ipsrtd: plugin refused: %s\n",
                 std::string(plugins.status().message()).c_str());
    return false;
  }
  d.plugins = *std::move(plugins);
  absl::StatusOr<std::unique_ptr<QuestionnaireCatalog>> questionnaires =
      QuestionnaireCatalog::Build(*d.plugins);
  if (!questionnaires.ok()) {
    std::fprintf(stderr, "ipsrtd: %s\n",
                 std::string(questionnaires.status().message()).c_str());
    return false;
  }
  d.questionnaires = *std::move(questionnaires);
  IPSRT_LOG(INFO) << "loaded " << d.plugins->List().size() << " plugin(s), "
                  << d.questionnaires->List().size() << " questionnaire(s)";

  d.instruments = ModelContextFromInstruments(d.questionnaires->List());
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories(d.config.workflows.directories,
                                       d.instruments);
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
                   absl::StrJoin(d.instruments.instruments, ", ").c_str());
    }
    return false;
  }
  IPSRT_LOG(INFO) << "loaded " << (*catalog)->All().size()
                  << " workflow template(s)";
  d.workflows = std::make_unique<WorkflowRegistry>(
      *catalog, d.config.workflows.directories, d.instruments);
  // Push targets name loaded exporter plugins; a typo refuses the start.
  if (absl::Status targets =
          CheckExportTargets(d.config, *d.plugins, *d.questionnaires);
      !targets.ok()) {
    std::fprintf(stderr, "ipsrtd: export refused: %s\n",
                 std::string(targets.message()).c_str());
    return false;
  }
  return true;
}

// SetUpIntegrity (docs/integrity.md) verifies the chains before serving
// when asked, and anchors the store's heads outside the database.
bool SetUpIntegrity(Daemon& d) {
  absl::StatusOr<std::optional<AnchorWriter::Options>> anchor_options =
      StartIntegrity(d.config.integrity, *d.store);
  if (!anchor_options.ok()) {
    IPSRT_LOG(ERROR) << anchor_options.status().message();
    return false;
  }
  d.anchor_options = *std::move(anchor_options);
  if (d.anchor_options.has_value()) {
    absl::StatusOr<std::unique_ptr<AnchorWriter>> started =
        StartAnchorWriter(*d.anchor_options, d.store.get(), d.clock);
    if (!started.ok()) {
      IPSRT_LOG(ERROR) << started.status().message();
      return false;
    }
    d.anchor = *std::move(started);
  }
  return true;
}

// SetUpReminders binds the dispatcher to the reminder plugin named by
// reminders.channel (loaded above; the reminder-jsonl plugin for the JSON
// Lines file of reminders.jsonl, see UseJsonlChannel).
bool SetUpReminders(Daemon& d, const std::string& jsonl_path) {
  const RemindersConfig& rc = d.config.reminders;
  if (rc.enabled && rc.channel.empty()) {
    // A PostgreSQL deployment has no data directory to default to, and a
    // file shared by several replicas is no place for their deliveries:
    // the channel must be chosen explicitly. Not an error: a replica may
    // serve calls only while others on the same database deliver.
    IPSRT_LOG(WARNING)
        << "reminders: this replica delivers none: store.kind "
        << StoreKindName(d.config.store.kind)
        << " has no default reminder file; set reminders.channel (e.g. "
           "reminder-webhook) or reminders.jsonl.path (a file of this "
           "replica's own), or reminders.enabled: false. Due reminders "
           "stay scheduled until a replica that delivers claims them";
    return true;
  }
  if (!rc.enabled) return true;
  absl::StatusOr<std::unique_ptr<reminders::PluginSender>> channel =
      reminders::PluginSender::Create(*d.plugins, rc.channel,
                                      rc.channel_location);
  if (!channel.ok()) {
    std::fprintf(stderr, "ipsrtd: reminders refused: %s\n",
                 std::string(channel.status().message()).c_str());
    return false;
  }
  d.sender = *std::move(channel);
  reminders::DispatcherOptions o;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  o.owner = absl::StrCat(host, "/", getpid(), "/", d.ids.NewId(d.clock->Now()));
  o.poll_interval = rc.poll_interval;
  o.lease = rc.lease;
  o.batch_size = rc.batch_size;
  o.max_attempts = rc.max_attempts;
  o.initial_backoff = rc.initial_backoff;
  o.max_backoff = rc.max_backoff;
  // The JSON Lines file keeps its metrics label.
  o.channel = jsonl_path.empty() ? rc.channel : "jsonl";
  if (std::optional<absl::Duration> pause =
          TestDuration("IPSRT_TEST_REMINDER_PAUSE")) {
    o.test_pause_after_deliver = *pause;
  }
  d.dispatcher = std::make_unique<reminders::Dispatcher>(d.store.get(), d.clock,
                                                         d.sender.get(), o);
  IPSRT_LOG(INFO) << "reminders: delivering to "
                  << (jsonl_path.empty() ? absl::StrCat("plugin ", rc.channel)
                                         : jsonl_path)
                  << " (poll " << rc.poll_interval << ", lease " << rc.lease
                  << ")";
  return true;
}

// SetUpSecurity reads the TLS files and creates the authenticator; beyond
// loopback both TLS and authentication are required.
bool SetUpSecurity(Daemon& d) {
  const Config& config = d.config;
  ServerOptions& server_options = d.server_options;
  server_options.listen = config.server.listen;
  if (!config.server.tls.has_value() && !IsLoopback(config.server.listen)) {
    IPSRT_LOG(ERROR) << "--listen " << config.server.listen
                     << " is not a loopback address; listening beyond this "
                        "machine needs server.tls";
    return false;
  }
  if (config.server.tls.has_value()) {
    const TlsConfig& tls = *config.server.tls;
    for (auto [path, out] :
         {std::pair{tls.cert_file, &server_options.tls_cert_pem},
          std::pair{tls.key_file, &server_options.tls_key_pem},
          std::pair{tls.client_ca_file, &server_options.tls_client_ca_pem}}) {
      if (path.empty()) continue;
      absl::StatusOr<std::string> pem = ReadFileToString(path);
      if (!pem.ok() || pem->empty()) {
        IPSRT_LOG(ERROR) << "server.tls: cannot read " << path;
        return false;
      }
      *out = *std::move(pem);
    }
    IPSRT_LOG(INFO) << "TLS on"
                    << (tls.client_ca_file.empty() ? ""
                                                   : ", client certificates "
                                                     "required (mutual TLS)");
  }
  if (config.auth.mode == AuthMode::kNone &&
      !IsLoopback(config.server.listen)) {
    IPSRT_LOG(ERROR) << "--listen " << config.server.listen
                     << " is not a loopback address; listening beyond this "
                        "machine needs auth.mode: required";
    return false;
  }
  if (config.auth.mode != AuthMode::kNone) {
    absl::StatusOr<std::unique_ptr<Authenticator>> created =
        Authenticator::Create(config.auth);
    if (!created.ok()) {
      IPSRT_LOG(ERROR) << created.status();
      return false;
    }
    d.authenticator = *std::move(created);
    IPSRT_LOG(INFO) << "authentication required: "
                    << (config.auth.jwt.has_value() ? "JWT" : "no JWT") << ", "
                    << config.auth.api_tokens.size() << " API token(s)";
  } else {
    IPSRT_LOG(INFO) << "authentication off (auth.mode: none, loopback): "
                       "callers act as the local admin";
  }
  return true;
}

// StartServer starts serving and writes --port_file.
bool StartServer(Daemon& d) {
  d.server_options.observe = ServerObserveOptions(d.config, d.metrics.get());
  d.server_options.max_receive_message_bytes =
      static_cast<int>(d.config.server.max_receive_message_bytes);
  d.server_options.max_metadata_bytes =
      static_cast<int>(d.config.server.max_metadata_bytes);
  ServerDeps deps{d.store.get(), d.clock, &d.ids, d.workflows.get(),
                  Enrollments::Safety{d.config.safety.crisis_resources}};
  deps.plugins = d.plugins.get();
  deps.questionnaires = d.questionnaires.get();
  deps.authenticator = d.authenticator.get();
  deps.exports = &d.config.export_;
  if (d.anchor_options.has_value()) deps.anchor = &*d.anchor_options;
  deps.future_leeway = d.config.events.future_leeway;
  absl::StatusOr<std::unique_ptr<IpsrtServer>> server =
      IpsrtServer::Start(d.server_options, deps);
  if (!server.ok()) {
    IPSRT_LOG(ERROR) << server.status();
    return false;
  }
  d.server = *std::move(server);
  std::string host =
      d.config.server.listen.substr(0, d.config.server.listen.rfind(':'));
  IPSRT_LOG(INFO) << "serving on " << host << ":" << d.server->port();
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    // Written whole to a temporary name and renamed, so a reader never sees
    // a partial number.
    std::string tmp = port_file + ".tmp";
    bool written = false;
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << d.server->port() << "\n";
      out.flush();
      written = out.good();
    }
    if (!written || std::rename(tmp.c_str(), port_file.c_str()) != 0) {
      IPSRT_LOG(ERROR) << "cannot write --port_file " << port_file;
      d.server->Shutdown(absl::ZeroDuration());
      d.store->Close();
      return false;
    }
  }
  return true;
}

// Serve runs until SIGTERM or SIGINT (SIGHUP reloads the workflow
// templates), then drains and stops everything.
int Serve(Daemon& d, const sigset_t& signals) {
  if (d.dispatcher) d.dispatcher->Start();
  std::unique_ptr<Operations> operations = Operations::Start(
      d.config,
      {d.store.get(), d.plugins.get(), d.server.get(), d.metrics.get()});

  int received = 0;
  while (true) {
    sigwait(&signals, &received);
    if (received != SIGHUP) break;
    // A set with any error is refused whole and the last good set keeps
    // serving.
    WorkflowRegistry::ReloadResult r = d.workflows->Reload();
    if (r.reloaded) {
      IPSRT_LOG(INFO) << "SIGHUP: workflows reloaded; serving "
                      << r.serving.size() << " template version(s)";
    } else {
      IPSRT_LOG(WARNING) << "SIGHUP: workflow reload refused; the last good "
                            "set keeps serving";
      for (const YamlDiagnostic& diagnostic : r.diagnostics) {
        IPSRT_LOG(WARNING) << diagnostic.ToString();
      }
    }
  }
  IPSRT_LOG(INFO) << "received " << (received == SIGTERM ? "SIGTERM" : "SIGINT")
                  << "; draining for up to " << d.config.server.shutdown_grace;
  operations.reset();
  d.server->Shutdown(d.config.server.shutdown_grace);
  if (d.dispatcher) d.dispatcher->Stop();
  d.anchor.reset();
  d.store->Close();
  IPSRT_LOG(INFO) << "stopped cleanly";
  return 0;
}

int Run() {
  // Block the shutdown signals before any thread starts, so that every
  // thread inherits the mask and only sigwait in Serve receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Daemon d;
  d.config_path = absl::GetFlag(FLAGS_config);
  if (absl::GetFlag(FLAGS_check_config)) return CheckConfig(d.config_path);
  if (!LoadConfig(d) || !OpenStoreAndClock(d)) return 1;
  // The JSON Lines file is written by the reminder-jsonl plugin, loaded
  // with the others.
  const std::string jsonl_path = UseJsonlChannel(d.config, d.config_path);
  if (!LoadPluginsAndWorkflows(d) || !SetUpIntegrity(d) ||
      !SetUpReminders(d, jsonl_path) || !SetUpSecurity(d) || !StartServer(d)) {
    return 1;
  }
  return Serve(d, signals);
}

}  // namespace
}  // namespace ipsrt

int main(int argc, char** argv) {
#ifdef NDEBUG
  // Debian builds Abseil without NDEBUG, which leaves Mutex deadlock
  // detection on in every process: each lock acquisition records its lock
  // order in a graph (GraphCycles::GetId was 1-2 % of ipsrtd's time under
  // GetEnrollment load, bench/README.md). Release builds turn it off;
  // Debug builds, and so the sanitizer runs, keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  absl::SetProgramUsageMessage(
      "ipsrtd --config=FILE: serve the IPSRT workflow engine over gRPC");
  absl::ParseCommandLine(argc, argv);
  return ipsrt::Run();
}
