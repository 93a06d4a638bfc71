// `ipsrt report NAME -o course.html`: an enrollment's course report
// (ReportService.RenderReport), written to a file.
#ifndef IPSRT_CLI_REPORT_COMMAND_H_
#define IPSRT_CLI_REPORT_COMMAND_H_

#include <vector>

#include "cli/commands.h"

namespace ipsrt::cli {

// ReportCommands lists `report`.
std::vector<Command> ReportCommands();

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_REPORT_COMMAND_H_
