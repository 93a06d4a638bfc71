// The Store contract (store.h), checked the same way on every store kind.
// Kind-specific behaviour (SQLite's fault hooks and full disk, PostgreSQL's
// restarts and migration lock) is tested beside each store.
#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/audit_chain.h"
#include "store/request_window.h"
#include "tests/store/store_backends.h"
#include "tests/testing/store_batches.h"

namespace ipsrt {
namespace {

using ::testing::ElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1790000000);

using testing::CreateBatch;

// UpdateBatch moves enrollment t1/`id` from `expected` to the next revision
// with one event.
WriteBatch UpdateBatch(const std::string& id, int64_t expected,
                       const std::string& request_id) {
  WriteBatch b = CreateBatch("t1", id, request_id);
  EnrollmentRow row = *b.create;
  b.create.reset();
  row.revision = expected + 1;
  row.stage = "intermediate";
  row.update_time = kT0 + absl::Seconds(expected);
  b.update = EnrollmentUpdate{expected, row};
  b.events[0].sequence = expected + 1;
  b.events[0].prev_hash = absl::StrCat("h", expected);
  b.events[0].hash = absl::StrCat("h", expected + 1);
  return b;
}

template <typename Backend>
class StoreConformanceTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> OpenStore() {
    absl::StatusOr<std::unique_ptr<Store>> s = backend_.Open();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  int64_t CountRows(const std::string& table) {
    return std::stoll(
        backend_.Scalar(absl::StrCat("SELECT COUNT(*) FROM ", table)));
  }

  Backend backend_;
};

TYPED_TEST_SUITE(StoreConformanceTest, testing::StoreBackends,
                 testing::StoreBackendName);

TYPED_TEST(StoreConformanceTest, CreateThenReadBack) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<CommitResult> r = store->Commit(CreateBatch("t1", "e1", "r1"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->replayed);
  EXPECT_EQ(r->response, "response-e1");

  absl::StatusOr<EnrollmentRow> row = store->GetEnrollment("t1", "e1");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->tenant, "t1");
  EXPECT_EQ(row->patient_ref, "Patient/e1");
  EXPECT_EQ(row->workflow_id, "ipsrt-standard");
  EXPECT_EQ(row->workflow_version, 1);
  EXPECT_EQ(row->stage, "initial");
  EXPECT_EQ(row->clinician_ref, "Practitioner/1");
  EXPECT_EQ(row->state, 1);
  EXPECT_EQ(row->revision, 1);
  EXPECT_EQ(row->create_time, kT0);
  EXPECT_EQ(row->update_time, kT0);
  EXPECT_EQ(row->snapshot, std::string("snapshot\0-1", 11));

  absl::StatusOr<std::vector<EventRow>> events =
      store->ListEvents("t1", "e1", 0, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].sequence, 1);
  EXPECT_EQ((*events)[0].payload, "event-1");
  EXPECT_EQ((*events)[0].prev_hash, "");
  EXPECT_EQ((*events)[0].hash, "h1");

  absl::StatusOr<std::optional<RequestRecord>> req =
      store->LookupRequest("t1", "r1");
  ASSERT_TRUE(req.ok()) << req.status();
  ASSERT_TRUE(req->has_value());
  EXPECT_EQ((*req)->method, "CreateEnrollment");
  EXPECT_EQ(this->backend_.Scalar("SELECT method FROM requests"), "/c");
  EXPECT_EQ((*req)->payload_hash, "hash-a");
  EXPECT_EQ((*req)->response, "response-e1");
  EXPECT_EQ((*req)->create_time, kT0);
}

TYPED_TEST(StoreConformanceTest, OtherTenantSeesNothing) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  absl::StatusOr<EnrollmentRow> row = store->GetEnrollment("t2", "e1");
  EXPECT_EQ(row.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(row.status().message(),
            "enrollment tenants/t2/enrollments/e1 not found");
  absl::StatusOr<std::optional<RequestRecord>> req =
      store->LookupRequest("t2", "r1");
  ASSERT_TRUE(req.ok());
  EXPECT_FALSE(req->has_value());
  EXPECT_TRUE(store->ListEvents("t2", "e1", 0, 10)->empty());
}

TYPED_TEST(StoreConformanceTest, SurvivesReopen) {
  {
    auto store = this->OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  }
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  // Migration 10 (outbox digests led by their enrollment's creation time)
  // is the latest on every store kind.
  EXPECT_EQ(store->SchemaVersion(), 10);
  EXPECT_EQ(store->Kind(), TypeParam::kName);
  absl::StatusOr<EnrollmentRow> row = store->GetEnrollment("t1", "e1");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->id, "e1");
  EXPECT_EQ(this->backend_.Scalar("SELECT COUNT(*) FROM schema_migrations"),
            "10");
}

