// The engine's time texts are the plugin SDK's (ipsrt/plugin/time.h):
// FromProtoTime, Rfc3339Utc and LocalTimeText, one definition for both.
#ifndef IPSRT_COMMON_PROTO_TIME_H_
#define IPSRT_COMMON_PROTO_TIME_H_

#include "ipsrt/plugin/time.h"

#endif  // IPSRT_COMMON_PROTO_TIME_H_
