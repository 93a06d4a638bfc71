#include "cli/commands.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cli/export_command.h"
#include "cli/report_command.h"
#include "cli/score_file.h"
#include "cli/security.h"
#include "cli/store_copy.h"
#include "cli/tools.h"
#include "cli/workflow_diff.h"
#include "common/files.h"
#include "common/json_string.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/plugin.grpc.pb.h"
#include "ipsrt/v1/questionnaire.grpc.pb.h"
#include "ipsrt/v1/reminder.grpc.pb.h"
#include "ipsrt/v1/workflow.grpc.pb.h"
#include "model/workflow.h"
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
ABSL_FLAG(std::string, token, "",
          "Bearer token (JWT or API token) sent with every call. Prefer "
          "--token_file or $IPSRT_TOKEN: a flag is visible in the process "
          "list.");
ABSL_FLAG(std::string, token_file, "",
          "File whose first line is the bearer token.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to verify in the server's certificate, when it differs from "
          "the --server host.");
ABSL_FLAG(std::string, answers, "",
          "score: a JSON file of answers ({\"answers\": {\"1\": 0, ...}}) "
          "or of SRM diary days ({\"days\": [...]}); prints JSON.");
ABSL_FLAG(bool, closed, false,
          "Include done and cancelled tasks of the current stage.");
ABSL_FLAG(std::string, status, "",
          "Reminder status to list: SCHEDULED (default), SENT, ACKNOWLEDGED, "
          "CANCELLED or FAILED.");
ABSL_FLAG(std::string, cursor, "",
          "Resume a reminder watch after this cursor (empty: from the start).");
ABSL_FLAG(int32_t, count, 0,
          "Stop a reminder watch after this many reminders (0: never).");
ABSL_FLAG(bool, dry_run, false, "Show what would move and write nothing.");
ABSL_FLAG(std::string, reason, "",
          "Reason recorded on each enrollment's timeline.");

namespace ipsrt::cli {

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

// BearerToken is --token, else the first line of --token_file, else
// $IPSRT_TOKEN; "" when none is given.
std::string BearerToken() {
  if (!absl::GetFlag(FLAGS_token).empty()) return absl::GetFlag(FLAGS_token);
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    absl::StatusOr<std::string> text =
        ReadFileToString(absl::GetFlag(FLAGS_token_file));
    if (!text.ok()) return "";
    std::string token(absl::StripAsciiWhitespace(*text));
    return token;
  }
  const char* env = std::getenv("IPSRT_TOKEN");
  return env == nullptr ? "" : std::string(absl::StripAsciiWhitespace(env));
}

