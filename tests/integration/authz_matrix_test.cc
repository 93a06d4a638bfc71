// The authorization matrix, generated: every ipsrt.v1 method in the
// descriptor pool x every role x {own resource, other tenant, other
// patient}, called over real loopback gRPC with real API tokens, asserting
// the exact status code. The expected codes come from this file's own
// statement of the rules (kAllowed and Expected below), not from the
// engine's table, so a mistake in either shows up here.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "auth/authenticator.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/client_unary_call.h"
#include "grpcpp/impl/rpc_method.h"
#include "grpcpp/support/sync_stream.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/audit.grpc.pb.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/export.grpc.pb.h"
#include "ipsrt/v1/plugin.grpc.pb.h"
#include "ipsrt/v1/questionnaire.grpc.pb.h"
#include "ipsrt/v1/reminder.grpc.pb.h"
#include "ipsrt/v1/report.grpc.pb.h"
#include "ipsrt/v1/store.grpc.pb.h"
#include "ipsrt/v1/workflow.grpc.pb.h"
#include "service/server.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using google::protobuf::Message;
using grpc::StatusCode;

const absl::Time kNow = absl::FromUnixSeconds(1790000000);

// Who may call what: the security model as the README states it.
const std::set<std::string> kEveryone = {"admin", "clinician", "patient",
                                         "integration"};
const std::set<std::string> kStaff = {"admin", "clinician", "integration"};
const std::map<std::string, std::set<std::string>>& Allowed() {
  static const auto* const k = new std::map<std::string, std::set<std::string>>{
      {"DiagnosticsService/Ping", kEveryone},
      {"DiagnosticsService/GetServerInfo", kStaff},
      {"WorkflowService/ListWorkflows", kEveryone},
      {"WorkflowService/GetWorkflow", kEveryone},
      {"WorkflowService/ValidateWorkflow", kStaff},
      {"WorkflowService/ReloadWorkflows", {"admin"}},
      {"WorkflowService/MigrateEnrollments", {"admin"}},
      {"EnrollmentService/CreateEnrollment", kStaff},
      {"EnrollmentService/GetEnrollment", kEveryone},
      {"EnrollmentService/ListEnrollments", kEveryone},
      {"EnrollmentService/UpdateEnrollment", kStaff},
      {"EnrollmentService/ListTasks", kEveryone},
      {"EnrollmentService/SubmitEvent", kEveryone},
      {"EnrollmentService/GetTimeline", kEveryone},
      {"QuestionnaireService/ListQuestionnaires", kEveryone},
      {"QuestionnaireService/GetQuestionnaire", kEveryone},
      {"QuestionnaireService/ScoreResponse", kEveryone},
      {"ReminderService/ListDueReminders", kStaff},
      {"ReminderService/WatchReminders", {"admin", "integration"}},
      {"ReminderService/AckReminder", kEveryone},
      {"ExportService/ExportEnrollment", kStaff},
      {"ExportService/PushEnrollment", kStaff},
      {"ExportService/BulkExport", {"admin", "integration"}},
      {"PluginService/ListPlugins", {"admin"}},
      {"AuditService/ListAuditRecords", {"admin"}},
      {"AuditService/VerifyAuditChain", {"admin"}},
      {"AuditService/VerifyStore", {"admin"}},
      {"StoreService/CheckStore", {"admin"}},
      {"ReportService/RenderReport", kEveryone},
  };
  return *k;
}

enum class Target { kOwn, kOtherTenant, kOtherPatient };
const char* TargetName(Target t) {
  switch (t) {
    case Target::kOwn:
      return "own";
    case Target::kOtherTenant:
      return "other-tenant";
    case Target::kOtherPatient:
      return "other-patient";
  }
  return "?";
}

// How a method's request addresses data.
enum class Shape { kNone, kParent, kEnrollment };
Shape ShapeOf(const google::protobuf::MethodDescriptor* m) {
  const std::string& method = m->name();
  if (m->service()->name() == "AuditService") return Shape::kNone;
  if (method == "ListTasks") return Shape::kEnrollment;  // parent = name
  const google::protobuf::Descriptor* in = m->input_type();
  if (in->FindFieldByName("parent") != nullptr) return Shape::kParent;
  if (in->FindFieldByName("name") != nullptr &&
      m->service()->name() != "QuestionnaireService") {
    return Shape::kEnrollment;
  }
  return Shape::kNone;
}

// What an admitted call answers on the matrix's data: success, except
// where the generic request cannot succeed once past authorization (the
// point is that it got past it): an empty instrument id or response, a
// reminder id that is not a number, and a watch stream that stays open
// until the client's deadline.
StatusCode AdmittedOutcome(const google::protobuf::MethodDescriptor* m) {
  const std::string& method = m->name();
  if (method == "GetQuestionnaire" || method == "ScoreResponse" ||
      method == "AckReminder") {
    return StatusCode::INVALID_ARGUMENT;
  }
  if (method == "WatchReminders") return StatusCode::DEADLINE_EXCEEDED;
  return StatusCode::OK;
}

class AuthzMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStore::Options o;
    o.path = dir_.File("ipsrt.db");
    store_ = *SqliteStore::Open(o);
    // ipsrt-standard in versions 1 and 2, so a migration dry run is valid.
    const std::string wf = dir_.File("workflows");
    std::filesystem::create_directories(wf);
    std::ifstream in(std::string(IPSRT_SOURCE_DIR) +
                     "/workflows/ipsrt-standard.yaml");
    std::stringstream text;
    text << in.rdbuf();
    std::string v1_yaml = text.str();
    std::string v2_yaml = v1_yaml;
    v2_yaml.replace(v2_yaml.find("\nversion: 1\n"), 12, "\nversion: 2\n");
    std::ofstream(wf + "/standard-v1.yaml") << v1_yaml;
    std::ofstream(wf + "/standard-v2.yaml") << v2_yaml;
    absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
        WorkflowCatalog::LoadDirectories({wf});
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    workflows_ = std::make_unique<WorkflowRegistry>(
        *catalog, std::vector<std::string>{wf});

    AuthConfig auth;
    auth.mode = AuthMode::kRequired;
    auto token = [&](std::string secret, std::string role, std::string tenant,
                     std::string patient) {
      auth.api_tokens.push_back(ApiTokenConfig{
          .sha256 = HashApiToken(secret),
          .subject = absl::StrCat(role, "-", tenant.empty() ? "all" : tenant),
          .role = role,
          .tenant = tenant,
          .patient_ref = patient});
      return secret;
    };
    tokens_["admin"] = token("tok-admin-a", "admin", "a", "");
    tokens_["clinician"] = token("tok-clinician-a", "clinician", "a", "");
    tokens_["integration"] = token("tok-integration-a", "integration", "a", "");
    tokens_["patient"] = token("tok-patient-a1", "patient", "a", "Patient/1");
    root_token_ = token("tok-root", "admin", "", "");
    // Tenant c lets its integration callers record clinical events.
    clinical_ehr_token_ = token("tok-integration-c", "integration", "c", "");
    auth.integration_clinical_tenants = {"c"};
    authenticator_ = *Authenticator::Create(auth);

    // The built-in instruments, so that submitted responses are scored,
    // and the test exporter, so that export calls succeed once admitted.
    PluginConfig core;
    core.path = "libipsrt_core_instruments.so";
    core.location = "ipsrtd.yaml:1:1";
    PluginConfig exporter;
    exporter.path = IPSRT_TEST_EXPORTER;
    exporter.location = "ipsrtd.yaml:2:1";
    PluginHostOptions host;
    host.plugin_dir = IPSRT_PLUGIN_DIR;
    plugins_ = *PluginRegistry::Load({core, exporter}, host);
    exports_.root = dir_.File("exports");
    exports_.targets.push_back({.name = "ehr",
                                .format = "test-transaction",
                                .deliverer = "test-exporter"});
    questionnaires_ = *QuestionnaireCatalog::Build(*plugins_);
    ServerDeps deps{store_.get(), &clock_, &ids_, workflows_.get(), {}};
    deps.plugins = plugins_.get();
    deps.questionnaires = questionnaires_.get();
    deps.authenticator = authenticator_.get();
    deps.exports = &exports_;
    server_ = *IpsrtServer::Start(ServerOptions{"127.0.0.1:0", 1 << 20}, deps);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());

    own_ = Enroll("a", "Patient/1");
    other_patient_ = Enroll("a", "Patient/2");
    other_tenant_ = Enroll("b", "Patient/1");
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
    if (store_) store_->Close();
  }

  std::string Enroll(const std::string& tenant, const std::string& patient) {
    v1::CreateEnrollmentRequest r;
    r.set_parent("tenants/" + tenant);
    r.set_request_id(absl::StrCat("setup-", tenant, "-", ++counter_));
    r.set_patient_ref(patient);
    r.set_workflow_id("ipsrt-standard");
    r.set_workflow_version(1);
    r.set_time_zone("Europe/London");
    r.set_clinician_ref("Practitioner/1");
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + root_token_);
    v1::Enrollment e;
    grpc::Status s =
        v1::EnrollmentService::NewStub(channel_)->CreateEnrollment(&ctx, r, &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return e.name();
  }

  // Request builds a valid request of `m` aimed at `target` as seen by a
  // caller of tenant "a" who is Patient/1 (when a patient).
  std::unique_ptr<Message> Request(const google::protobuf::MethodDescriptor* m,
                                   Target target) {
    std::unique_ptr<Message> req(
        google::protobuf::MessageFactory::generated_factory()
            ->GetPrototype(m->input_type())
            ->New());
    const std::string enrollment = target == Target::kOwn ? own_
                                   : target == Target::kOtherTenant
                                       ? other_tenant_
                                       : other_patient_;
    const std::string parent =
        target == Target::kOtherTenant ? "tenants/b" : "tenants/a";
    const std::string method = m->name();
    auto set = [&](const char* field, const std::string& value) {
      const auto* f = req->GetDescriptor()->FindFieldByName(field);
      ASSERT_NE(f, nullptr) << m->full_name() << " " << field;
      req->GetReflection()->SetString(req.get(), f, value);
    };
    switch (ShapeOf(m)) {
      case Shape::kParent:
        set("parent", parent);
        break;
      case Shape::kEnrollment:
        set(method == "ListTasks" ? "parent" : "name",
            method == "AckReminder" ? enrollment + "/reminders/r1"
                                    : enrollment);
        break;
      case Shape::kNone:
        break;
    }
    if (req->GetDescriptor()->FindFieldByName("request_id") != nullptr) {
      set("request_id", absl::StrCat("m-", ++counter_));
    }
    if (method == "ListEnrollments") {
      // A patient lists their own enrollments; "other patient" asks for
      // someone else's.
      set("patient_ref",
          target == Target::kOtherPatient ? "Patient/2" : "Patient/1");
    } else if (method == "CreateEnrollment") {
      auto* r = static_cast<v1::CreateEnrollmentRequest*>(req.get());
      r->set_patient_ref(target == Target::kOtherPatient ? "Patient/2"
                                                         : "Patient/1");
      r->set_workflow_id("ipsrt-standard");
      r->set_time_zone("Europe/London");
      r->set_clinician_ref("Practitioner/1");
    } else if (method == "UpdateEnrollment") {
      static_cast<v1::UpdateEnrollmentRequest*>(req.get())->set_clinician_ref(
          absl::StrCat("Practitioner/", counter_));
    } else if (method == "SubmitEvent") {
      auto* q = static_cast<v1::SubmitEventRequest*>(req.get())
                    ->mutable_event()
                    ->mutable_questionnaire_response();
      q->set_questionnaire_id("phq9");
      for (int i = 1; i <= 9; ++i) (*q->mutable_answers())[absl::StrCat(i)] = 0;
    } else if (method == "GetWorkflow") {
      static_cast<v1::GetWorkflowRequest*>(req.get())->set_id("ipsrt-standard");
    } else if (method == "MigrateEnrollments") {
      auto* r = static_cast<v1::MigrateEnrollmentsRequest*>(req.get());
      r->set_workflow_id("ipsrt-standard");
      r->set_from_version(1);
      r->set_to_version(2);
      (*r->mutable_stage_mapping())["initial"] = "initial";
      r->set_dry_run(true);
    } else if (method == "ExportEnrollment") {
      static_cast<v1::ExportEnrollmentRequest*>(req.get())->set_format(
          "test-collection");
    } else if (method == "BulkExport") {
      auto* r = static_cast<v1::BulkExportRequest*>(req.get());
      r->set_output_dir(absl::StrCat("m-", ++counter_));
      r->set_format("test-resources");
    } else if (method == "ListAuditRecords") {
      static_cast<v1::ListAuditRecordsRequest*>(req.get())->set_tenant(
          target == Target::kOtherTenant ? "b" : "a");
    }
    return req;
  }

  StatusCode Call(const google::protobuf::MethodDescriptor* m,
                  const Message& request, const std::string& token) {
    const std::string path =
        absl::StrCat("/", m->service()->full_name(), "/", m->name());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    std::unique_ptr<Message> response(
        google::protobuf::MessageFactory::generated_factory()
            ->GetPrototype(m->output_type())
            ->New());
    if (m->server_streaming()) {
      // An admitted watch stays open: a short deadline ends it. A bulk
      // export ends by itself.
      if (m->name() == "WatchReminders") {
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(500));
      }
      grpc::internal::RpcMethod rpc(
          path.c_str(), grpc::internal::RpcMethod::SERVER_STREAMING);
      std::unique_ptr<grpc::ClientReader<Message>> reader(
          grpc::internal::ClientReaderFactory<Message>::Create(
              channel_.get(), rpc, &ctx, request));
      while (reader->Read(response.get())) {
      }
      return reader->Finish().error_code();
    }
    grpc::internal::RpcMethod rpc(path.c_str(),
                                  grpc::internal::RpcMethod::NORMAL_RPC);
    return grpc::internal::BlockingUnaryCall<Message, Message>(
               channel_.get(), rpc, &ctx, request, response.get())
        .error_code();
  }

  // Expected is the rule, stated once: role first, then scope.
  static StatusCode Expected(const google::protobuf::MethodDescriptor* m,
                             const std::string& role, Target target) {
    const std::string key = absl::StrCat(m->service()->name(), "/", m->name());
    if (!Allowed().at(key).count(role)) return StatusCode::PERMISSION_DENIED;
    const StatusCode success = AdmittedOutcome(m);
    const std::string method = m->name();
    if (m->service()->name() == "StoreService") {
      // Deployment internals: never a tenant's admin.
      return StatusCode::PERMISSION_DENIED;
    }
    if (m->service()->name() == "AuditService") {
      // A tenant's admin: only their tenant's records, never the
      // deployment-wide chain.
      if (method == "VerifyAuditChain" || method == "VerifyStore") {
        return StatusCode::PERMISSION_DENIED;
      }
      return target == Target::kOtherTenant ? StatusCode::PERMISSION_DENIED
                                            : success;
    }
    switch (ShapeOf(m)) {
      case Shape::kNone:
        return success;
      case Shape::kParent:
        if (target == Target::kOtherTenant) {
          return StatusCode::PERMISSION_DENIED;
        }
        if (target == Target::kOtherPatient && role == "patient") {
          return StatusCode::PERMISSION_DENIED;
        }
        return success;
      case Shape::kEnrollment:
        if (target == Target::kOtherTenant) return StatusCode::NOT_FOUND;
        if (target == Target::kOtherPatient && role == "patient") {
          return StatusCode::NOT_FOUND;
        }
        return success;
    }
    return StatusCode::INTERNAL;
  }

  std::vector<const google::protobuf::MethodDescriptor*> AllMethods() {
    std::vector<const google::protobuf::MethodDescriptor*> out;
    for (const char* name : {v1::DiagnosticsService::service_full_name(),
                             v1::WorkflowService::service_full_name(),
                             v1::EnrollmentService::service_full_name(),
                             v1::QuestionnaireService::service_full_name(),
                             v1::ReminderService::service_full_name(),
                             v1::ExportService::service_full_name(),
                             v1::PluginService::service_full_name(),
                             v1::AuditService::service_full_name(),
                             v1::ReportService::service_full_name(),
                             v1::StoreService::service_full_name()}) {
      const google::protobuf::ServiceDescriptor* s =
          google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
              name);
      EXPECT_NE(s, nullptr) << name;
      if (s == nullptr) continue;
      for (int i = 0; i < s->method_count(); ++i) out.push_back(s->method(i));
    }
    return out;
  }

  testing::TempDir dir_;
  FakeClock clock_{kNow};
  RandomIdGenerator ids_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<WorkflowRegistry> workflows_;
  std::unique_ptr<PluginRegistry> plugins_;
  std::unique_ptr<QuestionnaireCatalog> questionnaires_;
  std::unique_ptr<Authenticator> authenticator_;
  ExportConfig exports_;
  std::unique_ptr<IpsrtServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::map<std::string, std::string> tokens_;
  std::string root_token_;
  std::string clinical_ehr_token_;
  std::string own_, other_patient_, other_tenant_;
  int counter_ = 0;
};

