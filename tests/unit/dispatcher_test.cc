// The reminder dispatcher over a real SQLite store and the real engine
// operations, with a FakeClock and a recording sender behind the
// ReminderSender interface.
#include "reminders/dispatcher.h"

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt::reminders {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::StartsWith;

// RecordingSender keeps every delivery and answers from a script.
class RecordingSender final : public ReminderSender {
 public:
  absl::Status Deliver(const ReminderDelivery& d) override {
    deliveries.push_back(d);
    if (!answers.empty()) {
      absl::Status s = answers.front();
      answers.erase(answers.begin());
      return s;
    }
    return absl::OkStatus();
  }
  std::vector<ReminderDelivery> deliveries;
  std::vector<absl::Status> answers;
};

class DispatcherTest : public ::testing::Test {
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
    enrollments_ = std::make_unique<Enrollments>(
        Enrollments::Deps{store_.get(), &clock_, &ids_, registry_.get(), {}});
    options_.owner = "test";
    options_.lease = absl::Seconds(60);
    options_.batch_size = 50;
    options_.max_attempts = 3;
    options_.initial_backoff = absl::Seconds(10);
    options_.max_backoff = absl::Seconds(25);
  }

  v1::Actor Actor() {
    v1::Actor a;
    a.set_subject("Patient/1");
    a.set_role("patient");
    return a;
  }

  // Create enrolls a patient on ipsrt-standard in `zone` at the clock's now.
  std::string Create(const std::string& id, const std::string& zone) {
    v1::CreateEnrollmentRequest r;
    r.set_parent("tenants/t1");
    r.set_request_id("create-" + id);
    r.set_patient_ref("Patient/" + id);
    r.set_workflow_id("ipsrt-standard");
    r.set_time_zone(zone);
    r.set_clinician_ref("Practitioner/7");
    absl::Notification done;
    absl::StatusOr<v1::Enrollment> result;
    enrollments_->Create(r, Actor(), [&](absl::StatusOr<v1::Enrollment> e) {
      result = std::move(e);
      done.Notify();
    });
    done.WaitForNotification();
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->name() : "";
  }

  absl::Status Submit(const std::string& name, const std::string& request_id,
                      const v1::EventPayload& payload) {
    v1::SubmitEventRequest r;
    r.set_name(name);
    r.set_request_id(request_id);
    *r.mutable_event() = payload;
    absl::Notification done;
    absl::Status status;
    enrollments_->Submit(r, Actor(),
                         [&](absl::StatusOr<v1::SubmitEventResponse> s) {
                           status = s.status();
                           done.Notify();
                         });
    done.WaitForNotification();
    return status;
  }

  static v1::EventPayload Diary(const std::string& date) {
    v1::EventPayload p;
    v1::SrmDiaryDay* d = p.mutable_srm_diary_day();
    d->set_local_date(date);
    d->set_instrument("srm5");
    for (const char* a :
         {"out_of_bed", "first_contact", "start_work", "dinner", "to_bed"}) {
      v1::SrmActivity* act = d->add_activities();
      act->set_activity(a);
      act->set_local_time("08:00");
      act->set_people_code(1);
    }
    return p;
  }

  static absl::Time Local(absl::CivilSecond c, const std::string& zone) {
    absl::TimeZone tz;
    EXPECT_TRUE(absl::LoadTimeZone(zone, &tz)) << zone;
    return absl::FromCivil(c, tz);
  }

  ipsrt::testing::TempDir dir_;
  FakeClock clock_{absl::FromUnixSeconds(0)};
  RandomIdGenerator ids_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<WorkflowRegistry> registry_;
  std::unique_ptr<Enrollments> enrollments_;
  DispatcherOptions options_;
  RecordingSender sender_;
};

TEST(BackoffTest, DoublesFromTheInitialWaitUpToTheCap) {
  DispatcherOptions o;
  o.initial_backoff = absl::Seconds(30);
  o.max_backoff = absl::Minutes(5);
  EXPECT_EQ(Backoff(o, 1), absl::Seconds(30));
  EXPECT_EQ(Backoff(o, 2), absl::Seconds(60));
  EXPECT_EQ(Backoff(o, 3), absl::Seconds(120));
  EXPECT_EQ(Backoff(o, 4), absl::Seconds(240));
  EXPECT_EQ(Backoff(o, 5), absl::Minutes(5));
  EXPECT_EQ(Backoff(o, 60), absl::Minutes(5));
}

