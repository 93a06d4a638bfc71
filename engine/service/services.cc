#include "service/services.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/plugin.grpc.pb.h"
#include "ipsrt/v1/questionnaire.grpc.pb.h"
#include "ipsrt/v1/reminder.grpc.pb.h"
#include "ipsrt/v1/workflow.grpc.pb.h"
#include "ipsrt/version.h"
#include "service/audit_service.h"
#include "service/export_service.h"
#include "service/guard.h"
#include "service/reminder_service.h"
#include "service/report_service.h"
#include "service/status_mapping.h"
#include "service/store_service.h"

namespace ipsrt {
namespace {

using google::protobuf::util::TimeUtil;
using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;
using v1::Diagnostic;

// Set copies a StatusOr's value into the response and returns its status.
template <typename T>
absl::Status Set(absl::StatusOr<T> result, T* response) {
  if (result.ok()) *response = *std::move(result);
  return result.status();
}

class DiagnosticsServiceImpl final
    : public v1::DiagnosticsService::CallbackService {
 public:
  DiagnosticsServiceImpl(const ServerDeps& deps, Guard& guard, absl::Time start)
      : deps_(deps), guard_(guard), start_(start) {}

  ServerUnaryReactor* Ping(CallbackServerContext* ctx,
                           const v1::PingRequest* request,
                           v1::PingResponse* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(DiagnosticsService, Ping), *request,
                        [=, this](const Admission&, Guard::Done done) {
                          response->set_payload(request->payload());
                          done(absl::OkStatus());
                        });
  }

  ServerUnaryReactor* GetServerInfo(CallbackServerContext* ctx,
                                    const v1::GetServerInfoRequest* request,
                                    v1::ServerInfo* info) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(DiagnosticsService, GetServerInfo), *request,
        [=, this](const Admission&, Guard::Done done) {
          info->set_version(IPSRT_VERSION);
          info->set_store_kind(std::string(deps_.store->Kind()));
          info->set_schema_version(deps_.store->SchemaVersion());
          *info->mutable_start_time() =
              TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(start_));
          done(absl::OkStatus());
        });
  }

 private:
  ServerDeps deps_;
  Guard& guard_;
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
  WorkflowServiceImpl(const ServerDeps& deps, Guard& guard)
      : deps_(deps),
        guard_(guard),
        enrollments_({deps.store, deps.clock, deps.ids, deps.workflows,
                      deps.safety, deps.questionnaires, deps.future_leeway}) {}

  ServerUnaryReactor* ListWorkflows(
      CallbackServerContext* ctx, const v1::ListWorkflowsRequest* request,
      v1::ListWorkflowsResponse* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(WorkflowService, ListWorkflows), *request,
        [=, this](const Admission&, Guard::Done done) {
          if (!request->page_token().empty()) {
            return done(absl::InvalidArgumentError(
                "page_token: not a token returned by this server "
                "(workflow lists fit on one page)"));
          }
          std::shared_ptr<const WorkflowCatalog> catalog =
              deps_.workflows->Get();
          std::string last_id;
          for (const WorkflowTemplate* t : catalog->All()) {
            if (!request->all_versions() && t->id == last_id) continue;
            last_id = t->id;
            FillWorkflow(*t, response->add_workflows());
          }
          done(absl::OkStatus());
        });
  }

  ServerUnaryReactor* GetWorkflow(CallbackServerContext* ctx,
                                  const v1::GetWorkflowRequest* request,
                                  v1::Workflow* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(WorkflowService, GetWorkflow), *request,
        [=, this](const Admission&, Guard::Done done) {
          if (request->id().empty()) {
            return done(absl::InvalidArgumentError("id: must not be empty"));
          }
          std::shared_ptr<const WorkflowCatalog> catalog =
              deps_.workflows->Get();
          const WorkflowTemplate* t =
              catalog->Find(request->id(), request->version());
          if (t == nullptr) {
            return done(absl::NotFoundError(absl::StrCat(
                "workflow ", request->id(),
                request->version() ? absl::StrCat("@", request->version()) : "",
                " is not loaded")));
          }
          FillWorkflow(*t, response);
          done(absl::OkStatus());
        });
  }

  ServerUnaryReactor* ValidateWorkflow(
      CallbackServerContext* ctx, const v1::ValidateWorkflowRequest* request,
      v1::ValidateWorkflowResponse* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(WorkflowService, ValidateWorkflow), *request,
        [=, this](const Admission&, Guard::Done done) {
          std::string file = request->file_name().empty()
                                 ? "workflow.yaml"
                                 : request->file_name();
          std::vector<YamlDiagnostic> diagnostics = DiagnoseWorkflowTemplate(
              request->yaml(), file, deps_.workflows->context());
          for (const YamlDiagnostic& d : diagnostics) {
            FillDiagnostic(d, response->add_diagnostics());
          }
          response->set_valid(diagnostics.empty());
          done(absl::OkStatus());
        });
  }

  ServerUnaryReactor* ReloadWorkflows(
      CallbackServerContext* ctx, const v1::ReloadWorkflowsRequest* request,
      v1::ReloadWorkflowsResponse* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(WorkflowService, ReloadWorkflows), *request,
        [=, this](const Admission&, Guard::Done done) {
          WorkflowRegistry::ReloadResult r = deps_.workflows->Reload();
          response->set_reloaded(r.reloaded);
          for (const YamlDiagnostic& d : r.diagnostics) {
            FillDiagnostic(d, response->add_diagnostics());
          }
          for (const std::string& s : r.serving) response->add_serving(s);
          IPSRT_LOG(INFO) << "workflow reload requested over gRPC: "
                          << (r.reloaded ? "reloaded" : "refused") << ", "
                          << r.diagnostics.size() << " diagnostic(s)";
          done(absl::OkStatus());
        });
  }

  ServerUnaryReactor* MigrateEnrollments(
      CallbackServerContext* ctx, const v1::MigrateEnrollmentsRequest* request,
      v1::MigrateEnrollmentsResponse* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(WorkflowService, MigrateEnrollments), *request,
        [=, this](const Admission& a, Guard::Done done) {
          done(Set(enrollments_.Migrate(*request, a.actor()), response));
        });
  }

 private:
  ServerDeps deps_;
  Guard& guard_;
  Enrollments enrollments_;
};

