#include "cli/commands.h"

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/store_copy.h"
#include "cli/tools.h"
#include "common/files.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/workflow.grpc.pb.h"
#include "service/status_mapping.h"

// Global flags.
ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "Address of ipsrtd, host:port.");
ABSL_FLAG(bool, json, false,
          "Print the result as one JSON document on stdout (protobuf JSON "
          "with the proto field names).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "Deadline of each call to the server, e.g. 10s or 500ms.");
ABSL_FLAG(std::string, tenant, "default",
          "Tenant whose enrollments the command reads or changes.");

// Subcommand flags. A flag shared by several subcommands has one help text
// that fits each of them.
ABSL_FLAG(std::string, patient, "",
          "Reference to the patient in your own system, e.g. \"Patient/123\" "
          "or an MRN.");
ABSL_FLAG(std::string, workflow, "",
          "Workflow template id, e.g. \"ipsrt-standard\".");
ABSL_FLAG(int32_t, workflow_version, 0,
          "Workflow template version; 0 means the newest loaded version.");
ABSL_FLAG(std::string, time_zone, "",
          "The patient's IANA time zone, e.g. \"Europe/London\".");
ABSL_FLAG(std::string, clinician, "",
          "Reference to the responsible clinician, e.g. \"Practitioner/42\".");
ABSL_FLAG(std::string, request_id, "",
          "Idempotency key, 1-128 characters of [A-Za-z0-9._:-]: a retry "
          "with the same id returns the first result. When empty, a random "
          "id is generated and printed on stderr.");
ABSL_FLAG(std::string, label, "",
          "Label key=value to attach (key: 1-63 characters of [a-z0-9_-]).");
ABSL_FLAG(std::string, stage, "", "Stage id, e.g. \"initial\".");
ABSL_FLAG(std::string, state, "",
          "Enrollment state: ACTIVE, PAUSED or ENDED; empty means any.");
ABSL_FLAG(int32_t, page_size, 0,
          "Enrollments per page; 0 means the server's default (50), at most "
          "500.");
ABSL_FLAG(std::string, page_token, "",
          "next_page_token of the previous page, to continue a listing.");
ABSL_FLAG(bool, all, false, "Follow next_page_token to the last page.");
ABSL_FLAG(int32_t, from_version, 0,
          "Workflow version to move enrollments from.");
ABSL_FLAG(int32_t, to_version, 0, "Workflow version to move enrollments to.");
ABSL_FLAG(std::string, map, "",
          "Stage mapping OLD=NEW (old version's stage id = new version's); "
          "repeat for each stage that enrollments are in.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file of the CA that signed the server's certificate; turns "
          "TLS on.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate, for servers that require mutual TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to verify in the server's certificate, when it differs from "
          "the --server host.");
ABSL_FLAG(bool, closed, false,
          "Include done and cancelled tasks of the current stage.");
ABSL_FLAG(bool, dry_run, false, "Show what would move and write nothing.");
ABSL_FLAG(std::string, reason, "",
          "Reason recorded on each enrollment's timeline.");

namespace ipsrt::cli {
namespace {

using ::google::protobuf::util::TimeUtil;
using HealthResponse = ::grpc::health::v1::HealthCheckResponse;

// ReadPem returns a file's contents, or "" (with a message on stderr) when
// it cannot be read; the call then fails with the server unreachable.
std::string ReadPem(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok() || pem->empty()) {
    std::fprintf(stderr, "error: cannot read %s\n", path.c_str());
    return "";
  }
  return *std::move(pem);
}

// NewChannel connects to --server: plaintext, or TLS when --tls_ca is given
// (with a client certificate for mutual TLS when --tls_cert/--tls_key are).
std::shared_ptr<grpc::Channel> NewChannel() {
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  if (ca.empty()) {
    return grpc::CreateChannel(absl::GetFlag(FLAGS_server),
                               grpc::InsecureChannelCredentials());
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadPem(ca);
  if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
    ssl.pem_cert_chain = ReadPem(absl::GetFlag(FLAGS_tls_cert));
    ssl.pem_private_key = ReadPem(absl::GetFlag(FLAGS_tls_key));
  }
  grpc::ChannelArguments args;
  if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
    args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
  }
  return grpc::CreateCustomChannel(absl::GetFlag(FLAGS_server),
                                   grpc::SslCredentials(ssl), args);
}

// NewContext returns a call context with the --timeout deadline. Calls fail
// fast (no wait-for-ready), so an unreachable server is reported at once.
std::unique_ptr<grpc::ClientContext> NewContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(
      absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  return context;
}

// ReportRpcError prints "error: <CODE_NAME>: <message>" and, when the
// server could not be reached in time, which address was tried.
int ReportRpcError(const grpc::Status& grpc_status) {
  const absl::Status status = FromGrpcStatus(grpc_status);
  std::fprintf(stderr, "error: %s: %s\n",
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  const std::string server = absl::GetFlag(FLAGS_server);
  if (status.code() == absl::StatusCode::kUnavailable) {
    std::fprintf(stderr, "ipsrt: cannot reach ipsrtd at %s; is it running?\n",
                 server.c_str());
  } else if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    std::fprintf(stderr,
                 "ipsrt: no answer from ipsrtd at %s within %s (see "
                 "--timeout)\n",
                 server.c_str(),
                 absl::FormatDuration(absl::GetFlag(FLAGS_timeout)).c_str());
  }
  return kExitFailure;
}

int UsageError(absl::string_view command, absl::string_view message) {
  std::fprintf(stderr, "ipsrt %s: %s\nRun 'ipsrt %s --help' for usage.\n",
               std::string(command).c_str(), std::string(message).c_str(),
               std::string(command).c_str());
  return kExitUsage;
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  // Scripts can rely on every field being present, e.g. an empty
  // next_page_token on the last page.
  options.always_print_primitive_fields = true;
  std::string out;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot format JSON: ", status.ToString()));
  }
  return out;
}