TYPED_TEST(StoreConformanceTest,
           ReplayedRequestReturnsFirstResponseAndAppliesNothing) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  // Same request id and fingerprint, but (as a retry would) a new
  // server-assigned id: nothing may be created.
  absl::StatusOr<CommitResult> again =
      store->Commit(CreateBatch("t1", "e2", "r1"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->response, "response-e1");
  EXPECT_EQ(store->GetEnrollment("t1", "e2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->CountRows("enrollments"), 1);
  EXPECT_EQ(this->CountRows("events"), 1);
  EXPECT_EQ(this->CountRows("requests"), 1);
}

TYPED_TEST(StoreConformanceTest,
           ReusedRequestIdWithOtherPayloadIsFailedPrecondition) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  absl::StatusOr<CommitResult> other =
      store->Commit(CreateBatch("t1", "e2", "r1", "hash-b"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(other.status().message(),
            "request_id: \"r1\" was already used for a different "
            "CreateEnrollment request; use a new request id for a new "
            "request");
  EXPECT_EQ(this->CountRows("enrollments"), 1);
  // The same request id in another tenant is another request.
  EXPECT_TRUE(store->Commit(CreateBatch("t2", "e2", "r1", "hash-b")).ok());
}

TYPED_TEST(StoreConformanceTest, CreateOfExistingEnrollmentIsAlreadyExists) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  absl::StatusOr<CommitResult> dup =
      store->Commit(CreateBatch("t1", "e1", "r2"));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(dup.status().message(), "enrollment e1 already exists");
  EXPECT_FALSE(store->LookupRequest("t1", "r2")->has_value());
  EXPECT_EQ(this->CountRows("events"), 1);
}

TYPED_TEST(StoreConformanceTest, OptimisticConcurrency) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());

  absl::StatusOr<CommitResult> ok = store->Commit(UpdateBatch("e1", 1, "r2"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(store->GetEnrollment("t1", "e1")->revision, 2);
  EXPECT_EQ(store->GetEnrollment("t1", "e1")->stage, "intermediate");

  absl::StatusOr<CommitResult> stale =
      store->Commit(UpdateBatch("e1", 1, "r3"));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(stale.status().message(),
            "expected_revision: enrollment e1 is at revision 2, not 1; read "
            "it again and retry");
  // The stale writer's request id was not consumed: nothing of it stands.
  EXPECT_FALSE(store->LookupRequest("t1", "r3")->has_value());
  EXPECT_EQ(this->CountRows("events"), 2);

  WriteBatch missing = UpdateBatch("e1", 1, "r4");
  missing.update->row.id = "nope";
  missing.events.clear();
  absl::StatusOr<CommitResult> not_found = store->Commit(std::move(missing));
  EXPECT_EQ(not_found.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(not_found.status().message(), "enrollment nope not found");
}

// An update that keeps the indexed columns (patient, workflow, stage,
// clinician) writes only the others; one that changes any of them moves
// the row in the indexes, and listings filtered by the old and new values
// say so. A stale revision is refused either way, with nothing written.
TYPED_TEST(StoreConformanceTest, UpdatesKeepOrMoveTheIndexedColumns) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  auto ids = [&](EnrollmentFilter filter) {
    filter.tenant = "t1";
    std::vector<std::string> out;
    absl::StatusOr<std::vector<EnrollmentRow>> rows =
        store->ListEnrollments(filter, std::nullopt, 100);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (rows.ok()) {
      for (const EnrollmentRow& r : *rows) out.push_back(r.id);
    }
    return out;
  };

  // Same indexed columns as created; everything else changes.
  WriteBatch same = UpdateBatch("e1", 1, "r2");
  same.update->row.stage = "initial";
  same.update->row.state = 2;
  same.update->row.snapshot = "snapshot-2";
  ASSERT_TRUE(store->Commit(std::move(same)).ok());
  absl::StatusOr<EnrollmentRow> row = store->GetEnrollment("t1", "e1");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->revision, 2);
  EXPECT_EQ(row->state, 2);
  EXPECT_EQ(row->snapshot, "snapshot-2");
  EXPECT_EQ(row->update_time, kT0 + absl::Seconds(1));
  EXPECT_EQ(row->create_time, kT0);
  EXPECT_THAT(ids({.stage = "initial"}), ElementsAre("e1"));
  EXPECT_THAT(ids({.state = 2}), ElementsAre("e1"));

  // The stage and the clinician change.
  WriteBatch moved = UpdateBatch("e1", 2, "r3");
  moved.update->row.stage = "maintenance";
  moved.update->row.clinician_ref = "Practitioner/2";
  moved.update->row.snapshot = "snapshot-3";
  ASSERT_TRUE(store->Commit(std::move(moved)).ok());
  row = store->GetEnrollment("t1", "e1");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->revision, 3);
  EXPECT_EQ(row->stage, "maintenance");
  EXPECT_EQ(row->clinician_ref, "Practitioner/2");
  EXPECT_EQ(row->snapshot, "snapshot-3");
  EXPECT_THAT(ids({.stage = "initial"}), ElementsAre());
  EXPECT_THAT(ids({.stage = "maintenance"}), ElementsAre("e1"));
  EXPECT_THAT(ids({.clinician_ref = "Practitioner/1"}), ElementsAre());
  EXPECT_THAT(ids({.clinician_ref = "Practitioner/2"}), ElementsAre("e1"));
  EXPECT_THAT(ids({.patient_ref = "Patient/e1"}), ElementsAre("e1"));

  // Stale, with and without a change of indexed columns.
  for (const char* stage : {"maintenance", "final"}) {
    WriteBatch stale = UpdateBatch("e1", 2, absl::StrCat("stale-", stage));
    stale.update->row.stage = stage;
    stale.update->row.clinician_ref = "Practitioner/2";
    absl::StatusOr<CommitResult> r = store->Commit(std::move(stale));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << stage;
    EXPECT_EQ(r.status().message(),
              "expected_revision: enrollment e1 is at revision 3, not 2; read "
              "it again and retry");
  }
  row = store->GetEnrollment("t1", "e1");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->revision, 3);
  EXPECT_EQ(row->snapshot, "snapshot-3");
  EXPECT_EQ(this->CountRows("events"), 3);
}

