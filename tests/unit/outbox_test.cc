// Outbox delivery in the SQLite store: claims, leases, expiry, outcomes and
// the change feed, on a real database file with explicit times.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStore::Options o;
    o.path = dir_.File("ipsrt.db");
    auto s = SqliteStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  // Schedule commits one enrollment with reminders due at `dues`.
  void Schedule(const std::string& id, const std::vector<absl::Time>& dues) {
    WriteBatch b;
    b.request = {.tenant = "t1",
                 .request_id = "create-" + id,
                 .method = "CreateEnrollment",
                 .payload_hash = "h",
                 .response = "",
                 .create_time = kT0};
    EnrollmentRow row;
    row.tenant = "t1";
    row.id = id;
    row.workflow_id = "w";
    row.workflow_version = 1;
    row.stage = "s";
    row.state = 1;
    row.revision = 1;
    row.create_time = row.update_time = kT0;
    b.create = row;
    for (size_t i = 0; i < dues.size(); ++i) {
      std::string task = absl::StrCat("s.diary#", i + 1);
      b.outbox.push_back(OutboxRow{
          "t1", id, "reminder", dues[i], task,
          absl::StrCat("tenants/t1/enrollments/", id, "/reminder/", task)});
    }
    absl::StatusOr<CommitResult> r = store_->Commit(std::move(b));
    ASSERT_TRUE(r.ok()) << r.status();
  }

  std::vector<int64_t> Ids(const std::vector<OutboxEntry>& entries) {
    std::vector<int64_t> ids;
    for (const OutboxEntry& e : entries) ids.push_back(e.id);
    return ids;
  }

  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(OutboxTest, ClaimsOnlyDueRowsEarliestFirstWithALease) {
  Schedule("e1",
           {kT0 + absl::Hours(2), kT0 + absl::Hours(1), kT0 + absl::Hours(3)});
  auto none = store_->ClaimOutbox(kT0, "a", absl::Seconds(30), 10);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, IsEmpty());

  auto claimed =
      store_->ClaimOutbox(kT0 + absl::Hours(2), "a", absl::Seconds(30), 10);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), 2u);
  EXPECT_EQ((*claimed)[0].row.due_time, kT0 + absl::Hours(1));
  EXPECT_EQ((*claimed)[1].row.due_time, kT0 + absl::Hours(2));
  for (const OutboxEntry& e : *claimed) {
    EXPECT_EQ(e.status, OutboxStatus::kClaimed);
    EXPECT_EQ(e.lease_owner, "a");
    EXPECT_EQ(e.lease_expiry, kT0 + absl::Hours(2) + absl::Seconds(30));
    EXPECT_EQ(e.attempts, 1);
  }
  // Held rows are not claimed again while the lease runs.
  auto again = store_->ClaimOutbox(kT0 + absl::Hours(2) + absl::Seconds(29),
                                   "b", absl::Seconds(30), 10);
  ASSERT_TRUE(again.ok());
  EXPECT_THAT(*again, IsEmpty());
}

TEST_F(OutboxTest, BatchLimitIsRespected) {
  Schedule("e1", {kT0, kT0 + absl::Seconds(1), kT0 + absl::Seconds(2)});
  auto claimed =
      store_->ClaimOutbox(kT0 + absl::Hours(1), "a", absl::Seconds(30), 2);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 2u);
  EXPECT_EQ((*claimed)[0].row.due_time, kT0);
}

TEST_F(OutboxTest, ExpiredLeaseIsReclaimedAndTheOldOwnersOutcomeDropped) {
  Schedule("e1", {kT0});
  auto first = store_->ClaimOutbox(kT0, "a", absl::Seconds(30), 10);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  const int64_t id = (*first)[0].id;
  // "a" dies; after the lease, "b" claims the same row with the same key.
  auto second =
      store_->ClaimOutbox(kT0 + absl::Seconds(30), "b", absl::Seconds(30), 10);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].id, id);
  EXPECT_EQ((*second)[0].row.idempotency_key, (*first)[0].row.idempotency_key);
  EXPECT_EQ((*second)[0].attempts, 2);
  EXPECT_EQ((*second)[0].lease_owner, "b");

  // "a" comes back late: its outcome is refused.
  auto lost = store_->RecordOutboxOutcomes(
      "a", kT0 + absl::Seconds(31),
      {OutboxResult{id, {OutboxOutcome::Kind::kDone}}});
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_THAT(*lost, ElementsAre(id));
  // "b" still holds it.
  auto kept = store_->RecordOutboxOutcomes(
      "b", kT0 + absl::Seconds(31),
      {OutboxResult{id, {OutboxOutcome::Kind::kDone}}});
  ASSERT_TRUE(kept.ok());
  EXPECT_THAT(*kept, IsEmpty());
  auto row = store_->GetOutbox("t1", id);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->status, OutboxStatus::kDone);
  EXPECT_EQ(row->change_seq, 1);
  EXPECT_EQ(row->lease_owner, "");
}

