#include "service/services.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/export.grpc.pb.h"
#include "ipsrt/v1/plugin.grpc.pb.h"
#include "ipsrt/v1/questionnaire.grpc.pb.h"
#include "ipsrt/v1/reminder.grpc.pb.h"
#include "ipsrt/v1/workflow.grpc.pb.h"
#include "ipsrt/version.h"
#include "service/status_mapping.h"

namespace ipsrt {
namespace {

using google::protobuf::util::TimeUtil;
using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;
using v1::Diagnostic;

// Finish completes a unary call with `status` mapped once.
ServerUnaryReactor* Finish(CallbackServerContext* ctx,
                           const absl::Status& status) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Respond copies a StatusOr's value into the response and finishes.
template <typename T>
ServerUnaryReactor* Respond(CallbackServerContext* ctx,
                            absl::StatusOr<T> result, T* response) {
  if (result.ok()) *response = *std::move(result);
  return Finish(ctx, result.status());
}

ServerUnaryReactor* NotYet(CallbackServerContext* ctx, absl::string_view rpc,
                           absl::string_view missing) {
  return Finish(ctx, absl::UnimplementedError(absl::StrCat(
                         rpc, " is not implemented yet: it needs ", missing)));
}

// CallerActor is who the call acts as. Until authentication is configured
// every caller is anonymous; the loopback-only default listener is the
// access control of that deployment.
v1::Actor CallerActor(CallbackServerContext* ctx) {
  v1::Actor actor;
  actor.set_subject("anonymous");
  actor.set_role("anonymous");
  return actor;
}

class DiagnosticsServiceImpl final
    : public v1::DiagnosticsService::CallbackService {
 public:
  DiagnosticsServiceImpl(const ServerDeps& deps, absl::Time start)
      : deps_(deps), start_(start) {}

  ServerUnaryReactor* Ping(CallbackServerContext* ctx,
                           const v1::PingRequest* request,
                           v1::PingResponse* response) override {
    response->set_payload(request->payload());
    return Finish(ctx, absl::OkStatus());
  }

  ServerUnaryReactor* GetServerInfo(CallbackServerContext* ctx,
                                    const v1::GetServerInfoRequest*,
                                    v1::ServerInfo* info) override {
    info->set_version(IPSRT_VERSION);
    info->set_store_kind(std::string(deps_.store->Kind()));
    info->set_schema_version(deps_.store->SchemaVersion());
    *info->mutable_start_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(start_));
    return Finish(ctx, absl::OkStatus());
  }

 private:
  ServerDeps deps_;
  absl::Time start_;
};

void FillWorkflow(const WorkflowTemplate& t, v1::Workflow* w) {
  w->set_id(t.id);
  w->set_version(t.version);
  w->set_title(t.title);
  w->set_description(t.description);
  for (const StageTemplate& s : t.stages) {
    v1::StageSummary* stage = w->add_stages();
    stage->set_id(s.id);
    stage->set_title(s.title);
    stage->set_session_cadence(s.session_cadence);
  }
  w->set_source_yaml(t.source_yaml);
  w->set_source_sha256(t.source_sha256);
}

void FillDiagnostic(const YamlDiagnostic& d, Diagnostic* out) {
  out->set_severity(Diagnostic::ERROR);
  out->set_file(d.file);
  out->set_line(d.line);
  out->set_column(d.column);
  out->set_path(d.path);
  out->set_message(d.message);
}

class WorkflowServiceImpl final : public v1::WorkflowService::CallbackService {
 public:
  explicit WorkflowServiceImpl(const ServerDeps& deps)
      : deps_(deps),
        enrollments_({deps.store, deps.clock, deps.ids, deps.workflows,
                      deps.safety, deps.questionnaires}) {}

