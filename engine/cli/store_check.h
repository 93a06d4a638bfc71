// `ipsrt store init` and `ipsrt store check`: initialise a SQLite store on
// purpose, and examine one offline (docs/durability.md).
//
//   ipsrt store init --config=/etc/ipsrtd/ipsrtd.yaml
//   ipsrt store check --db=/var/lib/ipsrtd/ipsrt.db
#ifndef IPSRT_CLI_STORE_CHECK_H_
#define IPSRT_CLI_STORE_CHECK_H_

#include "cli/arguments.h"

namespace ipsrt::cli {

// The `store init` and `store check` subcommands (dispatched by `store`).
// `store check` runs CheckSqliteFile (store/store_check.h) offline with
// --db or --config, and asks --server's StoreService.CheckStore otherwise.
int RunStoreInit(const ParsedArgs& args);
int RunStoreCheck(const ParsedArgs& args);

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_STORE_CHECK_H_