// An event whose sequence is taken (a writer that skipped the revision
// check) fails ABORTED and leaves nothing behind.
TYPED_TEST(StoreConformanceTest, TakenEventSequenceIsAborted) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  WriteBatch b = UpdateBatch("e1", 1, "r2");
  b.events[0].sequence = 1;
  absl::StatusOr<CommitResult> r = store->Commit(std::move(b));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(r.status().message(),
            "enrollment e1 already has event 1; read it again and retry");
  EXPECT_EQ(store->GetEnrollment("t1", "e1")->revision, 1);
  EXPECT_FALSE(store->LookupRequest("t1", "r2")->has_value());
}

// Outbox keys are under their enrollment's name; the row keeps the rest.
constexpr char kKey1[] = "tenants/t1/enrollments/e1/key-1";
constexpr char kKey2[] = "tenants/t1/enrollments/e1/key-2";

TYPED_TEST(StoreConformanceTest, OutboxRowsAndCancellation) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  WriteBatch b = CreateBatch("t1", "e1", "r1");
  b.outbox.push_back(
      OutboxRow{"t1", "e1", "reminder", kT0 + absl::Hours(1), "p1", kKey1});
  b.outbox.push_back(
      OutboxRow{"t1", "e1", "reminder", kT0 + absl::Hours(2), "p2", kKey2});
  ASSERT_TRUE(store->Commit(std::move(b)).ok());
  EXPECT_EQ(this->backend_.Scalar(
                "SELECT COUNT(*) FROM outbox WHERE status = 0 AND attempts = 0 "
                "AND enrollment_id = 'e1' AND kind = 'reminder'"),
            "2");

  // A second row with a used idempotency key is refused with its batch.
  WriteBatch dup = UpdateBatch("e1", 1, "r2");
  dup.outbox.push_back(OutboxRow{"t1", "e1", "reminder", kT0, "p3", kKey1});
  absl::StatusOr<CommitResult> refused = store->Commit(std::move(dup));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store->GetEnrollment("t1", "e1")->revision, 1);
  EXPECT_EQ(this->CountRows("outbox"), 2);

  // Cancelling a scheduled key marks it cancelled (3); unknown keys are
  // ignored.
  WriteBatch cancel = UpdateBatch("e1", 1, "r3");
  cancel.cancel_outbox_keys = {kKey2, "tenants/t1/enrollments/e1/no-such-key"};
  ASSERT_TRUE(store->Commit(std::move(cancel)).ok());
  EXPECT_EQ(this->backend_.Scalar(
                "SELECT status FROM outbox WHERE idempotency_key = 'key-2'"),
            "3");
  EXPECT_EQ(this->backend_.Scalar(
                "SELECT status FROM outbox WHERE idempotency_key = 'key-1'"),
            "0");

  // A key under another enrollment's name is refused with its batch.
  WriteBatch foreign = UpdateBatch("e1", 1, "r4");
  foreign.outbox.push_back(OutboxRow{"t1", "e1", "reminder", kT0, "p4",
                                     "tenants/t1/enrollments/e2/key-4"});
  EXPECT_EQ(store->Commit(std::move(foreign)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->CountRows("outbox"), 2);
}

TYPED_TEST(StoreConformanceTest, ListEventsPagesBySequence) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  for (int64_t rev = 1; rev < 5; ++rev) {
    ASSERT_TRUE(
        store->Commit(UpdateBatch("e1", rev, absl::StrCat("u", rev))).ok());
  }
  absl::StatusOr<std::vector<EventRow>> page =
      store->ListEvents("t1", "e1", 1, 2);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].sequence, 2);
  // No row keeps its prev_hash (schema 6): a page that starts after event 1
  // still links its first event to event 1's hash.
  EXPECT_EQ((*page)[0].prev_hash, "h1");
  EXPECT_EQ((*page)[1].sequence, 3);
  EXPECT_EQ((*page)[1].prev_hash, "h2");
  page = store->ListEvents("t1", "e1", 3, 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].prev_hash, "h3");
  EXPECT_EQ((*page)[1].sequence, 5);
  EXPECT_EQ((*page)[1].prev_hash, "h4");
  page = store->ListEvents("t1", "e1", 0, 1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].prev_hash, "");
  page = store->ListEvents("t1", "e1", 4, 1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].sequence, 5);
  EXPECT_TRUE(store->ListEvents("t1", "e1", 5, 10)->empty());
}

