// ipsrt-plugin-runner: serves an in-process plugin library out of process.
//
//   ipsrt-plugin-runner LIBRARY
//
// Started by ipsrtd for a plugin configured with `transport:
// out_of_process` whose path is a shared library. It loads the library with
// the same checks as the in-process host, binds a unix socket in
// $IPSRT_PLUGIN_SOCKET_DIR, serves `ipsrt.plugin.v1.Plugin` and
// grpc.health.v1 there, and prints the handshake line
// (out_of_process.h). A crash or hang of the library takes down this
// process only; ipsrtd notices and restarts it.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/offset_clock.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "ipsrt/plugin/v1/plugin.grpc.pb.h"
#include "plugin_host/in_process.h"
#include "plugin_host/out_of_process.h"
#include "service/status_mapping.h"

namespace ipsrt {
namespace {

namespace pv1 = ::ipsrt::plugin::v1;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      BoundedStatusMessage(s.message()));
}

// Forwards each method to the library. The deadline is the engine's: an
// in-process call cannot be interrupted, so none is applied here.
class Forwarder final : public pv1::Plugin::Service {
 public:
  explicit Forwarder(PluginTransport* plugin) : plugin_(plugin) {}

#define IPSRT_FORWARD_(Method)                                              \
  grpc::Status Method(grpc::ServerContext*, const pv1::Method##Request* in, \
                      pv1::Method##Response* out) override {                \
    return ToGrpc(plugin_->Call(PluginMethod::k##Method, *in, out,          \
                                absl::InfiniteDuration()));                 \
  }
  IPSRT_FORWARD_(Describe)
  IPSRT_FORWARD_(Configure)
  IPSRT_FORWARD_(ListInstruments)
  IPSRT_FORWARD_(ScoreResponse)
  IPSRT_FORWARD_(DeliverReminder)
  IPSRT_FORWARD_(PlanReminders)
  IPSRT_FORWARD_(RenderExport)
  IPSRT_FORWARD_(DeliverExport)
#undef IPSRT_FORWARD_

 private:
  PluginTransport* plugin_;
};

int Run(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: ipsrt-plugin-runner LIBRARY\n"
              << "(started by ipsrtd for out-of-process plugins)\n";
    return 2;
  }
  const char* dir = std::getenv("IPSRT_PLUGIN_SOCKET_DIR");
  const char* protocol = std::getenv("IPSRT_PLUGIN_PROTOCOL");
  if (dir == nullptr || protocol == nullptr ||
      std::string(protocol) != std::to_string(kOutOfProcessProtocol)) {
    std::cerr << "ipsrt-plugin-runner: IPSRT_PLUGIN_SOCKET_DIR and "
                 "IPSRT_PLUGIN_PROTOCOL="
              << kOutOfProcessProtocol << " must be set by the engine\n";
    return 2;
  }
  int64_t offset_us = 0;
  if (const char* offset = std::getenv("IPSRT_PLUGIN_CLOCK_OFFSET_US")) {
    if (!absl::SimpleAtoi(offset, &offset_us)) offset_us = 0;
  }
  // The engine's clock, so that the plugin's host().Now() agrees with it.
  static const OffsetClock clock(absl::Microseconds(offset_us));
  // The engine bounds the calls it makes; the runner only guards against a
  // plugin that never returns.
  absl::StatusOr<std::unique_ptr<PluginTransport>> plugin =
      LoadInProcessPlugin(argv[1], &clock, /*max_concurrent_calls=*/64);
  if (!plugin.ok()) {
    std::cerr << "ipsrt-plugin-runner: " << plugin.status().message() << "\n";
    return 3;
  }
  std::string socket = (std::filesystem::path(dir) / "plugin.sock").string();
  unlink(socket.c_str());
  std::string address = "unix:" + socket;

  Forwarder forwarder(plugin->get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  // An export request carries a whole course of events and its answer a
  // whole Bundle; gRPC's 4 MiB default is too small for long courses. The
  // host allows the same in the other direction.
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.RegisterService(&forwarder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::cerr << "ipsrt-plugin-runner: cannot listen on " << address << "\n";
    return 4;
  }
  std::cout << "IPSRT_PLUGIN|" << kOutOfProcessProtocol << "|" << address
            << std::endl;
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace ipsrt

int main(int argc, char** argv) { return ipsrt::Run(argc, argv); }
