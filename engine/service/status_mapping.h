// The one mapping from absl::Status to grpc::Status, used at the edge.
#ifndef IPSRT_SERVICE_STATUS_MAPPING_H_
#define IPSRT_SERVICE_STATUS_MAPPING_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace ipsrt {

// The longest status message sent to a client. The message travels in the
// grpc-message trailer (percent-encoded, up to 3 bytes per byte), and a
// trailer over the client's metadata limit (8 KiB by default) breaks the
// whole connection (GOAWAY), not just the call.
inline constexpr size_t kMaxStatusMessageBytes = 1536;

// `message` cut to kMaxStatusMessageBytes at a UTF-8 boundary, saying so.
std::string BoundedStatusMessage(absl::string_view message);

// ToGrpcStatus keeps the canonical code (the two enumerations agree value
// for value) and the message, bounded as above. An OK status maps to
// grpc::Status::OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// FromGrpcStatus is the inverse, for clients of our own services.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_STATUS_MAPPING_H_
