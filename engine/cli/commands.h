// The ipsrt client's subcommands: each one's command line and the function
// that runs it against ipsrtd.
//
// Output contract: results go to stdout (one JSON document with --json,
// protobuf JSON with the proto field names); errors go to stderr as
// "error: <CODE_NAME>: <message>". Run functions return an exit status:
// kExitOk, kExitFailure, or kExitUsage for a flag value only they can judge
// (e.g. a --label without "="); other usage errors are caught before.
#ifndef IPSRT_CLI_COMMANDS_H_
#define IPSRT_CLI_COMMANDS_H_

#include <vector>

#include "absl/status/status.h"
#include "cli/arguments.h"

namespace ipsrt::cli {

struct Command {
  Subcommand spec;
  // Runs the command with its flags already set; never throws.
  int (*run)(const ParsedArgs& args);
};

// Commands lists every subcommand, in the order help shows them.
const std::vector<Command>& Commands();

// GlobalFlags are accepted before the subcommand and by every subcommand.
const std::vector<FlagSpec>& GlobalFlags();

// CheckGlobalFlags validates the global flags' values after parsing
// (e.g. a positive --timeout); INVALID_ARGUMENT describes a usage error.
absl::Status CheckGlobalFlags();

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_COMMANDS_H_
