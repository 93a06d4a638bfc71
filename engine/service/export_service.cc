#include "service/export_service.h"

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/validation.h"
#include "core/exports.h"
#include "ipsrt/v1/export.grpc.pb.h"
#include "service/status_mapping.h"

namespace ipsrt {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// BulkExportReactor runs one bulk export on its own thread and streams its
// progress. Writes never queue up: while one is in flight, newer progress
// replaces the waiting message, and the final status waits for the last
// write. The reactor deletes itself in OnDone, after joining its thread.
class BulkExportReactor final
    : public grpc::ServerWriteReactor<v1::BulkExportProgress> {
 public:
  BulkExportReactor(const Exports* exports, Guard* guard,
                    absl::Duration interval)
      : exports_(exports), guard_(guard), interval_(interval) {}

  void Start(Admission admission, v1::BulkExportRequest request) {
    absl::StatusOr<std::string> tenant =
        ParseParent("parent", request.parent());
    if (!tenant.ok()) {
      guard_->Audit(admission, tenant.status(),
                    [this](absl::Status s) { FinishWith(s); });
      return;
    }
    admission_ = std::move(admission);
    request_ = std::move(request);
    tenant_ = *std::move(tenant);
    thread_ = std::thread([this] { Run(); });
  }

  // FinishWith ends the call once no write is in flight.
  void FinishWith(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_) return;
      finish_requested_ = true;
      final_status_ = ToGrpcStatus(status);
      if (writing_) return;  // OnWriteDone finishes.
    }
    Finish(final_status_);
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        cancelled_ = true;
        pending_.reset();
      }
      if (pending_.has_value()) {
        current_ = *std::move(pending_);
        pending_.reset();
        writing_ = write = true;
      } else {
        finish = finish_requested_;
      }
    }
    // current_ is only touched while no write is in flight.
    if (write) StartWrite(&current_);
    if (finish) Finish(final_status_);
  }

  void OnCancel() override { cancelled_ = true; }

  void OnDone() override {
    // The worker may itself have finished the call; it touches nothing
    // after that, so it is left to end on its own.
    if (thread_.joinable()) {
      if (thread_.get_id() == std::this_thread::get_id()) {
        thread_.detach();
      } else {
        thread_.join();
      }
    }
    delete this;
  }

 private:
  // Offer sends `progress` now, or as soon as the write in flight is done.
  void Offer(v1::BulkExportProgress progress) {
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_ || cancelled_) return;
      if (writing_) {
        pending_ = std::move(progress);
        return;
      }
      current_ = std::move(progress);
      writing_ = true;
    }
    StartWrite(&current_);
  }

  static v1::BulkExportProgress ToProgress(const BulkExportStatus& s) {
    v1::BulkExportProgress p;
    p.set_enrollments_done(s.enrollments_done);
    p.set_enrollments_total(s.enrollments_total);
    for (const auto& [type, path] : s.files) (*p.mutable_files())[type] = path;
    for (const auto& [type, n] : s.counts) {
      (*p.mutable_resource_counts())[type] = n;
    }
    return p;
  }

  void Run() {
    BulkExportJob job;
    job.tenant = tenant_;
    job.output_dir = request_.output_dir();
    job.format = request_.format();
    absl::Time last_sent = absl::InfinitePast();
    int64_t last_percent = -1;
    job.on_progress = [&](const BulkExportStatus& s) {
      const int64_t percent =
          s.enrollments_total == 0
              ? 100
              : s.enrollments_done * 100 / s.enrollments_total;
      const absl::Time now = absl::Now();
      if (percent == last_percent && now - last_sent < interval_) return;
      last_percent = percent;
      last_sent = now;
      Offer(ToProgress(s));
    };
    job.cancelled = [this] { return cancelled_.load(); };
    bool audited = false;
    // The read's audit record is stored before the files are published.
    job.before_publish = [&]() -> absl::Status {
      absl::Notification stored;
      absl::Status result;
      guard_->Audit(admission_, absl::OkStatus(), [&](absl::Status s) {
        result = s;
        stored.Notify();
      });
      stored.WaitForNotification();
      audited = true;
      return result;
    };
    absl::StatusOr<BulkExportStatus> done = exports_->Bulk(job);
    if (done.ok()) {
      v1::BulkExportProgress last = ToProgress(*done);
      last.set_finished(true);
      Offer(std::move(last));
      FinishWith(absl::OkStatus());
      return;
    }
    if (audited) {
      FinishWith(done.status());
      return;
    }
    guard_->Audit(admission_, done.status(),
                  [this](absl::Status s) { FinishWith(s); });
  }

  const Exports* exports_;
  Guard* guard_;
  const absl::Duration interval_;
  Admission admission_;
  v1::BulkExportRequest request_;
  std::string tenant_;
  std::thread thread_;
  std::atomic<bool> cancelled_{false};

  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_;
  v1::BulkExportProgress current_;
  std::optional<v1::BulkExportProgress> pending_ ABSL_GUARDED_BY(mu_);
};

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
    auto* reactor =
        new BulkExportReactor(&exports_, &guard_, progress_interval_);
    guard_.Admit(ctx, IPSRT_METHOD(ExportService, BulkExport), *request,
                 [reactor, copy = *request](absl::StatusOr<Admission> a) {
                   if (!a.ok()) return reactor->FinishWith(a.status());
                   reactor->Start(*std::move(a), copy);
                 });
    return reactor;
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
