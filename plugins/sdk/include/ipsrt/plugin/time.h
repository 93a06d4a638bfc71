// Time in the texts the engine and its plugins write: protobuf Timestamps
// to absl::Time, RFC 3339 UTC instants, and the one local-time text of a
// due time ("2026-03-07T20:00 (-05:00)"). Header only.
#ifndef IPSRT_PLUGIN_TIME_H_
#define IPSRT_PLUGIN_TIME_H_

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

// LocalTimeText renders `t` as the wall clock of `zone` with its UTC
// offset, to the minute: "2026-03-07T20:00 (-05:00)". The local due time of
// reminders and plans, everywhere it is written.
inline std::string LocalTimeText(absl::Time t, absl::TimeZone zone) {
  return absl::FormatTime("%Y-%m-%dT%H:%M (%Ez)", t, zone);
}

}  // namespace ipsrt

#endif  // IPSRT_PLUGIN_TIME_H_
