// The engine's SHA-256 helpers are the plugin SDK's (ipsrt/plugin/hash.h,
// library ipsrt::plugin_support): one implementation for both.
#ifndef IPSRT_COMMON_HASH_H_
#define IPSRT_COMMON_HASH_H_

#include "ipsrt/plugin/hash.h"

#endif  // IPSRT_COMMON_HASH_H_