class EnrollmentServiceImpl final
    : public v1::EnrollmentService::CallbackService {
 public:
  EnrollmentServiceImpl(const ServerDeps& deps, Guard& guard)
      : guard_(guard),
        enrollments_({deps.store, deps.clock, deps.ids, deps.workflows,
                      deps.safety, deps.questionnaires, deps.future_leeway}) {}

  ServerUnaryReactor* CreateEnrollment(
      CallbackServerContext* ctx, const v1::CreateEnrollmentRequest* request,
      v1::Enrollment* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(EnrollmentService, CreateEnrollment), *request,
        [=, this](const Admission& a, Guard::Done done) {
          enrollments_.Create(
              *request, a.actor(),
              [response, done](absl::StatusOr<v1::Enrollment> e) {
                done(Set(std::move(e), response));
              });
        });
  }

  ServerUnaryReactor* GetEnrollment(CallbackServerContext* ctx,
                                    const v1::GetEnrollmentRequest* request,
                                    v1::Enrollment* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(EnrollmentService, GetEnrollment),
                        *request,
                        [=, this](const Admission&, Guard::Done done) {
                          done(Set(enrollments_.Get(*request), response));
                        });
  }

  ServerUnaryReactor* ListEnrollments(
      CallbackServerContext* ctx, const v1::ListEnrollmentsRequest* request,
      v1::ListEnrollmentsResponse* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(EnrollmentService, ListEnrollments),
                        *request,
                        [=, this](const Admission&, Guard::Done done) {
                          done(Set(enrollments_.List(*request), response));
                        });
  }

  ServerUnaryReactor* GetTimeline(CallbackServerContext* ctx,
                                  const v1::GetTimelineRequest* request,
                                  v1::GetTimelineResponse* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(EnrollmentService, GetTimeline),
                        *request,
                        [=, this](const Admission&, Guard::Done done) {
                          done(Set(enrollments_.Timeline(*request), response));
                        });
  }

  ServerUnaryReactor* UpdateEnrollment(
      CallbackServerContext* ctx, const v1::UpdateEnrollmentRequest* request,
      v1::Enrollment* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(EnrollmentService, UpdateEnrollment), *request,
        [=, this](const Admission& a, Guard::Done done) {
          enrollments_.Update(
              *request, a.actor(),
              [response, done](absl::StatusOr<v1::Enrollment> e) {
                done(Set(std::move(e), response));
              });
        });
  }

  ServerUnaryReactor* ListTasks(CallbackServerContext* ctx,
                                const v1::ListTasksRequest* request,
                                v1::ListTasksResponse* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(EnrollmentService, ListTasks),
                        *request,
                        [=, this](const Admission&, Guard::Done done) {
                          done(Set(enrollments_.Tasks(*request), response));
                        });
  }

  ServerUnaryReactor* SubmitEvent(CallbackServerContext* ctx,
                                  const v1::SubmitEventRequest* request,
                                  v1::SubmitEventResponse* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(EnrollmentService, SubmitEvent), *request,
        [=, this](const Admission& a, Guard::Done done) {
          enrollments_.Submit(
              *request, a.actor(),
              [response, done](absl::StatusOr<v1::SubmitEventResponse> r) {
                done(Set(std::move(r), response));
              });
        });
  }

 private:
  Guard& guard_;
  Enrollments enrollments_;
};

