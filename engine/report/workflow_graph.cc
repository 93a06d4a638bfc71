#include "report/workflow_graph.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "expr/ast.h"
#include "report/course_report.h"

namespace ipsrt::report {
namespace {

constexpr size_t kTasksShown = 5;
constexpr size_t kWrap = 38;

std::string Shorten(absl::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  return absl::StrCat(text.substr(0, max - 3), "...");
}

bool RaisesUrgentAlert(const RuleTemplate& rule) {
  for (const std::vector<Action>* actions : {&rule.then, &rule.otherwise}) {
    for (const Action& a : *actions) {
      if (a.kind == Action::Kind::kRaiseAlert && a.alert.urgent) return true;
    }
  }
  return false;
}

// RuleLines describes a rule: its trigger and condition (wrapped), then
// its actions and its `otherwise` actions.
std::vector<std::string> RuleLines(const RuleTemplate& rule) {
  std::vector<std::string> lines = {absl::StrCat(
      "Rule ", rule.id,
      rule.on.empty() ? "" : absl::StrCat(" (on ", rule.on, ")"), ": when")};
  for (std::string& l : WrapText(rule.when.text, kWrap)) {
    lines.push_back(absl::StrCat("  ", l));
  }
  for (const Action& a : rule.then) {
    for (std::string& l :
         WrapText(absl::StrCat("-> ", DescribeAction(a, /*detailed=*/false)),
                  kWrap)) {
      lines.push_back(std::move(l));
    }
  }
  for (const Action& a : rule.otherwise) {
    for (std::string& l :
         WrapText(absl::StrCat("otherwise -> ",
                               DescribeAction(a, /*detailed=*/false)),
                  kWrap)) {
      lines.push_back(std::move(l));
    }
  }
  return lines;
}

std::string HtmlLines(const std::vector<std::string>& lines) {
  std::vector<std::string> escaped;
  for (const std::string& l : lines) escaped.push_back(HtmlEscape(l));
  return absl::StrJoin(escaped, "<BR ALIGN=\"LEFT\"/>");
}

// EveryStageLines describes what applies in every stage besides the
// template-wide rules: the named conditions rules read by name (with the
// condition as written) and the engine's safety floors, which no template
// can remove.
std::vector<std::vector<std::string>> NamedConditionBlocks(
    const WorkflowTemplate& w) {
  std::vector<std::vector<std::string>> blocks;
  for (const NamedCondition& c : w.conditions) {
    blocks.push_back(
        WrapText(absl::StrCat("Condition ", c.name, ": ", c.when.text), kWrap));
  }
  return blocks;
}

std::vector<std::vector<std::string>> SafetyFloorBlocks(
    const WorkflowTemplate& w) {
  std::vector<std::vector<std::string>> blocks;
  for (const AppliedSafetyFloor& f : w.safety_floors) {
    blocks.push_back(WrapText(
        absl::StrCat("Engine safety floor: ", f.floor.flag, " (",
                     f.floor.instrument,
                     ") -> URGENT alert, acknowledge within ",
                     f.acknowledge_within.ToString(),
                     f.refined_by.empty()
                         ? ""
                         : absl::StrCat("; refined by rule ",
                                        absl::StrJoin(f.refined_by, ", "))),
        kWrap));
  }
  return blocks;
}

std::string DotRuleRow(const RuleTemplate& rule) {
  const bool urgent = RaisesUrgentAlert(rule);
  return absl::StrCat(
      "<TR><TD ALIGN=\"LEFT\" BALIGN=\"LEFT\" BGCOLOR=\"",
      urgent ? "#ffcdd2" : "#fff3e0", "\"><FONT POINT-SIZE=\"9\"",
      urgent ? " COLOR=\"#b71c1c\"" : "", ">", HtmlLines(RuleLines(rule)),
      "<BR ALIGN=\"LEFT\"/></FONT></TD></TR>");
}

std::vector<std::string> TaskLines(const StageTemplate& stage) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < stage.tasks.size() && i < kTasksShown; ++i) {
    const TaskTemplate& t = stage.tasks[i];
    lines.push_back(absl::StrCat(
        "- ", Shorten(t.title.empty() ? t.id : t.title, kWrap + 4)));
  }
  if (stage.tasks.size() > kTasksShown) {
    lines.push_back(
        absl::StrCat("+ ", stage.tasks.size() - kTasksShown, " more tasks"));
  }
  return lines;
}

