// ProgressWriter: a server stream of progress messages produced by work on
// its own thread. Writes never queue up: while one is in flight, newer
// progress replaces the waiting message, and the final status waits for the
// last write. Deletes itself in OnDone, after joining the thread.
#ifndef IPSRT_SERVICE_PROGRESS_WRITER_H_
#define IPSRT_SERVICE_PROGRESS_WRITER_H_

#include <atomic>
#include <functional>
#include <optional>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "service/status_mapping.h"

namespace ipsrt {

template <typename Progress>
class ProgressWriter final : public grpc::ServerWriteReactor<Progress> {
 public:
  // Run starts `work` on the writer's thread; `work` calls Offer and ends
  // with FinishWith, and touches nothing of the writer after that.
  void Run(std::function<void(ProgressWriter&)> work) {
    work_ = std::move(work);
    thread_ = std::thread([this] { work_(*this); });
  }

  // Offer sends `progress` now, or as soon as the write in flight is done.
  void Offer(Progress progress) {
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
    this->StartWrite(&current_);
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
    this->Finish(final_status_);
  }

  bool cancelled() const { return cancelled_.load(); }

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
    if (write) this->StartWrite(&current_);
    if (finish) this->Finish(final_status_);
  }

  void OnCancel() override { cancelled_ = true; }

  void OnDone() override {
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
  std::function<void(ProgressWriter&)> work_;
  std::thread thread_;
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_;
  Progress current_;
  std::optional<Progress> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_PROGRESS_WRITER_H_
