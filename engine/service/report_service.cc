#include "service/report_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/validation.h"
#include "core/enrollments.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/status_macros.h"
#include "ipsrt/v1/report.grpc.pb.h"
#include "report/course_report.h"
#include "report/workflow_graph.h"
#include "runtime/step.h"

namespace ipsrt {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

constexpr int kEventPage = 1000;

class ReportServiceImpl final : public v1::ReportService::CallbackService {
 public:
  ReportServiceImpl(const ServerDeps& deps, Guard& guard)
      : deps_(deps), guard_(guard) {}

  ServerUnaryReactor* RenderReport(
      CallbackServerContext* ctx, const v1::RenderReportRequest* request,
      v1::RenderReportResponse* response) override {
    return guard_.Unary(
        ctx, IPSRT_METHOD(ReportService, RenderReport), *request,
        [=, this](const Admission&, Guard::Done done) {
          absl::StatusOr<v1::RenderReportResponse> r = Render(*request);
          if (r.ok()) *response = *std::move(r);
          done(r.status());
        });
  }

 private:
  absl::StatusOr<v1::RenderReportResponse> Render(
      const v1::RenderReportRequest& request) const {
    IPSRT_ASSIGN_OR_RETURN(EnrollmentName name,
                           ParseEnrollmentName("name", request.name()));
    IPSRT_ASSIGN_OR_RETURN(EnrollmentRow row,
                           deps_.store->GetEnrollment(name.tenant, name.id));
    internal::EnrollmentState state;
    if (!state.ParseFromString(row.snapshot)) {
      return absl::DataLossError(absl::StrCat("store: snapshot of enrollment ",
                                              name.id, " cannot be parsed"));
    }
    const v1::Enrollment& e = state.enrollment();
    std::shared_ptr<const WorkflowCatalog> catalog = deps_.workflows->Get();
    const WorkflowTemplate* workflow =
        catalog->Find(e.workflow_id(), e.workflow_version());
    if (workflow == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("workflow ", e.workflow_id(), " version ",
                       e.workflow_version(), " is not loaded"));
    }
    report::CourseReportInput input;
    input.workflow = workflow;
    input.enrollment = e;
    IPSRT_ASSIGN_OR_RETURN(input.zone, Enrollments::LoadZone(e.time_zone()));
    // Events 1..revision: the ones the snapshot folds.
    int64_t after = 0;
    while (after < e.revision()) {
      IPSRT_ASSIGN_OR_RETURN(
          std::vector<EventRow> rows,
          deps_.store->ListEvents(name.tenant, name.id, after, kEventPage));
      if (rows.empty()) break;
      for (const EventRow& r : rows) {
        if (r.sequence > e.revision()) break;
        v1::Event& event = input.events.emplace_back();
        if (!event.ParseFromString(r.payload)) {
          return absl::DataLossError(absl::StrCat("store: event ", r.sequence,
                                                  " of ", name.id,
                                                  " cannot be parsed"));
        }
        after = r.sequence;
      }
      if (static_cast<int>(rows.size()) < kEventPage) break;
    }
    input.open_tasks = runtime::OpenTasks(state, false);
    input.as_of = deps_.clock->Now();
    absl::StatusOr<std::string> svg =
        report::DotToSvg(report::RenderClinicianDot(*workflow));
    if (svg.ok()) input.graph_svg = *std::move(svg);
    v1::RenderReportResponse response;
    response.set_content_type("text/html; charset=utf-8");
    response.set_content(report::RenderCourseReport(input));
    response.set_revision(e.revision());
    return response;
  }

  ServerDeps deps_;
  Guard& guard_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeReportService(const ServerDeps& deps,
                                                 Guard& guard) {
  return std::make_unique<ReportServiceImpl>(deps, guard);
}

}  // namespace ipsrt