  ServerUnaryReactor* ListWorkflows(
      CallbackServerContext* ctx, const v1::ListWorkflowsRequest* request,
      v1::ListWorkflowsResponse* response) override {
    if (!request->page_token().empty()) {
      return Finish(ctx, absl::InvalidArgumentError(
                             "page_token: not a token returned by this server "
                             "(workflow lists fit on one page)"));
    }
    std::shared_ptr<const WorkflowCatalog> catalog = deps_.workflows->Get();
    std::string last_id;
    for (const WorkflowTemplate* t : catalog->All()) {
      if (!request->all_versions() && t->id == last_id) continue;
      last_id = t->id;
      FillWorkflow(*t, response->add_workflows());
    }
    return Finish(ctx, absl::OkStatus());
  }

  ServerUnaryReactor* GetWorkflow(CallbackServerContext* ctx,
                                  const v1::GetWorkflowRequest* request,
                                  v1::Workflow* response) override {
    if (request->id().empty()) {
      return Finish(ctx, absl::InvalidArgumentError("id: must not be empty"));
    }
    std::shared_ptr<const WorkflowCatalog> catalog = deps_.workflows->Get();
    const WorkflowTemplate* t =
        catalog->Find(request->id(), request->version());
    if (t == nullptr) {
      return Finish(
          ctx,
          absl::NotFoundError(absl::StrCat(
              "workflow ", request->id(),
              request->version() ? absl::StrCat("@", request->version()) : "",
              " is not loaded")));
    }
    FillWorkflow(*t, response);
    return Finish(ctx, absl::OkStatus());
  }

  ServerUnaryReactor* ValidateWorkflow(
      CallbackServerContext* ctx, const v1::ValidateWorkflowRequest* request,
      v1::ValidateWorkflowResponse* response) override {
    std::string file =
        request->file_name().empty() ? "workflow.yaml" : request->file_name();
    std::vector<YamlDiagnostic> diagnostics =
        DiagnoseWorkflowTemplate(request->yaml(), file);
    for (const YamlDiagnostic& d : diagnostics) {
      FillDiagnostic(d, response->add_diagnostics());
    }
    response->set_valid(diagnostics.empty());
    return Finish(ctx, absl::OkStatus());
  }

  ServerUnaryReactor* ReloadWorkflows(
      CallbackServerContext* ctx, const v1::ReloadWorkflowsRequest*,
      v1::ReloadWorkflowsResponse* response) override {
    WorkflowRegistry::ReloadResult r = deps_.workflows->Reload();
    response->set_reloaded(r.reloaded);
    for (const YamlDiagnostic& d : r.diagnostics) {
      FillDiagnostic(d, response->add_diagnostics());
    }
    for (const std::string& s : r.serving) response->add_serving(s);
    IPSRT_LOG(INFO) << "workflow reload requested over gRPC: "
                    << (r.reloaded ? "reloaded" : "refused") << ", "
                    << r.diagnostics.size() << " diagnostic(s)";
    return Finish(ctx, absl::OkStatus());
  }

  ServerUnaryReactor* MigrateEnrollments(
      CallbackServerContext* ctx, const v1::MigrateEnrollmentsRequest* request,
      v1::MigrateEnrollmentsResponse* response) override {
    return Respond(ctx, enrollments_.Migrate(*request, CallerActor(ctx)),
                   response);
  }

