#include "reminders/dispatcher.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "core/enrollments.h"
#include "ipsrt/internal/state.pb.h"
#include "ops/metrics_hooks.h"
#include "runtime/step.h"

namespace ipsrt::reminders {
namespace {

// Target is what a row needs from its enrollment: whether it may still be
// sent, and the zone for local times.
struct Target {
  std::optional<internal::EnrollmentState> state;  // nullopt: gone
};

// StillWanted tells whether row `e` should be sent at `now` given the
// enrollment.
bool StillWanted(const OutboxEntry& e, const Target& t, absl::Time now) {
  if (!t.state.has_value()) return false;
  const internal::EnrollmentState& s = *t.state;
  if (s.enrollment().state() != v1::Enrollment::ACTIVE) return false;
  if (e.row.kind == "reminder") {
    for (const internal::TaskState& task : s.tasks()) {
      if (task.key() == e.row.payload) {
        return task.status() == v1::Task::OPEN;
      }
    }
    return false;
  }
  if (e.row.kind == "session") {
    // Only the planned session is reminded, and only before it starts: a
    // session re-planned (held, cadence, stage or zone change) or already
    // begun is never reminded.
    return s.next_session().key() == e.row.payload &&
           now < absl::FromUnixMicros(s.next_session().start_us());
  }
  if (e.row.kind == "alert.escalation") {
    for (const internal::AlertState& alert : s.alerts()) {
      if (alert.alert_id() == e.row.payload) return !alert.acknowledged();
    }
    return false;
  }
  return true;  // other kinds carry no task to check
}

}  // namespace

absl::Duration Backoff(const DispatcherOptions& options, int attempts) {
  absl::Duration d = options.initial_backoff;
  for (int i = 1; i < attempts && d < options.max_backoff; ++i) d *= 2;
  return std::min(d, options.max_backoff);
}

bool IsRetriable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kAborted;
}

Dispatcher::Dispatcher(Store* store, const Clock* clock, ReminderSender* sender,
                       DispatcherOptions options)
    : store_(store),
      clock_(clock),
      sender_(sender),
      options_(std::move(options)) {}

Dispatcher::~Dispatcher() { Stop(); }

absl::StatusOr<Dispatcher::Round> Dispatcher::RunOnce() {
  Round round;
  absl::StatusOr<std::vector<OutboxEntry>> claimed = store_->ClaimOutbox(
      clock_->Now(), options_.owner, options_.lease, options_.batch_size);
  if (!claimed.ok()) return claimed.status();
  round.claimed = static_cast<int>(claimed->size());
  if (claimed->empty()) return round;
  metrics::ObserveReminderClaims(claimed->size());

  std::map<std::pair<std::string, std::string>, Target> targets;
  std::vector<OutboxResult> results;
  results.reserve(claimed->size());
  for (const OutboxEntry& e : *claimed) {
    auto key = std::pair(e.row.tenant, e.row.enrollment_id);
    auto it = targets.find(key);
    if (it == targets.end()) {
      Target t;
      absl::StatusOr<EnrollmentRow> row =
          store_->GetEnrollment(e.row.tenant, e.row.enrollment_id);
      if (row.ok()) {
        internal::EnrollmentState state;
        if (state.ParseFromString(row->snapshot)) t.state = std::move(state);
      } else if (!absl::IsNotFound(row.status())) {
        // The store cannot be read now: leave the rest of the batch to the
        // lease (redelivered later), and report.
        return row.status();
      }
      it = targets.emplace(key, std::move(t)).first;
    }
    OutboxResult r;
    r.id = e.id;
    if (!StillWanted(e, it->second, clock_->Now())) {
      r.outcome.kind = OutboxOutcome::Kind::kCancelled;
      ++round.cancelled;
      metrics::ObserveReminderDelivery(options_.channel, "cancelled");
      results.push_back(std::move(r));
      continue;
    }
    const std::string& zone_name = it->second.state->enrollment().time_zone();
    absl::StatusOr<absl::TimeZone> zone = Enrollments::LoadZone(zone_name);
    ReminderDelivery d;
    d.idempotency_key = e.row.idempotency_key;
    d.tenant = e.row.tenant;
    d.enrollment = absl::StrCat("tenants/", e.row.tenant, "/enrollments/",
                                e.row.enrollment_id);
    d.kind = e.row.kind;
    d.subject = e.row.payload;
    d.due_time = e.row.due_time;
    d.time_zone = zone_name;
    d.local_due_time = runtime::FormatLocal(
        e.row.due_time, zone.ok() ? *zone : absl::UTCTimeZone());
    d.attempt = e.attempts;
    d.reminder = absl::StrCat("tenants/", e.row.tenant, "/enrollments/",
                              e.row.enrollment_id, "/reminders/", e.id);
    absl::Status sent = sender_->Deliver(d);
    if (sent.ok()) {
      r.outcome.kind = OutboxOutcome::Kind::kDone;
      ++round.sent;
      metrics::ObserveReminderDelivery(options_.channel, "sent");
    } else {
      r.outcome.error = absl::StrCat(absl::StatusCodeToString(sent.code()),
                                     ": ", sent.message());
      if (IsRetriable(sent.code()) && e.attempts < options_.max_attempts) {
        r.outcome.kind = OutboxOutcome::Kind::kRetry;
        r.outcome.retry_at = clock_->Now() + Backoff(options_, e.attempts);
        ++round.retried;
        metrics::ObserveReminderDelivery(options_.channel, "retry");
      } else {
        r.outcome.kind = OutboxOutcome::Kind::kFailed;
        ++round.failed;
        metrics::ObserveReminderDelivery(options_.channel, "failed");
      }
      IPSRT_LOG(WARNING) << "reminder " << d.reminder << " attempt "
                         << e.attempts << " failed: " << sent;
    }
    results.push_back(std::move(r));
  }
  if (options_.test_pause_after_deliver > absl::ZeroDuration()) {
    IPSRT_LOG(WARNING) << "test fault: pausing "
                       << options_.test_pause_after_deliver << " after "
                       << round.sent << " deliveries, before recording";
    absl::SleepFor(options_.test_pause_after_deliver);
  }
  absl::StatusOr<std::vector<int64_t>> lost =
      store_->RecordOutboxOutcomes(options_.owner, clock_->Now(), results);
  if (!lost.ok()) return lost.status();
  round.lease_lost = static_cast<int>(lost->size());
  if (!lost->empty()) {
    IPSRT_LOG(WARNING) << lost->size()
                       << " reminder outcome(s) dropped: the lease expired "
                          "before they were recorded (they are redelivered "
                          "with the same idempotency key)";
  }
  return round;
}

void Dispatcher::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
  NameThread(thread_, "reminder-send");
}

void Dispatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Dispatcher::Loop() {
  while (true) {
    absl::StatusOr<Round> round = RunOnce();
    if (!round.ok()) {
      IPSRT_LOG(WARNING) << "reminder dispatch round failed: "
                         << round.status();
    }
    bool full = round.ok() && round->claimed >= options_.batch_size;
    absl::MutexLock lock(&mu_);
    if (!full) {
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.poll_interval);
    }
    if (stopping_) return;
  }
}

}  // namespace ipsrt::reminders
