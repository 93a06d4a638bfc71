// Command-line parsing for the ipsrt client, one subcommand at a time.
//
// Flags are defined with ABSL_FLAG (so their help text and defaults live in
// one place), but argv is parsed here rather than by absl::ParseCommandLine,
// because each subcommand accepts only its own flags and every usage error
// must exit with status 2 (absl::ParseCommandLine exits with 1).
//
// Accepted forms: --name=value, --name value (not for booleans), --name and
// --noname for booleans, a single leading dash instead of two, dashes for
// underscores in names (--output-dir), a flag's one-letter alias (-o), and
// "--" to end the flags. --help, -h and -help ask for the subcommand's usage.
//
// Example:
//   const Subcommand get = {.name = "get", ...};
//   absl::StatusOr<ParsedArgs> args = ParseArguments(get, rest);
//   if (!args.ok()) { print args.status().message(); return kExitUsage; }
//   if (args->help) { std::cout << SubcommandUsage(get); return kExitOk; }
#ifndef IPSRT_CLI_ARGUMENTS_H_
#define IPSRT_CLI_ARGUMENTS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace ipsrt::cli {

// Exit statuses of ipsrt.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Subcommand::max_positional for commands that take any number of
// positional arguments (e.g. "validate FILE...").
inline constexpr int kAnyNumberOfArguments = 1 << 20;

// FlagSpec names one ABSL_FLAG that a subcommand accepts.
struct FlagSpec {
  // The flag's name as defined with ABSL_FLAG (without dashes).
  std::string name;
  // Placeholder shown in usage, e.g. "REF" in "--patient=REF"; empty for
  // booleans.
  std::string value_name;
  // The flag must appear on the command line (an explicitly empty value
  // counts, so that the server can report it).
  bool required = false;
  // The flag may appear more than once; every value is kept in
  // ParsedArgs::repeated, in order.
  bool repeatable = false;
  // One-letter alias accepted as -x, e.g. "o" for --output.
  std::string short_name;
};

// Subcommand describes one verb's command line.
struct Subcommand {
  std::string name;
  // One line after "ipsrt", e.g. "get NAME_OR_ID [flags]".
  std::string synopsis;
  // What the command does; may span lines.
  std::string description;
  // The command's own flags.
  std::vector<FlagSpec> flags;
  // Flags every command accepts (--server, ...), listed apart in usage.
  std::vector<FlagSpec> global_flags;
  // Number of positional arguments accepted.
  int min_positional = 0;
  int max_positional = 0;
};

struct ParsedArgs {
  // --help (or -h) was given; nothing else was checked.
  bool help = false;
  std::vector<std::string> positional;
  // Values of repeatable flags, by flag name.
  std::map<std::string, std::vector<std::string>> repeated;
  // Index in the input span of the first argument not consumed; only less
  // than the span's size when `stop_at_positional` was set.
  size_t next = 0;
};

// ParseArguments sets the absl flags listed in `command.flags` and
// `command.global_flags` from `args`
// (which excludes the program and subcommand names) and returns the rest.
// When `stop_at_positional` is true, parsing stops at the first positional
// argument, which is left unconsumed (for global flags before a
// subcommand). INVALID_ARGUMENT, with a message fit for the user, for an
// unknown flag, a flag the command does not accept, a bad value, a missing
// required flag or a wrong number of positional arguments.
absl::StatusOr<ParsedArgs> ParseArguments(const Subcommand& command,
                                          absl::Span<char* const> args,
                                          bool stop_at_positional = false);

// FlagsUsage lists `flags` with each one's help text (wrapped to fit 80
// columns) and default value, as registered with ABSL_FLAG.
std::string FlagsUsage(const std::vector<FlagSpec>& flags);

// SubcommandUsage is the full help of one subcommand: synopsis,
// description and the flags it accepts.
std::string SubcommandUsage(const Subcommand& command);

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_ARGUMENTS_H_