class QuestionnaireServiceImpl final
    : public v1::QuestionnaireService::CallbackService {
 public:
  QuestionnaireServiceImpl(const ServerDeps& deps, Guard& guard)
      : guard_(guard),
        catalog_(deps.questionnaires != nullptr ? deps.questionnaires
                                                : &empty_) {}

  ServerUnaryReactor* ListQuestionnaires(
      CallbackServerContext* ctx, const v1::ListQuestionnairesRequest* request,
      v1::ListQuestionnairesResponse* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(QuestionnaireService, ListQuestionnaires), *request,
        [=, this](const Admission&, Guard::Done done) {
          if (!request->page_token().empty()) {
            done(absl::InvalidArgumentError(
                "page_token: not a token returned by this server "
                "(questionnaire lists fit on one page)"));
            return;
          }
          for (const v1::Questionnaire* q : catalog_->List()) {
            *response->add_questionnaires() = *q;
          }
          done(absl::OkStatus());
        });
  }
  ServerUnaryReactor* GetQuestionnaire(
      CallbackServerContext* ctx, const v1::GetQuestionnaireRequest* request,
      v1::Questionnaire* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(QuestionnaireService, GetQuestionnaire), *request,
        [=, this](const Admission&, Guard::Done done) {
          if (request->id().empty()) {
            done(absl::InvalidArgumentError("id: must not be empty"));
            return;
          }
          if (request->version() < 0) {
            done(absl::InvalidArgumentError(
                "version: must be 0 (current) or positive"));
            return;
          }
          absl::StatusOr<const v1::Questionnaire*> q =
              catalog_->Get(request->id(), request->version());
          if (q.ok()) *response = **q;
          done(q.status());
        });
  }
  ServerUnaryReactor* ScoreResponse(
      CallbackServerContext* ctx, const v1::ScoreResponseRequest* request,
      v1::ScoreResponseResponse* response) override {
    // Out-of-process plugins answer within their call deadline; the
    // handler blocks a callback thread no longer than that.
    return guard_.Unary(ctx, IPSRT_METHOD(QuestionnaireService, ScoreResponse),
                        *request,
                        [=, this](const Admission&, Guard::Done done) {
                          absl::StatusOr<v1::ScoreResponseResponse> scored =
                              catalog_->Score(*request);
                          if (scored.ok()) *response = std::move(*scored);
                          done(scored.status());
                        });
  }

 private:
  Guard& guard_;
  QuestionnaireCatalog empty_;
  const QuestionnaireCatalog* catalog_;
};

class PluginServiceImpl final : public v1::PluginService::CallbackService {
 public:
  PluginServiceImpl(const ServerDeps& deps, Guard& guard)
      : guard_(guard), plugins_(deps.plugins) {}

  ServerUnaryReactor* ListPlugins(CallbackServerContext* ctx,
                                  const v1::ListPluginsRequest* request,
                                  v1::ListPluginsResponse* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(PluginService, ListPlugins), *request,
                        [=, this](const Admission&, Guard::Done done) {
                          if (plugins_ != nullptr) {
                            for (v1::PluginInfo& info : plugins_->List()) {
                              *response->add_plugins() = std::move(info);
                            }
                          }
                          done(absl::OkStatus());
                        });
  }

 private:
  Guard& guard_;
  const PluginRegistry* plugins_;
};

}  // namespace

std::vector<std::unique_ptr<grpc::Service>> MakeServices(
    const ServerDeps& deps, Guard& guard, absl::Time start_time) {
  std::vector<std::unique_ptr<grpc::Service>> services;
  services.push_back(
      std::make_unique<DiagnosticsServiceImpl>(deps, guard, start_time));
  services.push_back(std::make_unique<WorkflowServiceImpl>(deps, guard));
  services.push_back(std::make_unique<EnrollmentServiceImpl>(deps, guard));
  services.push_back(std::make_unique<QuestionnaireServiceImpl>(deps, guard));
  services.push_back(MakeReminderService(deps, guard));
  services.push_back(MakeExportService(deps, guard));
  services.push_back(std::make_unique<PluginServiceImpl>(deps, guard));
  services.push_back(MakeAuditService(deps, guard));
  services.push_back(MakeReportService(deps, guard));
  services.push_back(MakeStoreService(deps, guard));
  return services;
}

}  // namespace ipsrt
