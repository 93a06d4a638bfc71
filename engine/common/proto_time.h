// Conversions between protobuf Timestamps, absl::Time and the RFC 3339 text
// the engine and the built-in plugins write (reminder JSON lines, FHIR
// instants). Header-only, so plugins that compile in engine/common sources
// need nothing more.
#ifndef IPSRT_COMMON_PROTO_TIME_H_
#define IPSRT_COMMON_PROTO_TIME_H_

#include <string>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace ipsrt {

// FromProtoTime keeps the Timestamp's full nanosecond precision.
inline absl::Time FromProtoTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Rfc3339Utc renders `t` in UTC with a "Z" and fractional seconds only when
// there are any: "2026-03-08T01:00:00Z", "2026-03-08T01:00:00.25Z".
inline std::string Rfc3339Utc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

}  // namespace ipsrt

#endif  // IPSRT_COMMON_PROTO_TIME_H_
