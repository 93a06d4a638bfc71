// Failures injected into each write step of a batch (the stores' fault
// hook, SqlCore::Options::fault_hook), on every store kind: a failed batch
// leaves nothing of itself behind, and the same request then commits.
#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/store/store_backends.h"
#include "tests/testing/store_batches.h"

namespace ipsrt {
namespace {

using testing::CreateBatch;

// Injector fails the named step while armed.
struct Injector {
  std::string step;
  std::atomic<bool> armed{true};

  testing::SqliteBackend::FaultHook Hook() {
    return [this](absl::string_view at) {
      if (armed && at == step) {
        return absl::UnavailableError(absl::StrCat("injected at ", at));
      }
      return absl::OkStatus();
    };
  }
};

AuditRecord Audit(const std::string& request_id) {
  AuditRecord a;
  a.tenant = "t1";
  a.subject = "clinician-1";
  a.role = "clinician";
  a.rpc = "/ipsrt.v1.EnrollmentService/CreateEnrollment";
  a.resource = "tenants/t1/enrollments/e1";
  a.outcome = "OK";
  a.time = testing::kBatchTime;
  a.request_id = request_id;
  return a;
}

// A new enrollment with one event, one outbox row and one audit record.
WriteBatch FullCreate() {
  WriteBatch b = CreateBatch("t1", "e1", "r1");
  b.outbox.push_back(OutboxRow{"t1", "e1", "reminder", testing::kBatchTime,
                               "payload", "tenants/t1/enrollments/e1/key-1"});
  b.audit.push_back(Audit("r1"));
  return b;
}

// The next revision of e1, cancelling key-1's reminder.
WriteBatch FullUpdate() {
  WriteBatch b = CreateBatch("t1", "e1", "r2");
  EnrollmentRow row = *b.create;
  b.create.reset();
  row.revision = 2;
  row.stage = "intermediate";
  b.update = EnrollmentUpdate{1, row};
  b.events[0].sequence = 2;
  b.events[0].prev_hash = "h1";
  b.events[0].hash = "h2";
  b.cancel_outbox_keys.push_back("tenants/t1/enrollments/e1/key-1");
  b.audit.push_back(Audit("r2"));
  return b;
}

template <typename Backend>
class StoreFailureTest : public ::testing::Test {
 protected:
  // Rows of the tables a batch writes, "enrollments=1 events=1 ...".
  std::string Rows(Backend& backend) {
    std::string out;
    for (const char* table : {"enrollments", "events", "outbox", "requests",
                              "request_keys", "audit"}) {
      absl::StrAppend(
          &out, out.empty() ? "" : " ", table, "=",
          backend.Scalar(absl::StrCat("SELECT COUNT(*) FROM ", table)));
    }
    return out;
  }
};

TYPED_TEST_SUITE(StoreFailureTest, testing::StoreBackends,
                 testing::StoreBackendName);

TYPED_TEST(StoreFailureTest, FailedCreateLeavesNothingBehind) {
  for (const char* failing :
       {"request.insert", "enrollment.insert", "event.insert", "outbox.insert",
        "audit.insert", "commit"}) {
    SCOPED_TRACE(failing);
    TypeParam backend;
    Injector inject{failing};
    absl::StatusOr<std::unique_ptr<Store>> store = backend.Open(inject.Hook());
    ASSERT_TRUE(store.ok()) << store.status();

    absl::StatusOr<CommitResult> r = (*store)->Commit(FullCreate());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(r.status().message(), absl::StrCat("injected at ", failing));
    EXPECT_EQ((*store)->GetEnrollment("t1", "e1").status().code(),
              absl::StatusCode::kNotFound);
    EXPECT_FALSE((*store)->LookupRequest("t1", "r1")->has_value());
    EXPECT_EQ(this->Rows(backend),
              "enrollments=0 events=0 outbox=0 requests=0 request_keys=0 "
              "audit=0");

    inject.armed = false;
    absl::StatusOr<CommitResult> again = (*store)->Commit(FullCreate());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE(again->replayed);
    EXPECT_EQ(this->Rows(backend),
              "enrollments=1 events=1 outbox=1 requests=1 request_keys=0 "
              "audit=1");
  }
}

TYPED_TEST(StoreFailureTest, FailedUpdateLeavesTheEnrollmentAsItWas) {
  for (const char* failing : {"enrollment.update", "event.insert",
                              "outbox.cancel", "audit.insert", "commit"}) {
    SCOPED_TRACE(failing);
    TypeParam backend;
    Injector inject{failing, false};
    absl::StatusOr<std::unique_ptr<Store>> store = backend.Open(inject.Hook());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Commit(FullCreate()).ok());

    inject.armed = true;
    absl::StatusOr<CommitResult> r = (*store)->Commit(FullUpdate());
    EXPECT_EQ(r.status().message(), absl::StrCat("injected at ", failing));
    EXPECT_EQ((*store)->GetEnrollment("t1", "e1")->revision, 1);
    EXPECT_EQ((*store)->ListEvents("t1", "e1", 0, 10)->size(), 1u);
    EXPECT_EQ(backend.Scalar("SELECT status FROM outbox"),
              absl::StrCat(static_cast<int>(OutboxStatus::kScheduled)));
    EXPECT_FALSE((*store)->LookupRequest("t1", "r2")->has_value());

    inject.armed = false;
    ASSERT_TRUE((*store)->Commit(FullUpdate()).ok());
    EXPECT_EQ((*store)->GetEnrollment("t1", "e1")->revision, 2);
    EXPECT_EQ(backend.Scalar("SELECT status FROM outbox"),
              absl::StrCat(static_cast<int>(OutboxStatus::kCancelled)));
    EXPECT_EQ(this->Rows(backend),
              "enrollments=1 events=2 outbox=1 requests=2 request_keys=0 "
              "audit=2");
  }
}

// A retry whose look-up of the first result fails appends nothing (not even
// its audit record); the next retry replays.
TYPED_TEST(StoreFailureTest, FailedReplayLookupAppendsNothing) {
  TypeParam backend;
  Injector inject{"request.lookup", false};
  absl::StatusOr<std::unique_ptr<Store>> store = backend.Open(inject.Hook());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Commit(FullCreate()).ok());

  inject.armed = true;
  absl::StatusOr<CommitResult> r = (*store)->Commit(FullCreate());
  EXPECT_EQ(r.status().message(), "injected at request.lookup");
  EXPECT_EQ(this->Rows(backend),
            "enrollments=1 events=1 outbox=1 requests=1 request_keys=0 "
            "audit=1");

  inject.armed = false;
  absl::StatusOr<CommitResult> replay = (*store)->Commit(FullCreate());
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->response, "response-e1");
  EXPECT_EQ(backend.Scalar("SELECT outcome FROM audit WHERE seq = 2"),
            "OK (replayed)");
}

}  // namespace
}  // namespace ipsrt