TEST_F(OutboxTest, OutcomeAfterOwnLeaseExpiredIsRefused) {
  Schedule("e1", {kT0});
  auto claimed = store_->ClaimOutbox(kT0, "a", absl::Seconds(30), 10);
  ASSERT_TRUE(claimed.ok());
  const int64_t id = (*claimed)[0].id;
  auto lost = store_->RecordOutboxOutcomes(
      "a", kT0 + absl::Seconds(30),
      {OutboxResult{id, {OutboxOutcome::Kind::kDone}}});
  ASSERT_TRUE(lost.ok());
  EXPECT_THAT(*lost, ElementsAre(id));
  auto row = store_->GetOutbox("t1", id);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->status, OutboxStatus::kClaimed);
}

TEST_F(OutboxTest, RetryWaitsUntilItsTimeThenIsClaimedAgain) {
  Schedule("e1", {kT0});
  auto claimed = store_->ClaimOutbox(kT0, "a", absl::Seconds(30), 10);
  ASSERT_TRUE(claimed.ok());
  const int64_t id = (*claimed)[0].id;
  OutboxOutcome retry{OutboxOutcome::Kind::kRetry, kT0 + absl::Minutes(5),
                      "UNAVAILABLE: channel down"};
  ASSERT_TRUE(
      store_->RecordOutboxOutcomes("a", kT0, {OutboxResult{id, retry}}).ok());
  auto row = store_->GetOutbox("t1", id);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->status, OutboxStatus::kRetryWait);
  EXPECT_EQ(row->lease_expiry, kT0 + absl::Minutes(5));
  EXPECT_EQ(row->last_error, "UNAVAILABLE: channel down");
  EXPECT_EQ(row->change_seq, 0);

  auto early = store_->ClaimOutbox(kT0 + absl::Minutes(5) - absl::Seconds(1),
                                   "a", absl::Seconds(30), 10);
  ASSERT_TRUE(early.ok());
  EXPECT_THAT(*early, IsEmpty());
  auto due =
      store_->ClaimOutbox(kT0 + absl::Minutes(5), "a", absl::Seconds(30), 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].attempts, 2);
}

TEST_F(OutboxTest, CancelledRowsAreNeverClaimed) {
  Schedule("e1", {kT0});
  WriteBatch b;
  b.request = {.tenant = "t1",
               .request_id = "done",
               .method = "SubmitEvent",
               .payload_hash = "h",
               .create_time = kT0};
  b.cancel_outbox_keys.push_back(
      "tenants/t1/enrollments/e1/reminder/s.diary#1");
  ASSERT_TRUE(store_->Commit(std::move(b)).ok());
  auto claimed =
      store_->ClaimOutbox(kT0 + absl::Hours(1), "a", absl::Seconds(30), 10);
  ASSERT_TRUE(claimed.ok());
  EXPECT_THAT(*claimed, IsEmpty());
}

