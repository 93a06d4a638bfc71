// Metrics: ipsrtd's Prometheus registry and its HTTP endpoint (/metrics).
//
// Built on Debian's prometheus-cpp (core + pull). While a Metrics object is
// installed, the hooks of ops/metrics_hooks.h and the call observer
// (ops/call_observer.h) record into it; otherwise they do nothing. Names
// follow Prometheus conventions (base units, `_seconds`, `_total`), all
// prefixed `ipsrt_`; every label comes from a bounded set (method names,
// status codes, backend kinds, configured plugin names, workflow ids and
// stages), never an id, a patient reference or free text.
//
// Example:
//   absl::StatusOr<std::unique_ptr<Metrics>> m =
//   Metrics::Start(config.metrics); if (!m.ok()) ... (a listener that cannot
//   bind names metrics.listen)
//   (*m)->Install();   // hooks now record
//   ...
//   m->reset();        // uninstalls, then closes the listener
#ifndef IPSRT_OPS_METRICS_H_
#define IPSRT_OPS_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ipsrt/config.h"
#include "ipsrt/store.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace ipsrt {

class Metrics {
 public:
  // Start creates the registry and, when config.listen is set, binds the
  // HTTP listener. INVALID_ARGUMENT naming config.location when it cannot
  // bind. An empty listen gives a registry without a listener (tests,
  // benchmarks).
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(
      const MetricsConfig& config);

  // Uninstalls (if installed) and closes the listener; a scrape in flight
  // completes or its connection closes.
  ~Metrics();

  // Install makes this the registry the hooks record into. At most one
  // Metrics is installed at a time.
  void Install();

  // The bound port of the listener (0 without one).
  int port() const { return port_; }

  // The text exposition of the registry, as a scrape would return it.
  std::string Scrape() const;

  // SetStoreStats replaces the store-derived gauges (enrollments by
  // workflow and stage, outbox depth and oldest lag).
  void SetStoreStats(const StoreStats& stats, absl::Time now);

  // SetReadiness publishes the readiness probe's last result.
  void SetReadiness(bool store_up, bool ready,
                    const std::vector<std::pair<std::string, bool>>& plugins);

  class Families;  // the metric families, in metrics.cc

 private:
  Metrics();

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  bool installed_ = false;
};

}  // namespace ipsrt

#endif  // IPSRT_OPS_METRICS_H_