// PrintJson writes `message` as one JSON document and a newline on stdout.
int PrintJson(const google::protobuf::Message& message) {
  absl::StatusOr<std::string> json = ToJson(message);
  if (!json.ok()) {
    std::fprintf(stderr, "error: INTERNAL: %s\n",
                 std::string(json.status().message()).c_str());
    return kExitFailure;
  }
  std::printf("%s\n", json->c_str());
  return kExitOk;
}

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  return TimeUtil::ToString(t);
}

std::string StateName(v1::Enrollment::State state) {
  return v1::Enrollment::State_Name(state);
}

// NewRequestId returns "cli-" and 128 random bits in hex: unique in
// practice, and within the server's request id alphabet.
std::string NewRequestId() {
  absl::BitGen gen;
  return absl::StrFormat("cli-%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

// RequestIdForCall is --request_id, or a new id printed on stderr (so that
// stdout stays one document; the user needs the id to retry safely after a
// timeout).
std::string RequestIdForCall() {
  std::string request_id = absl::GetFlag(FLAGS_request_id);
  if (request_id.empty()) {
    request_id = NewRequestId();
    std::fprintf(stderr, "request_id: %s (retry with --request_id=%s)\n",
                 request_id.c_str(), request_id.c_str());
  }
  return request_id;
}

std::string TenantParent() {
  return absl::StrCat("tenants/", absl::GetFlag(FLAGS_tenant));
}

// ---------------------------------------------------------------- health

int RunHealth(const ParsedArgs&) {
  std::shared_ptr<grpc::Channel> channel = NewChannel();
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest health_request;  // The whole server.
  HealthResponse health_response;
  grpc::Status status =
      health->Check(NewContext().get(), health_request, &health_response);
  if (!status.ok()) return ReportRpcError(status);
  const bool serving = health_response.status() == HealthResponse::SERVING;

  v1::ServerInfo info;
  if (serving) {
    auto diagnostics = v1::DiagnosticsService::NewStub(channel);
    status = diagnostics->GetServerInfo(NewContext().get(),
                                        v1::GetServerInfoRequest(), &info);
    if (!status.ok()) return ReportRpcError(status);
  }

  if (absl::GetFlag(FLAGS_json)) {
    absl::StatusOr<std::string> health_json = ToJson(health_response);
    absl::StatusOr<std::string> info_json = ToJson(info);
    if (!health_json.ok() || !info_json.ok()) {
      std::fprintf(stderr, "error: INTERNAL: cannot format JSON\n");
      return kExitFailure;
    }
    std::printf("{\"health\":%s", health_json->c_str());
    if (serving) std::printf(",\"server_info\":%s", info_json->c_str());
    std::printf("}\n");
  } else {
    std::printf(
        "status: %s\n",
        HealthResponse::ServingStatus_Name(health_response.status()).c_str());
    std::printf("server: %s\n", absl::GetFlag(FLAGS_server).c_str());
    if (serving) {
      std::printf("version: %s\n", info.version().c_str());
      std::printf("store: %s (schema version %d)\n", info.store_kind().c_str(),
                  info.schema_version());
      std::printf("started: %s\n", FormatTimestamp(info.start_time()).c_str());
    }
  }
  return serving ? kExitOk : kExitFailure;
}

// ---------------------------------------------------------------- enroll

int RunEnroll(const ParsedArgs& args) {
  v1::CreateEnrollmentRequest request;
  request.set_parent(TenantParent());
  request.set_patient_ref(absl::GetFlag(FLAGS_patient));
  request.set_workflow_id(absl::GetFlag(FLAGS_workflow));
  request.set_workflow_version(absl::GetFlag(FLAGS_workflow_version));
  request.set_time_zone(absl::GetFlag(FLAGS_time_zone));
  request.set_clinician_ref(absl::GetFlag(FLAGS_clinician));
  if (auto it = args.repeated.find("label"); it != args.repeated.end()) {
    for (const std::string& label : it->second) {
      const size_t eq = label.find('=');
      if (eq == std::string::npos || eq == 0) {
        return UsageError("enroll", absl::StrCat("--label needs key=value, "
                                                 "got \"",
                                                 label, "\""));
      }
      const std::string key = label.substr(0, eq);
      if (request.labels().contains(key)) {
        return UsageError(
            "enroll", absl::StrCat("--label key \"", key, "\" is repeated"));
      }
      (*request.mutable_labels())[key] = label.substr(eq + 1);
    }
  }
  request.set_request_id(RequestIdForCall());

  auto stub = v1::EnrollmentService::NewStub(NewChannel());
  v1::Enrollment enrollment;
  grpc::Status status =
      stub->CreateEnrollment(NewContext().get(), request, &enrollment);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(enrollment);
  std::printf("name: %s\nstage: %s\nrevision: %lld\n",
              enrollment.name().c_str(), enrollment.stage().c_str(),
              static_cast<long long>(enrollment.revision()));
  return kExitOk;
}

// ---------------------------------------------------------------- migrate

int RunMigrate(const ParsedArgs& args) {
  v1::MigrateEnrollmentsRequest request;
  request.set_parent(TenantParent());
  request.set_workflow_id(absl::GetFlag(FLAGS_workflow));
  request.set_from_version(absl::GetFlag(FLAGS_from_version));
  request.set_to_version(absl::GetFlag(FLAGS_to_version));
  request.set_dry_run(absl::GetFlag(FLAGS_dry_run));
  request.set_reason(absl::GetFlag(FLAGS_reason));
  auto it = args.repeated.find("map");
  if (it != args.repeated.end()) {
    for (const std::string& pair : it->second) {
      size_t eq = pair.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size()) {
        return UsageError(
            "migrate",
            absl::StrCat("--map must be OLD=NEW, not \"", pair, "\""));
      }
      std::string old_stage = pair.substr(0, eq);
      if (request.stage_mapping().count(old_stage)) {
        return UsageError("migrate", absl::StrCat("--map for stage \"",
                                                  old_stage, "\" is repeated"));
      }
      (*request.mutable_stage_mapping())[old_stage] = pair.substr(eq + 1);
    }
  }
  if (!request.dry_run()) request.set_request_id(RequestIdForCall());
  auto stub = v1::WorkflowService::NewStub(NewChannel());
  v1::MigrateEnrollmentsResponse response;
  grpc::Status status =
      stub->MigrateEnrollments(NewContext().get(), request, &response);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(response);
  for (const v1::MigratedEnrollment& m : response.enrollments()) {
    std::printf("%s  %s -> %s%s\n", m.name().c_str(), m.from_stage().c_str(),
                m.to_stage().c_str(),
                response.dry_run()
                    ? ""
                    : absl::StrCat("  (revision ", m.revision(), ")").c_str());
  }
  std::printf("%s %d enrollment(s) from %s@%d to %s@%d\n",
              response.dry_run() ? "dry run: would move" : "moved",
              response.enrollments_size(), request.workflow_id().c_str(),
              request.from_version(), request.workflow_id().c_str(),
              request.to_version());
  return kExitOk;
}

// EnrollmentNameArg reads a full enrollment name or a bare id in --tenant.
std::string EnrollmentNameArg(const ParsedArgs& args) {
  std::string name = args.positional.front();
  if (name.find('/') == std::string::npos) {
    name = absl::StrCat(TenantParent(), "/enrollments/", name);
  }
  return name;
}

// ---------------------------------------------------------------- tasks

int RunTasks(const ParsedArgs& args) {
  v1::ListTasksRequest request;
  request.set_parent(EnrollmentNameArg(args));
  request.set_include_closed(absl::GetFlag(FLAGS_closed));
  request.set_page_size(500);
  auto stub = v1::EnrollmentService::NewStub(NewChannel());
  v1::ListTasksResponse response;
  grpc::Status status = stub->ListTasks(NewContext().get(), request, &response);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(response);
  for (const v1::Task& t : response.tasks()) {
    std::printf("%-8s %-9s %-9s %-22s %s  %s\n",
                v1::Task::Status_Name(t.status()).c_str(),
                v1::Task::Priority_Name(t.priority()).c_str(),
                v1::Task::Assignee_Name(t.assignee()).c_str(),
                t.has_due_time() ? FormatTimestamp(t.due_time()).c_str() : "-",
                t.task_id().c_str(), t.title().c_str());
  }
  return kExitOk;
}

// ---------------------------------------------------------------- timeline

int RunTimeline(const ParsedArgs& args) {
  v1::GetTimelineRequest request;
  request.set_name(EnrollmentNameArg(args));
  request.set_page_size(500);
  auto stub = v1::EnrollmentService::NewStub(NewChannel());
  v1::GetTimelineResponse all;
  std::set<std::string> tokens_seen;
  while (true) {
    v1::GetTimelineResponse page;
    grpc::Status status = stub->GetTimeline(NewContext().get(), request, &page);
    if (!status.ok()) return ReportRpcError(status);
    for (v1::Event& e : *page.mutable_events())
      *all.add_events() = std::move(e);
    if (page.next_page_token().empty() ||
        !tokens_seen.insert(page.next_page_token()).second) {
      break;
    }
    request.set_page_token(page.next_page_token());
  }
  if (absl::GetFlag(FLAGS_json)) return PrintJson(all);
  for (const v1::Event& e : all.events()) {
    std::printf("#%lld  %s  %s  %s (%s)\n",
                static_cast<long long>(e.sequence()),
                FormatTimestamp(e.record_time()).c_str(), e.type().c_str(),
                e.summary().c_str(), e.actor().subject().c_str());
    for (const v1::Outcome& o : e.outcomes()) {
      std::string kind = v1::Outcome::Kind_Name(o.kind());
      std::printf(
          "    %-20s %s%s%s%s%s\n", kind.c_str(), o.subject().c_str(),
          o.from().empty() ? "" : absl::StrCat(" ", o.from(), " ->").c_str(),
          o.to().empty() ? "" : absl::StrCat(" ", o.to()).c_str(),
          o.reason().empty() ? "" : absl::StrCat(" (", o.reason(), ")").c_str(),
          o.local_due_time().empty()
              ? ""
              : absl::StrCat(" due ", o.local_due_time()).c_str());
    }
  }
  return kExitOk;
}

// ---------------------------------------------------------------- reload

int RunReload(const ParsedArgs&) {
  auto stub = v1::WorkflowService::NewStub(NewChannel());
  v1::ReloadWorkflowsResponse response;
  grpc::Status status = stub->ReloadWorkflows(
      NewContext().get(), v1::ReloadWorkflowsRequest(), &response);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
    return response.reloaded() ? kExitOk : kExitFailure;
  }
  for (const v1::Diagnostic& d : response.diagnostics()) {
    std::printf("%s:%d:%d: error: %s%s\n", d.file().c_str(), d.line(),
                d.column(), d.path().empty() ? "" : (d.path() + ": ").c_str(),
                d.message().c_str());
  }
  std::printf("%s; serving:", response.reloaded()
                                  ? "reloaded"
                                  : "refused: the last good set keeps serving");
  for (const std::string& s : response.serving()) std::printf(" %s", s.c_str());
  std::printf("\n");
  return response.reloaded() ? kExitOk : kExitFailure;
}