TYPED_TEST(StoreConformanceTest, ListEnrollmentsFiltersAndPages) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 5; ++i) {
    WriteBatch b = CreateBatch("t1", absl::StrCat("e", i), absl::StrCat("r", i),
                               "h", kT0 + absl::Seconds(i % 3));
    if (i % 2 == 1) b.create->stage = "maintenance";
    if (i == 4) b.create->state = 2;
    ASSERT_TRUE(store->Commit(std::move(b)).ok());
  }
  ASSERT_TRUE(store->Commit(CreateBatch("t2", "x", "r")).ok());

  EnrollmentFilter all{.tenant = "t1"};
  absl::StatusOr<std::vector<EnrollmentRow>> rows =
      store->ListEnrollments(all, std::nullopt, 100);
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::vector<std::string> ids;
  for (const auto& r : *rows) ids.push_back(r.id);
  // Ordered by (create_time, id): e0,e3 at +0s; e1,e4 at +1s; e2 at +2s.
  EXPECT_THAT(ids, ElementsAre("e0", "e3", "e1", "e4", "e2"));

  absl::StatusOr<std::vector<EnrollmentRow>> page = store->ListEnrollments(
      all, EnrollmentCursor{kT0 + absl::Seconds(1), "e1"}, 2);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].id, "e4");
  EXPECT_EQ((*page)[1].id, "e2");

  EnrollmentFilter maintenance{.tenant = "t1", .stage = "maintenance"};
  rows = store->ListEnrollments(maintenance, std::nullopt, 100);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->size(), 2u);

  EnrollmentFilter by_patient{.tenant = "t1", .patient_ref = "Patient/e2"};
  rows = store->ListEnrollments(by_patient, std::nullopt, 100);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].id, "e2");

  EnrollmentFilter by_state{.tenant = "t1", .state = 2};
  rows = store->ListEnrollments(by_state, std::nullopt, 100);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].id, "e4");

  EnrollmentFilter several{.tenant = "t1",
                           .workflow_id = "ipsrt-standard",
                           .stage = "initial",
                           .clinician_ref = "Practitioner/1"};
  rows = store->ListEnrollments(several, EnrollmentCursor{kT0, "e0"}, 100);
  ASSERT_TRUE(rows.ok());
  ids.clear();
  for (const auto& r : *rows) ids.push_back(r.id);
  EXPECT_THAT(ids, ElementsAre("e4", "e2"));
}

// Concurrent requests all get their own outcome: a failing one does not
// take others down.
TYPED_TEST(StoreConformanceTest, ConcurrentCommitsIsolateFailures) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "taken", "taken")).ok());
  constexpr int kRequests = 200;
  const testing::ConcurrentOutcomes outcomes =
      testing::CommitConcurrently(*store, kRequests);
  EXPECT_EQ(outcomes.ok, kRequests - kRequests / 10);
  EXPECT_EQ(outcomes.conflicts, kRequests / 10);
  EXPECT_EQ(outcomes.other, 0);
  store.reset();
  EXPECT_EQ(this->CountRows("enrollments"), 1 + kRequests - kRequests / 10);
  EXPECT_EQ(this->CountRows("events"), 1 + kRequests - kRequests / 10);
}

// Two stores on one database (two processes, or two replicas): writers that
// read the same revision race; exactly one wins each round, the other gets
// ABORTED, and the event log stays dense.
TYPED_TEST(StoreConformanceTest, StaleWriterOnAnotherStoreIsAborted) {
  auto a = this->OpenStore();
  auto b = this->OpenStore();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->Commit(CreateBatch("t1", "e1", "r1")).ok());
  constexpr int kRounds = 10;
  for (int64_t rev = 1; rev <= kRounds; ++rev) {
    absl::StatusOr<CommitResult> ra, rb;
    std::thread ta([&] {
      ra = a->Commit(UpdateBatch("e1", rev, absl::StrCat("a", rev)));
    });
    std::thread tb([&] {
      rb = b->Commit(UpdateBatch("e1", rev, absl::StrCat("b", rev)));
    });
    ta.join();
    tb.join();
    ASSERT_NE(ra.ok(), rb.ok()) << ra.status() << " / " << rb.status();
    const absl::Status& lost = ra.ok() ? rb.status() : ra.status();
    EXPECT_EQ(lost.code(), absl::StatusCode::kAborted) << lost;
  }
  EXPECT_EQ(b->GetEnrollment("t1", "e1")->revision, kRounds + 1);
  EXPECT_EQ(this->CountRows("events"), kRounds + 1);
  EXPECT_EQ(this->CountRows("requests"), kRounds + 1);
}