 private:
  ServerDeps deps_;
  Enrollments enrollments_;
};

class EnrollmentServiceImpl final
    : public v1::EnrollmentService::CallbackService {
 public:
  explicit EnrollmentServiceImpl(const ServerDeps& deps)
      : enrollments_({deps.store, deps.clock, deps.ids, deps.workflows,
                      deps.safety, deps.questionnaires}) {}

  ServerUnaryReactor* CreateEnrollment(
      CallbackServerContext* ctx, const v1::CreateEnrollmentRequest* request,
      v1::Enrollment* response) override {
    ServerUnaryReactor* reactor = ctx->DefaultReactor();
    enrollments_.Create(*request, CallerActor(ctx),
                        [reactor, response](absl::StatusOr<v1::Enrollment> e) {
                          if (e.ok()) *response = *std::move(e);
                          reactor->Finish(ToGrpcStatus(e.status()));
                        });
    return reactor;
  }

  ServerUnaryReactor* GetEnrollment(CallbackServerContext* ctx,
                                    const v1::GetEnrollmentRequest* request,
                                    v1::Enrollment* response) override {
    return Respond(ctx, enrollments_.Get(*request), response);
  }

  ServerUnaryReactor* ListEnrollments(
      CallbackServerContext* ctx, const v1::ListEnrollmentsRequest* request,
      v1::ListEnrollmentsResponse* response) override {
    return Respond(ctx, enrollments_.List(*request), response);
  }

  ServerUnaryReactor* GetTimeline(CallbackServerContext* ctx,
                                  const v1::GetTimelineRequest* request,
                                  v1::GetTimelineResponse* response) override {
    return Respond(ctx, enrollments_.Timeline(*request), response);
  }

  ServerUnaryReactor* UpdateEnrollment(
      CallbackServerContext* ctx, const v1::UpdateEnrollmentRequest* request,
      v1::Enrollment* response) override {
    ServerUnaryReactor* reactor = ctx->DefaultReactor();
    enrollments_.Update(*request, CallerActor(ctx),
                        [reactor, response](absl::StatusOr<v1::Enrollment> e) {
                          if (e.ok()) *response = *std::move(e);
                          reactor->Finish(ToGrpcStatus(e.status()));
                        });
    return reactor;
  }

  ServerUnaryReactor* ListTasks(CallbackServerContext* ctx,
                                const v1::ListTasksRequest* request,
                                v1::ListTasksResponse* response) override {
    return Respond(ctx, enrollments_.Tasks(*request), response);
  }

  ServerUnaryReactor* SubmitEvent(CallbackServerContext* ctx,
                                  const v1::SubmitEventRequest* request,
                                  v1::SubmitEventResponse* response) override {
    ServerUnaryReactor* reactor = ctx->DefaultReactor();
    enrollments_.Submit(
        *request, CallerActor(ctx),
        [reactor, response](absl::StatusOr<v1::SubmitEventResponse> r) {
          if (r.ok()) *response = *std::move(r);
          reactor->Finish(ToGrpcStatus(r.status()));
        });
    return reactor;
  }

 private:
  Enrollments enrollments_;
};

class QuestionnaireServiceImpl final
    : public v1::QuestionnaireService::CallbackService {
 public:
  explicit QuestionnaireServiceImpl(const ServerDeps& deps)
      : catalog_(deps.questionnaires != nullptr ? deps.questionnaires
                                                : &empty_) {}

  ServerUnaryReactor* ListQuestionnaires(
      CallbackServerContext* ctx, const v1::ListQuestionnairesRequest* request,
      v1::ListQuestionnairesResponse* response) override {
    if (!request->page_token().empty()) {
      return Finish(ctx, absl::InvalidArgumentError(
                             "page_token: not a token returned by this server "
                             "(questionnaire lists fit on one page)"));
    }
    for (const v1::Questionnaire* q : catalog_->List()) {
      *response->add_questionnaires() = *q;
    }
    return Finish(ctx, absl::OkStatus());
  }
  ServerUnaryReactor* GetQuestionnaire(
      CallbackServerContext* ctx, const v1::GetQuestionnaireRequest* request,
      v1::Questionnaire* response) override {
    if (request->id().empty()) {
      return Finish(ctx, absl::InvalidArgumentError("id: must not be empty"));
    }
    if (request->version() < 0) {
      return Finish(ctx, absl::InvalidArgumentError(
                             "version: must be 0 (current) or positive"));
    }
    absl::StatusOr<const v1::Questionnaire*> q =
        catalog_->Get(request->id(), request->version());
    if (!q.ok()) return Finish(ctx, q.status());
    *response = **q;
    return Finish(ctx, absl::OkStatus());
  }
  ServerUnaryReactor* ScoreResponse(
      CallbackServerContext* ctx, const v1::ScoreResponseRequest* request,
      v1::ScoreResponseResponse* response) override {
    // Out-of-process plugins answer within their call deadline; the
    // handler blocks a callback thread no longer than that.
    absl::StatusOr<v1::ScoreResponseResponse> scored =
        catalog_->Score(*request);
    if (scored.ok()) *response = std::move(*scored);
    return Finish(ctx, scored.status());
  }

 private:
  QuestionnaireCatalog empty_;
  const QuestionnaireCatalog* catalog_;
};

class ReminderServiceImpl final : public v1::ReminderService::CallbackService {
 public:
  ServerUnaryReactor* ListDueReminders(CallbackServerContext* ctx,
                                       const v1::ListDueRemindersRequest*,
                                       v1::ListDueRemindersResponse*) override {
    return NotYet(ctx, "ListDueReminders",
                  "reminder planning and the outbox dispatcher");
  }
  grpc::ServerWriteReactor<v1::Reminder>* WatchReminders(
      CallbackServerContext* ctx, const v1::WatchRemindersRequest*) override {
    class Refuse final : public grpc::ServerWriteReactor<v1::Reminder> {
     public:
      Refuse() {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            "WatchReminders is not implemented yet: it needs "
                            "reminder planning and the outbox dispatcher"));
      }
      void OnDone() override { delete this; }
    };
    return new Refuse();
  }
  ServerUnaryReactor* AckReminder(CallbackServerContext* ctx,
                                  const v1::AckReminderRequest*,
                                  v1::Reminder*) override {
    return NotYet(ctx, "AckReminder",
                  "reminder planning and the outbox dispatcher");
  }
};

