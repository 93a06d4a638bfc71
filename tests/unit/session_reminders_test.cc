// Session reminders through the real engine operations, a real SQLite
// store and the reminder dispatcher (FakeClock, recording sender): the
// maintenance rule's switch to weekly and back re-plans the outbox in the
// event's transaction, and a session reminder that is no longer planned,
// or whose session has begun, is never delivered.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "core/questionnaires.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "plugin_host/registry.h"
#include "reminders/dispatcher.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt::reminders {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kZone[] = "America/New_York";

class RecordingSender final : public ReminderSender {
 public:
  absl::Status Deliver(const ReminderDelivery& d) override {
    deliveries.push_back(d);
    return absl::OkStatus();
  }
  std::vector<ReminderDelivery> deliveries;
};

// A local time in New York.
absl::Time Ny(int y, int m, int d, int hh, int mm, int ss = 0) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone(kZone, &tz));
  return absl::FromCivil(absl::CivilSecond(y, m, d, hh, mm, ss), tz);
}

class SessionRemindersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStore::Options o;
    o.path = dir_.File("ipsrt.db");
    auto s = SqliteStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    auto catalog = WorkflowCatalog::LoadDirectories(
        {std::string(IPSRT_SOURCE_DIR) + "/workflows"});
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    registry_ = std::make_unique<WorkflowRegistry>(*catalog);
    // PHQ-9 is scored by the built-in instruments plugin, loaded as ipsrtd
    // loads it (by bare name from the engine's plugin directory).
    PluginConfig core;
    core.path = "libipsrt_core_instruments.so";
    core.transport = PluginTransportKind::kInProcess;
    core.location = "ipsrtd.yaml:1:1";
    PluginHostOptions host;
    host.plugin_dir = IPSRT_PLUGIN_DIR;
    auto plugins = PluginRegistry::Load({core}, host);
    ASSERT_TRUE(plugins.ok()) << plugins.status();
    plugins_ = *std::move(plugins);
    auto questionnaires = QuestionnaireCatalog::Build(*plugins_);
    ASSERT_TRUE(questionnaires.ok()) << questionnaires.status();
    questionnaires_ = *std::move(questionnaires);
    enrollments_ =
        std::make_unique<Enrollments>(Enrollments::Deps{store_.get(),
                                                        &clock_,
                                                        &ids_,
                                                        registry_.get(),
                                                        {},
                                                        questionnaires_.get()});
    options_.owner = "test";
    options_.lease = absl::Seconds(60);
    options_.batch_size = 50;
  }

  v1::Actor Clinician() {
    v1::Actor a;
    a.set_subject("Practitioner/7");
    a.set_role("clinician");
    return a;
  }

  // Enroll creates a patient on ipsrt-preventive-first in New York at the
  // clock's now and moves them to maintenance (monthly sessions).
  std::string EnrollInMaintenance(const std::string& id) {
    v1::CreateEnrollmentRequest r;
    r.set_parent("tenants/t1");
    r.set_request_id("create-" + id);
    r.set_patient_ref("Patient/" + id);
    r.set_workflow_id("ipsrt-preventive-first");
    r.set_time_zone(kZone);
    r.set_clinician_ref("Practitioner/7");
    absl::Notification done;
    absl::StatusOr<v1::Enrollment> result;
    enrollments_->Create(r, Clinician(), [&](absl::StatusOr<v1::Enrollment> e) {
      result = std::move(e);
      done.Notify();
    });
    done.WaitForNotification();
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return "";
    v1::EventPayload p;
    p.mutable_stage_change()->set_to_stage("maintenance");
    p.mutable_stage_change()->set_reason("stable after the relapse plan");
    EXPECT_TRUE(Submit(result->name(), "to-maintenance-" + id, p).ok());
    return result->name();
  }

  absl::Status Submit(const std::string& name, const std::string& request_id,
                      const v1::EventPayload& payload) {
    v1::SubmitEventRequest r;
    r.set_name(name);
    r.set_request_id(request_id);
    *r.mutable_event() = payload;
    absl::Notification done;
    absl::Status status;
    enrollments_->Submit(r, Clinician(),
                         [&](absl::StatusOr<v1::SubmitEventResponse> s) {
                           status = s.status();
                           done.Notify();
                         });
    done.WaitForNotification();
    return status;
  }

  // Phq9 answers a PHQ-9 with `total` (at most 18) spread over items 1-6;
  // item 9 is 0.
  static v1::EventPayload Phq9(int total) {
    v1::EventPayload p;
    v1::QuestionnaireResponse* r = p.mutable_questionnaire_response();
    r->set_questionnaire_id("phq9");
    for (int i = 1; i <= 9; ++i) {
      int value = i <= 6 ? total / 6 + (i <= total % 6 ? 1 : 0) : 0;
      (*r->mutable_answers())[absl::StrCat(i)] = value;
    }
    return p;
  }

  // SessionRows lists the outbox's session reminders of `statuses` as
  // "<subject> <local due time>" (New York).
  std::vector<std::string> SessionRows(std::vector<OutboxStatus> statuses) {
    OutboxQuery q;
    q.tenant = "t1";
    q.statuses = std::move(statuses);
    auto rows = store_->ListOutbox(q);
    EXPECT_TRUE(rows.ok()) << rows.status();
    absl::TimeZone tz;
    absl::LoadTimeZone(kZone, &tz);
    std::vector<std::string> out;
    for (const OutboxEntry& e : rows.value_or(std::vector<OutboxEntry>{})) {
      if (e.row.kind != "session") continue;
      out.push_back(absl::StrCat(e.row.payload, " ",
                                 runtime::FormatLocal(e.row.due_time, tz)));
    }
    return out;
  }

  std::vector<std::string> DeliveredSessions() {
    std::vector<std::string> keys;
    for (const ReminderDelivery& d : sender_.deliveries) {
      if (d.kind == "session") keys.push_back(d.idempotency_key);
    }
    return keys;
  }

  ipsrt::testing::TempDir dir_;
  FakeClock clock_{Ny(2027, 1, 31, 9, 0)};  // a Sunday
  RandomIdGenerator ids_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<WorkflowRegistry> registry_;
  std::unique_ptr<PluginRegistry> plugins_;
  std::unique_ptr<QuestionnaireCatalog> questionnaires_;
  std::unique_ptr<Enrollments> enrollments_;
  DispatcherOptions options_;
  RecordingSender sender_;
};