// The same request sent to two stores at once (a client retrying on another
// replica) is applied once; every other attempt replays the first response.
TYPED_TEST(StoreConformanceTest, SameRequestOnTwoStoresAppliesOnce) {
  auto a = this->OpenStore();
  auto b = this->OpenStore();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kRequests = 20;
  constexpr int kAttempts = 4;
  std::atomic<int> applied{0}, replayed{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kAttempts; ++t) {
    threads.emplace_back([&, t] {
      Store* store = (t % 2 == 0) ? a.get() : b.get();
      for (int i = 0; i < kRequests; ++i) {
        // Each attempt gets its own server-assigned id, as a retry does.
        absl::StatusOr<CommitResult> r = store->Commit(CreateBatch(
            "t1", absl::StrCat("e", i, "-", t), absl::StrCat("r", i)));
        if (!r.ok()) {
          ++failed;
        } else if (r->replayed) {
          ++replayed;
        } else {
          ++applied;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(applied, kRequests);
  EXPECT_EQ(replayed, kRequests * (kAttempts - 1));
  EXPECT_EQ(this->CountRows("enrollments"), kRequests);
  EXPECT_EQ(this->CountRows("requests"), kRequests);
}

// AuditFor is one audit record as the service guard builds it.
AuditRecord AuditFor(const std::string& subject, const std::string& rpc,
                     const std::string& request_id, absl::Time at = kT0) {
  AuditRecord r;
  r.tenant = "t1";
  r.subject = subject;
  r.role = "clinician";
  r.rpc = rpc;
  r.resource = "tenants/t1/enrollments/e1";
  r.outcome = "OK";
  r.time = at;
  r.request_id = request_id;
  return r;
}

// Audit-only batches (reads) and audit records riding on changes share one
// chain; a replay is audited as such, and a failed batch leaves no record.
TYPED_TEST(StoreConformanceTest, AuditChainsReadsChangesAndReplays) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  WriteBatch create = CreateBatch("t1", "e1", "r1");
  create.audit.push_back(AuditFor("alice", "CreateEnrollment", "r1"));
  ASSERT_TRUE(store->Commit(create).ok());
  WriteBatch read;
  read.audit.push_back(
      AuditFor("bob", "GetEnrollment", "", kT0 + absl::Seconds(1)));
  read.audit.push_back(
      AuditFor("alice", "ListEvents", "", kT0 + absl::Seconds(2)));
  absl::StatusOr<CommitResult> r = store->Commit(read);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->replayed);
  r = store->Commit(create);  // the client retries
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->replayed);
  WriteBatch stale = UpdateBatch("e1", 5, "r2");
  stale.audit.push_back(AuditFor("alice", "SubmitEvent", "r2"));
  EXPECT_EQ(store->Commit(stale).status().code(), absl::StatusCode::kAborted);

  absl::StatusOr<std::vector<AuditRecord>> all =
      store->ListAudit(AuditFilter{}, 0, 10);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].seq, 1);
  EXPECT_EQ((*all)[0].prev_hash, "");
  EXPECT_EQ((*all)[0].request_id, "r1");
  EXPECT_EQ((*all)[0].outcome, "OK");
  EXPECT_EQ((*all)[1].subject, "bob");
  EXPECT_EQ((*all)[1].time, kT0 + absl::Seconds(1));
  EXPECT_EQ((*all)[3].seq, 4);
  EXPECT_EQ((*all)[3].outcome, "OK (replayed)");
  for (size_t i = 0; i < all->size(); ++i) {
    EXPECT_EQ((*all)[i].hash, AuditRecordHash((*all)[i])) << i;
    if (i > 0) {
      EXPECT_EQ((*all)[i].prev_hash, (*all)[i - 1].hash) << i;
    }
  }
  absl::StatusOr<AuditVerification> v = VerifyAuditTrail(*store);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->intact);
  EXPECT_EQ(v->records_verified, 4);
  EXPECT_EQ(v->head_seq, 4);
  EXPECT_EQ(v->head_hash, (*all)[3].hash);

  // Filters and paging.
  AuditFilter alice;
  alice.subject = "alice";
  absl::StatusOr<std::vector<AuditRecord>> page = store->ListAudit(alice, 0, 2);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].seq, 1);
  EXPECT_EQ((*page)[1].seq, 3);
  // A filtered page still links each record to the one before it in the
  // trail (seq 2, bob's), which the page leaves out.
  EXPECT_EQ((*page)[1].prev_hash, (*all)[1].hash);
  page = store->ListAudit(alice, 3, 2);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].seq, 4);
  EXPECT_EQ((*page)[0].prev_hash, (*all)[2].hash);
  AuditFilter window;
  window.rpc = "GetEnrollment";
  window.from = kT0 + absl::Seconds(1);
  window.until = kT0 + absl::Seconds(2);
  page = store->ListAudit(window, 0, 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].seq, 2);
  AuditFilter other_tenant;
  other_tenant.tenant = "t2";
  EXPECT_TRUE(store->ListAudit(other_tenant, 0, 10)->empty());
}

// Two stores on one database (two replicas) appending at once keep one
// unforked chain.
TYPED_TEST(StoreConformanceTest, AuditAppendsFromTwoStoresKeepOneChain) {
  auto a = this->OpenStore();
  auto b = this->OpenStore();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kAppends = 25;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Store* store = (t % 2 == 0) ? a.get() : b.get();
      for (int i = 0; i < kAppends; ++i) {
        WriteBatch read;
        read.audit.push_back(AuditFor(absl::StrCat("s", t), "GetEnrollment",
                                      absl::StrCat("q", i)));
        if (!store->Commit(read).ok()) ++failed;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed, 0);
  absl::StatusOr<AuditVerification> v = VerifyAuditTrail(*b);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->intact) << v->reason;
  EXPECT_EQ(v->records_verified, 4 * kAppends);
  EXPECT_EQ(this->CountRows("audit"), 4 * kAppends);
}