class ExportServiceImpl final : public v1::ExportService::CallbackService {
 public:
  ServerUnaryReactor* ExportEnrollment(CallbackServerContext* ctx,
                                       const v1::ExportEnrollmentRequest*,
                                       v1::ExportEnrollmentResponse*) override {
    return NotYet(ctx, "ExportEnrollment", "exporter plugins (FHIR, HL7 v2)");
  }
  ServerUnaryReactor* PushEnrollment(CallbackServerContext* ctx,
                                     const v1::PushEnrollmentRequest*,
                                     v1::PushEnrollmentResponse*) override {
    return NotYet(ctx, "PushEnrollment", "exporter plugins (FHIR, HL7 v2)");
  }
  grpc::ServerWriteReactor<v1::BulkExportProgress>* BulkExport(
      CallbackServerContext* ctx, const v1::BulkExportRequest*) override {
    class Refuse final
        : public grpc::ServerWriteReactor<v1::BulkExportProgress> {
     public:
      Refuse() {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            "BulkExport is not implemented yet: it needs "
                            "exporter plugins (FHIR, HL7 v2)"));
      }
      void OnDone() override { delete this; }
    };
    return new Refuse();
  }
};

class PluginServiceImpl final : public v1::PluginService::CallbackService {
 public:
  explicit PluginServiceImpl(const ServerDeps& deps) : plugins_(deps.plugins) {}

  ServerUnaryReactor* ListPlugins(CallbackServerContext* ctx,
                                  const v1::ListPluginsRequest*,
                                  v1::ListPluginsResponse* response) override {
    if (plugins_ != nullptr) {
      for (v1::PluginInfo& info : plugins_->List()) {
        *response->add_plugins() = std::move(info);
      }
    }
    return Finish(ctx, absl::OkStatus());
  }

 private:
  const PluginRegistry* plugins_;
};

}  // namespace

std::vector<std::unique_ptr<grpc::Service>> MakeServices(
    const ServerDeps& deps, absl::Time start_time) {
  std::vector<std::unique_ptr<grpc::Service>> services;
  services.push_back(
      std::make_unique<DiagnosticsServiceImpl>(deps, start_time));
  services.push_back(std::make_unique<WorkflowServiceImpl>(deps));
  services.push_back(std::make_unique<EnrollmentServiceImpl>(deps));
  services.push_back(std::make_unique<QuestionnaireServiceImpl>(deps));
  services.push_back(std::make_unique<ReminderServiceImpl>());
  services.push_back(std::make_unique<ExportServiceImpl>());
  services.push_back(std::make_unique<PluginServiceImpl>(deps));
  return services;
}

}  // namespace ipsrt
