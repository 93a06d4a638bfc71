// StoreService: the database's own health over gRPC (admins;
// docs/durability.md).
#ifndef IPSRT_SERVICE_STORE_SERVICE_H_
#define IPSRT_SERVICE_STORE_SERVICE_H_

#include <memory>

#include "grpcpp/grpcpp.h"
#include "ipsrt/v1/store.pb.h"
#include "service/guard.h"
#include "service/server.h"
#include "store/store_check.h"

namespace ipsrt {

std::unique_ptr<grpc::Service> MakeStoreService(const ServerDeps& deps,
                                                Guard& guard);

// FillCheckResponse copies a check's report into the API's response
// (write_state is left to the caller).
void FillCheckResponse(const StoreCheckReport& report,
                       v1::CheckStoreResponse* response);

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_STORE_SERVICE_H_