TEST(BackoffTest, RetriableCodes) {
  EXPECT_TRUE(IsRetriable(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(IsRetriable(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(IsRetriable(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(IsRetriable(absl::StatusCode::kAborted));
  EXPECT_FALSE(IsRetriable(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(IsRetriable(absl::StatusCode::kPermissionDenied));
  EXPECT_FALSE(IsRetriable(absl::StatusCode::kNotFound));
}

TEST_F(DispatcherTest, SendsWhenDueWithLocalTimeAndStableKey) {
  clock_.Set(Local(absl::CivilSecond(2026, 1, 12, 9, 0, 0), "Europe/London"));
  std::string name = Create("e1", "Europe/London");
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  const absl::Time due =
      Local(absl::CivilSecond(2026, 1, 12, 20, 0, 0), "Europe/London");

  clock_.Set(due - absl::Seconds(1));
  auto early = d.RunOnce();
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_EQ(early->claimed, 0);

  clock_.Set(due);
  auto round = d.RunOnce();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->sent, 1);
  ASSERT_EQ(sender_.deliveries.size(), 1u);
  const ReminderDelivery& sent = sender_.deliveries[0];
  EXPECT_EQ(sent.idempotency_key,
            absl::StrCat(name, "/reminder/initial.srm-diary#1"));
  EXPECT_EQ(sent.enrollment, name);
  EXPECT_EQ(sent.kind, "reminder");
  EXPECT_EQ(sent.subject, "initial.srm-diary#1");
  EXPECT_EQ(sent.due_time, due);
  EXPECT_EQ(sent.local_due_time, "2026-01-12T20:00 (+00:00)");
  EXPECT_EQ(sent.time_zone, "Europe/London");
  EXPECT_EQ(sent.attempt, 1);

  // Settled: never sent again.
  clock_.Advance(absl::Hours(1));
  auto later = d.RunOnce();
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->claimed, 0);
  EXPECT_EQ(sender_.deliveries.size(), 1u);
}

TEST_F(DispatcherTest, RetriesWithBackoffThenFailsAfterMaxAttempts) {
  clock_.Set(Local(absl::CivilSecond(2026, 1, 12, 9, 0, 0), "Asia/Kolkata"));
  Create("e1", "Asia/Kolkata");
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  const absl::Time due =
      Local(absl::CivilSecond(2026, 1, 12, 20, 0, 0), "Asia/Kolkata");
  sender_.answers = {absl::UnavailableError("down"),
                     absl::DeadlineExceededError("slow"),
                     absl::UnavailableError("down")};
  clock_.Set(due);
  ASSERT_EQ(d.RunOnce()->retried, 1);
  // Backoff after attempt 1: 10 s.
  clock_.Set(due + absl::Seconds(9));
  EXPECT_EQ(d.RunOnce()->claimed, 0);
  clock_.Set(due + absl::Seconds(10));
  ASSERT_EQ(d.RunOnce()->retried, 1);
  // Backoff after attempt 2: 20 s.
  clock_.Set(due + absl::Seconds(29));
  EXPECT_EQ(d.RunOnce()->claimed, 0);
  clock_.Set(due + absl::Seconds(30));
  auto last = d.RunOnce();
  EXPECT_EQ(last->failed, 1);  // attempt 3 of 3
  ASSERT_EQ(sender_.deliveries.size(), 3u);
  EXPECT_EQ(sender_.deliveries[0].attempt, 1);
  EXPECT_EQ(sender_.deliveries[2].attempt, 3);
  EXPECT_EQ(sender_.deliveries[0].idempotency_key,
            sender_.deliveries[2].idempotency_key);
  OutboxQuery q;
  q.tenant = "t1";
  q.statuses = {OutboxStatus::kFailed};
  auto failed = store_->ListOutbox(q);
  ASSERT_TRUE(failed.ok());
  ASSERT_EQ(failed->size(), 1u);
  EXPECT_EQ((*failed)[0].last_error, "UNAVAILABLE: down");
  EXPECT_EQ((*failed)[0].attempts, 3);
}

TEST_F(DispatcherTest, PermanentErrorFailsAtOnce) {
  clock_.Set(Local(absl::CivilSecond(2026, 1, 12, 9, 0, 0), "Asia/Kolkata"));
  Create("e1", "Asia/Kolkata");
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  sender_.answers = {absl::InvalidArgumentError("no address")};
  clock_.Set(Local(absl::CivilSecond(2026, 1, 12, 20, 0, 0), "Asia/Kolkata"));
  auto round = d.RunOnce();
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->failed, 1);
  EXPECT_EQ(round->retried, 0);
}

TEST_F(DispatcherTest, TaskDoneBeforeDueIsNeverSent) {
  clock_.Set(
      Local(absl::CivilSecond(2026, 1, 12, 9, 0, 0), "America/New_York"));
  std::string name = Create("e1", "America/New_York");
  clock_.Set(
      Local(absl::CivilSecond(2026, 1, 12, 12, 0, 0), "America/New_York"));
  ASSERT_TRUE(Submit(name, "diary-1", Diary("2026-01-12")).ok());
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  clock_.Set(
      Local(absl::CivilSecond(2026, 1, 12, 21, 0, 0), "America/New_York"));
  auto round = d.RunOnce();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->claimed, 0);
  EXPECT_THAT(sender_.deliveries, IsEmpty());
}

// A dispatcher claimed the row and died; the task was then done. The next
// dispatcher checks the task at claim time and sends nothing.
TEST_F(DispatcherTest, TaskDoneWhileClaimedIsCancelledAtClaimTime) {
  clock_.Set(
      Local(absl::CivilSecond(2026, 1, 12, 9, 0, 0), "America/New_York"));
  std::string name = Create("e1", "America/New_York");
  const absl::Time due =
      Local(absl::CivilSecond(2026, 1, 12, 20, 0, 0), "America/New_York");
  clock_.Set(due);
  auto crashed = store_->ClaimOutbox(due, "crashed", absl::Seconds(60), 10);
  ASSERT_TRUE(crashed.ok());
  ASSERT_EQ(crashed->size(), 1u);
  clock_.Set(due + absl::Seconds(30));
  ASSERT_TRUE(Submit(name, "diary-1", Diary("2026-01-12")).ok());
  clock_.Set(due + absl::Seconds(61));
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  auto round = d.RunOnce();
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(round->cancelled, 1);
  EXPECT_EQ(round->sent, 0);
  EXPECT_THAT(sender_.deliveries, IsEmpty());
  auto row = store_->GetOutbox("t1", (*crashed)[0].id);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->status, OutboxStatus::kCancelled);
}

// A crash between claim and record: the row is redelivered after the lease
// with the same idempotency key, and recorded once.
TEST_F(DispatcherTest, CrashBetweenClaimAndRecordRedeliversSameKey) {
  clock_.Set(Local(absl::CivilSecond(2026, 1, 12, 9, 0, 0), "Asia/Kolkata"));
  Create("e1", "Asia/Kolkata");
  const absl::Time due =
      Local(absl::CivilSecond(2026, 1, 12, 20, 0, 0), "Asia/Kolkata");
  auto crashed = store_->ClaimOutbox(due, "crashed", absl::Seconds(60), 10);
  ASSERT_TRUE(crashed.ok());
  ASSERT_EQ(crashed->size(), 1u);
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  clock_.Set(due + absl::Seconds(59));
  EXPECT_EQ(d.RunOnce()->claimed, 0);
  clock_.Set(due + absl::Seconds(60));
  auto round = d.RunOnce();
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->sent, 1);
  ASSERT_EQ(sender_.deliveries.size(), 1u);
  EXPECT_EQ(sender_.deliveries[0].idempotency_key,
            (*crashed)[0].row.idempotency_key);
  EXPECT_EQ(sender_.deliveries[0].attempt, 2);
}

// The diary reminder fires at 20:00 local every day across both DST
// changes of the year, in four zones (Lord Howe shifts by 30 minutes,
// Kolkata has no DST), through the dispatcher: each day the clock stops a
// second before 20:00 (nothing is sent), then at 20:00 (one delivery),
// then time passes at 20:30 (the next occurrence is planned).
struct DstCase {
  const char* zone;
  absl::CivilDay change;  // a DST change (or any day for Kolkata)
};

TEST_F(DispatcherTest, DiaryReminderAt2000LocalAcrossBothDstChanges) {
  const DstCase cases[] = {
      {"America/New_York", absl::CivilDay(2026, 3, 8)},
      {"America/New_York", absl::CivilDay(2026, 11, 1)},
      {"Europe/London", absl::CivilDay(2026, 3, 29)},
      {"Europe/London", absl::CivilDay(2026, 10, 25)},
      {"Australia/Lord_Howe", absl::CivilDay(2026, 4, 5)},
      {"Australia/Lord_Howe", absl::CivilDay(2026, 10, 4)},
      {"Asia/Kolkata", absl::CivilDay(2026, 3, 8)},
      {"Asia/Kolkata", absl::CivilDay(2026, 11, 1)},
  };
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  int n = 0;
  for (const DstCase& c : cases) {
    SCOPED_TRACE(
        absl::StrCat(c.zone, " around ", absl::FormatCivilTime(c.change)));
    absl::TimeZone tz;
    ASSERT_TRUE(absl::LoadTimeZone(c.zone, &tz));
    const absl::CivilDay first = c.change - 2;
    clock_.Set(absl::FromCivil(
        absl::CivilSecond(first.year(), first.month(), first.day(), 9, 0, 0),
        tz));
    std::string name = Create(absl::StrCat("e", ++n), c.zone);
    std::set<int> utc_offsets;
    for (int i = 0; i < 5; ++i) {
      const absl::CivilDay day = first + i;
      const absl::Time at = absl::FromCivil(
          absl::CivilSecond(day.year(), day.month(), day.day(), 20, 0, 0), tz);
      // Earlier cases' enrollments keep their next reminder pending; only
      // this enrollment's deliveries count.
      auto mine = [&] {
        std::vector<ReminderDelivery> out;
        for (const ReminderDelivery& r : sender_.deliveries) {
          if (r.enrollment == name) out.push_back(r);
        }
        sender_.deliveries.clear();
        return out;
      };
      clock_.Set(at - absl::Seconds(1));
      ASSERT_TRUE(d.RunOnce().ok());
      ASSERT_THAT(mine(), IsEmpty()) << absl::FormatCivilTime(day);
      clock_.Set(at);
      auto round = d.RunOnce();
      ASSERT_TRUE(round.ok()) << round.status();
      std::vector<ReminderDelivery> got = mine();
      ASSERT_EQ(got.size(), 1u) << absl::FormatCivilTime(day);
      const ReminderDelivery& sent = got[0];
      EXPECT_EQ(sent.enrollment, name);
      EXPECT_EQ(sent.due_time, at);
      EXPECT_THAT(
          sent.local_due_time,
          StartsWith(absl::StrCat(absl::FormatCivilTime(day), "T20:00")));
      EXPECT_EQ(sent.subject, absl::StrCat("initial.srm-diary#", i + 1));
      utc_offsets.insert(tz.At(at).offset);
      clock_.Set(at + absl::Minutes(30));
      v1::EventPayload tick;
      tick.mutable_time_elapsed();
      ASSERT_TRUE(Submit(name, absl::StrCat("tick-", n, "-", i), tick).ok());
    }
    // Crossing the change moved 20:00 local in UTC (not in Kolkata).
    EXPECT_EQ(utc_offsets.size(),
              std::string(c.zone) == "Asia/Kolkata" ? 1u : 2u);
  }
}

// A patient who moves from New York to London: the reminder already sent
// keeps its time; the next one is re-planned to 20:00 on the London wall
// clock (new key), and the New York one is never sent.
TEST_F(DispatcherTest, ZoneChangeReplansFutureRemindersOnly) {
  const char* ny = "America/New_York";
  clock_.Set(Local(absl::CivilSecond(2026, 1, 12, 9, 0, 0), ny));
  std::string name = Create("mover", ny);
  Dispatcher d(store_.get(), &clock_, &sender_, options_);
  const absl::Time first = Local(absl::CivilSecond(2026, 1, 12, 20, 0, 0), ny);
  clock_.Set(first);
  ASSERT_EQ(d.RunOnce()->sent, 1);
  clock_.Set(first + absl::Minutes(30));
  v1::EventPayload tick;
  tick.mutable_time_elapsed();
  ASSERT_TRUE(Submit(name, "tick-1", tick).ok());

  clock_.Set(Local(absl::CivilSecond(2026, 1, 13, 10, 0, 0), ny));
  {
    v1::UpdateEnrollmentRequest u;
    u.set_name(name);
    u.set_request_id("move");
    u.set_time_zone("Europe/London");
    absl::Notification done;
    absl::Status status;
    enrollments_->Update(u, Actor(), [&](absl::StatusOr<v1::Enrollment> e) {
      status = e.status();
      done.Notify();
    });
    done.WaitForNotification();
    ASSERT_TRUE(status.ok()) << status;
  }
  sender_.deliveries.clear();
  const absl::Time london =
      Local(absl::CivilSecond(2026, 1, 13, 20, 0, 0), "Europe/London");
  clock_.Set(london - absl::Seconds(1));
  EXPECT_EQ(d.RunOnce()->claimed, 0);
  clock_.Set(london);
  ASSERT_EQ(d.RunOnce()->sent, 1);
  ASSERT_EQ(sender_.deliveries.size(), 1u);
  EXPECT_EQ(sender_.deliveries[0].local_due_time, "2026-01-13T20:00 (+00:00)");
  EXPECT_EQ(sender_.deliveries[0].time_zone, "Europe/London");
  EXPECT_EQ(sender_.deliveries[0].idempotency_key,
            absl::StrCat(name, "/reminder/initial.srm-diary#2@3"));
  // 20:00 in New York passes without a reminder.
  clock_.Set(Local(absl::CivilSecond(2026, 1, 13, 20, 0, 0), ny));
  EXPECT_EQ(d.RunOnce()->claimed, 0);
  // The first, sent before the move, kept its time.
  OutboxQuery q;
  q.tenant = "t1";
  q.statuses = {OutboxStatus::kDone};
  auto sent = store_->ListOutbox(q);
  ASSERT_TRUE(sent.ok());
  ASSERT_EQ(sent->size(), 2u);
  EXPECT_EQ((*sent)[0].row.due_time, first);
  EXPECT_EQ((*sent)[1].row.due_time, london);
}

}  // namespace
}  // namespace ipsrt::reminders
