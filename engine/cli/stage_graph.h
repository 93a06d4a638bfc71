// The stage graph of a workflow template, rendered for `ipsrt graph`.
//
// Nodes are stages (id, title, cadence); edges are exit transitions,
// labelled with the condition's canonical text (CompiledCondition::
// ToString), and rule actions that move to a stage, labelled "rule <id>"
// (a template-wide rule gives an edge from every other stage). The first
// stage is marked as the start.
//
// Example:
//   StageGraph graph = BuildStageGraph(workflow);
//   std::cout << RenderDot(graph);
#ifndef IPSRT_CLI_STAGE_GRAPH_H_
#define IPSRT_CLI_STAGE_GRAPH_H_

#include <string>
#include <vector>

#include "model/workflow.h"

namespace ipsrt::cli {

struct StageGraph {
  struct Node {
    std::string id;
    std::string title;
    std::string cadence;
  };
  struct Edge {
    std::string from;
    std::string to;
    std::string label;
    // An exit transition (solid) or a rule's move_to (dashed).
    bool exit = true;
  };
  std::string workflow;     // "id@version"
  std::vector<Node> nodes;  // in template order; nodes[0] is the start
  std::vector<Edge> edges;  // exits in order, then rule moves
};

StageGraph BuildStageGraph(const WorkflowTemplate& workflow);

// RenderDot gives a Graphviz digraph; strings are quoted with '"' and '\'
// escaped.
std::string RenderDot(const StageGraph& graph);

// RenderMermaid gives a Mermaid flowchart. Node ids are s0, s1, ... (stage
// ids such as "end" are Mermaid keywords); labels are quoted, with '"',
// '<', '>', '&' and '#' written as Mermaid entity codes (#quot; ...).
std::string RenderMermaid(const StageGraph& graph);

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_STAGE_GRAPH_H_
