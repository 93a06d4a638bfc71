// ipsrtd: the IPSRT workflow engine's gRPC server.
//
// Wiring, in order: flags -> config -> store (migrations) -> workflows ->
// server. SIGTERM or SIGINT drains in-flight calls (up to
// server.shutdown_grace), then closes the store; the exit status is 0 after
// a clean drain. Logs carry no patient data.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/log.h"
#include "ipsrt/clock.h"
#include "ipsrt/config.h"
#include "ipsrt/version.h"
#include "model/workflow.h"
#include "service/server.h"
#include "store/open_store.h"

ABSL_FLAG(std::string, config, "config/ipsrtd.yaml",
          "Path of the YAML configuration file.");
ABSL_FLAG(std::string, listen, "",
          "Override server.listen (host:port; port 0 picks a free port).");
ABSL_FLAG(std::string, port_file, "",
          "When set, write the bound port to this file once serving.");

namespace ipsrt {
namespace {

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
  IPSRT_LOG(INFO) << "ipsrtd " << IPSRT_VERSION << " starting with "
                  << config_path;

  std::string store_description;
  absl::StatusOr<std::unique_ptr<Store>> store =
      OpenStore(config->store, &store_description);
  if (!store.ok()) {
    IPSRT_LOG(ERROR) << "cannot open store: " << store.status();
    return 1;
  }
  IPSRT_LOG(INFO) << store_description;

  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories(config->workflows.directories);
  if (!catalog.ok()) {
    std::fprintf(stderr, "ipsrtd: workflows refused:\n%s\n",
                 std::string(catalog.status().message()).c_str());
    return 1;
  }
  IPSRT_LOG(INFO) << "loaded " << (*catalog)->All().size()
                  << " workflow template(s)";
  WorkflowRegistry workflows(*catalog, config->workflows.directories);
  RandomIdGenerator ids;

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
  server_options.max_receive_message_bytes =
      static_cast<int>(config->server.max_receive_message_bytes);
  absl::StatusOr<std::unique_ptr<IpsrtServer>> server = IpsrtServer::Start(
      server_options,
      ServerDeps{store->get(), SystemClock::Get(), &ids, &workflows,
                 Enrollments::Safety{config->safety.crisis_resources}});
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
  (*server)->Shutdown(config->server.shutdown_grace);
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