std::string CadenceWords(const IsoDuration& d) {
  return absl::StrCat("sessions every ", d.ToString());
}

}  // namespace

std::vector<std::string> WrapText(absl::string_view text, size_t width) {
  std::vector<std::string> lines;
  std::string line;
  for (absl::string_view word :
       absl::StrSplit(text, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty())) {
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      lines.push_back(std::move(line));
      line.clear();
    }
    if (!line.empty()) line += ' ';
    absl::StrAppend(&line, word);
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

std::string DotQuoted(absl::string_view text) {
  // DOT's double-quoted strings escape exactly what the condition language's
  // string literals escape (", \ and newline).
  return expr::internal::QuoteString(text);
}

std::string DescribeAction(const Action& a, bool detailed) {
  switch (a.kind) {
    case Action::Kind::kSetCadence:
      return absl::StrCat("sessions every ", a.cadence.ToString());
    case Action::Kind::kRestoreCadence:
      return "sessions back to the stage's cadence";
    case Action::Kind::kMoveTo:
      return absl::StrCat("move to ", a.stage);
    case Action::Kind::kRaiseAlert:
      if (!detailed) {
        return absl::StrCat(a.alert.urgent ? "URGENT alert: " : "alert: ",
                            a.alert.title);
      }
      return absl::StrCat(
          a.alert.urgent ? "urgent" : "routine", " alert ", a.alert.id, " \"",
          a.alert.title, "\"",
          a.alert.acknowledge_within.has_value()
              ? absl::StrCat(", acknowledge within ",
                             a.alert.acknowledge_within->ToString())
              : "");
    case Action::Kind::kScheduleQuestionnaire:
      return absl::StrCat("ask for ", a.questionnaire, " within ",
                          a.within.ToString());
  }
  return "";
}

std::string MermaidQuoted(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "#quot;";
        break;
      case '<':
        out += "#lt;";
        break;
      case '>':
        out += "#gt;";
        break;
      case '&':
        out += "#amp;";
        break;
      case '#':
        out += "#35;";
        break;
      case '\n':
        out += "<br/>";
        break;
      default:
        out += c;
    }
  }
  out += "\"";
  return out;
}