TEST_F(SessionRemindersTest, SwitchToWeeklyAndBackReplansTheOutbox) {
  const std::string name = EnrollInMaintenance("p1");
  EXPECT_THAT(SessionRows({OutboxStatus::kScheduled}),
              ElementsAre("session:maintenance#1 2027-02-27T10:00 (-05:00)"));

  // An early warning sign on 2 February: weekly sessions. In the same
  // commit the monthly reminder is cancelled and the weekly one planned.
  clock_.Set(Ny(2027, 2, 2, 9, 0));
  ASSERT_TRUE(Submit(name, "phq9-high", Phq9(12)).ok());
  EXPECT_THAT(SessionRows({OutboxStatus::kScheduled}),
              ElementsAre("session:maintenance#2 2027-02-06T10:00 (-05:00)"));
  EXPECT_THAT(SessionRows({OutboxStatus::kCancelled}),
              ElementsAre("session:initial#1 2027-02-06T10:00 (-05:00)",
                          "session:maintenance#1 2027-02-27T10:00 (-05:00)"));

  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  clock_.Set(Ny(2027, 2, 6, 9, 59, 59));
  ASSERT_TRUE(d.RunOnce().ok());
  EXPECT_THAT(DeliveredSessions(), IsEmpty());
  clock_.Set(Ny(2027, 2, 6, 10, 0));
  ASSERT_TRUE(d.RunOnce().ok());
  ASSERT_THAT(DeliveredSessions(),
              ElementsAre(name + "/reminder/session:maintenance#2"));
  const ReminderDelivery& weekly = sender_.deliveries.back();
  EXPECT_EQ(weekly.subject, "session:maintenance#2");
  EXPECT_EQ(weekly.local_due_time, "2027-02-06T10:00 (-05:00)");

  // 9 February: the sign has passed, but sessions stay weekly until it has
  // stayed clear for two whole weeks: the next weekly one (14 February),
  // reminded and delivered the day before.
  clock_.Set(Ny(2027, 2, 9, 9, 0));
  ASSERT_TRUE(Submit(name, "phq9-low", Phq9(3)).ok());
  EXPECT_THAT(SessionRows({OutboxStatus::kScheduled}),
              ElementsAre("session:maintenance#3 2027-02-13T10:00 (-05:00)"));
  clock_.Set(Ny(2027, 2, 13, 10, 0));
  ASSERT_TRUE(d.RunOnce().ok());
  EXPECT_THAT(DeliveredSessions(),
              ElementsAre(name + "/reminder/session:maintenance#2",
                          name + "/reminder/session:maintenance#3"));

  // 23 February, two weeks on: monthly again, on the series of the stage
  // entry (31 January): 28 February, reminded on the 27th at the time the
  // cancelled reminder had.
  clock_.Set(Ny(2027, 2, 23, 9, 0));
  v1::EventPayload tick;
  tick.mutable_time_elapsed();
  ASSERT_TRUE(Submit(name, "tick", tick).ok());
  EXPECT_THAT(SessionRows({OutboxStatus::kScheduled}),
              ElementsAre("session:maintenance#4 2027-02-27T10:00 (-05:00)"));

  sender_.deliveries.clear();
  clock_.Set(Ny(2027, 2, 27, 10, 0));
  auto round = d.RunOnce();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_THAT(DeliveredSessions(),
              ElementsAre(name + "/reminder/session:maintenance#4"));
  clock_.Set(Ny(2027, 2, 28, 9, 0));
  ASSERT_TRUE(d.RunOnce().ok());
  EXPECT_THAT(DeliveredSessions(),
              ElementsAre(name + "/reminder/session:maintenance#4"));
  // The monthly reminder cancelled by the switch was never claimed.
  OutboxQuery q;
  q.tenant = "t1";
  auto all = store_->ListOutbox(q);
  ASSERT_TRUE(all.ok());
  int seen = 0;
  for (const OutboxEntry& e : *all) {
    if (e.row.idempotency_key == name + "/reminder/session:maintenance#1") {
      ++seen;
      EXPECT_EQ(e.status, OutboxStatus::kCancelled);
      EXPECT_EQ(e.attempts, 0);
    }
  }
  EXPECT_EQ(seen, 1);
}