// ---------------------------------------------------------------- get

int RunGet(const ParsedArgs& args) {
  v1::GetEnrollmentRequest request;
  request.set_name(EnrollmentNameArg(args));
  auto stub = v1::EnrollmentService::NewStub(NewChannel());
  v1::Enrollment e;
  grpc::Status status = stub->GetEnrollment(NewContext().get(), request, &e);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(e);
  std::printf("name: %s\n", e.name().c_str());
  std::printf("patient: %s\n", e.patient_ref().c_str());
  std::printf("workflow: %s@%d\n", e.workflow_id().c_str(),
              e.workflow_version());
  std::printf("clinician: %s\n", e.clinician_ref().c_str());
  std::printf("time_zone: %s\n", e.time_zone().c_str());
  std::printf("stage: %s\n", e.stage().c_str());
  std::printf("state: %s\n", StateName(e.state()).c_str());
  std::printf("revision: %lld\n", static_cast<long long>(e.revision()));
  std::printf("session_cadence: %s\n", e.session_cadence().c_str());
  std::printf("created: %s\n", FormatTimestamp(e.create_time()).c_str());
  std::printf("updated: %s\n", FormatTimestamp(e.update_time()).c_str());
  // Sorted, so the output is stable.
  std::map<std::string, std::string> labels(e.labels().begin(),
                                            e.labels().end());
  for (const auto& [key, value] : labels) {
    std::printf("label: %s=%s\n", key.c_str(), value.c_str());
  }
  return kExitOk;
}