std::string RenderClinicianDot(const WorkflowTemplate& w) {
  std::string out = absl::StrCat(
      "digraph ", DotQuoted(absl::StrCat(w.id, "@", w.version)),
      " {\n  rankdir=TB;\n  nodesep=0.5;\n  ranksep=0.6;\n"
      "  node [shape=plain, fontname=\"Helvetica\"];\n"
      "  edge [fontname=\"Helvetica\", fontsize=9];\n"
      "  \"__start__\" [shape=circle, width=0.25, label=\"\", style=filled, "
      "fillcolor=black];\n");
  for (const StageTemplate& stage : w.stages) {
    std::string label = absl::StrCat(
        "<<TABLE BORDER=\"1\" CELLBORDER=\"0\" CELLSPACING=\"0\" "
        "CELLPADDING=\"4\" STYLE=\"ROUNDED\" BGCOLOR=\"#f5f9ff\">"
        "<TR><TD ALIGN=\"LEFT\" BGCOLOR=\"#bbdefb\"><B>",
        HtmlEscape(stage.title.empty() ? stage.id : stage.title),
        "</B></TD></TR><TR><TD ALIGN=\"LEFT\"><FONT POINT-SIZE=\"9\">",
        HtmlEscape(absl::StrCat(stage.id, " - ", CadenceWords(stage.cadence))),
        "</FONT></TD></TR>");
    std::vector<std::string> tasks = TaskLines(stage);
    if (!tasks.empty()) {
      absl::StrAppend(&label,
                      "<TR><TD ALIGN=\"LEFT\" BALIGN=\"LEFT\"><FONT "
                      "POINT-SIZE=\"9\">",
                      HtmlLines(tasks),
                      "<BR ALIGN=\"LEFT\"/></FONT></TD></TR>");
    }
    for (const RuleTemplate& rule : stage.rules) {
      absl::StrAppend(&label, DotRuleRow(rule));
    }
    absl::StrAppend(&label, "</TABLE>>");
    absl::StrAppend(&out, "  ", DotQuoted(stage.id), " [label=", label, "];\n");
  }
  if (!w.rules.empty() || !w.conditions.empty() || !w.safety_floors.empty()) {
    std::string label =
        "<<TABLE BORDER=\"1\" CELLBORDER=\"0\" CELLSPACING=\"0\" "
        "CELLPADDING=\"4\" BGCOLOR=\"#fffde7\"><TR><TD ALIGN=\"LEFT\"><B>In "
        "every stage</B></TD></TR>";
    for (const std::vector<std::string>& block : SafetyFloorBlocks(w)) {
      absl::StrAppend(&label,
                      "<TR><TD ALIGN=\"LEFT\" BALIGN=\"LEFT\" "
                      "BGCOLOR=\"#ffcdd2\"><FONT POINT-SIZE=\"9\" "
                      "COLOR=\"#b71c1c\">",
                      HtmlLines(block), "</FONT></TD></TR>");
    }
    for (const std::vector<std::string>& block : NamedConditionBlocks(w)) {
      absl::StrAppend(&label,
                      "<TR><TD ALIGN=\"LEFT\" BALIGN=\"LEFT\"><FONT "
                      "POINT-SIZE=\"9\">",
                      HtmlLines(block), "</FONT></TD></TR>");
    }
    for (const RuleTemplate& rule : w.rules) {
      absl::StrAppend(&label, DotRuleRow(rule));
    }
    absl::StrAppend(&label, "</TABLE>>");
    absl::StrAppend(&out, "  \"__every_stage__\" [label=", label, "];\n");
  }
  if (!w.stages.empty()) {
    absl::StrAppend(&out, "  \"__start__\" -> ", DotQuoted(w.stages.front().id),
                    " [label=\"enrolled\"];\n");
  }
  for (const StageTemplate& stage : w.stages) {
    for (const ExitTemplate& exit : stage.exits) {
      absl::StrAppend(&out, "  ", DotQuoted(stage.id), " -> ",
                      DotQuoted(exit.to), " [label=<",
                      HtmlLines(WrapText(exit.when.text, kWrap)),
                      "<BR ALIGN=\"LEFT\"/>>];\n");
    }
  }
  auto rule_moves = [&](const RuleTemplate& rule,
                        const std::vector<const StageTemplate*>& from) {
    const bool urgent = RaisesUrgentAlert(rule);
    for (const Action& a : rule.then) {
      if (a.kind != Action::Kind::kMoveTo) continue;
      for (const StageTemplate* s : from) {
        if (s->id == a.stage) continue;
        absl::StrAppend(
            &out, "  ", DotQuoted(s->id), " -> ", DotQuoted(a.stage),
            " [style=dashed", urgent ? ", color=\"#b71c1c\", penwidth=2" : "",
            ", label=<",
            HtmlLines(WrapText(absl::StrCat(urgent ? "URGENT " : "", "rule ",
                                            rule.id, ": ", rule.when.text),
                               kWrap)),
            "<BR ALIGN=\"LEFT\"/>>];\n");
      }
    }
  };
  std::vector<const StageTemplate*> all;
  for (const StageTemplate& stage : w.stages) all.push_back(&stage);
  for (const StageTemplate& stage : w.stages) {
    for (const RuleTemplate& rule : stage.rules) rule_moves(rule, {&stage});
  }
  for (const RuleTemplate& rule : w.rules) rule_moves(rule, all);
  absl::StrAppend(&out, "}\n");
  return out;
}

