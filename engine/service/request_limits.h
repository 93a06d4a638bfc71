// Bounds on every public request (docs/limits.md is the user-facing table).
//
// Every string, bytes and repeated (or map) field of an ipsrt.v1 request
// has a maximum. CheckRequestLimits walks a request with reflection and
// refuses the first field over its maximum before any other work (before
// authentication, so that no oversized value reaches a log, the audit trail
// or an error message).
#ifndef IPSRT_SERVICE_REQUEST_LIMITS_H_
#define IPSRT_SERVICE_REQUEST_LIMITS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace ipsrt {

// Defaults for fields the override table does not name.
inline constexpr size_t kMaxStringBytes = 1024;
inline constexpr size_t kMaxRepeated = 1000;

// The maximum byte size of string/bytes field `field` (its elements, when
// repeated) and the maximum element count of repeated field `field`.
size_t MaxBytes(const google::protobuf::FieldDescriptor& field);
size_t MaxElements(const google::protobuf::FieldDescriptor& field);

// INVALID_ARGUMENT naming the field path (e.g. "days[3].activities") and
// the limit, never the value; OK when everything is within bounds.
absl::Status CheckRequestLimits(const google::protobuf::Message& request);

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_REQUEST_LIMITS_H_
