// Write batches for store tests: what the engine commits for a new
// enrollment, built from plain values.
#ifndef IPSRT_TESTS_TESTING_STORE_BATCHES_H_
#define IPSRT_TESTS_TESTING_STORE_BATCHES_H_

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/time/time.h"
#include "ipsrt/store.h"

namespace ipsrt::testing {

inline const absl::Time kBatchTime = absl::FromUnixSeconds(1790000000);

// CreateBatch is what the engine commits for a new enrollment: the
// enrollment row, its first event and the request record.
inline WriteBatch CreateBatch(const std::string& tenant, const std::string& id,
                              const std::string& request_id,
                              const std::string& payload_hash = "hash-a",
                              absl::Time at = kBatchTime) {
  WriteBatch b;
  b.request = RequestRecord{tenant,
                            request_id,
                            "CreateEnrollment",
                            payload_hash,
                            absl::StrCat("response-", id),
                            at};
  EnrollmentRow e;
  e.tenant = tenant;
  e.id = id;
  e.patient_ref = "Patient/" + id;
  e.workflow_id = "ipsrt-standard";
  e.workflow_version = 1;
  e.stage = "initial";
  e.clinician_ref = "Practitioner/1";
  e.state = 1;
  e.revision = 1;
  e.snapshot = std::string("snapshot\0-1", 11);  // binary-safe
  e.create_time = at;
  e.update_time = at;
  b.create = e;
  EventRow ev;
  ev.tenant = tenant;
  ev.enrollment_id = id;
  ev.sequence = 1;
  ev.payload = "event-1";
  ev.hash = "h1";
  b.events.push_back(ev);
  return b;
}

// Outcomes of CommitConcurrently's requests, by kind.
struct ConcurrentOutcomes {
  int ok = 0;
  int conflicts = 0;  // FAILED_PRECONDITION: request id reused
  int other = 0;
};

// CommitConcurrently puts `requests` new-enrollment batches into `store`
// at once (CommitAsync) and waits for every outcome. Every tenth one
// reuses the request id "taken" with another payload, so it must fail
// alone; commit a batch with that request id first.
inline ConcurrentOutcomes CommitConcurrently(Store& store, int requests) {
  absl::BlockingCounter pending(requests);
  std::atomic<int> ok{0}, conflicts{0}, other{0};
  for (int i = 0; i < requests; ++i) {
    WriteBatch b =
        (i % 10 == 0)
            ? CreateBatch("t1", absl::StrCat("c", i), "taken", "other-hash")
            : CreateBatch("t1", absl::StrCat("c", i), absl::StrCat("q", i));
    store.CommitAsync(std::move(b), [&](absl::StatusOr<CommitResult> r) {
      if (r.ok()) {
        ++ok;
      } else if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
        ++conflicts;
      } else {
        ++other;
      }
      pending.DecrementCount();
    });
  }
  pending.Wait();
  return {ok.load(), conflicts.load(), other.load()};
}

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_TESTING_STORE_BATCHES_H_
