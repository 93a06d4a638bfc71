// ipsrt: command-line client of ipsrtd.
//
//   ipsrt [global flags] COMMAND [flags] [args]
//
// Exit status: 0 success, 1 failure (a server error, the server not
// serving, or findings of the offline tools), 2 usage error. See cli/commands.h
// for the output contract.
#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "cli/arguments.h"
#include "cli/commands.h"

namespace ipsrt::cli {
namespace {

const Subcommand& TopLevel() {
  static const auto* const kTop = new Subcommand{.name = "",
                                                 .synopsis = "",
                                                 .description = "",
                                                 .flags = {},
                                                 .global_flags = GlobalFlags()};
  return *kTop;
}

// Summary is the first paragraph of a command's description on one line,
// cut at a word and marked "..." when longer than `room` characters.
std::string Summary(absl::string_view description, int room) {
  absl::string_view paragraph = description.substr(0, description.find("\n\n"));
  std::string line = absl::StrJoin(
      absl::StrSplit(paragraph, absl::ByAnyChar(" \n"), absl::SkipEmpty()),
      " ");
  if (static_cast<int>(line.size()) <= room) return line;
  size_t cut = line.rfind(' ', std::max(room - 3, 1));
  return absl::StrCat(line.substr(0, cut == std::string::npos ? room - 3 : cut),
                      "...");
}

std::string TopUsage() {
  std::string out =
      "ipsrt: command-line client of ipsrtd, the IPSRT workflow engine.\n\n"
      "Usage: ipsrt [global flags] COMMAND [flags]\n\nCommands:\n";
  // The names' column is as wide as the longest name and two spaces.
  int width = 4;  // "help"
  for (const Command& command : Commands()) {
    width = std::max(width, static_cast<int>(command.spec.name.size()));
  }
  width += 2;
  for (const Command& command : Commands()) {
    absl::StrAppend(&out, "  ",
                    absl::StrFormat("%-*s", width, command.spec.name),
                    Summary(command.spec.description, 78 - 2 - width), "\n");
  }
  absl::StrAppend(&out, "  ", absl::StrFormat("%-*s", width, "help"),
                  "Show this help; 'ipsrt help COMMAND' shows one "
                  "command's flags.\n\nGlobal flags (also accepted after "
                  "COMMAND):\n",
                  FlagsUsage(GlobalFlags()),
                  "\nExit status: 0 success, 1 failure (server error, not "
                  "serving, or findings\nof validate and simulate), 2 usage "
                  "error.\n");
  return out;
}

const Command* FindCommand(const std::string& name) {
  for (const Command& command : Commands()) {
    if (command.spec.name == name) return &command;
  }
  return nullptr;
}

int UnknownCommand(const std::string& name) {
  std::fprintf(stderr,
               "ipsrt: unknown command \"%s\"\nRun 'ipsrt --help' for the "
               "list of commands.\n",
               name.c_str());
  return kExitUsage;
}

// ArgumentError reports a parse failure: a usage error (exit 2), or an
// internal one (exit 1) when the program's own flag table is wrong.
int ArgumentError(const std::string& label, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", label.c_str(),
               std::string(status.message()).c_str(), label.c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? kExitUsage
                                                             : kExitFailure;
}

int Help(absl::Span<char* const> args) {
  if (args.empty()) {
    std::fputs(TopUsage().c_str(), stdout);
    return kExitOk;
  }
  if (args.size() > 1) {
    std::fprintf(stderr, "ipsrt help: takes at most one COMMAND\n");
    return kExitUsage;
  }
  const Command* command = FindCommand(args[0]);
  if (command == nullptr) return UnknownCommand(args[0]);
  std::fputs(SubcommandUsage(command->spec).c_str(), stdout);
  return kExitOk;
}

int Main(absl::Span<char* const> args) {
  absl::StatusOr<ParsedArgs> globals =
      ParseArguments(TopLevel(), args, /*stop_at_positional=*/true);
  if (!globals.ok()) return ArgumentError("ipsrt", globals.status());
  if (globals->help) {
    std::fputs(TopUsage().c_str(), stdout);
    return kExitOk;
  }
  if (globals->next >= args.size()) {
    std::fprintf(stderr, "ipsrt: missing COMMAND\n\n%s", TopUsage().c_str());
    return kExitUsage;
  }
  const std::string name = args[globals->next];
  absl::Span<char* const> rest = args.subspan(globals->next + 1);
  if (name == "help") return Help(rest);
  const Command* command = FindCommand(name);
  if (command == nullptr) return UnknownCommand(name);

  const std::string label = absl::StrCat("ipsrt ", name);
  absl::StatusOr<ParsedArgs> parsed = ParseArguments(command->spec, rest);
  if (!parsed.ok()) return ArgumentError(label, parsed.status());
  if (parsed->help) {
    std::fputs(SubcommandUsage(command->spec).c_str(), stdout);
    return kExitOk;
  }
  if (absl::Status status = CheckGlobalFlags(); !status.ok()) {
    return ArgumentError(label, status);
  }
  return command->run(*parsed);
}

}  // namespace
}  // namespace ipsrt::cli

int main(int argc, char** argv) {
  return ipsrt::cli::Main(absl::MakeConstSpan(argv + 1, argc - 1));
}
