// The ipsrt client's `export` command: one enrollment rendered by an
// exporter plugin, a push to a configured EHR target, and a bulk NDJSON
// export of a tenant with a progress bar.
#ifndef IPSRT_CLI_EXPORT_COMMAND_H_
#define IPSRT_CLI_EXPORT_COMMAND_H_

#include <string>
#include <vector>

#include "cli/commands.h"
#include "ipsrt/v1/export.pb.h"

namespace ipsrt::cli {

std::vector<Command> ExportCommands();

// ProgressBar is one line of bulk export progress for a terminal `width`
// columns wide, e.g. "[#####.....]  50%  5000/10000 enrollments  4 files".
std::string ProgressBar(const v1::BulkExportProgress& progress, int width);

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_EXPORT_COMMAND_H_
