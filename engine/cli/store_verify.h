// ipsrt store verify: the integrity check of a whole store (core/integrity.h)
// offline on a SQLite file or a PostgreSQL database, or over gRPC.
#ifndef IPSRT_CLI_STORE_VERIFY_H_
#define IPSRT_CLI_STORE_VERIFY_H_

#include <vector>

#include "cli/arguments.h"

namespace ipsrt::cli {

// RunStoreVerify runs `ipsrt store verify`; exit status 1 when a chain is
// broken or an anchored head is gone.
int RunStoreVerify(const ParsedArgs& args);

// The flags `store verify` adds to `store`.
std::vector<FlagSpec> StoreVerifyFlags();

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_STORE_VERIFY_H_
