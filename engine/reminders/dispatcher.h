// Dispatcher: delivers due outbox rows (reminders and alert escalations)
// through a ReminderSender, after the transaction that planned them.
//
// Each round claims up to `batch_size` due rows under a lease
// (Store::ClaimOutbox), checks every row against the enrollment's current
// state, delivers the rest, and records the outcomes in one transaction
// (Store::RecordOutboxOutcomes) while the lease is held. Guarantees:
// - At least once: a process that dies between claim and record leaves its
//   rows claimed; once the lease expires they are claimed again and sent
//   with the same idempotency key (never lost, repeated only with the key).
// - Never stale: a row whose task was completed or cancelled, whose
//   session is no longer the planned one or has begun, whose alert was
//   acknowledged, or whose enrollment is not ACTIVE is recorded cancelled
//   at claim time and not sent (the commit that closes a task
//   cancels scheduled rows; this check covers rows already in flight).
// - Retries: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED
//   from the sender are retried after initial_backoff * 2^(attempt-1)
//   (capped at max_backoff) until max_attempts; other errors fail the row.
//
// Time comes from the injected Clock only, so tests drive it with a
// FakeClock and RunOnce.
#ifndef IPSRT_REMINDERS_DISPATCHER_H_
#define IPSRT_REMINDERS_DISPATCHER_H_

#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ipsrt/clock.h"
#include "ipsrt/store.h"
#include "reminders/sender.h"

namespace ipsrt::reminders {

struct DispatcherOptions {
  // Lease owner; unique per process (host, pid and a random suffix).
  std::string owner = "dispatcher";
  // Pause between rounds that found less than a full batch.
  absl::Duration poll_interval = absl::Seconds(1);
  // How long a claim is exclusive; a crashed owner's rows are redelivered
  // after it. Must exceed the time a batch takes to deliver.
  absl::Duration lease = absl::Seconds(60);
  int batch_size = 100;
  // Attempts (claims) before a retriable failure becomes permanent.
  int max_attempts = 8;
  absl::Duration initial_backoff = absl::Seconds(30);
  absl::Duration max_backoff = absl::Hours(1);
  // TEST ONLY (set by ipsrtd from the IPSRT_TEST_REMINDER_PAUSE environment
  // variable, with a warning in the log; no config key sets it): after a
  // batch is delivered and before its outcomes are recorded, log "test
  // fault: pausing" and sleep this long, so an end-to-end test can kill the
  // process between claim and record.
  absl::Duration test_pause_after_deliver = absl::ZeroDuration();
  // The channel's name in metrics labels: "jsonl" or the reminder plugin's
  // configured name.
  std::string channel = "jsonl";
};

// Backoff is the wait before attempt `attempts + 1` after a retriable
// failure of attempt `attempts` (1-based).
absl::Duration Backoff(const DispatcherOptions& options, int attempts);

// IsRetriable tells whether a sender's error code is retried.
bool IsRetriable(absl::StatusCode code);

class Dispatcher {
 public:
  // `store`, `clock` and `sender` must outlive the dispatcher.
  Dispatcher(Store* store, const Clock* clock, ReminderSender* sender,
             DispatcherOptions options);
  ~Dispatcher();  // Stop()

  // Counts of one round.
  struct Round {
    int claimed = 0;
    int sent = 0;
    int retried = 0;
    int failed = 0;
    int cancelled = 0;
    int lease_lost = 0;
  };
  // RunOnce runs one round at the clock's current time.
  absl::StatusOr<Round> RunOnce();

  // Start runs rounds on a thread until Stop: at once again after a full
  // batch, otherwise after poll_interval (real time).
  void Start();
  // Stop finishes the current round and joins the thread. Idempotent.
  void Stop();

 private:
  void Loop();

  Store* store_;
  const Clock* clock_;
  ReminderSender* sender_;
  DispatcherOptions options_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ipsrt::reminders

#endif  // IPSRT_REMINDERS_DISPATCHER_H_
