#include "cli/stage_graph.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "report/workflow_graph.h"

namespace ipsrt::cli {
namespace {

std::string NodeLabel(const StageGraph::Node& node) {
  std::string label = node.id;
  if (!node.title.empty()) absl::StrAppend(&label, "\n", node.title);
  absl::StrAppend(&label, "\ncadence ", node.cadence);
  return label;
}

void AddRuleMoves(const WorkflowTemplate& w, const RuleTemplate& rule,
                  const std::vector<const StageTemplate*>& from,
                  StageGraph& graph) {
  auto add = [&](const std::vector<Action>& actions, absl::string_view suffix) {
    for (const Action& a : actions) {
      if (a.kind != Action::Kind::kMoveTo || w.FindStage(a.stage) == nullptr) {
        continue;
      }
      for (const StageTemplate* stage : from) {
        // Step ignores a move to the current stage.
        if (stage->id == a.stage) continue;
        graph.edges.push_back({stage->id, a.stage,
                               absl::StrCat("rule ", rule.id, suffix), false});
      }
    }
  };
  add(rule.then, "");
  add(rule.otherwise, " (otherwise)");
}

}  // namespace

StageGraph BuildStageGraph(const WorkflowTemplate& w) {
  StageGraph graph;
  graph.workflow = absl::StrCat(w.id, "@", w.version);
  std::vector<const StageTemplate*> all;
  for (const StageTemplate& stage : w.stages) {
    graph.nodes.push_back({stage.id, stage.title, stage.cadence.ToString()});
    all.push_back(&stage);
  }
  for (const StageTemplate& stage : w.stages) {
    for (const ExitTemplate& exit : stage.exits) {
      std::string label = exit.when.program != nullptr
                              ? exit.when.program->ToString()
                              : exit.when.text;
      graph.edges.push_back({stage.id, exit.to, std::move(label), true});
    }
  }
  for (const StageTemplate& stage : w.stages) {
    for (const RuleTemplate& rule : stage.rules) {
      AddRuleMoves(w, rule, {&stage}, graph);
    }
  }
  for (const RuleTemplate& rule : w.rules) AddRuleMoves(w, rule, all, graph);
  return graph;
}

std::string RenderDot(const StageGraph& graph) {
  std::string out =
      absl::StrCat("digraph ", report::DotQuoted(graph.workflow),
                   " {\n  rankdir=LR;\n"
                   "  node [shape=box, style=rounded];\n"
                   "  \"__start__\" [shape=point, label=\"\"];\n");
  for (const StageGraph::Node& node : graph.nodes) {
    absl::StrAppend(&out, "  ", report::DotQuoted(node.id),
                    " [label=", report::DotQuoted(NodeLabel(node)), "];\n");
  }
  if (!graph.nodes.empty()) {
    absl::StrAppend(&out, "  \"__start__\" -> ",
                    report::DotQuoted(graph.nodes.front().id), ";\n");
  }
  for (const StageGraph::Edge& edge : graph.edges) {
    absl::StrAppend(&out, "  ", report::DotQuoted(edge.from), " -> ",
                    report::DotQuoted(edge.to),
                    " [label=", report::DotQuoted(edge.label),
                    edge.exit ? "" : ", style=dashed", "];\n");
  }
  absl::StrAppend(&out, "}\n");
  return out;
}

std::string RenderMermaid(const StageGraph& graph) {
  std::map<std::string, std::string> ids;
  std::string out = "flowchart LR\n";
  absl::StrAppend(&out, "  %% ", graph.workflow, "\n");
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const StageGraph::Node& node = graph.nodes[i];
    ids[node.id] = absl::StrCat("s", i);
    absl::StrAppend(&out, "  ", ids[node.id], "[",
                    report::MermaidQuoted(NodeLabel(node)), "]\n");
  }
  if (!graph.nodes.empty()) {
    absl::StrAppend(&out, "  enrolled((enrolled)) --> ",
                    ids[graph.nodes.front().id], "\n");
  }
  for (const StageGraph::Edge& edge : graph.edges) {
    absl::StrAppend(&out, "  ", ids[edge.from], edge.exit ? " -->|" : " -.->|",
                    report::MermaidQuoted(edge.label), "| ", ids[edge.to],
                    "\n");
  }
  return out;
}

}  // namespace ipsrt::cli
