// Operations: readiness and the store-derived gauges, on one background
// thread started once the server serves.
//
// Readiness (grpc.health.v1): every health.probe_interval the store is
// probed (Store::Probe, one cheap round trip) and the plugins marked
// `required: true` are checked. The server as a whole ("") and each
// ipsrt.v1 service report NOT_SERVING while the store is unreachable or a
// required plugin is down, and SERVING again once they recover. The
// service "ipsrt.liveness" stays SERVING while the process answers at all:
// a load balancer probes readiness, a supervisor probes liveness
// (docs/operations.md).
//
// Example:
//   std::unique_ptr<Operations> ops =
//       Operations::Start(config, {store, plugins, server, metrics});
//   ... serve ...
//   ops.reset();   // before the server shuts down
#ifndef IPSRT_OPS_OPERATIONS_H_
#define IPSRT_OPS_OPERATIONS_H_

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "ipsrt/config.h"
#include "ipsrt/store.h"
#include "ops/metrics.h"
#include "plugin_host/registry.h"
#include "service/server.h"

namespace ipsrt {

// The health service name that reports liveness only.
inline constexpr char kLivenessService[] = "ipsrt.liveness";

class Operations {
 public:
  struct Deps {
    Store* store;
    const PluginRegistry* plugins;  // may be null
    IpsrtServer* server;
    Metrics* metrics;  // may be null (metrics off)
  };

  // Start runs the first probe at once, then keeps probing. All of `deps`
  // outlive the returned object.
  static std::unique_ptr<Operations> Start(const Config& config, Deps deps);

  // Stops the thread (within one probe).
  ~Operations();

 private:
  Operations(const Config& config, Deps deps);
  void Loop();
  void Probe();
  void RefreshStats();

  const Deps deps_;
  const absl::Duration probe_interval_;
  const absl::Duration stats_interval_;
  // Names of the plugins marked required, in load order.
  std::vector<std::string> required_;
  std::vector<std::string> services_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Last published readiness (none before the first probe).
  std::optional<bool> ready_;
  std::string last_reason_;
  absl::Time next_stats_ = absl::InfinitePast();
  std::thread thread_;
};

// ServerObserveOptions is the call observer's settings for `config`
// (metrics when a registry is installed, access log as configured).
CallObserverOptions ServerObserveOptions(const Config& config,
                                         const Metrics* metrics);

}  // namespace ipsrt

#endif  // IPSRT_OPS_OPERATIONS_H_