// ---------------------------------------------------------------- list

int RunList(const ParsedArgs&) {
  v1::ListEnrollmentsRequest request;
  request.set_parent(TenantParent());
  request.set_page_size(absl::GetFlag(FLAGS_page_size));
  request.set_page_token(absl::GetFlag(FLAGS_page_token));
  request.set_workflow_id(absl::GetFlag(FLAGS_workflow));
  request.set_stage(absl::GetFlag(FLAGS_stage));
  request.set_patient_ref(absl::GetFlag(FLAGS_patient));
  request.set_clinician_ref(absl::GetFlag(FLAGS_clinician));
  if (std::string state = absl::AsciiStrToUpper(absl::GetFlag(FLAGS_state));
      !state.empty()) {
    v1::Enrollment::State value;
    if (!v1::Enrollment::State_Parse(state, &value) ||
        value == v1::Enrollment::STATE_UNSPECIFIED) {
      return UsageError("list", absl::StrCat("--state must be ACTIVE, PAUSED "
                                             "or ENDED, not \"",
                                             absl::GetFlag(FLAGS_state), "\""));
    }
    request.set_state(value);
  }
  const bool all = absl::GetFlag(FLAGS_all);

  auto stub = v1::EnrollmentService::NewStub(NewChannel());
  v1::ListEnrollmentsResponse result;
  std::set<std::string> tokens_seen;
  while (true) {
    v1::ListEnrollmentsResponse page;
    grpc::Status status =
        stub->ListEnrollments(NewContext().get(), request, &page);
    if (!status.ok()) return ReportRpcError(status);
    for (v1::Enrollment& e : *page.mutable_enrollments()) {
      *result.add_enrollments() = std::move(e);
    }
    result.set_next_page_token(page.next_page_token());
    if (!all || page.next_page_token().empty()) break;
    // A server that hands out a token twice would loop forever.
    if (!tokens_seen.insert(page.next_page_token()).second) {
      std::fprintf(stderr,
                   "error: INTERNAL: the server repeated page token %s\n",
                   page.next_page_token().c_str());
      return kExitFailure;
    }
    request.set_page_token(page.next_page_token());
  }

  if (absl::GetFlag(FLAGS_json)) return PrintJson(result);
  for (const v1::Enrollment& e : result.enrollments()) {
    std::printf("%s\t%s@%d\t%s\t%s\n", e.name().c_str(),
                e.workflow_id().c_str(), e.workflow_version(),
                e.stage().c_str(), StateName(e.state()).c_str());
  }
  if (!result.next_page_token().empty()) {
    std::fprintf(stderr,
                 "more enrollments: pass --page_token=%s for the next page, "
                 "or --all\n",
                 result.next_page_token().c_str());
  }
  return kExitOk;
}

}  // namespace

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* const kFlags = new std::vector<FlagSpec>{
      {.name = "server", .value_name = "HOST:PORT"},
      {.name = "json", .value_name = ""},
      {.name = "timeout", .value_name = "DURATION"},
      {.name = "tenant", .value_name = "TENANT"},
      {.name = "tls_ca", .value_name = "FILE"},
      {.name = "tls_cert", .value_name = "FILE"},
      {.name = "tls_key", .value_name = "FILE"},
      {.name = "tls_server_name", .value_name = "NAME"},
  };
  return *kFlags;
}

