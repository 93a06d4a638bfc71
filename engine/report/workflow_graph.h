// A workflow template's stage graph drawn for clinicians (`ipsrt graph`,
// and the course report's workflow section).
//
// Each stage is a box: its title, id and session cadence, a short list of
// its tasks, and the rules that belong to it (what they watch for, in the
// template's own words, and what they do: change the cadence, raise an
// alert). Exits are arrows labelled with the condition's source text,
// wrapped. Rules that move the patient to another stage are dashed arrows;
// a rule that raises an urgent alert is drawn in red and marked URGENT.
// Rules of every stage sit in a separate "In every stage" box.
//
// Example:
//   std::string dot = RenderClinicianDot(workflow);
//   absl::StatusOr<std::string> svg = DotToSvg(dot);
#ifndef IPSRT_REPORT_WORKFLOW_GRAPH_H_
#define IPSRT_REPORT_WORKFLOW_GRAPH_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/workflow.h"

namespace ipsrt::report {

// RenderClinicianDot gives a Graphviz digraph with HTML-like labels.
std::string RenderClinicianDot(const WorkflowTemplate& workflow);

// RenderClinicianMermaid gives the same content as a Mermaid flowchart.
std::string RenderClinicianMermaid(const WorkflowTemplate& workflow);

// DotToSvg runs Graphviz's `dot -Tsvg` (found on PATH) on `dot` and returns
// the <svg> element, without the XML prolog. UNAVAILABLE when `dot` cannot
// be run, INTERNAL when it fails (with its error output).
absl::StatusOr<std::string> DotToSvg(absl::string_view dot);

// WrapText collapses runs of white space and breaks `text` into lines of
// at most `width` characters where it can (a longer word stays whole).
std::vector<std::string> WrapText(absl::string_view text, size_t width);

// DescribeAction says what a rule's action does, in words ("sessions every
// P1W", "URGENT alert: <title>"); `detailed` adds an alert's id and
// acknowledgement time.
std::string DescribeAction(const Action& a, bool detailed);

// DotQuoted is `text` as a DOT double-quoted string ('"' and '\\'
// escaped); a newline becomes the centred line break "\n".
std::string DotQuoted(absl::string_view text);

// MermaidQuoted is `text` as a Mermaid quoted label: '"', '<', '>', '&'
// and '#' become Mermaid entity codes (#quot; ...), a newline "<br/>".
std::string MermaidQuoted(absl::string_view text);

}  // namespace ipsrt::report

#endif  // IPSRT_REPORT_WORKFLOW_GRAPH_H_
