#include "ops/operations.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/thread_name.h"

namespace ipsrt {

Operations::Operations(const Config& config, Deps deps)
    : deps_(deps),
      probe_interval_(config.health.probe_interval),
      stats_interval_(config.metrics.store_refresh) {
  if (deps_.plugins != nullptr) {
    std::vector<v1::PluginInfo> loaded = deps_.plugins->List();
    // Plugins load all or nothing and in config order.
    for (size_t i = 0; i < loaded.size() && i < config.plugins.size(); ++i) {
      if (config.plugins[i].required) required_.push_back(loaded[i].name());
    }
  }
  services_ = deps_.server->ServiceNames();
}

std::unique_ptr<Operations> Operations::Start(const Config& config, Deps deps) {
  std::unique_ptr<Operations> ops(new Operations(config, deps));
  deps.server->SetServingStatus(kLivenessService, true);
  ops->Probe();
  ops->RefreshStats();
  ops->thread_ = std::thread([p = ops.get()] { p->Loop(); });
  NameThread(ops->thread_, "health-probe");
  return ops;
}

Operations::~Operations() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Operations::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), probe_interval_)) {
        return;
      }
    }
    Probe();
    RefreshStats();
  }
}

void Operations::Probe() {
  absl::Status store = deps_.store->Probe();
  std::string reason;
  if (!store.ok()) reason = std::string(store.message());
  std::vector<std::pair<std::string, bool>> plugins;
  if (deps_.plugins != nullptr) {
    for (const v1::PluginInfo& p : deps_.plugins->List()) {
      bool up = p.health() == v1::PluginInfo::SERVING;
      plugins.emplace_back(p.name(), up);
      if (up) continue;
      for (const std::string& r : required_) {
        if (r == p.name() && reason.empty()) {
          reason = absl::StrCat("required plugin ", r, " is not serving");
        }
      }
    }
  }
  bool ready = reason.empty();
  if (deps_.metrics != nullptr) {
    deps_.metrics->SetReadiness(store.ok(), ready, plugins);
  }
  if (ready_ == ready && reason == last_reason_) return;
  if (ready && ready_.has_value()) {
    IPSRT_LOG(INFO) << "readiness: SERVING again";
  } else if (ready) {
    IPSRT_LOG(INFO) << "readiness: SERVING";
  } else {
    IPSRT_LOG(WARNING) << "readiness: NOT_SERVING: " << reason;
  }
  ready_ = ready;
  last_reason_ = reason;
  deps_.server->SetServingStatus("", ready);
  for (const std::string& s : services_) {
    deps_.server->SetServingStatus(s, ready);
  }
}

void Operations::RefreshStats() {
  if (deps_.metrics == nullptr) return;
  absl::Time now = absl::Now();
  if (now < next_stats_) return;
  next_stats_ = now + stats_interval_;
  absl::StatusOr<StoreStats> stats = deps_.store->Stats(now);
  if (!stats.ok()) {
    IPSRT_LOG(DEBUG) << "metrics: store statistics unavailable: "
                     << stats.status().code();
    return;
  }
  deps_.metrics->SetStoreStats(*stats, now);
}

CallObserverOptions ServerObserveOptions(const Config& config,
                                         const Metrics* metrics) {
  return {.metrics = metrics != nullptr,
          .access_log = config.logging.access_log};
}

}  // namespace ipsrt