// A dispatcher claimed the monthly reminder and died; the switch to weekly
// came in before the lease expired. The next dispatcher finds the session
// re-planned and cancels the row at claim time.
TEST_F(SessionRemindersTest, ReplannedWhileClaimedIsCancelledAtClaimTime) {
  const std::string name = EnrollInMaintenance("p2");
  const absl::Time due = Ny(2027, 2, 27, 10, 0);
  clock_.Set(due);
  auto crashed = store_->ClaimOutbox(due, "crashed", absl::Seconds(60), 10);
  ASSERT_TRUE(crashed.ok());
  ASSERT_EQ(crashed->size(), 1u);
  EXPECT_EQ((*crashed)[0].row.payload, "session:maintenance#1");

  clock_.Set(due + absl::Seconds(30));
  ASSERT_TRUE(Submit(name, "phq9-high", Phq9(12)).ok());
  // The weekly series from 31 January: 28 February's reminder time has
  // passed, so 7 March is the first planned.
  EXPECT_THAT(SessionRows({OutboxStatus::kScheduled}),
              ElementsAre("session:maintenance#2 2027-03-06T10:00 (-05:00)"));

  clock_.Set(due + absl::Seconds(61));
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  auto round = d.RunOnce();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->claimed, 1);
  EXPECT_EQ(round->cancelled, 1);
  EXPECT_EQ(round->sent, 0);
  EXPECT_THAT(sender_.deliveries, IsEmpty());
  auto row = store_->GetOutbox("t1", (*crashed)[0].id);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->status, OutboxStatus::kCancelled);
}

// A dispatcher that was down until after the session began sends no
// reminder for it.
TEST_F(SessionRemindersTest, ReminderOfABegunSessionIsNeverSent) {
  EnrollInMaintenance("p3");
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  clock_.Set(Ny(2027, 2, 28, 10, 0));
  auto round = d.RunOnce();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->cancelled, 1);
  EXPECT_EQ(round->sent, 0);
  EXPECT_THAT(DeliveredSessions(), IsEmpty());
}

}  // namespace
}  // namespace ipsrt::reminders