TEST_F(OutboxTest, ChangeFeedOrdersSettledRowsAndAcknowledgement) {
  Schedule("e1", {kT0, kT0 + absl::Seconds(1), kT0 + absl::Seconds(2)});
  auto claimed =
      store_->ClaimOutbox(kT0 + absl::Seconds(2), "a", absl::Seconds(30), 10);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 3u);
  std::vector<int64_t> ids = Ids(*claimed);
  ASSERT_TRUE(store_
                  ->RecordOutboxOutcomes(
                      "a", kT0 + absl::Seconds(3),
                      {OutboxResult{ids[1], {OutboxOutcome::Kind::kDone}},
                       OutboxResult{ids[0], {OutboxOutcome::Kind::kFailed}},
                       OutboxResult{ids[2], {OutboxOutcome::Kind::kCancelled}}})
                  .ok());
  auto feed = store_->OutboxChanges("t1", 0, 10);
  ASSERT_TRUE(feed.ok()) << feed.status();
  EXPECT_THAT(Ids(*feed), ElementsAre(ids[1], ids[0], ids[2]));
  EXPECT_EQ((*feed)[0].status, OutboxStatus::kDone);
  EXPECT_EQ((*feed)[1].status, OutboxStatus::kFailed);
  EXPECT_EQ((*feed)[2].status, OutboxStatus::kCancelled);

  auto after = store_->OutboxChanges("t1", (*feed)[0].change_seq, 10);
  ASSERT_TRUE(after.ok());
  EXPECT_THAT(Ids(*after), ElementsAre(ids[0], ids[2]));

  auto not_sent = store_->AcknowledgeOutbox("t1", ids[0]);
  EXPECT_EQ(not_sent.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(not_sent.status().message(),
            absl::StrCat("reminder tenants/t1/reminders/", ids[0],
                         " has not been sent; only a sent reminder can be "
                         "acknowledged"));
  auto acked = store_->AcknowledgeOutbox("t1", ids[1]);
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->status, OutboxStatus::kAcknowledged);
  EXPECT_EQ(acked->change_seq, 4);
  auto twice = store_->AcknowledgeOutbox("t1", ids[1]);
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice->change_seq, 4);
  auto last = store_->OutboxChanges("t1", 3, 10);
  ASSERT_TRUE(last.ok());
  EXPECT_THAT(Ids(*last), ElementsAre(ids[1]));
  EXPECT_THAT(*store_->OutboxChanges("t2", 0, 10), IsEmpty());
  EXPECT_EQ(store_->AcknowledgeOutbox("t2", ids[1]).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(OutboxTest, ListPagesByDueTimeAndStatus) {
  Schedule("e1", {kT0 + absl::Seconds(3), kT0 + absl::Seconds(1),
                  kT0 + absl::Seconds(2), kT0 + absl::Hours(5)});
  OutboxQuery q;
  q.tenant = "t1";
  q.due_before = kT0 + absl::Hours(1);
  q.statuses = {OutboxStatus::kScheduled};
  q.limit = 2;
  auto page1 = store_->ListOutbox(q);
  ASSERT_TRUE(page1.ok()) << page1.status();
  ASSERT_EQ(page1->size(), 2u);
  EXPECT_EQ((*page1)[0].row.due_time, kT0 + absl::Seconds(1));
  EXPECT_EQ((*page1)[1].row.due_time, kT0 + absl::Seconds(2));
  q.after = std::pair((*page1)[1].row.due_time, (*page1)[1].id);
  auto page2 = store_->ListOutbox(q);
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->size(), 1u);
  EXPECT_EQ((*page2)[0].row.due_time, kT0 + absl::Seconds(3));
  q.statuses = {OutboxStatus::kDone};
  q.after.reset();
  EXPECT_THAT(*store_->ListOutbox(q), IsEmpty());
}

// The claim finds due rows through index range scans (outbox_due for
// scheduled rows, outbox_lease for expired leases), never a table scan.
TEST_F(OutboxTest, ClaimQueryPlanIsAnIndexRangeScan) {
  absl::StatusOr<std::string> plan = store_->ClaimQueryPlan();
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(*plan, HasSubstr("SEARCH outbox USING COVERING INDEX outbox_due "
                               "(status=? AND due_time_us<?)"));
  EXPECT_THAT(*plan, HasSubstr("SEARCH outbox USING INDEX outbox_lease "
                               "(status=? AND lease_expiry_us<?)"));
  EXPECT_THAT(*plan, Not(HasSubstr("SCAN outbox")));
}

// The pages the API serves (ListEnrollments, ListDueReminders) are index
// searches too: SQLite's plan for the exact statements shows an index range
// and neither a scan of the table nor a temporary B-tree for the ORDER BY,
// so a page costs the same at ten rows or ten million (bench/README.md,
// "Scale with data").
TEST_F(OutboxTest, EnrollmentPagesSearchTheCreateTimeIndex) {
  for (int i = 0; i < 20; ++i) Schedule(absl::StrCat("e", i), {kT0});
  EnrollmentFilter filter;
  filter.tenant = "t1";
  for (bool after : {false, true}) {
    absl::StatusOr<std::string> plan =
        store_->ListEnrollmentsQueryPlan(filter, after);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_THAT(*plan, HasSubstr("SEARCH enrollments USING INDEX "
                                 "enrollments_by_create_time (tenant=?"))
        << "after=" << after;
    EXPECT_THAT(*plan, Not(HasSubstr("SCAN enrollments")));
    EXPECT_THAT(*plan, Not(HasSubstr("TEMP B-TREE")));
  }
}

TEST_F(OutboxTest, DueReminderPagesSearchTheTenantDueIndex) {
  for (int i = 0; i < 20; ++i) {
    Schedule(absl::StrCat("e", i), {kT0 + absl::Minutes(i)});
  }
  // ListDueReminders' default query: scheduled reminders of one tenant due
  // before now, the first page and a later one.
  OutboxQuery q;
  q.tenant = "t1";
  q.due_before = kT0 + absl::Hours(1);
  q.statuses = {OutboxStatus::kScheduled};
  q.limit = 101;
  for (bool after : {false, true}) {
    if (after) q.after = std::pair(kT0, int64_t{5});
    absl::StatusOr<std::string> plan = store_->ListOutboxQueryPlan(q);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_THAT(*plan, HasSubstr("SEARCH outbox USING INDEX "
                                 "outbox_by_tenant_due (tenant=? AND "
                                 "due_time_us"))
        << "after=" << after;
    EXPECT_THAT(*plan, Not(HasSubstr("SCAN outbox")));
    EXPECT_THAT(*plan, Not(HasSubstr("TEMP B-TREE")));
  }
}

}  // namespace
}  // namespace ipsrt
