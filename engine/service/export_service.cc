#include "service/export_service.h"

#include <string>
#include <utility>

#include "absl/synchronization/notification.h"
#include "common/validation.h"
#include "core/exports.h"
#include "ipsrt/v1/export.grpc.pb.h"
#include "service/progress_writer.h"
#include "service/status_mapping.h"

namespace ipsrt {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

using BulkWriter = ProgressWriter<v1::BulkExportProgress>;

v1::BulkExportProgress ToProgress(const BulkExportStatus& s) {
  v1::BulkExportProgress p;
  p.set_enrollments_done(s.enrollments_done);
  p.set_enrollments_total(s.enrollments_total);
  for (const auto& [type, path] : s.files) (*p.mutable_files())[type] = path;
  for (const auto& [type, n] : s.counts) {
    (*p.mutable_resource_counts())[type] = n;
  }
  return p;
}

// RunBulkExport runs one admitted bulk export on the writer's thread and
// streams its progress (progress_writer.h), at most every `interval` unless
// the percentage moved.
void RunBulkExport(const Exports* exports, Guard* guard,
                   absl::Duration interval, const Admission& admission,
                   const v1::BulkExportRequest& request, BulkWriter& w) {
  absl::StatusOr<std::string> tenant = ParseParent("parent", request.parent());
  if (!tenant.ok()) {
    guard->Audit(admission, tenant.status(),
                 [&w](absl::Status s) { w.FinishWith(s); });
    return;
  }
  BulkExportJob job;
  job.tenant = *tenant;
  job.output_dir = request.output_dir();
  job.format = request.format();
  absl::Time last_sent = absl::InfinitePast();
  int64_t last_percent = -1;
  job.on_progress = [&](const BulkExportStatus& s) {
    const int64_t percent =
        s.enrollments_total == 0
            ? 100
            : s.enrollments_done * 100 / s.enrollments_total;
    const absl::Time now = absl::Now();
    if (percent == last_percent && now - last_sent < interval) return;
    last_percent = percent;
    last_sent = now;
    w.Offer(ToProgress(s));
  };
  job.cancelled = [&w] { return w.cancelled(); };
  bool audited = false;
  // The read's audit record is stored before the files are published.
  job.before_publish = [&]() -> absl::Status {
    absl::Notification stored;
    absl::Status result;
    guard->Audit(admission, absl::OkStatus(), [&](absl::Status s) {
      result = s;
      stored.Notify();
    });
    stored.WaitForNotification();
    audited = true;
    return result;
  };
  absl::StatusOr<BulkExportStatus> done = exports->Bulk(job);
  if (done.ok()) {
    v1::BulkExportProgress last = ToProgress(*done);
    last.set_finished(true);
    w.Offer(std::move(last));
    w.FinishWith(absl::OkStatus());
    return;
  }
  if (audited) {
    w.FinishWith(done.status());
    return;
  }
  guard->Audit(admission, done.status(),
               [&w](absl::Status s) { w.FinishWith(s); });
}

class ExportServiceImpl final : public v1::ExportService::CallbackService {
 public:
  ExportServiceImpl(const ServerDeps& deps, Guard& guard,
                    absl::Duration progress_interval)
      : guard_(guard),
        exports_({.store = deps.store,
                  .clock = deps.clock,
                  .plugins = deps.plugins,
                  .questionnaires = deps.questionnaires,
                  .config = deps.exports != nullptr ? *deps.exports
                                                    : ExportConfig()}),
        progress_interval_(progress_interval) {}

  // Rendering and delivery call plugins synchronously; an out-of-process
  // plugin answers within its call deadline, which bounds how long a
  // callback thread is held.
  ServerUnaryReactor* ExportEnrollment(
      CallbackServerContext* ctx, const v1::ExportEnrollmentRequest* request,
      v1::ExportEnrollmentResponse* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(ExportService, ExportEnrollment),
                        *request,
                        [=, this](const Admission&, Guard::Done done) {
                          absl::StatusOr<v1::ExportEnrollmentResponse> r =
                              exports_.Export(*request);
                          if (r.ok()) *response = *std::move(r);
                          done(r.status());
                        });
  }

  ServerUnaryReactor* PushEnrollment(
      CallbackServerContext* ctx, const v1::PushEnrollmentRequest* request,
      v1::PushEnrollmentResponse* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(ExportService, PushEnrollment),
                        *request,
                        [=, this](const Admission& a, Guard::Done done) {
                          absl::StatusOr<v1::PushEnrollmentResponse> r =
                              exports_.Push(*request, a.actor());
                          if (r.ok()) *response = *std::move(r);
                          done(r.status());
                        });
  }

  grpc::ServerWriteReactor<v1::BulkExportProgress>* BulkExport(
      CallbackServerContext* ctx,
      const v1::BulkExportRequest* request) override {
    auto* writer = new BulkWriter();
    guard_.Admit(
        ctx, IPSRT_METHOD(ExportService, BulkExport), *request,
        [this, writer, copy = *request](absl::StatusOr<Admission> a) {
          if (!a.ok()) return writer->FinishWith(a.status());
          writer->Run([this, admission = *std::move(a), copy](BulkWriter& w) {
            RunBulkExport(&exports_, &guard_, progress_interval_, admission,
                          copy, w);
          });
        });
    return writer;
  }

 private:
  Guard& guard_;
  Exports exports_;
  absl::Duration progress_interval_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeExportService(
    const ServerDeps& deps, Guard& guard, absl::Duration progress_interval) {
  return std::make_unique<ExportServiceImpl>(deps, guard, progress_interval);
}

}  // namespace ipsrt
