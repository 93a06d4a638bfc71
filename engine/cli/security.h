// The ipsrt client's security commands: `audit list`, `audit verify`
// (over gRPC, or offline against a SQLite file with --db) and
// `token hash` (the SHA-256 form of an API token for the config).
#ifndef IPSRT_CLI_SECURITY_H_
#define IPSRT_CLI_SECURITY_H_

#include <vector>

#include "cli/commands.h"

namespace ipsrt::cli {

std::vector<Command> SecurityCommands();

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_SECURITY_H_
