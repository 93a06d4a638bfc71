// Metrics hooks: the calls the engine's components make at the places a
// metric moves (a store commit, a plugin call, a reminder delivery).
//
// Each hook costs one relaxed atomic load and returns at once while no
// Metrics registry is installed (metrics.listen unset, unit tests), so
// components call them unconditionally and never include prometheus-cpp.
// Every argument that becomes a label must come from a bounded set: a
// backend kind, a plugin name from the config, a method name, a status
// code. Never an id, a patient reference or free text.
//
// Example:
//   metrics::ObservePluginCall(name, "ScoreResponse", status, elapsed);
#ifndef IPSRT_OPS_METRICS_HOOKS_H_
#define IPSRT_OPS_METRICS_HOOKS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ipsrt::metrics {

// ObserveCommitGroup records one store transaction that carried `requests`
// write batches (`failed` of them failed) with `audit_records` audit
// records, committed or rolled back in `elapsed`.
void ObserveCommitGroup(absl::string_view backend, size_t requests,
                        size_t failed, size_t audit_records,
                        size_t audit_failed, absl::Duration elapsed);

// ObservePluginCall records one call into a plugin.
void ObservePluginCall(absl::string_view plugin, absl::string_view method,
                       const absl::Status& status, absl::Duration elapsed);

// ObservePluginRestart records that an out-of-process plugin's process was
// started again after it died or was killed.
void ObservePluginRestart(absl::string_view plugin);

// ObserveReminderClaims records one dispatcher round's claimed items.
void ObserveReminderClaims(size_t claimed);

// ObserveReminderDelivery records one delivery attempt's outcome:
// "sent", "retry", "failed" or "cancelled".
void ObserveReminderDelivery(absl::string_view channel,
                             absl::string_view outcome);

// ObserveCall records one finished gRPC call (ops/call_observer.h).
void ObserveCall(absl::string_view method, absl::string_view code,
                 absl::Duration elapsed);

// Enabled tells whether a Metrics registry is installed.
bool Enabled();

}  // namespace ipsrt::metrics

#endif  // IPSRT_OPS_METRICS_HOOKS_H_
