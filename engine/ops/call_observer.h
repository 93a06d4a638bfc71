// CallObserver: a gRPC server interceptor that sees every call end (the
// ipsrt.v1 services, streams, health and reflection alike) and records its
// method, status code and latency into the metrics (ops/metrics_hooks.h)
// and, when switched on, one access-log line (common/log.h LogAccess).
//
// The method label is the gRPC path of a method this binary knows; any
// other path counts as "unknown", so a client cannot grow the label set.
// The guard (service/guard.h) annotates admitted calls with their tenant,
// actor role and request id (AnnotateCall); nothing else from a request
// reaches the log.
//
// Example:
//   builder.experimental().SetInterceptorCreators(
//       MakeCallObservers({.metrics = true, .access_log = true}));
#ifndef IPSRT_OPS_CALL_OBSERVER_H_
#define IPSRT_OPS_CALL_OBSERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "grpcpp/support/server_interceptor.h"

namespace ipsrt {

struct CallObserverOptions {
  bool metrics = false;
  bool access_log = false;
};

// MakeCallObservers returns the interceptor factories for `options`
// (empty when both are off, so an unobserved server pays nothing).
std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MakeCallObservers(const CallObserverOptions& options);

// AnnotateCall attaches the admitted call's tenant, actor role and request
// id to the access-log line of the call on `ctx`. Cheap and a no-op while
// no access log is on. Thread-safe.
void AnnotateCall(const void* ctx, absl::string_view tenant,
                  absl::string_view actor_role, absl::string_view request_id);

}  // namespace ipsrt

#endif  // IPSRT_OPS_CALL_OBSERVER_H_
