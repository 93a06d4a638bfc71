#include "ops/metrics.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "ipsrt/version.h"
#include "ops/metrics_hooks.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace ipsrt {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

namespace {

// Seconds, from half a millisecond (a cached read) to ten seconds (a
// statement timeout).
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return *buckets;
}

const Histogram::BucketBoundaries& BatchBuckets() {
  static const auto* buckets =
      new Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  return *buckets;
}

}  // namespace

// Families holds every metric family, and caches the histograms by label
// values (prometheus-cpp's Family::Add builds a histogram per call).
class Metrics::Families {
 public:
  explicit Families(prometheus::Registry& r)
      : grpc_handled(prometheus::BuildCounter()
                         .Name("ipsrt_grpc_server_handled_total")
                         .Help("gRPC calls finished, by method and status code")
                         .Register(r)),
        grpc_seconds(prometheus::BuildHistogram()
                         .Name("ipsrt_grpc_server_handling_seconds")
                         .Help("gRPC call latency, from the call's arrival to "
                               "its status")
                         .Register(r)),
        store_commits(prometheus::BuildCounter()
                          .Name("ipsrt_store_commits_total")
                          .Help("Write batches committed, by backend and "
                                "result (ok, error)")
                          .Register(r)),
        store_batch(prometheus::BuildHistogram()
                        .Name("ipsrt_store_commit_batch_size")
                        .Help("Write batches per store transaction (group "
                              "commit)")
                        .Register(r)),
        store_seconds(prometheus::BuildHistogram()
                          .Name("ipsrt_store_commit_seconds")
                          .Help("Store transaction latency")
                          .Register(r)),
        audit_appends(prometheus::BuildCounter()
                          .Name("ipsrt_audit_appends_total")
                          .Help("Audit records appended")
                          .Register(r)),
        audit_failures(prometheus::BuildCounter()
                           .Name("ipsrt_audit_append_failures_total")
                           .Help("Audit records whose append failed")
                           .Register(r)),
        reminder_claims(prometheus::BuildCounter()
                            .Name("ipsrt_reminder_claims_total")
                            .Help("Outbox items claimed for delivery")
                            .Register(r)),
        reminder_deliveries(
            prometheus::BuildCounter()
                .Name("ipsrt_reminder_deliveries_total")
                .Help("Reminder delivery attempts, by channel and outcome "
                      "(sent, retry, failed, cancelled)")
                .Register(r)),
        outbox_pending(prometheus::BuildGauge()
                           .Name("ipsrt_outbox_pending")
                           .Help("Outbox items scheduled, claimed or waiting "
                                 "to retry")
                           .Register(r)),
        outbox_lag(prometheus::BuildGauge()
                       .Name("ipsrt_outbox_oldest_overdue_seconds")
                       .Help("Age past its due time of the oldest reminder "
                             "that is due and unclaimed, or claimed under an "
                             "expired lease (0 when none)")
                       .Register(r)),
        enrollments(prometheus::BuildGauge()
                        .Name("ipsrt_enrollments")
                        .Help("Enrollments by workflow, workflow version and "
                              "stage")
                        .Register(r)),
        store_stats_age(prometheus::BuildGauge()
                            .Name("ipsrt_store_stats_timestamp_seconds")
                            .Help("When the store-derived gauges were last "
                                  "refreshed (Unix time)")
                            .Register(r)),
        cache_reads(prometheus::BuildCounter()
                        .Name("ipsrt_enrollment_cache_reads_total")
                        .Help("Enrollment reads by where the answer came "
                              "from: the in-memory cache (hit) or the "
                              "database (miss)")
                        .Register(r)),
        cache_rows(prometheus::BuildGauge()
                       .Name("ipsrt_enrollment_cache_rows")
                       .Help("Enrollments held by the in-memory cache")
                       .Register(r)),
        cache_bytes(prometheus::BuildGauge()
                        .Name("ipsrt_enrollment_cache_bytes")
                        .Help("Bytes the in-memory enrollment cache counts "
                              "against its limit")
                        .Register(r)),
        plugin_calls(prometheus::BuildCounter()
                         .Name("ipsrt_plugin_calls_total")
                         .Help("Calls into plugins, by plugin, method and "
                               "status code")
                         .Register(r)),
        plugin_seconds(prometheus::BuildHistogram()
                           .Name("ipsrt_plugin_call_seconds")
                           .Help("Plugin call latency, by plugin and method")
                           .Register(r)),
        plugin_restarts(prometheus::BuildCounter()
                            .Name("ipsrt_plugin_restarts_total")
                            .Help("Out-of-process plugin processes started "
                                  "again after they died or were killed")
                            .Register(r)),
        plugin_up(prometheus::BuildGauge()
                      .Name("ipsrt_plugin_up")
                      .Help("1 while the plugin serves, 0 while it is down")
                      .Register(r)),
        store_up(prometheus::BuildGauge()
                     .Name("ipsrt_store_up")
                     .Help("1 while the store answers its readiness probe")
                     .Register(r)),
        ready(prometheus::BuildGauge()
                  .Name("ipsrt_ready")
                  .Help("1 while grpc.health.v1 reports SERVING")
                  .Register(r)),
        build_info(prometheus::BuildGauge()
                       .Name("ipsrt_build_info")
                       .Help("Always 1; the version is a label")
                       .Register(r)),
        start_time(prometheus::BuildGauge()
                       .Name("process_start_time_seconds")
                       .Help("Start time of the process (Unix time)")
                       .Register(r)) {}

