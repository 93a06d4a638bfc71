#include "cli/export_command.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/json_string.h"
#include "grpcpp/grpcpp.h"
#include "ipsrt/v1/export.grpc.pb.h"

ABSL_DECLARE_FLAG(std::string, format);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::string, request_id);

ABSL_FLAG(std::string, output, "",
          "export: write the rendering to this file (replaced whole) instead "
          "of stdout. report: the HTML file to write.");
ABSL_FLAG(std::string, target, "",
          "export push: configured export target (export.targets); empty "
          "means the server's default target.");
ABSL_FLAG(std::string, output_dir, "",
          "export bulk: directory for the NDJSON files, relative to the "
          "server's export root (export.root); must not exist yet.");

namespace ipsrt::cli {
namespace {

constexpr char kCommand[] = "export";

// FormatFlag is --format when given (the flag is shared with graph, whose
// default means nothing here), else "".
absl::StatusOr<std::string> FormatFlag(const ParsedArgs& args) {
  auto it = args.repeated.find("format");
  if (it == args.repeated.end()) return std::string();
  if (it->second.size() > 1) {
    return absl::InvalidArgumentError("--format is given more than once");
  }
  return absl::GetFlag(FLAGS_format);
}

// WriteWhole replaces `path` with `bytes` through a temporary file and a
// rename, so a reader never sees half an export.
bool WriteWhole(const std::string& path, const std::string& bytes) {
  return WriteStringToFile(path, bytes).ok();
}

int RunExportOne(const ParsedArgs& args, const std::string& format) {
  if (args.positional.size() != 1) {
    return UsageError(kCommand, "takes one ENROLLMENT");
  }
  if (format.empty()) {
    return UsageError(kCommand,
                      "--format is required, e.g. --format=fhir-r4-collection");
  }
  v1::ExportEnrollmentRequest request;
  request.set_name(EnrollmentNameArg(args.positional[0]));
  request.set_format(format);
  auto stub = v1::ExportService::NewStub(NewChannel());
  v1::ExportEnrollmentResponse response;
  grpc::Status status =
      stub->ExportEnrollment(NewContext().get(), request, &response);
  if (!status.ok()) return ReportRpcError(status);
  const std::string output = absl::GetFlag(FLAGS_output);
  if (!output.empty()) {
    if (!WriteWhole(output, response.content())) {
      std::fprintf(stderr, "error: cannot write %s\n", output.c_str());
      return kExitFailure;
    }
    if (absl::GetFlag(FLAGS_json)) {
      const Json written = {{"file", output},
                            {"content_type", response.content_type()},
                            {"bytes", response.content().size()}};
      std::printf("%s\n", JsonText(written).c_str());
    } else {
      std::printf("wrote %zu bytes (%s) to %s\n", response.content().size(),
                  response.content_type().c_str(), output.c_str());
    }
    return kExitOk;
  }
  if (absl::GetFlag(FLAGS_json)) return PrintJson(response);
  std::fwrite(response.content().data(), 1, response.content().size(), stdout);
  if (!response.content().empty() && response.content().back() != '\n') {
    std::fputc('\n', stdout);
  }
  return kExitOk;
}

int RunPush(const ParsedArgs& args) {
  if (args.positional.size() != 2) {
    return UsageError(kCommand, "push takes one ENROLLMENT");
  }
  v1::PushEnrollmentRequest request;
  request.set_name(EnrollmentNameArg(args.positional[1]));
  request.set_target(absl::GetFlag(FLAGS_target));
  request.set_request_id(RequestIdForCall());
  auto stub = v1::ExportService::NewStub(NewChannel());
  v1::PushEnrollmentResponse response;
  grpc::Status status =
      stub->PushEnrollment(NewContext().get(), request, &response);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(response);
  std::printf("pushed %s to %s: %d created, %d unchanged\n",
              request.name().c_str(),
              request.target().empty() ? "the default target"
                                       : request.target().c_str(),
              response.created(), response.unchanged());
  return kExitOk;
}

int TerminalWidth() {
  winsize ws{};
  if (ioctl(fileno(stderr), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) {
    return ws.ws_col;
  }
  return 80;
}

int RunBulk(const ParsedArgs& args, const std::string& format) {
  if (args.positional.size() != 1) {
    return UsageError(kCommand,
                      "bulk takes no ENROLLMENT (it exports them "
                      "all; --tenant picks the tenant)");
  }
  const std::string output_dir = absl::GetFlag(FLAGS_output_dir);
  if (output_dir.empty()) {
    return UsageError(kCommand, "bulk needs --output_dir=DIR");
  }
  v1::BulkExportRequest request;
  request.set_parent(TenantParent());
  request.set_output_dir(output_dir);
  request.set_format(format);
  auto stub = v1::ExportService::NewStub(NewChannel());
  // A bulk export runs as long as it takes: no deadline; an interrupt
  // cancels it and the server publishes nothing.
  auto context = NewContext();
  context->set_deadline(std::chrono::system_clock::time_point::max());
  auto reader = stub->BulkExport(context.get(), request);
  const bool tty = isatty(fileno(stderr)) == 1;
  const int width = tty ? TerminalWidth() : 80;
  v1::BulkExportProgress progress, last;
  int64_t printed_tenth = -1;
  bool drew = false;
  while (reader->Read(&progress)) {
    last = progress;
    const int64_t total = progress.enrollments_total();
    const int64_t done = progress.enrollments_done();
    if (tty) {
      std::fprintf(stderr, "\r%s", ProgressBar(progress, width).c_str());
      drew = true;
    } else {
      // Plain lines for logs: the start, every 10%, and the end.
      const int64_t tenth = total == 0 ? 10 : done * 10 / total;
      if (tenth != printed_tenth || progress.finished()) {
        printed_tenth = tenth;
        std::fprintf(
            stderr, "progress: %lld/%lld enrollments (%lld%%)%s\n",
            static_cast<long long>(done), static_cast<long long>(total),
            static_cast<long long>(total == 0 ? 100 : done * 100 / total),
            progress.finished() ? ", finished" : "");
      }
    }
    std::fflush(stderr);
  }
  if (drew) std::fputc('\n', stderr);
  grpc::Status status = reader->Finish();
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(last);
  std::map<std::string, std::string> files(last.files().begin(),
                                           last.files().end());
  int64_t resources = 0;
  for (const auto& [type, path] : files) {
    const int64_t count = last.resource_counts().count(type) > 0
                              ? last.resource_counts().at(type)
                              : 0;
    resources += count;
    std::printf("%-28s %10lld  %s\n", type.c_str(),
                static_cast<long long>(count), path.c_str());
  }
  std::printf(
      "exported %lld enrollment(s), %lld resource(s) in %zu file(s) "
      "to %s (with manifest.json)\n",
      static_cast<long long>(last.enrollments_done()),
      static_cast<long long>(resources), files.size(), output_dir.c_str());
  return kExitOk;
}

int RunExport(const ParsedArgs& args) {
  absl::StatusOr<std::string> format = FormatFlag(args);
  if (!format.ok()) return UsageError(kCommand, format.status().message());
  const std::string& verb = args.positional[0];
  if (verb == "push") {
    if (!format->empty()) {
      return UsageError(kCommand,
                        "push renders the target's configured format; "
                        "--format does not apply");
    }
    return RunPush(args);
  }
  if (verb == "bulk") return RunBulk(args, *format);
  if (args.positional.size() > 1) {
    return UsageError(kCommand, absl::StrCat("takes one ENROLLMENT, got \"",
                                             args.positional[1], "\" as well"));
  }
  return RunExportOne(args, *format);
}

}  // namespace

std::string ProgressBar(const v1::BulkExportProgress& p, int width) {
  const int64_t total = p.enrollments_total();
  const int64_t done = p.enrollments_done();
  const int64_t percent = total == 0 ? 100 : done * 100 / total;
  const std::string tail =
      absl::StrFormat(" %3d%%  %lld/%lld enrollments  %d file(s)", percent,
                      static_cast<long long>(done),
                      static_cast<long long>(total), p.files_size());
  const int bar = std::max(10, width - 3 - static_cast<int>(tail.size()));
  const int filled =
      total == 0 ? bar
                 : static_cast<int>(done * bar / std::max<int64_t>(1, total));
  return absl::StrCat("[", std::string(filled, '#'),
                      std::string(bar - filled, '.'), "]", tail);
}

std::vector<Command> ExportCommands() {
  return {
      {.spec =
           {.name = "export",
            .synopsis = "export ENROLLMENT --format=F [-o FILE] | export push "
                        "ENROLLMENT [--target=T] | export bulk "
                        "--output_dir=DIR [--format=F]",
            .description =
                "Export enrollments through the server's exporter plugins.\n\n"
                "export ENROLLMENT: print one enrollment rendered in --format "
                "(e.g.\nfhir-r4-collection, hl7v2-oru-r01), or write it to -o "
                "FILE. The same events\ngive the same bytes.\n"
                "export push ENROLLMENT: deliver it to a configured EHR "
                "target (--target,\nelse the default) and print how many "
                "resources the target created and\nalready had. Safe to "
                "retry with the same --request_id.\n"
                "export bulk: write every enrollment of --tenant as NDJSON, "
                "one file per\nresource type, under the server's export root "
                "in --output_dir (format\nfhir-r4-resources unless --format "
                "says otherwise). Shows a progress bar on\na terminal, plain "
                "progress lines otherwise, then the files and counts.\nAn "
                "interrupted export leaves nothing behind.",
            .flags =
                {{.name = "format", .value_name = "FORMAT", .repeatable = true},
                 {.name = "output", .value_name = "FILE", .short_name = "o"},
                 {.name = "target", .value_name = "NAME"},
                 {.name = "output_dir", .value_name = "DIR"},
                 {.name = "request_id", .value_name = "ID"}},
            .global_flags = GlobalFlags(),
            .min_positional = 1,
            .max_positional = 2},
       .run = RunExport},
  };
}

}  // namespace ipsrt::cli
