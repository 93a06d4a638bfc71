// Offline clinician tools of the ipsrt client: they read files and never
// call the server.
//
//   ipsrt validate FILE...          check workflow templates
//   ipsrt graph TEMPLATE            stage graph as Graphviz DOT or Mermaid
//   ipsrt simulate TEMPLATE --scenario=FILE
//                                   run a scripted patient course through
//                                   the runtime's Step, as the server would
//
// Output contract as in cli/commands.h; findings (an invalid template, a
// scenario event the workflow refuses) exit with kExitFailure.
#ifndef IPSRT_CLI_TOOLS_H_
#define IPSRT_CLI_TOOLS_H_

#include <vector>

#include "cli/commands.h"

namespace ipsrt::cli {

// ToolCommands lists validate, graph and simulate, in that order.
std::vector<Command> ToolCommands();

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_TOOLS_H_
