// What changed between two versions of a workflow template, in clinical
// terms, for `ipsrt diff` and `ipsrt migrate --dry_run`.
//
// Stages, tasks, rules and exits are matched by id (exits by their target
// stage); each difference is one line such as
//   stage maintenance: sessions every P2W -> every P4W
//   stage initial: task baseline-gad7 removed (Baseline GAD-7)
//   rule early-warning (maintenance): condition
//       was: phq9.total >= 10 || asrm.total >= 6
//       now: phq9.total >= 12 || asrm.total >= 6
//
// Example:
//   for (const std::string& line : DiffWorkflows(old_w, new_w)) ...
#ifndef IPSRT_CLI_WORKFLOW_DIFF_H_
#define IPSRT_CLI_WORKFLOW_DIFF_H_

#include <string>
#include <vector>

#include "model/workflow.h"

namespace ipsrt::cli {

// DiffWorkflows lists the differences, in template order; empty when the
// two describe the same course (comments and formatting do not count).
std::vector<std::string> DiffWorkflows(const WorkflowTemplate& before,
                                       const WorkflowTemplate& after);

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_WORKFLOW_DIFF_H_
