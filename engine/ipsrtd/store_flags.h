// ipsrtd's command-line overrides of the store section (docs/durability.md).
#ifndef IPSRT_IPSRTD_STORE_FLAGS_H_
#define IPSRT_IPSRTD_STORE_FLAGS_H_

#include "ipsrt/config.h"

namespace ipsrt {

// ApplyStoreFlags copies --adopt_store into `config` (it is never read
// from the file: accepting another or an older database is a decision for
// one start, not a setting).
void ApplyStoreFlags(Config& config);

}  // namespace ipsrt

#endif  // IPSRT_IPSRTD_STORE_FLAGS_H_