// ScheduleBatch creates t1/`id` with reminders due at `dues`.
WriteBatch ScheduleBatch(const std::string& id,
                         const std::vector<absl::Time>& dues) {
  WriteBatch b = CreateBatch("t1", id, "schedule-" + id);
  for (size_t i = 0; i < dues.size(); ++i) {
    std::string task = absl::StrCat("s.diary#", i + 1);
    b.outbox.push_back(OutboxRow{
        "t1", id, "reminder", dues[i], task,
        absl::StrCat("tenants/t1/enrollments/", id, "/reminder/", task)});
  }
  return b;
}

std::vector<int64_t> OutboxIds(const std::vector<OutboxEntry>& entries) {
  std::vector<int64_t> ids;
  for (const OutboxEntry& e : entries) ids.push_back(e.id);
  return ids;
}

// Claims, leases, lost leases, retries, the change feed and acknowledgement.
TYPED_TEST(StoreConformanceTest, OutboxDeliveryLifecycle) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store
                  ->Commit(ScheduleBatch(
                      "e1", {kT0 + absl::Hours(2), kT0 + absl::Hours(1),
                             kT0 + absl::Hours(3), kT0 + absl::Hours(9)}))
                  .ok());
  auto none = store->ClaimOutbox(kT0, "a", absl::Seconds(30), 10);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(store->ClaimOutbox(kT0, "", absl::Seconds(30), 10).status().code(),
            absl::StatusCode::kInvalidArgument);

  const absl::Time t2 = kT0 + absl::Hours(2);
  auto claimed = store->ClaimOutbox(t2, "a", absl::Seconds(30), 10);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), 2u);
  EXPECT_EQ((*claimed)[0].row.due_time, kT0 + absl::Hours(1));
  EXPECT_EQ((*claimed)[1].row.due_time, t2);
  for (const OutboxEntry& e : *claimed) {
    EXPECT_EQ(e.status, OutboxStatus::kClaimed);
    EXPECT_EQ(e.lease_owner, "a");
    EXPECT_EQ(e.lease_expiry, t2 + absl::Seconds(30));
    EXPECT_EQ(e.attempts, 1);
  }
  const int64_t first = (*claimed)[0].id;
  const int64_t second = (*claimed)[1].id;
  // Held rows are not claimed again while the lease runs.
  auto held =
      store->ClaimOutbox(t2 + absl::Seconds(29), "b", absl::Seconds(30), 10);
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE(held->empty());
  // After the lease, "b" takes both over; "a"'s late outcome is dropped.
  auto taken =
      store->ClaimOutbox(t2 + absl::Seconds(30), "b", absl::Seconds(30), 10);
  ASSERT_TRUE(taken.ok());
  EXPECT_THAT(OutboxIds(*taken), ElementsAre(first, second));
  for (const OutboxEntry& e : *taken) {
    EXPECT_EQ(e.lease_owner, "b");
    EXPECT_EQ(e.attempts, 2);
  }
  auto lost = store->RecordOutboxOutcomes(
      "a", t2 + absl::Seconds(31),
      {OutboxResult{first, {OutboxOutcome::Kind::kDone}}});
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_THAT(*lost, ElementsAre(first));
  auto kept = store->RecordOutboxOutcomes(
      "b", t2 + absl::Seconds(31),
      {OutboxResult{first, {OutboxOutcome::Kind::kDone}},
       OutboxResult{second,
                    {OutboxOutcome::Kind::kRetry, t2 + absl::Minutes(5),
                     "UNAVAILABLE: channel down"}}});
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_TRUE(kept->empty());
  auto done = store->GetOutbox("t1", first);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->status, OutboxStatus::kDone);
  EXPECT_EQ(done->change_seq, 1);
  EXPECT_EQ(done->lease_owner, "");

  // A retry waits until its time, then is claimed again.
  auto waiting = store->GetOutbox("t1", second);
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->status, OutboxStatus::kRetryWait);
  EXPECT_EQ(waiting->lease_expiry, t2 + absl::Minutes(5));
  EXPECT_EQ(waiting->last_error, "UNAVAILABLE: channel down");
  EXPECT_EQ(waiting->change_seq, 0);
  auto early = store->ClaimOutbox(t2 + absl::Minutes(5) - absl::Seconds(1), "b",
                                  absl::Seconds(30), 10);
  ASSERT_TRUE(early.ok());
  EXPECT_TRUE(early->empty());
  auto due =
      store->ClaimOutbox(t2 + absl::Minutes(5), "b", absl::Seconds(30), 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].attempts, 3);
  ASSERT_TRUE(
      store
          ->RecordOutboxOutcomes("b", t2 + absl::Minutes(5),
                                 {OutboxResult{second,
                                               {OutboxOutcome::Kind::kFailed,
                                                absl::Time(), "NOT_FOUND: x"}}})
          .ok());

  // The feed orders settled rows; acknowledgement moves a row to the end.
  auto feed = store->OutboxChanges("t1", 0, 10);
  ASSERT_TRUE(feed.ok()) << feed.status();
  EXPECT_THAT(OutboxIds(*feed), ElementsAre(first, second));
  EXPECT_EQ((*feed)[1].status, OutboxStatus::kFailed);
  EXPECT_EQ((*feed)[1].change_seq, 2);
  auto not_sent = store->AcknowledgeOutbox("t1", second);
  EXPECT_EQ(not_sent.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(not_sent.status().message(),
            absl::StrCat("reminder tenants/t1/reminders/", second,
                         " has not been sent; only a sent reminder can be "
                         "acknowledged"));
  auto acked = store->AcknowledgeOutbox("t1", first);
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->status, OutboxStatus::kAcknowledged);
  EXPECT_EQ(acked->change_seq, 3);
  auto twice = store->AcknowledgeOutbox("t1", first);
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice->change_seq, 3);
  auto after = store->OutboxChanges("t1", 2, 10);
  ASSERT_TRUE(after.ok());
  EXPECT_THAT(OutboxIds(*after), ElementsAre(first));
  EXPECT_TRUE(store->OutboxChanges("t2", 0, 10)->empty());
  EXPECT_EQ(store->AcknowledgeOutbox("t2", first).status().code(),
            absl::StatusCode::kNotFound);
  auto missing = store->GetOutbox("t2", first);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(
      missing.status().message(),
      absl::StrCat("reminder tenants/t2/reminders/", first, " not found"));

  // Listing pages by (due time, id), filtered by status.
  OutboxQuery q;
  q.tenant = "t1";
  q.due_before = kT0 + absl::Hours(5);
  q.limit = 2;
  auto page1 = store->ListOutbox(q);
  ASSERT_TRUE(page1.ok()) << page1.status();
  ASSERT_EQ(page1->size(), 2u);
  EXPECT_EQ((*page1)[0].id, first);
  EXPECT_EQ((*page1)[1].id, second);
  q.after = std::pair((*page1)[1].row.due_time, (*page1)[1].id);
  auto page2 = store->ListOutbox(q);
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->size(), 1u);
  EXPECT_EQ((*page2)[0].row.due_time, kT0 + absl::Hours(3));
  EXPECT_EQ((*page2)[0].status, OutboxStatus::kScheduled);
  q.after.reset();
  q.statuses = {OutboxStatus::kAcknowledged};
  auto acked_only = store->ListOutbox(q);
  ASSERT_TRUE(acked_only.ok());
  EXPECT_THAT(OutboxIds(*acked_only), ElementsAre(first));
}

