#include "cli/report_command.h"

#include <cstdio>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "common/files.h"
#include "grpcpp/grpcpp.h"
#include "ipsrt/v1/report.grpc.pb.h"

ABSL_DECLARE_FLAG(std::string, output);

namespace ipsrt::cli {
namespace {

int RunReport(const ParsedArgs& args) {
  const std::string output = absl::GetFlag(FLAGS_output);
  if (output.empty()) {
    return UsageError("report", "--output (-o) FILE is required");
  }
  v1::RenderReportRequest request;
  request.set_name(EnrollmentNameArg(args));
  auto stub = v1::ReportService::NewStub(NewChannel());
  v1::RenderReportResponse response;
  grpc::Status status =
      stub->RenderReport(NewContext().get(), request, &response);
  if (!status.ok()) return ReportRpcError(status);
  absl::Status written = WriteStringToFile(output, response.content());
  if (!written.ok()) {
    std::fprintf(stderr, "error: cannot write %s: %s\n", output.c_str(),
                 std::string(written.message()).c_str());
    return kExitFailure;
  }
  std::fprintf(stderr, "wrote %s (revision %lld, %zu bytes)\n", output.c_str(),
               static_cast<long long>(response.revision()),
               response.content().size());
  return kExitOk;
}

}  // namespace

std::vector<Command> ReportCommands() {
  return {
      {.spec =
           {.name = "report",
            .synopsis = "report NAME_OR_ID -o FILE [flags]",
            .description =
                "Write an enrollment's course report as one HTML file.\n\n"
                "Calls ReportService.RenderReport: stages, sessions and "
                "cadence changes,\nPHQ-9/GAD-7/ASRM and SRM charts, alerts, "
                "open tasks, goal and relapse\nplan (docs/course-report.md). "
                "The file fetches nothing and runs no script.\nIt holds "
                "patient data: keep it as a clinical record.",
            .flags =
                {{.name = "output", .value_name = "FILE", .short_name = "o"}},
            .global_flags = GlobalFlags(),
            .min_positional = 1,
            .max_positional = 1},
       .run = RunReport},
  };
}

}  // namespace ipsrt::cli