absl::Status CheckGlobalFlags() {
  if (absl::GetFlag(FLAGS_timeout) <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--timeout must be positive");
  }
  if (absl::GetFlag(FLAGS_tls_cert).empty() !=
      absl::GetFlag(FLAGS_tls_key).empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (!absl::GetFlag(FLAGS_tls_cert).empty() &&
      absl::GetFlag(FLAGS_tls_ca).empty()) {
    return absl::InvalidArgumentError("--tls_cert needs --tls_ca");
  }
  if (absl::GetFlag(FLAGS_server).empty()) {
    return absl::InvalidArgumentError("--server must not be empty");
  }
  return absl::OkStatus();
}

const std::vector<Command>& Commands() {
  static const auto* const kCommands = [] {
    auto* commands = new std::vector<Command>{
        {.spec = {.name = "health",
                  .synopsis = "health [flags]",
                  .description =
                      "Check that ipsrtd is serving; show its version and "
                      "store.\n\n"
                      "Calls grpc.health.v1 Check, then DiagnosticsService."
                      "GetServerInfo.\nExit status 0 when SERVING, 1 otherwise "
                      "(also "
                      "when the server cannot be\nreached).",
                  .flags = {},
                  .global_flags = GlobalFlags()},
         .run = RunHealth},
        {.spec =
             {.name = "enroll",
              .synopsis = "enroll --patient=REF --workflow=ID --time_zone=ZONE "
                          "--clinician=REF [flags]",
              .description =
                  "Start a patient on a workflow.\n\n"
                  "Calls CreateEnrollment in tenants/<--tenant> and prints the "
                  "enrollment's\nname, stage and revision; with --json, the "
                  "Enrollment. Safe to retry with\nthe same --request_id.",
              .flags =
                  {
                      {.name = "patient",
                       .value_name = "REF",
                       .required = true},
                      {.name = "workflow",
                       .value_name = "ID",
                       .required = true},
                      {.name = "workflow_version", .value_name = "N"},
                      {.name = "time_zone",
                       .value_name = "ZONE",
                       .required = true},
                      {.name = "clinician",
                       .value_name = "REF",
                       .required = true},
                      {.name = "request_id", .value_name = "ID"},
                      {.name = "label",
                       .value_name = "KEY=VALUE",
                       .repeatable = true},
                  },
              .global_flags = GlobalFlags()},
         .run = RunEnroll},
        {.spec = {.name = "get",
                  .synopsis = "get NAME_OR_ID [flags]",
                  .description =
                      "Show one enrollment.\n\n"
                      "NAME_OR_ID is a full name (tenants/T/enrollments/ID) or "
                      "a bare ID in --tenant.",
                  .flags = {},
                  .global_flags = GlobalFlags(),
                  .min_positional = 1,
                  .max_positional = 1},
         .run = RunGet},
        {.spec =
             {.name = "list",
              .synopsis = "list [flags]",
              .description =
                  "List the tenant's enrollments.\n\n"
                  "Oldest first, one a line: name, workflow@version, stage, "
                  "state. The filters\n(--workflow, --stage, --patient, "
                  "--clinician, --state) match exactly.\nWith --json: "
                  "{\"enrollments\": [...], \"next_page_token\": ...}.",
              .flags =
                  {
                      {.name = "workflow", .value_name = "ID"},
                      {.name = "stage", .value_name = "ID"},
                      {.name = "patient", .value_name = "REF"},
                      {.name = "clinician", .value_name = "REF"},
                      {.name = "state", .value_name = "STATE"},
                      {.name = "page_size", .value_name = "N"},
                      {.name = "page_token", .value_name = "TOKEN"},
                      {.name = "all", .value_name = ""},
                  },
              .global_flags = GlobalFlags()},
         .run = RunList},
        {.spec =
             {.name = "migrate",
              .synopsis = "migrate --workflow=ID --from_version=N "
                          "--to_version=M --map=OLD=NEW... [--dry_run]",
              .description =
                  "Move the tenant's enrollments to another workflow "
                  "version.\n\n"
                  "Every stage that an enrollment on --from_version is in "
                  "needs "
                  "a --map;\neach enrollment re-enters its mapped stage in the "
                  "new version, recorded\non its timeline. Run with --dry_run "
                  "first: it lists what would move and\nwrites nothing. Safe "
                  "to retry with the same --request_id.",
              .flags =
                  {
                      {.name = "workflow",
                       .value_name = "ID",
                       .required = true},
                      {.name = "from_version",
                       .value_name = "N",
                       .required = true},
                      {.name = "to_version",
                       .value_name = "M",
                       .required = true},
                      {.name = "map",
                       .value_name = "OLD=NEW",
                       .repeatable = true},
                      {.name = "dry_run", .value_name = ""},
                      {.name = "reason", .value_name = "TEXT"},
                      {.name = "request_id", .value_name = "ID"},
                  },
              .global_flags = GlobalFlags()},
         .run = RunMigrate},
        {.spec = {.name = "tasks",
                  .synopsis = "tasks NAME_OR_ID [--closed] [flags]",
                  .description =
                      "List an enrollment's open tasks, urgent and earliest "
                      "due first:\nstatus, priority, assignee, due time (UTC), "
                      "task id and title.",
                  .flags = {{.name = "closed", .value_name = ""}},
                  .global_flags = GlobalFlags(),
                  .min_positional = 1,
                  .max_positional = 1},
         .run = RunTasks},
        {.spec = {.name = "timeline",
                  .synopsis = "timeline NAME_OR_ID [flags]",
                  .description =
                      "Show an enrollment's events in order, each with what "
                      "the engine did\nin response (stage and cadence changes, "
                      "tasks, reminders, alerts).",
                  .flags = {},
                  .global_flags = GlobalFlags(),
                  .min_positional = 1,
                  .max_positional = 1},
         .run = RunTimeline},
        {.spec = {.name = "reload",
                  .synopsis = "reload [flags]",
                  .description =
                      "Ask the server to re-read its workflow templates (as "
                      "SIGHUP does).\nA set with any error is refused whole; "
                      "its diagnostics are printed and\nthe exit status is 1.",
                  .flags = {},
                  .global_flags = GlobalFlags()},
         .run = RunReload},
    };
    // Offline tools (cli/tools.h) come after the server commands.
    for (Command& tool : ToolCommands()) commands->push_back(std::move(tool));
    for (Command& c : StoreCommands()) commands->push_back(std::move(c));
    return commands;
  }();
  return *kCommands;
}

}  // namespace ipsrt::cli
