#include "cli/arguments.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "ipsrt/status_macros.h"

namespace ipsrt::cli {
namespace {

const FlagSpec* FindSpec(const Subcommand& command, absl::string_view name) {
  for (const std::vector<FlagSpec>* list :
       {&command.flags, &command.global_flags}) {
    for (const FlagSpec& spec : *list) {
      if (spec.name == name ||
          (!spec.short_name.empty() && spec.short_name == name)) {
        return &spec;
      }
    }
  }
  return nullptr;
}

absl::Status UsageError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// Wrap breaks `text` into lines of at most `width` characters (longer
// words stay whole), each starting with `indent`.
std::string Wrap(absl::string_view text, absl::string_view indent,
                 size_t width) {
  std::string out;
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() &&
        indent.size() + line.size() + 1 + word.size() > width) {
      absl::StrAppend(&out, indent, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(&out, indent, line, "\n");
  return out;
}

std::string CommandLabel(const Subcommand& command) {
  return command.name.empty() ? "ipsrt" : absl::StrCat("ipsrt ", command.name);
}

// FlagWord is a flag argument taken apart: "--output-dir=x" and
// "-output_dir=x" both give name "output_dir" and value "x".
struct FlagWord {
  std::string name;
  absl::string_view value;
  bool has_value = false;
};

FlagWord SplitFlagWord(absl::string_view arg) {
  absl::string_view body = arg;
  if (!absl::ConsumePrefix(&body, "--")) absl::ConsumePrefix(&body, "-");
  FlagWord word;
  word.name = std::string(body);
  if (size_t eq = body.find('='); eq != absl::string_view::npos) {
    word.name = std::string(body.substr(0, eq));
    word.value = body.substr(eq + 1);
    word.has_value = true;
  }
  // --output-dir is --output_dir.
  std::replace(word.name.begin(), word.name.end(), '-', '_');
  return word;
}

// FlagUse is the flag an argument sets: its spec, its name and whether it
// is a boolean's --no form.
struct FlagUse {
  const FlagSpec* spec = nullptr;
  std::string name;
  bool negated = false;
};

// ResolveFlag finds the flag `name` of `command` (or of every command),
// where --noname clears a boolean flag. INVALID_ARGUMENT for a flag the
// command does not take.
absl::StatusOr<FlagUse> ResolveFlag(const Subcommand& command,
                                    absl::string_view name, bool has_value) {
  FlagUse use;
  use.spec = FindSpec(command, name);
  use.name = use.spec != nullptr ? use.spec->name : std::string(name);
  if (use.spec == nullptr && absl::StartsWith(name, "no") && !has_value) {
    // --noname clears a boolean flag.
    const FlagSpec* positive = FindSpec(command, name.substr(2));
    absl::CommandLineFlag* flag =
        positive == nullptr ? nullptr
                            : absl::FindCommandLineFlag(name.substr(2));
    if (flag != nullptr && flag->IsOfType<bool>()) {
      use.spec = positive;
      use.name = std::string(name.substr(2));
      use.negated = true;
    }
  }
  if (use.spec == nullptr) {
    if (absl::FindCommandLineFlag(name) != nullptr) {
      return UsageError(absl::StrCat("flag --", name, " is not accepted by '",
                                     CommandLabel(command), "'"));
    }
    return UsageError(absl::StrCat("unknown flag --", name));
  }
  return use;
}

// CheckCounts refuses a command line without a required flag or with too
// few or too many positional arguments.
absl::Status CheckCounts(const Subcommand& command, const ParsedArgs& parsed,
                         const std::set<std::string>& seen) {
  for (const FlagSpec& spec : command.flags) {
    if (spec.required && !seen.contains(spec.name)) {
      return UsageError(absl::StrCat("missing required flag --", spec.name,
                                     " for '", CommandLabel(command), "'"));
    }
  }
  const int count = static_cast<int>(parsed.positional.size());
  if (count < command.min_positional || count > command.max_positional) {
    if (command.max_positional == 0) {
      return UsageError(absl::StrCat("unexpected argument \"",
                                     parsed.positional.front(), "\" for '",
                                     CommandLabel(command), "'"));
    }
    return UsageError(
        absl::StrCat("'", CommandLabel(command), "' takes ",
                     command.max_positional == kAnyNumberOfArguments
                         ? absl::StrCat("at least ", command.min_positional)
                     : command.min_positional == command.max_positional
                         ? absl::StrCat(command.min_positional)
                         : absl::StrCat(command.min_positional, " to ",
                                        command.max_positional),
                     " argument(s), got ", count));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ParsedArgs> ParseArguments(const Subcommand& command,
                                          absl::Span<char* const> args,
                                          bool stop_at_positional) {
  ParsedArgs parsed;
  std::set<std::string> seen;
  bool flags_ended = false;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      if (stop_at_positional) break;
      parsed.positional.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    const FlagWord word = SplitFlagWord(arg);
    absl::string_view name = word.name;
    if (name == "help" || name == "h") {
      parsed.help = true;
      return parsed;
    }

    IPSRT_ASSIGN_OR_RETURN(const FlagUse use,
                           ResolveFlag(command, name, word.has_value));
    const FlagSpec* spec = use.spec;
    const std::string& flag_name = use.name;
    const bool negated = use.negated;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(flag_name);
    if (flag == nullptr) {
      // A FlagSpec without its ABSL_FLAG is a bug in this program.
      return absl::InternalError(
          absl::StrCat("flag --", flag_name, " is listed but not defined"));
    }
    std::string text;
    if (negated) {
      text = "false";
    } else if (word.has_value) {
      text = std::string(word.value);
    } else if (flag->IsOfType<bool>()) {
      text = "true";
    } else if (i + 1 < args.size()) {
      text = args[++i];
    } else {
      return UsageError(absl::StrCat("flag --", flag_name, " needs a value"));
    }
    std::string error;
    if (!flag->ParseFrom(text, &error)) {
      return UsageError(absl::StrCat("invalid value \"", text, "\" for --",
                                     flag_name, ": ", error));
    }
    seen.insert(flag_name);
    if (spec->repeatable) parsed.repeated[flag_name].push_back(text);
  }
  parsed.next = i;

  IPSRT_RETURN_IF_ERROR(CheckCounts(command, parsed, seen));
  return parsed;
}

std::string FlagsUsage(const std::vector<FlagSpec>& flags) {
  std::string out;
  for (const FlagSpec& spec : flags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(spec.name);
    absl::StrAppend(&out, "  --", spec.name);
    if (!spec.value_name.empty()) absl::StrAppend(&out, "=", spec.value_name);
    if (!spec.short_name.empty()) {
      absl::StrAppend(&out, ", -", spec.short_name);
      if (!spec.value_name.empty()) absl::StrAppend(&out, " ", spec.value_name);
    }
    if (spec.required) absl::StrAppend(&out, "  (required)");
    if (spec.repeatable) absl::StrAppend(&out, "  (repeatable)");
    absl::StrAppend(&out, "\n");
    if (flag == nullptr) continue;
    std::string default_value = flag->DefaultValue();
    if (flag->IsOfType<std::string>()) {
      default_value = absl::StrCat("\"", default_value, "\"");
    }
    absl::StrAppend(&out, Wrap(flag->Help(), "      ", 80));
    if (!spec.required && !spec.repeatable) {
      absl::StrAppend(&out, "      default: ", default_value, "\n");
    }
  }
  return out;
}

std::string SubcommandUsage(const Subcommand& command) {
  std::string out = absl::StrCat("Usage: ipsrt ", command.synopsis, "\n\n",
                                 command.description, "\n");
  if (!command.flags.empty()) {
    absl::StrAppend(&out, "\nFlags:\n", FlagsUsage(command.flags));
  }
  if (!command.global_flags.empty()) {
    absl::StrAppend(&out, "\nGlobal flags:\n",
                    FlagsUsage(command.global_flags));
  }
  return out;
}

}  // namespace ipsrt::cli
