// The one mapping from absl::Status to grpc::Status, used at the edge.
#ifndef IPSRT_SERVICE_STATUS_MAPPING_H_
#define IPSRT_SERVICE_STATUS_MAPPING_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace ipsrt {

// ToGrpcStatus keeps the canonical code (the two enumerations agree value
// for value) and the message. An OK status maps to grpc::Status::OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// FromGrpcStatus is the inverse, for clients of our own services.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_STATUS_MAPPING_H_
