// AuditService: listing and verifying the audit trail over gRPC (admins).
#ifndef IPSRT_SERVICE_AUDIT_SERVICE_H_
#define IPSRT_SERVICE_AUDIT_SERVICE_H_

#include <memory>

#include "grpcpp/grpcpp.h"
#include "service/guard.h"
#include "service/server.h"

namespace ipsrt {

std::unique_ptr<grpc::Service> MakeAuditService(const ServerDeps& deps,
                                                Guard& guard);

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_AUDIT_SERVICE_H_