// Dispatchers on two stores (two replicas) claiming at once never hold the
// same row.
TYPED_TEST(StoreConformanceTest, ConcurrentClaimsFromTwoStoresAreDisjoint) {
  auto a = this->OpenStore();
  auto b = this->OpenStore();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kRows = 40;
  std::vector<absl::Time> dues;
  for (int i = 0; i < kRows; ++i) dues.push_back(kT0 + absl::Seconds(i));
  ASSERT_TRUE(a->Commit(ScheduleBatch("e1", dues)).ok());
  std::vector<std::vector<int64_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Store* store = (t % 2 == 0) ? a.get() : b.get();
      while (true) {
        auto claimed = store->ClaimOutbox(
            kT0 + absl::Hours(1), absl::StrCat("d", t), absl::Minutes(5), 3);
        if (!claimed.ok() || claimed->empty()) return;
        for (const OutboxEntry& e : *claimed) got[t].push_back(e.id);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<int64_t> all;
  for (const auto& ids : got) all.insert(all.end(), ids.begin(), ids.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kRows));
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  EXPECT_EQ(
      this->backend_.Scalar(
          "SELECT COUNT(*) FROM outbox WHERE status = 1 AND attempts = 1"),
      absl::StrCat(kRows));
}

TYPED_TEST(StoreConformanceTest, CommitAfterCloseIsUnavailable) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  store->Close();
  absl::StatusOr<CommitResult> r = store->Commit(CreateBatch("t1", "e1", "r1"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "store: closing; retry on another server");
  EXPECT_EQ(store->GetEnrollment("t1", "e1").status().code(),
            absl::StatusCode::kUnavailable);
  store->Close();  // idempotent
}

