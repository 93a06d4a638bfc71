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

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/arguments.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"

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

// Shared by the command files: a channel to --server (TLS per the --tls_*
// flags), a call context with the --timeout deadline and the bearer token
// (--token, --token_file or $IPSRT_TOKEN), the error report of a failed call
// (returns kExitFailure), and one JSON document on stdout.
std::shared_ptr<grpc::Channel> NewChannel();
std::unique_ptr<grpc::ClientContext> NewContext();
int ReportRpcError(const grpc::Status& status);
int PrintJson(const google::protobuf::Message& message);

// ToJson formats a message as protobuf JSON with the proto field names.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);
// UsageError reports a flag value only the command can judge (exit 2).
int UsageError(absl::string_view command, absl::string_view message);
// RequestIdForCall is --request_id, or a new id (printed on stderr).
std::string RequestIdForCall();
// TenantParent is "tenants/<--tenant>".
std::string TenantParent();
// EnrollmentNameArg reads a full enrollment name, or a bare id in --tenant.
std::string EnrollmentNameArg(const std::string& arg);
std::string EnrollmentNameArg(const ParsedArgs& args);

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_COMMANDS_H_