  Histogram& HistogramFor(Family<Histogram>& family, const Labels& labels,
                          const Histogram::BucketBoundaries& buckets) {
    std::string key = family.GetName();
    for (const auto& [k, v] : labels) absl::StrAppend(&key, "\x1f", v);
    {
      absl::ReaderMutexLock lock(&mu_);
      auto it = histograms_.find(key);
      if (it != histograms_.end()) return *it->second;
    }
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = histograms_.try_emplace(key, nullptr);
    if (inserted) it->second = &family.Add(labels, buckets);
    return *it->second;
  }

  Family<Counter>& grpc_handled;
  Family<Histogram>& grpc_seconds;
  Family<Counter>& store_commits;
  Family<Histogram>& store_batch;
  Family<Histogram>& store_seconds;
  Family<Counter>& audit_appends;
  Family<Counter>& audit_failures;
  Family<Counter>& reminder_claims;
  Family<Counter>& reminder_deliveries;
  Family<Gauge>& outbox_pending;
  Family<Gauge>& outbox_lag;
  Family<Gauge>& enrollments;
  Family<Gauge>& store_stats_age;
  Family<Counter>& cache_reads;
  Family<Gauge>& cache_rows;
  Family<Gauge>& cache_bytes;
  Family<Counter>& plugin_calls;
  Family<Histogram>& plugin_seconds;
  Family<Counter>& plugin_restarts;
  Family<Gauge>& plugin_up;
  Family<Gauge>& store_up;
  Family<Gauge>& ready;
  Family<Gauge>& build_info;
  Family<Gauge>& start_time;
  // Enrollment series last published, to zero the ones that vanished.
  std::vector<Gauge*> enrollment_series;
  // The enrollment cache's cumulative counts last published (the store
  // reports totals; the counters move by the difference).
  int64_t cache_hits_seen = 0;
  int64_t cache_misses_seen = 0;

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Histogram*> histograms_ ABSL_GUARDED_BY(mu_);
};

namespace {
std::atomic<Metrics::Families*> active{nullptr};
std::atomic<Metrics*> active_owner{nullptr};
}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<Families>(*registry_)) {
  families_->build_info.Add({{"version", IPSRT_VERSION}}).Set(1);
  families_->start_time.Add({}).Set(
      absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  // Series that exist from the start, so rates and alerts see a zero.
  families_->audit_appends.Add({});
  families_->audit_failures.Add({});
  families_->reminder_claims.Add({});
  families_->outbox_pending.Add({});
  families_->outbox_lag.Add({});
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(
    const MetricsConfig& config) {
  std::unique_ptr<Metrics> m(new Metrics());
  if (config.listen.empty()) return m;
  try {
    // One thread: a scrape is a short serialisation of counters.
    m->exposer_ = std::make_unique<prometheus::Exposer>(config.listen, 1);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.location.empty() ? "" : config.location + ": ",
                     "metrics.listen: cannot listen on ", config.listen, " (",
                     e.what(), ")"));
  }
  m->exposer_->RegisterCollectable(m->registry_);
  std::vector<int> ports = m->exposer_->GetListeningPorts();
  m->port_ = ports.empty() ? 0 : ports.front();
  return m;
}

Metrics::~Metrics() {
  if (installed_) {
    active.store(nullptr, std::memory_order_release);
    active_owner.store(nullptr, std::memory_order_release);
  }
  exposer_.reset();
}

void Metrics::Install() {
  installed_ = true;
  active_owner.store(this, std::memory_order_release);
  active.store(families_.get(), std::memory_order_release);
}

