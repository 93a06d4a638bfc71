// The list pages the API serves (ListEnrollments, ListDueReminders) are
// index searches in the SQLite store: SQLite's own query plan for the
// exact statements shows an index range and neither a scan of the table
// nor a temporary B-tree for the ORDER BY, so a page costs the same at
// ten rows or ten million (bench/README.md, "Scale with data").
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

class ListQueryPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStore::Options o;
    o.path = dir_.File("ipsrt.db");
    auto s = SqliteStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    // A few enrollments with reminders in two tenants, so the planner
    // sees real tables, not empty ones.
    for (int i = 0; i < 50; ++i) {
      std::string tenant = i % 2 == 0 ? "t1" : "t2";
      std::string id = absl::StrCat("e", i);
      WriteBatch b;
      b.request = {.tenant = tenant,
                   .request_id = absl::StrCat("create-", i),
                   .method = "CreateEnrollment",
                   .payload_hash = "h",
                   .response = "",
                   .create_time = kT0};
      EnrollmentRow row;
      row.tenant = tenant;
      row.id = id;
      row.patient_ref = absl::StrCat("Patient/", i);
      row.clinician_ref = "Practitioner/1";
      row.workflow_id = "w";
      row.workflow_version = 1;
      row.stage = "s";
      row.state = 1;
      row.revision = 1;
      row.create_time = row.update_time = kT0 + absl::Seconds(i);
      b.create = row;
      b.outbox.push_back(OutboxRow{
          tenant, id, "reminder", kT0 + absl::Minutes(i), "s.diary#1",
          absl::StrCat("tenants/", tenant, "/enrollments/", id, "/r")});
      absl::StatusOr<CommitResult> r = store_->Commit(std::move(b));
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(ListQueryPlanTest, EnrollmentPagesSearchTheCreateTimeIndex) {
  EnrollmentFilter filter;
  filter.tenant = "t1";
  for (bool after : {false, true}) {
    absl::StatusOr<std::string> plan =
        store_->ListEnrollmentsQueryPlan(filter, after);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_THAT(*plan, AllOf(HasSubstr("SEARCH enrollments USING INDEX "
                                       "enrollments_by_create_time (tenant=?"),
                             Not(HasSubstr("SCAN enrollments")),
                             Not(HasSubstr("TEMP B-TREE"))))
        << "after=" << after;
  }
}

TEST_F(ListQueryPlanTest, DueReminderPagesSearchTheTenantDueIndex) {
  // ListDueReminders' default query: scheduled reminders of one tenant due
  // before now, first page and a later one.
  OutboxQuery q;
  q.tenant = "t1";
  q.due_before = kT0 + absl::Hours(1);
  q.statuses = {OutboxStatus::kScheduled};
  q.limit = 101;
  for (bool after : {false, true}) {
    if (after) q.after = std::pair(kT0, int64_t{5});
    absl::StatusOr<std::string> plan = store_->ListOutboxQueryPlan(q);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_THAT(*plan, AllOf(HasSubstr("SEARCH outbox USING INDEX "
                                       "outbox_by_tenant_due (tenant=? AND "
                                       "due_time_us"),
                             Not(HasSubstr("SCAN outbox")),
                             Not(HasSubstr("TEMP B-TREE"))))
        << "after=" << after;
  }
}

}  // namespace
}  // namespace ipsrt