TEST_F(AuthzMatrixTest, EveryRoleEveryRpcEveryTarget) {
  std::vector<const google::protobuf::MethodDescriptor*> methods = AllMethods();
  ASSERT_EQ(methods.size(), Allowed().size())
      << "a method was added: state who may call it in Allowed()";
  int cells = 0, allowed_cells = 0;
  for (const auto* m : methods) {
    for (const auto& [role, token] : tokens_) {
      for (Target t :
           {Target::kOwn, Target::kOtherTenant, Target::kOtherPatient}) {
        std::unique_ptr<Message> request = Request(m, t);
        StatusCode want = Expected(m, role, t);
        StatusCode got = Call(m, *request, token);
        EXPECT_EQ(got, want)
            << m->full_name() << " as " << role << " on " << TargetName(t)
            << ": got code " << got << ", want " << want;
        ++cells;
        allowed_cells += want == StatusCode::OK;
      }
    }
  }
  EXPECT_EQ(cells, 29 * 4 * 3);
  // The matrix is not vacuous: plenty of calls do succeed.
  EXPECT_GT(allowed_cells, 50);
}

TEST_F(AuthzMatrixTest, EveryRpcNeedsAToken) {
  for (const auto* m : AllMethods()) {
    std::unique_ptr<Message> request = Request(m, Target::kOwn);
    EXPECT_EQ(Call(m, *request, ""), StatusCode::UNAUTHENTICATED)
        << m->full_name();
    EXPECT_EQ(Call(m, *request, "tok-not-configured"),
              StatusCode::UNAUTHENTICATED)
        << m->full_name();
  }
}