std::string Metrics::Scrape() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void Metrics::SetStoreStats(const StoreStats& stats, absl::Time now) {
  Families& f = *families_;
  for (Gauge* g : f.enrollment_series) g->Set(0);
  f.enrollment_series.clear();
  for (const StoreStats::EnrollmentCount& e : stats.enrollments) {
    Gauge& g = f.enrollments.Add(
        {{"workflow", e.workflow_id},
         {"workflow_version", absl::StrCat(e.workflow_version)},
         {"stage", e.stage}});
    g.Set(static_cast<double>(e.count));
    f.enrollment_series.push_back(&g);
  }
  f.outbox_pending.Add({}).Set(static_cast<double>(stats.outbox_pending));
  f.outbox_lag.Add({}).Set(stats.oldest_due < now
                               ? absl::ToDoubleSeconds(now - stats.oldest_due)
                               : 0.0);
  if (stats.enrollment_cache.has_value()) {
    const StoreStats::EnrollmentCache& c = *stats.enrollment_cache;
    // Totals since the store opened: one store per process, so they only
    // grow; a smaller one (never expected) moves nothing.
    auto advance = [](Counter& counter, int64_t total, int64_t& seen) {
      if (total > seen) counter.Increment(static_cast<double>(total - seen));
      seen = std::max(seen, total);
    };
    advance(f.cache_reads.Add({{"result", "hit"}}), c.hits, f.cache_hits_seen);
    advance(f.cache_reads.Add({{"result", "miss"}}), c.misses,
            f.cache_misses_seen);
    f.cache_rows.Add({}).Set(static_cast<double>(c.rows));
    f.cache_bytes.Add({}).Set(static_cast<double>(c.bytes));
  }
  f.store_stats_age.Add({}).Set(absl::ToDoubleSeconds(now - absl::UnixEpoch()));
}

void Metrics::SetReadiness(
    bool store_up, bool ready,
    const std::vector<std::pair<std::string, bool>>& plugins) {
  Families& f = *families_;
  f.store_up.Add({}).Set(store_up ? 1 : 0);
  f.ready.Add({}).Set(ready ? 1 : 0);
  for (const auto& [name, up] : plugins) {
    f.plugin_up.Add({{"plugin", name}}).Set(up ? 1 : 0);
  }
}

namespace metrics {

namespace {
Metrics::Families* Active() { return active.load(std::memory_order_acquire); }
}  // namespace

void ObserveCommitGroup(absl::string_view backend, size_t requests,
                        size_t failed, size_t audit_records,
                        size_t audit_failed, absl::Duration elapsed) {
  Metrics::Families* f = Active();
  if (f == nullptr) return;
  std::string b(backend);
  if (requests > failed) {
    f->store_commits.Add({{"backend", b}, {"result", "ok"}})
        .Increment(static_cast<double>(requests - failed));
  }
  if (failed > 0) {
    f->store_commits.Add({{"backend", b}, {"result", "error"}})
        .Increment(static_cast<double>(failed));
  }
  f->HistogramFor(f->store_batch, {{"backend", b}}, BatchBuckets())
      .Observe(static_cast<double>(requests));
  f->HistogramFor(f->store_seconds, {{"backend", b}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(elapsed));
  if (audit_records > audit_failed) {
    f->audit_appends.Add({}).Increment(
        static_cast<double>(audit_records - audit_failed));
  }
  if (audit_failed > 0) {
    f->audit_failures.Add({}).Increment(static_cast<double>(audit_failed));
  }
}

void ObservePluginCall(absl::string_view plugin, absl::string_view method,
                       const absl::Status& status, absl::Duration elapsed) {
  Metrics::Families* f = Active();
  if (f == nullptr) return;
  std::string p(plugin), m(method);
  f->plugin_calls
      .Add({{"plugin", p},
            {"method", m},
            {"code", absl::StatusCodeToString(status.code())}})
      .Increment();
  f->HistogramFor(f->plugin_seconds, {{"plugin", p}, {"method", m}},
                  LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(elapsed));
}

void ObservePluginRestart(absl::string_view plugin) {
  Metrics::Families* f = Active();
  if (f == nullptr) return;
  f->plugin_restarts.Add({{"plugin", std::string(plugin)}}).Increment();
}

void ObserveReminderClaims(size_t claimed) {
  Metrics::Families* f = Active();
  if (f == nullptr) return;
  f->reminder_claims.Add({}).Increment(static_cast<double>(claimed));
}

void ObserveReminderDelivery(absl::string_view channel,
                             absl::string_view outcome) {
  Metrics::Families* f = Active();
  if (f == nullptr) return;
  f->reminder_deliveries
      .Add({{"channel", std::string(channel)},
            {"outcome", std::string(outcome)}})
      .Increment();
}

void ObserveCall(absl::string_view method, absl::string_view code,
                 absl::Duration elapsed) {
  Metrics::Families* f = Active();
  if (f == nullptr) return;
  std::string m(method);
  f->grpc_handled.Add({{"method", m}, {"code", std::string(code)}}).Increment();
  f->HistogramFor(f->grpc_seconds, {{"method", m}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(elapsed));
}

bool Enabled() { return Active() != nullptr; }

}  // namespace metrics
}  // namespace ipsrt
