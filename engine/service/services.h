// The ipsrt.v1 service implementations: thin handlers that validate through
// the engine's operations, map the status once, and never throw.
#ifndef IPSRT_SERVICE_SERVICES_H_
#define IPSRT_SERVICE_SERVICES_H_

#include <memory>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "service/guard.h"
#include "service/server.h"

namespace ipsrt {

// MakeServices returns every ipsrt.v1 service bound to `deps`; the caller
// keeps them alive while the server runs.
// Every call passes through `guard` (authentication, the policy table,
// audit); it must outlive the services.
std::vector<std::unique_ptr<grpc::Service>> MakeServices(const ServerDeps& deps,
                                                         Guard& guard,
                                                         absl::Time start_time);

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_SERVICES_H_