TEST_F(AuthzMatrixTest, TheDeploymentAdminReachesEveryTenant) {
  for (const auto* m : AllMethods()) {
    std::unique_ptr<Message> request = Request(m, Target::kOtherTenant);
    EXPECT_EQ(Call(m, *request, root_token_), AdmittedOutcome(m))
        << m->full_name();
  }
}

TEST_F(AuthzMatrixTest, OtherTenantsEnrollmentReadsLikeAMissingOne) {
  v1::GetEnrollmentRequest r;
  r.set_name(other_tenant_);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + tokens_["clinician"]);
  v1::Enrollment e;
  grpc::Status theirs =
      v1::EnrollmentService::NewStub(channel_)->GetEnrollment(&ctx, r, &e);
  // The same name in b, but not existing: the same answer.
  std::string missing = other_tenant_.substr(0, other_tenant_.rfind('/') + 1) +
                        "00000000000000000000000000";
  r.set_name(missing);
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "Bearer " + tokens_["clinician"]);
  grpc::Status absent =
      v1::EnrollmentService::NewStub(channel_)->GetEnrollment(&ctx2, r, &e);
  EXPECT_EQ(theirs.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(absent.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(theirs.error_message(),
            absl::StrCat("enrollment ", other_tenant_, " not found"));
  EXPECT_EQ(absent.error_message(),
            absl::StrCat("enrollment ", missing, " not found"));
}

TEST_F(AuthzMatrixTest, EventsCarryTheAuthenticatedActorAndCallsAreAudited) {
  v1::SubmitEventRequest r;
  r.set_name(own_);
  r.set_request_id("actor-1");
  auto* q = r.mutable_event()->mutable_questionnaire_response();
  q->set_questionnaire_id("phq9");
  for (int i = 1; i <= 9; ++i) (*q->mutable_answers())[absl::StrCat(i)] = 0;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + tokens_["patient"]);
  v1::SubmitEventResponse response;
  grpc::Status s =
      v1::EnrollmentService::NewStub(channel_)->SubmitEvent(&ctx, r, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.event().actor().subject(), "patient-a");
  EXPECT_EQ(response.event().actor().role(), "patient");
  // A retry is answered from the idempotency record, and audited as such.
  grpc::ClientContext retry_ctx;
  retry_ctx.AddMetadata("authorization", "Bearer " + tokens_["patient"]);
  v1::SubmitEventResponse replayed;
  s = v1::EnrollmentService::NewStub(channel_)->SubmitEvent(&retry_ctx, r,
                                                            &replayed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(replayed.event().sequence(), response.event().sequence());

  // A refused read by the same patient.
  v1::GetEnrollmentRequest get;
  get.set_name(other_patient_);
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "Bearer " + tokens_["patient"]);
  ctx2.AddMetadata("x-request-id", "trace-7");
  v1::Enrollment e;
  EXPECT_EQ(v1::EnrollmentService::NewStub(channel_)
                ->GetEnrollment(&ctx2, get, &e)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::ListAuditRecordsRequest list;
  list.set_subject("patient-a");
  grpc::ClientContext ctx3;
  ctx3.AddMetadata("authorization", "Bearer " + root_token_);
  v1::ListAuditRecordsResponse records;
  s = v1::AuditService::NewStub(channel_)->ListAuditRecords(&ctx3, list,
                                                            &records);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(records.records_size(), 3);
  const v1::AuditRecord& change = records.records(0);
  EXPECT_EQ(change.tenant(), "a");
  EXPECT_EQ(change.role(), "patient");
  EXPECT_EQ(change.rpc(), "/ipsrt.v1.EnrollmentService/SubmitEvent");
  EXPECT_EQ(change.resource(), own_);
  EXPECT_EQ(change.outcome(), "OK");
  EXPECT_EQ(change.request_id(), "actor-1");
  EXPECT_EQ(records.records(1).outcome(), "OK (replayed)");
  EXPECT_EQ(records.records(1).request_id(), "actor-1");
  const v1::AuditRecord& refused = records.records(2);
  EXPECT_EQ(refused.rpc(), "/ipsrt.v1.EnrollmentService/GetEnrollment");
  EXPECT_EQ(refused.resource(), other_patient_);
  EXPECT_EQ(refused.outcome(), "NOT_FOUND");
  EXPECT_EQ(refused.request_id(), "trace-7");

  v1::VerifyAuditChainResponse verified;
  grpc::ClientContext ctx4;
  ctx4.AddMetadata("authorization", "Bearer " + root_token_);
  s = v1::AuditService::NewStub(channel_)->VerifyAuditChain(
      &ctx4, v1::VerifyAuditChainRequest(), &verified);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(verified.intact()) << verified.reason();
  // Three setup enrollments, the event, its retry and the refused read.
  EXPECT_EQ(verified.records_verified(), 6);
}

TEST_F(AuthzMatrixTest, AuditRecordsPageAndFilter) {
  auto list = [&](const v1::ListAuditRecordsRequest& r,
                  v1::ListAuditRecordsResponse* out) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + root_token_);
    return v1::AuditService::NewStub(channel_)->ListAuditRecords(&ctx, r, out);
  };
  // The three setup enrollments: tenants a, a, b.
  v1::ListAuditRecordsRequest r;
  r.set_rpc("/ipsrt.v1.EnrollmentService/CreateEnrollment");
  r.set_page_size(2);
  v1::ListAuditRecordsResponse first;
  ASSERT_TRUE(list(r, &first).ok());
  ASSERT_EQ(first.records_size(), 2);
  EXPECT_EQ(first.records(0).seq(), 1);
  EXPECT_EQ(first.records(1).seq(), 2);
  ASSERT_FALSE(first.next_page_token().empty());
  r.set_page_token(first.next_page_token());
  v1::ListAuditRecordsResponse second;
  ASSERT_TRUE(list(r, &second).ok());
  ASSERT_EQ(second.records_size(), 1);
  EXPECT_EQ(second.records(0).tenant(), "b");
  EXPECT_EQ(second.next_page_token(), "");
  // A token is bound to its filters.
  r.set_tenant("a");
  v1::ListAuditRecordsResponse ignored;
  EXPECT_EQ(list(r, &ignored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r.clear_page_token();
  v1::ListAuditRecordsResponse tenant_a;
  ASSERT_TRUE(list(r, &tenant_a).ok());
  EXPECT_EQ(tenant_a.records_size(), 2);
  // A time window after every record is empty.
  r.clear_tenant();
  r.mutable_start_time()->set_seconds(absl::ToUnixSeconds(kNow) + 1);
  v1::ListAuditRecordsResponse later;
  ASSERT_TRUE(list(r, &later).ok());
  EXPECT_EQ(later.records_size(), 0);
}

// Who may record which event through SubmitEvent: the security model as the
// README states it. "integration+" is an integration caller of a tenant
// listed in auth.integration_clinical_tenants.
const std::set<std::string> kEventEveryone = {"admin", "clinician", "patient",
                                              "integration", "integration+"};
const std::set<std::string> kClinical = {"admin", "clinician", "integration+"};
const std::map<std::string, std::set<std::string>>& EventAuthors() {
  static const auto* const k = new std::map<std::string, std::set<std::string>>{
      {"questionnaire_response", kEventEveryone},
      {"srm_diary_day", kEventEveryone},
      // Patients and integration callers of unlisted tenants: only tasks
      // assigned to the patient.
      {"task_completed", kEventEveryone},
      {"session_held", kClinical},
      {"goal_set", kClinical},
      {"relapse_plan", kClinical},
      {"disruption_plan", kClinical},
      {"stage_change", kClinical},
      {"alert_acknowledged", kClinical},
      {"time_elapsed", {"admin", "clinician", "integration", "integration+"}},
      // Recorded by their own RPCs: INVALID_ARGUMENT for everyone.
      {"enrollment_created", {}},
      {"enrollment_updated", {}},
      {"workflow_migrated", {}},
      {"reminder_acknowledged", {}},
  };
  return *k;
}

// The urgent alert a PHQ-9 with item 9 > 0 raises as an enrollment's second
// event ("<rule id>-<event sequence>").
constexpr char kAlertId[] = "phq9-item9-2";

// A payload of `type` that the engine accepts on a fresh enrollment of
// ipsrt-standard (in stage "initial", with an open urgent alert).
v1::EventPayload EventOf(const std::string& type) {
  v1::EventPayload p;
  const auto* field = v1::EventPayload::descriptor()->FindFieldByName(type);
  EXPECT_NE(field, nullptr) << type;
  if (field == nullptr) return p;
  p.GetReflection()->MutableMessage(&p, field);  // sets the oneof
  if (type == "questionnaire_response") {
    auto* q = p.mutable_questionnaire_response();
    q->set_questionnaire_id("phq9");
    for (int i = 1; i <= 9; ++i) (*q->mutable_answers())[absl::StrCat(i)] = 0;
  } else if (type == "srm_diary_day") {
    auto* d = p.mutable_srm_diary_day();
    d->set_local_date(absl::FormatCivilTime(
        absl::ToCivilDay(kNow, absl::UTCTimeZone())));  // London: UTC+1
    d->set_instrument("srm5");
    auto* a = d->add_activities();
    a->set_activity("out_of_bed");
    a->set_local_time("07:30");
    a->set_people_code(0);
  } else if (type == "task_completed") {
    p.mutable_task_completed()->set_task_id("history");  // the clinician's
  } else if (type == "session_held") {
    p.mutable_session_held()->mutable_start_time()->set_seconds(
        absl::ToUnixSeconds(kNow));
    p.mutable_session_held()->set_duration_minutes(50);
  } else if (type == "goal_set") {
    p.mutable_goal_set()->set_problem_area("role_transition");
    p.mutable_goal_set()->set_description("a goal");
  } else if (type == "relapse_plan") {
    p.mutable_relapse_plan()->add_early_warning_signs("sleeping less");
  } else if (type == "disruption_plan") {
    p.mutable_disruption_plan()->set_kind("travel");
    p.mutable_disruption_plan()->set_plan("a plan");
  } else if (type == "stage_change") {
    p.mutable_stage_change()->set_to_stage("maintenance");
    p.mutable_stage_change()->set_reason("test");
  } else if (type == "alert_acknowledged") {
    // Raised by the enrollment's second event (FreshWithAlert).
    p.mutable_alert_acknowledged()->set_alert_id(kAlertId);
  }
  return p;
}

class EventMatrixTest : public AuthzMatrixTest {
 protected:
  struct Caller {
    std::string label;
    std::string token;
    std::string tenant;
  };
  std::vector<Caller> Callers() {
    return {{"admin", tokens_["admin"], "a"},
            {"clinician", tokens_["clinician"], "a"},
            {"patient", tokens_["patient"], "a"},
            {"integration", tokens_["integration"], "a"},
            {"integration+", clinical_ehr_token_, "c"}};
  }

  grpc::Status Submit(const std::string& token, const std::string& name,
                      const v1::EventPayload& event,
                      v1::SubmitEventResponse* response = nullptr) {
    v1::SubmitEventRequest r;
    r.set_name(name);
    r.set_request_id(absl::StrCat("ev-", ++counter_));
    *r.mutable_event() = event;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::SubmitEventResponse ignored;
    return v1::EnrollmentService::NewStub(channel_)->SubmitEvent(
        &ctx, r, response != nullptr ? response : &ignored);
  }

  // A new enrollment of `patient` in `tenant` with the urgent item-9 alert
  // open (raised by the deployment admin).
  std::string FreshWithAlert(const std::string& tenant,
                             const std::string& patient) {
    std::string name = Enroll(tenant, patient);
    v1::EventPayload phq9 = EventOf("questionnaire_response");
    (*phq9.mutable_questionnaire_response()->mutable_answers())["9"] = 3;
    v1::SubmitEventResponse r;
    grpc::Status s = Submit(root_token_, name, phq9, &r);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(
        std::count(r.flags().begin(), r.flags().end(), "phq9.item9_positive"));
    EXPECT_TRUE(std::any_of(r.event().outcomes().begin(),
                            r.event().outcomes().end(),
                            [](const v1::Outcome& o) {
                              return o.kind() == v1::Outcome::ALERT_RAISED &&
                                     o.subject() == kAlertId;
                            }));
    return name;
  }

  int64_t Revision(const std::string& name) {
    v1::GetEnrollmentRequest r;
    r.set_name(name);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + root_token_);
    v1::Enrollment e;
    grpc::Status s =
        v1::EnrollmentService::NewStub(channel_)->GetEnrollment(&ctx, r, &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return e.revision();
  }

  // The rule, stated once: the event's authors first, then scope, then a
  // patient's task.
  static StatusCode ExpectedEvent(const std::string& type,
                                  const std::string& caller, Target target) {
    const std::set<std::string>& authors = EventAuthors().at(type);
    if (authors.empty()) return StatusCode::INVALID_ARGUMENT;
    if (!authors.count(caller)) return StatusCode::PERMISSION_DENIED;
    if (target == Target::kOtherTenant) return StatusCode::NOT_FOUND;
    if (caller == "patient" && target == Target::kOtherPatient) {
      return StatusCode::NOT_FOUND;
    }
    if ((caller == "patient" || caller == "integration") &&
        type == "task_completed") {
      return StatusCode::PERMISSION_DENIED;  // "history" is the clinician's
    }
    return StatusCode::OK;
  }
};

TEST_F(EventMatrixTest, EveryEventTypeEveryRoleEveryTarget) {
  const google::protobuf::OneofDescriptor* payload =
      v1::EventPayload::descriptor()->FindOneofByName("payload");
  ASSERT_EQ(payload->field_count(), static_cast<int>(EventAuthors().size()))
      << "an event type was added: state who may record it in EventAuthors()";
  int cells = 0, allowed_cells = 0;
  for (int i = 0; i < payload->field_count(); ++i) {
    const std::string type = payload->field(i)->name();
    const v1::EventPayload event = EventOf(type);
    for (const Caller& caller : Callers()) {
      // Fresh enrollments, so every admitted call meets the same state.
      const std::string own = FreshWithAlert(caller.tenant, "Patient/1");
      const std::string theirs = FreshWithAlert(caller.tenant, "Patient/2");
      for (Target t :
           {Target::kOwn, Target::kOtherTenant, Target::kOtherPatient}) {
        const std::string& name = t == Target::kOwn           ? own
                                  : t == Target::kOtherTenant ? other_tenant_
                                                              : theirs;
        const StatusCode want = ExpectedEvent(type, caller.label, t);
        const int64_t before = want == StatusCode::OK ? 0 : Revision(name);
        grpc::Status got = Submit(caller.token, name, event);
        EXPECT_EQ(got.error_code(), want)
            << "event." << type << " as " << caller.label << " on "
            << TargetName(t) << ": got " << got.error_code() << " ("
            << got.error_message() << "), want " << want;
        if (want == StatusCode::PERMISSION_DENIED) {
          EXPECT_NE(got.error_message().find("event." + type),
                    std::string::npos)
              << got.error_message();
        }
        if (want != StatusCode::OK) {  // a refusal writes nothing
          EXPECT_EQ(Revision(name), before)
              << "event." << type << " as " << caller.label;
        }
        ++cells;
        allowed_cells += want == StatusCode::OK;
      }
    }
  }
  EXPECT_EQ(cells, 14 * 5 * 3);
  EXPECT_GT(allowed_cells, 40);
}

// The attacks of issue #18 with a patient token, each of which succeeded
// before the event axis existed; a clinician's token still does each.
TEST_F(EventMatrixTest, PatientCannotClearAlertMoveStageOrRecordClinicalActs) {
  const std::string patient = tokens_["patient"];
  const std::string clinician = tokens_["clinician"];
  const std::string name = FreshWithAlert("a", "Patient/1");
  for (const char* type : {"alert_acknowledged", "stage_change", "session_held",
                           "task_completed"}) {
    const int64_t before = Revision(name);
    grpc::Status s = Submit(patient, name, EventOf(type));
    EXPECT_EQ(s.error_code(), StatusCode::PERMISSION_DENIED) << type;
    EXPECT_NE(s.error_message().find(absl::StrCat("event.", type)),
              std::string::npos)
        << s.error_message();
    EXPECT_EQ(Revision(name), before) << type;
  }
  // The urgent task is still open for the clinician.
  v1::ListTasksRequest tasks;
  tasks.set_parent(name);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + clinician);
  v1::ListTasksResponse open;
  ASSERT_TRUE(v1::EnrollmentService::NewStub(channel_)
                  ->ListTasks(&ctx, tasks, &open)
                  .ok());
  EXPECT_TRUE(std::any_of(
      open.tasks().begin(), open.tasks().end(), [](const v1::Task& t) {
        return t.task_id() == kAlertId && t.priority() == v1::Task::URGENT;
      }));
  for (const char* type : {"alert_acknowledged", "session_held",
                           "task_completed", "stage_change"}) {
    v1::SubmitEventResponse r;
    grpc::Status s = Submit(clinician, name, EventOf(type), &r);
    EXPECT_TRUE(s.ok()) << type << ": " << s.error_message();
    EXPECT_EQ(r.event().actor().role(), "clinician");
  }
  v1::GetEnrollmentRequest get;
  get.set_name(name);
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "Bearer " + clinician);
  v1::Enrollment e;
  ASSERT_TRUE(v1::EnrollmentService::NewStub(channel_)
                  ->GetEnrollment(&ctx2, get, &e)
                  .ok());
  EXPECT_EQ(e.stage(), "maintenance");
}

TEST_F(EventMatrixTest, PatientCompletesOnlyTheirOwnTasks) {
  const std::string name = Enroll("a", "Patient/1");
  // baseline-asrm is a questionnaire task, the patient's; history the
  // clinician's.
  v1::EventPayload own;
  own.mutable_task_completed()->set_task_id("baseline-asrm");
  EXPECT_TRUE(Submit(tokens_["patient"], name, own).ok());
  v1::EventPayload theirs;
  theirs.mutable_task_completed()->set_task_id("history");
  EXPECT_EQ(Submit(tokens_["patient"], name, theirs).error_code(),
            StatusCode::PERMISSION_DENIED);
  // A response naming a clinician's task is refused the same way.
  v1::EventPayload response = EventOf("questionnaire_response");
  response.mutable_questionnaire_response()->set_task_id("history");
  grpc::Status s = Submit(tokens_["patient"], name, response);
  EXPECT_EQ(s.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(),
            "permission denied: patient may complete only tasks assigned to "
            "the patient (event.questionnaire_response.task_id)");
  // A task that does not exist is the request's own error.
  theirs.mutable_task_completed()->set_task_id("no-such-task");
  EXPECT_EQ(Submit(tokens_["patient"], name, theirs).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace ipsrt