// The idempotency window (store.request_retention, 7 days by default),
// on the callers' clock (each request's create time): a retry inside it is
// answered from the record; once a later request pruned the record, the
// retry is refused ALREADY_EXISTS and nothing is applied again. The
// request id's key is written when its record is pruned, not before.
TYPED_TEST(StoreConformanceTest, RetryInsideTheWindowReplaysAfterItIsRefused) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  const absl::Time t0 = testing::kBatchTime;
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1", "hash-a", t0)).ok());
  EXPECT_EQ(this->CountRows("request_keys"), 0);

  // Six days later: inside the window, the first response comes back.
  absl::StatusOr<CommitResult> retry = store->Commit(
      CreateBatch("t1", "e1", "r1", "hash-a", t0 + absl::Hours(6 * 24)));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->replayed);
  EXPECT_EQ(retry->response, "response-e1");

  // Eight days later another request commits and prunes r1's record.
  ASSERT_TRUE(store
                  ->Commit(CreateBatch("t1", "e2", "r2", "hash-a",
                                       t0 + absl::Hours(8 * 24)))
                  .ok());
  EXPECT_FALSE(store->LookupRequest("t1", "r1")->has_value());
  EXPECT_TRUE(store->LookupRequest("t1", "r2")->has_value());
  EXPECT_EQ(this->backend_.Scalar("SELECT key FROM request_keys"),
            absl::StrCat(RequestKey("t1", "r1")));

  // The late retry (even one for another new enrollment) is refused.
  absl::StatusOr<CommitResult> late = store->Commit(
      CreateBatch("t1", "e3", "r1", "hash-a", t0 + absl::Hours(8 * 24)));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kAlreadyExists)
      << late.status();
  EXPECT_THAT(std::string(late.status().message()),
              ::testing::HasSubstr("store.request_retention"));
  EXPECT_EQ(store->GetEnrollment("t1", "e3").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->CountRows("enrollments"), 2);
  EXPECT_EQ(this->CountRows("events"), 2);
  EXPECT_EQ(this->CountRows("requests"), 1);
  EXPECT_EQ(this->CountRows("request_keys"), 1);
  // The same request id in another tenant is another request.
  EXPECT_TRUE(store
                  ->Commit(CreateBatch("t2", "e1", "r1", "hash-a",
                                       t0 + absl::Hours(8 * 24)))
                  .ok());
}

// Request records are found by their request id's key (schema 7), and the
// tenant and request id are compared too: a request whose key another
// recent request id holds is refused, not answered with that request's
// response, and nothing is applied. (Real ids share a key about once in
// 2^64; the test gives r1's record r2's key.)
TYPED_TEST(StoreConformanceTest, RequestIdsSharingAKeyAreToldApart) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(CreateBatch("t1", "e1", "r1")).ok());
  ASSERT_TRUE(this->backend_
                  .Exec(absl::StrCat(
                      "UPDATE requests SET key = ", RequestKey("t1", "r2"),
                      " WHERE request_id = 'r1'"))
                  .ok());
  ASSERT_EQ(this->backend_.Scalar("SELECT key FROM requests"),
            absl::StrCat(RequestKey("t1", "r2")));

  absl::StatusOr<CommitResult> r = store->Commit(CreateBatch("t1", "e2", "r2"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr("cannot be told apart"));
  EXPECT_EQ(store->GetEnrollment("t1", "e2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(store->LookupRequest("t1", "r2")->has_value());
  EXPECT_EQ(this->CountRows("requests"), 1);
  EXPECT_EQ(this->CountRows("events"), 1);
}

// A request record keeps the first half of its payload's SHA-256 (schema
// 8): a retry with the same payload is answered from it, one with another
// payload under the same request id is refused, and a record written with
// the whole digest (before schema 8) still compares.
TYPED_TEST(StoreConformanceTest, PayloadHashesKeepTheirFirstHalf) {
  auto store = this->OpenStore();
  ASSERT_NE(store, nullptr);
  const std::string digest(64, 'a');
  const std::string other = std::string(63, 'a') + "b";
  WriteBatch first = CreateBatch("t1", "e1", "r1");
  first.request.payload_hash = digest;
  ASSERT_TRUE(store->Commit(first).ok());
  EXPECT_EQ(this->backend_.Scalar("SELECT length(payload_hash) FROM requests"),
            "16");
  absl::StatusOr<std::optional<RequestRecord>> seen =
      store->LookupRequest("t1", "r1");
  ASSERT_TRUE(seen.ok() && seen->has_value());
  EXPECT_EQ((*seen)->payload_hash, std::string(32, 'a'));
  EXPECT_TRUE(SamePayloadHash((*seen)->payload_hash, digest));
  EXPECT_FALSE(SamePayloadHash((*seen)->payload_hash, other.substr(0, 31)));

  WriteBatch retry = CreateBatch("t1", "e1", "r1");
  retry.request.payload_hash = digest;
  absl::StatusOr<CommitResult> replay = store->Commit(retry);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);

  // Another payload under the same request id.
  WriteBatch different = CreateBatch("t1", "e1", "r1");
  different.request.payload_hash = std::string(64, 'c');
  absl::StatusOr<CommitResult> refused = store->Commit(different);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();

  // A record from before schema 8 holds all 32 bytes.
  ASSERT_TRUE(this->backend_
                  .Exec(absl::StrCat(
                      "UPDATE requests SET payload_hash = ",
                      TypeParam::BlobLiteral(absl::HexStringToBytes(other))))
                  .ok());
  seen = store->LookupRequest("t1", "r1");
  ASSERT_TRUE(seen.ok() && seen->has_value());
  EXPECT_EQ((*seen)->payload_hash, other);
  WriteBatch old_retry = CreateBatch("t1", "e1", "r1");
  old_retry.request.payload_hash = other;
  replay = store->Commit(old_retry);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);
  // ... and compares whole: the same first half is not enough.
  WriteBatch half = CreateBatch("t1", "e1", "r1");
  half.request.payload_hash = digest;
  EXPECT_EQ(store->Commit(half).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Values that could not be told apart from a stored half or whole digest.
  WriteBatch ambiguous = CreateBatch("t1", "e2", "r2");
  ambiguous.request.payload_hash = std::string(16, 'x');
  EXPECT_EQ(store->Commit(ambiguous).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ipsrt