// NewContext returns a call context with the --timeout deadline and the
// bearer token, if any. Calls fail fast (no wait-for-ready), so an
// unreachable server is reported at once.
std::unique_ptr<grpc::ClientContext> NewContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(
      absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  static const std::string* const kToken = new std::string(BearerToken());
  if (!kToken->empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", *kToken));
  }
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
  // ipsrtd itself answers UNAVAILABLE too (a plugin or an export target is
  // down, the store is unreachable); the hint is only for gRPC's own
  // connection failures, whose messages name the transport. ipsrtd's
  // answers about a plugin name it ("plugin <name> ...", possibly after the
  // context of the call: "exporter plugin \"x\" could not render ...:
  // plugin x is unavailable ...") even when they quote the plugin's own
  // transport failure ("Socket closed") or its call timeout.
  const absl::string_view message = status.message();
  const bool from_plugin = absl::StrContains(message, "plugin ");
  const bool transport_failure =
      !from_plugin && (absl::StrContains(message, "failed to connect") ||
                       absl::StrContains(message, "Connection refused") ||
                       absl::StrContains(message, "DNS resolution failed") ||
                       absl::StrContains(message, "Socket closed") ||
                       absl::StrContains(message, "Connection reset"));
  if (status.code() == absl::StatusCode::kUnavailable && transport_failure) {
    std::fprintf(stderr, "ipsrt: cannot reach ipsrtd at %s; is it running?\n",
                 server.c_str());
  } else if (status.code() == absl::StatusCode::kDeadlineExceeded &&
             !from_plugin) {
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

namespace {

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

}  // namespace

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

namespace {

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
  bool have_info = serving;
  if (serving) {
    auto diagnostics = v1::DiagnosticsService::NewStub(channel);
    status = diagnostics->GetServerInfo(NewContext().get(),
                                        v1::GetServerInfoRequest(), &info);
    // Health needs no token; the server's details do (a staff token).
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
        status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      have_info = false;
      std::fprintf(stderr, "server info not shown: %s\n",
                   status.error_message().c_str());
    } else if (!status.ok()) {
      return ReportRpcError(status);
    }
  }

  if (absl::GetFlag(FLAGS_json)) {
    absl::StatusOr<std::string> health_json = ToJson(health_response);
    absl::StatusOr<std::string> info_json = ToJson(info);
    Json out = Json::object();
    if (health_json.ok()) {
      out["health"] = Json::parse(*health_json, nullptr, false);
    }
    if (info_json.ok() && have_info) {
      out["server_info"] = Json::parse(*info_json, nullptr, false);
    }
    if (!health_json.ok() || !info_json.ok() || out["health"].is_discarded() ||
        (have_info && out["server_info"].is_discarded())) {
      std::fprintf(stderr, "error: INTERNAL: cannot format JSON\n");
      return kExitFailure;
    }
    std::printf("%s\n", JsonText(out).c_str());
  } else {
    std::printf(
        "status: %s\n",
        HealthResponse::ServingStatus_Name(health_response.status()).c_str());
    std::printf("server: %s\n", absl::GetFlag(FLAGS_server).c_str());
    if (have_info) {
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

// PrintVersionChanges prints what changes for the patients who would move
// (cli/workflow_diff.h), from both versions' source as the server has
// them; a version it cannot fetch or read is reported and skipped.
void PrintVersionChanges(v1::WorkflowService::Stub& stub,
                         const v1::MigrateEnrollmentsRequest& request) {
  std::optional<WorkflowTemplate> versions[2];
  const int numbers[2] = {request.from_version(), request.to_version()};
  for (int i = 0; i < 2; ++i) {
    v1::GetWorkflowRequest get;
    get.set_id(request.workflow_id());
    get.set_version(numbers[i]);
    v1::Workflow w;
    grpc::Status s = stub.GetWorkflow(NewContext().get(), get, &w);
    absl::StatusOr<WorkflowTemplate> parsed =
        s.ok() ? ParseWorkflowTemplate(
                     w.source_yaml(),
                     absl::StrCat(request.workflow_id(), "@", numbers[i]))
               : absl::StatusOr<WorkflowTemplate>(
                     absl::UnknownError(s.error_message()));
    if (!parsed.ok()) {
      std::printf("(cannot compare: version %d: %s)\n", numbers[i],
                  std::string(parsed.status().message()).c_str());
      return;
    }
    versions[i] = *std::move(parsed);
  }
  std::vector<std::string> changes = DiffWorkflows(*versions[0], *versions[1]);
  std::printf("changes from version %d to %d (%zu):\n", numbers[0], numbers[1],
              changes.size());
  for (const std::string& c : changes) std::printf("  %s\n", c.c_str());
  std::printf("enrollments that would move:\n");
}

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
  if (response.dry_run()) PrintVersionChanges(*stub, request);
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

}  // namespace

// EnrollmentNameArg reads a full enrollment name or a bare id in --tenant.
std::string EnrollmentNameArg(const std::string& arg) {
  std::string name = arg;
  if (name.find('/') == std::string::npos) {
    name = absl::StrCat(TenantParent(), "/enrollments/", name);
  }
  return name;
}
std::string EnrollmentNameArg(const ParsedArgs& args) {
  return EnrollmentNameArg(args.positional.front());
}

namespace {

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

// ---------------------------------------------------------------- reminders

void PrintReminder(const v1::Reminder& r) {
  std::printf(
      "%-12s %-26s %-20s %s  %s  %s%s\n",
      v1::Reminder::Status_Name(r.status()).c_str(), r.local_due_time().c_str(),
      r.time_zone().c_str(), FormatTimestamp(r.due_time()).c_str(),
      r.name().c_str(), r.task_id().c_str(),
      r.cursor().empty() ? "" : absl::StrCat("  cursor=", r.cursor()).c_str());
}

int RunRemindersList(const ParsedArgs&) {
  v1::ListDueRemindersRequest request;
  request.set_parent(TenantParent());
  request.set_page_size(500);
  const std::string status = absl::GetFlag(FLAGS_status);
  if (!status.empty()) {
    v1::Reminder::Status parsed;
    if (!v1::Reminder::Status_Parse(status, &parsed) ||
        parsed == v1::Reminder::STATUS_UNSPECIFIED) {
      return UsageError(
          "reminders", absl::StrCat("--status must be SCHEDULED, SENT, "
                                    "ACKNOWLEDGED, CANCELLED or FAILED, got \"",
                                    status, "\""));
    }
    request.add_statuses(parsed);
  }
  auto stub = v1::ReminderService::NewStub(NewChannel());
  v1::ListDueRemindersResponse all;
  std::set<std::string> tokens_seen;
  while (true) {
    v1::ListDueRemindersResponse page;
    grpc::Status s = stub->ListDueReminders(NewContext().get(), request, &page);
    if (!s.ok()) return ReportRpcError(s);
    for (v1::Reminder& r : *page.mutable_reminders()) {
      *all.add_reminders() = std::move(r);
    }
    if (page.next_page_token().empty() ||
        !tokens_seen.insert(page.next_page_token()).second) {
      break;
    }
    request.set_page_token(page.next_page_token());
  }
  if (absl::GetFlag(FLAGS_json)) return PrintJson(all);
  for (const v1::Reminder& r : all.reminders()) PrintReminder(r);
  return kExitOk;
}

int RunRemindersWatch(const ParsedArgs&) {
  v1::WatchRemindersRequest request;
  request.set_parent(TenantParent());
  request.set_cursor(absl::GetFlag(FLAGS_cursor));
  const int count = absl::GetFlag(FLAGS_count);
  if (count < 0) {
    return UsageError("reminders", "--count must not be negative");
  }
  auto stub = v1::ReminderService::NewStub(NewChannel());
  // A watch runs until --count reminders or an interrupt: no deadline.
  grpc::ClientContext context;
  auto reader = stub->WatchReminders(&context, request);
  v1::Reminder r;
  int seen = 0;
  while ((count == 0 || seen < count) && reader->Read(&r)) {
    ++seen;
    if (absl::GetFlag(FLAGS_json)) {
      absl::StatusOr<std::string> json = ToJson(r);
      if (json.ok()) std::printf("%s\n", json->c_str());
    } else {
      PrintReminder(r);
    }
    std::fflush(stdout);
  }
  if (count > 0 && seen == count) {
    context.TryCancel();
    reader->Finish().IgnoreError();
    return kExitOk;
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? kExitOk : ReportRpcError(s);
}

int RunReminders(const ParsedArgs& args) {
  const std::string& verb = args.positional[0];
  if (verb == "list") return RunRemindersList(args);
  if (verb == "watch") return RunRemindersWatch(args);
  return UsageError("reminders", absl::StrCat("unknown action \"", verb,
                                              "\" (expected list or watch)"));
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
    for (v1::UnreadableRecord& u : *page.mutable_unreadable()) {
      *result.add_unreadable() = std::move(u);
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
  // Unreadable records are named, not fatal: the readable ones are above.
  for (const v1::UnreadableRecord& u : result.unreadable()) {
    std::fprintf(stderr, "unreadable: %s: %s\n", u.name().c_str(),
                 u.reason().c_str());
  }
  if (!result.next_page_token().empty()) {
    std::fprintf(stderr,
                 "more enrollments: pass --page_token=%s for the next page, "
                 "or --all\n",
                 result.next_page_token().c_str());
  }
  return kExitOk;
}

// ---------------------------------------------------------------- plugins

int RunPlugins(const ParsedArgs&) {
  auto stub = v1::PluginService::NewStub(NewChannel());
  v1::ListPluginsResponse response;
  grpc::Status status = stub->ListPlugins(NewContext().get(),
                                          v1::ListPluginsRequest(), &response);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(response);
  for (const v1::PluginInfo& p : response.plugins()) {
    std::string kinds;
    for (const std::string& k : p.kinds()) {
      absl::StrAppend(&kinds, kinds.empty() ? "" : ",", k);
    }
    std::string transport = p.transport() == v1::PluginInfo::IN_PROCESS
                                ? "in_process"
                                : "out_of_process";
    std::string health =
        p.health() == v1::PluginInfo::SERVING ? "SERVING" : "NOT_SERVING";
    std::printf("%-20s %-10s %-16s %-14s %-11s %s\n", p.name().c_str(),
                p.version().c_str(), kinds.c_str(), transport.c_str(),
                health.c_str(), p.path().c_str());
  }
  return kExitOk;
}

// ----------------------------------------------------------------
// questionnaire

void PrintQuestionnaire(const v1::Questionnaire& q) {
  std::printf("%s@%d  %s  (plugin %s)\n", q.id().c_str(), q.version(),
              q.title().c_str(), q.plugin().c_str());
  if (!q.recall_period().empty()) {
    std::printf("recall period: %s\n", q.recall_period().c_str());
  }
  if (!q.preamble().empty()) std::printf("%s\n", q.preamble().c_str());
  for (const v1::QuestionnaireItem& item : q.items()) {
    std::printf("\n[%s]%s%s %s\n", item.id().c_str(),
                item.required() ? "" : " (optional)",
                item.scored() ? "" : " (not scored)", item.text().c_str());
    for (const v1::AnswerOption& o : item.options()) {
      std::printf("    %d  %s\n", o.value(), o.label().c_str());
    }
  }
  if (q.bands_size() > 0) std::printf("\nbands:");
  for (const v1::ScoreBand& b : q.bands()) {
    std::printf(" %s %d-%d;", b.name().c_str(), b.min(), b.max());
  }
  if (q.bands_size() > 0) std::printf("\n");
  if (!q.copyright().empty()) std::printf("\n%s\n", q.copyright().c_str());
}

int RunQuestionnaire(const ParsedArgs& args) {
  const std::string& action = args.positional[0];
  auto stub = v1::QuestionnaireService::NewStub(NewChannel());
  if (action == "list") {
    if (args.positional.size() != 1) {
      return UsageError("questionnaire", "list takes no further argument");
    }
    v1::ListQuestionnairesResponse response;
    grpc::Status status = stub->ListQuestionnaires(
        NewContext().get(), v1::ListQuestionnairesRequest(), &response);
    if (!status.ok()) return ReportRpcError(status);
    if (absl::GetFlag(FLAGS_json)) return PrintJson(response);
    for (const v1::Questionnaire& q : response.questionnaires()) {
      std::printf("%-14s v%-3d %-3d items  %-22s %s\n", q.id().c_str(),
                  q.version(), q.items_size(), q.plugin().c_str(),
                  q.title().c_str());
    }
    return kExitOk;
  }
  if (action == "show") {
    if (args.positional.size() != 2) {
      return UsageError("questionnaire", "show needs an instrument id");
    }
    std::vector<std::string> id_version =
        absl::StrSplit(args.positional[1], absl::MaxSplits('@', 1));
    v1::GetQuestionnaireRequest request;
    request.set_id(id_version[0]);
    int version = 0;
    if (id_version.size() == 2 && !absl::SimpleAtoi(id_version[1], &version)) {
      return UsageError("questionnaire", "version after @ must be a number");
    }
    request.set_version(version);
    v1::Questionnaire q;
    grpc::Status status =
        stub->GetQuestionnaire(NewContext().get(), request, &q);
    if (!status.ok()) return ReportRpcError(status);
    if (absl::GetFlag(FLAGS_json)) return PrintJson(q);
    PrintQuestionnaire(q);
    return kExitOk;
  }
  return UsageError(
      "questionnaire",
      absl::StrCat("unknown action \"", action, "\" (expected list or show)"));
}

// ---------------------------------------------------------------- score

int RunScore(const ParsedArgs& args) {
  v1::ScoreResponseRequest request;
  v1::QuestionnaireResponse* response = request.mutable_response();
  std::vector<std::string> id_version =
      absl::StrSplit(args.positional[0], absl::MaxSplits('@', 1));
  response->set_questionnaire_id(id_version[0]);
  int version = 0;
  if (id_version.size() == 2 && !absl::SimpleAtoi(id_version[1], &version)) {
    return UsageError("score", "version after @ must be a number");
  }
  response->set_questionnaire_version(version);
  const std::string answers_file = absl::GetFlag(FLAGS_answers);
  if (!answers_file.empty()) {
    if (args.positional.size() > 1) {
      return UsageError("score",
                        "give answers either as ITEM=VALUE or in "
                        "--answers FILE, not both");
    }
    absl::StatusOr<std::string> text = ReadFileToString(answers_file);
    if (!text.ok()) {
      std::fprintf(stderr, "error: %s\n",
                   std::string(text.status().message()).c_str());
      return kExitFailure;
    }
    absl::StatusOr<v1::ScoreResponseRequest> parsed =
        cli::ParseAnswersFile(answers_file, *text, id_version[0], version);
    if (!parsed.ok()) {
      std::fprintf(stderr, "error: INVALID_ARGUMENT: %s\n",
                   std::string(parsed.status().message()).c_str());
      return kExitFailure;
    }
    request = *std::move(parsed);
    response = request.mutable_response();
  }
  for (size_t i = 1; i < args.positional.size(); ++i) {
    std::vector<std::string> kv =
        absl::StrSplit(args.positional[i], absl::MaxSplits('=', 1));
    int value = 0;
    if (kv.size() != 2 || kv[0].empty() || !absl::SimpleAtoi(kv[1], &value)) {
      return UsageError("score", absl::StrCat("\"", args.positional[i],
                                              "\" is not ITEM=VALUE"));
    }
    (*response->mutable_answers())[kv[0]] = value;
  }
  auto stub = v1::QuestionnaireService::NewStub(NewChannel());
  v1::ScoreResponseResponse scored;
  grpc::Status status =
      stub->ScoreResponse(NewContext().get(), request, &scored);
  if (!status.ok()) return ReportRpcError(status);
  if (!answers_file.empty()) {
    std::printf(
        "%s\n",
        cli::ScoreResultJson(response->questionnaire_id(), scored).c_str());
    return kExitOk;
  }
  if (absl::GetFlag(FLAGS_json)) return PrintJson(scored);
  std::map<std::string, double> scores(scored.scores().begin(),
                                       scored.scores().end());
  for (const auto& [name, value] : scores) {
    std::printf("%s = %s\n", name.c_str(), absl::StrCat(value).c_str());
  }
  if (!scored.band().empty()) std::printf("band: %s\n", scored.band().c_str());
  for (const std::string& flag : scored.flags()) {
    std::printf("flag: %s\n", flag.c_str());
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
      {.name = "token", .value_name = "TOKEN"},
      {.name = "token_file", .value_name = "FILE"},
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
  if (!absl::GetFlag(FLAGS_token).empty() &&
      !absl::GetFlag(FLAGS_token_file).empty()) {
    return absl::InvalidArgumentError("give --token or --token_file, not both");
  }
  if (!absl::GetFlag(FLAGS_token_file).empty() &&
      !ReadFileToString(absl::GetFlag(FLAGS_token_file)).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token_file: cannot read ", absl::GetFlag(FLAGS_token_file)));
  }
  return absl::OkStatus();
}

// Over 100 lines on purpose: this is the command table (one entry per
// subcommand, its spec and handler), read and kept as a whole.
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
                  "first: it lists what changes between\nthe versions (as "
                  "'ipsrt diff' does) and what would move, and writes\n"
                  "nothing. Safe to retry with the same --request_id.",
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
        {.spec = {.name = "reminders",
                  .synopsis = "reminders list|watch [flags]",
                  .description =
                      "List or watch the tenant's reminders.\n\n"
                      "list: reminders due by now, earliest first (by default "
                      "those not yet sent;\n--status picks another status). "
                      "watch: stream reminders as they are sent,\nfail, are "
                      "cancelled at send time or acknowledged; resume with "
                      "--cursor.\nEach line: status, local due time, zone, UTC "
                      "due time, name, task\n(and cursor).",
                  .flags = {{.name = "status", .value_name = "STATUS"},
                            {.name = "cursor", .value_name = "CURSOR"},
                            {.name = "count", .value_name = "N"}},
                  .global_flags = GlobalFlags(),
                  .min_positional = 1,
                  .max_positional = 1},
         .run = RunReminders},
        {.spec = {.name = "reload",
                  .synopsis = "reload [flags]",
                  .description =
                      "Ask the server to re-read its workflow templates (as "
                      "SIGHUP does).\nA set with any error is refused whole; "
                      "its diagnostics are printed and\nthe exit status is 1.",
                  .flags = {},
                  .global_flags = GlobalFlags()},
         .run = RunReload},
        {.spec = {.name = "plugins",
                  .synopsis = "plugins [flags]",
                  .description =
                      "List the plugins the server loaded: name, version, "
                      "kinds, transport,\nhealth (SERVING or NOT_SERVING) and "
                      "path.",
                  .flags = {},
                  .global_flags = GlobalFlags()},
         .run = RunPlugins},
        {.spec = {.name = "questionnaire",
                  .synopsis = "questionnaire list | questionnaire show "
                              "ID[@VERSION] [flags]",
                  .description =
                      "List the instruments the server's questionnaire "
                      "plugins serve, or show\none with its items, answer "
                      "options and bands.",
                  .flags = {},
                  .global_flags = GlobalFlags(),
                  .min_positional = 1,
                  .max_positional = 2},
         .run = RunQuestionnaire},
        {.spec = {.name = "score",
                  .synopsis = "score ID[@VERSION] ITEM=VALUE... | score "
                              "ID[@VERSION] --answers=FILE [flags]",
                  .description =
                      "Validate and score answers with the instrument's "
                      "plugin; records nothing.\n\nPrints each score, the "
                      "band and any flags, e.g.\n  ipsrt score phq9 1=2 2=1 "
                      "... 9=0\nWith --answers FILE (JSON: {\"answers\": "
                      "{\"1\": 0, ...}}, or for srm5/srm17\n{\"days\": "
                      "[{\"date\": \"2026-03-02\", \"activities\": "
                      "{\"to_bed\": \"23:00\"}}, ...]}) it prints\none "
                      "JSON object: instrument, scores, band, flags; for the "
                      "SRM also\nscore (null when nothing qualifies), "
                      "qualifying_activities, hits, ali and each\nactivity's "
                      "habitual time.",
                  .flags = {{.name = "answers", .value_name = "FILE"}},
                  .global_flags = GlobalFlags(),
                  .min_positional = 1,
                  .max_positional = kAnyNumberOfArguments},
         .run = RunScore},
    };
    for (Command& c : ExportCommands()) commands->push_back(std::move(c));
    for (Command& c : ReportCommands()) commands->push_back(std::move(c));
    for (Command& c : SecurityCommands()) commands->push_back(std::move(c));
    // Offline tools (cli/tools.h) come after the server commands.
    for (Command& tool : ToolCommands()) commands->push_back(std::move(tool));
    for (Command& c : StoreCommands()) commands->push_back(std::move(c));
    return commands;
  }();
  return *kCommands;
}

}  // namespace ipsrt::cli