std::string RenderClinicianMermaid(const WorkflowTemplate& w) {
  std::string out =
      absl::StrCat("flowchart TB\n  %% ", w.id, "@", w.version, "\n");
  auto node_id = [&](absl::string_view stage) {
    return absl::StrCat("s", w.StageIndex(stage));
  };
  std::vector<std::string> urgent_nodes;
  for (const StageTemplate& stage : w.stages) {
    std::vector<std::string> lines = {
        stage.title.empty() ? stage.id : stage.title,
        absl::StrCat(stage.id, " - ", CadenceWords(stage.cadence))};
    for (std::string& l : TaskLines(stage)) lines.push_back(std::move(l));
    for (const RuleTemplate& rule : stage.rules) {
      for (std::string& l : RuleLines(rule)) lines.push_back(std::move(l));
    }
    absl::StrAppend(&out, "  ", node_id(stage.id), "[",
                    MermaidQuoted(absl::StrJoin(lines, "\n")), "]\n");
  }
  if (!w.rules.empty() || !w.conditions.empty() || !w.safety_floors.empty()) {
    std::vector<std::string> lines = {"In every stage"};
    for (const auto& blocks : {SafetyFloorBlocks(w), NamedConditionBlocks(w)}) {
      for (const std::vector<std::string>& block : blocks) {
        lines.insert(lines.end(), block.begin(), block.end());
      }
    }
    if (!w.safety_floors.empty()) urgent_nodes.push_back("every");
    for (const RuleTemplate& rule : w.rules) {
      for (std::string& l : RuleLines(rule)) lines.push_back(std::move(l));
      if (RaisesUrgentAlert(rule)) urgent_nodes.push_back("every");
    }
    absl::StrAppend(&out, "  every[", MermaidQuoted(absl::StrJoin(lines, "\n")),
                    "]\n");
  }
  if (!w.stages.empty()) {
    absl::StrAppend(&out, "  enrolled((enrolled)) --> ",
                    node_id(w.stages.front().id), "\n");
  }
  for (const StageTemplate& stage : w.stages) {
    for (const ExitTemplate& exit : stage.exits) {
      absl::StrAppend(
          &out, "  ", node_id(stage.id), " -->|",
          MermaidQuoted(absl::StrJoin(WrapText(exit.when.text, kWrap), "\n")),
          "| ", node_id(exit.to), "\n");
    }
    for (const RuleTemplate& rule : stage.rules) {
      for (const Action& a : rule.then) {
        if (a.kind != Action::Kind::kMoveTo || a.stage == stage.id) continue;
        absl::StrAppend(
            &out, "  ", node_id(stage.id), " -.->|",
            MermaidQuoted(absl::StrCat(RaisesUrgentAlert(rule) ? "URGENT " : "",
                                       "rule ", rule.id)),
            "| ", node_id(a.stage), "\n");
      }
    }
  }
  if (!urgent_nodes.empty()) {
    absl::StrAppend(&out,
                    "  classDef urgent stroke:#b71c1c,stroke-width:2px\n"
                    "  class every urgent\n");
  }
  return out;
}

absl::StatusOr<std::string> DotToSvg(absl::string_view dot) {
  char in_path[] = "/tmp/ipsrt-graph-XXXXXX";
  const int fd = mkstemp(in_path);
  if (fd < 0) return absl::InternalError(std::strerror(errno));
  close(fd);
  const std::string out_path = absl::StrCat(in_path, ".svg");
  const std::string err_path = absl::StrCat(in_path, ".err");
  absl::Status written = WriteStringToFile(in_path, std::string(dot));
  absl::StatusOr<std::string> result;
  if (!written.ok()) {
    result = absl::InternalError(written.message());
  } else {
    // posix_spawn, not fork: the server calls this from a threaded
    // process.
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, out_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&files, STDERR_FILENO, err_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char dot_name[] = "dot";
    char format[] = "-Tsvg";
    char* argv[] = {dot_name, format, in_path, nullptr};
    pid_t pid = -1;
    const int spawned =
        posix_spawnp(&pid, "dot", &files, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&files);
    int status = 0;
    if (spawned == ENOENT) {
      result = absl::UnavailableError(
          "Graphviz \"dot\" is not installed (Debian: apt-get install "
          "graphviz)");
    } else if (spawned != 0 || waitpid(pid, &status, 0) != pid) {
      result = absl::InternalError("cannot run Graphviz dot");
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      result = absl::UnavailableError(
          "Graphviz \"dot\" is not installed (Debian: apt-get install "
          "graphviz)");
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      absl::StatusOr<std::string> err = ReadFileToString(err_path);
      result = absl::InternalError(absl::StrCat(
          "Graphviz dot failed: ", err.ok() ? *err : "no error output"));
    } else {
      result = ReadFileToString(out_path);
      if (result.ok()) {
        const size_t svg = result->find("<svg");
        if (svg == std::string::npos) {
          result = absl::InternalError("Graphviz dot gave no <svg>");
        } else {
          result->erase(0, svg);
        }
      }
    }
  }
  std::remove(in_path);
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  return result;
}

}  // namespace ipsrt::report
