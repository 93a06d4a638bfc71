// Reminder delivery with the real ipsrtd: a SIGKILL between claim and
// record loses nothing and repeats only with the same idempotency key, a
// task done before its reminder fires is never sent, and ReminderService
// lists, streams and acknowledges what was sent.
//
// Test hooks (environment variables read by ipsrtd only, each logged as a
// warning when set; no config key reaches them):
//   IPSRT_TEST_CLOCK_OFFSET    moves ipsrtd's clock, so that 20:00 in New
//                              York is a few seconds away;
//   IPSRT_TEST_REMINDER_PAUSE  makes the dispatcher sleep after delivering
//                              a batch and before recording it.
#include <signal.h>
#include <stdlib.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/reminder.grpc.pb.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;
namespace v1 = ::ipsrt::v1;

constexpr char kZone[] = "America/New_York";

// Line is what the test reads from one JSONL delivery line.
struct Line {
  std::string key;
  std::string attempt;
};

// Field extracts "name":"value" or "name":number from a JSON line written
// by the JSONL sender (flat object, no nested values).
std::string Field(const std::string& line, const std::string& name) {
  std::string quoted = absl::StrCat("\"", name, "\":");
  size_t at = line.find(quoted);
  if (at == std::string::npos) return "";
  at += quoted.size();
  if (line[at] == '"') {
    size_t end = line.find('"', at + 1);
    return line.substr(at + 1, end - at - 1);
  }
  size_t end = line.find_first_of(",}", at);
  return line.substr(at, end - at);
}

std::vector<Line> ReadLines(const std::string& path) {
  std::vector<Line> out;
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return out;
  for (absl::string_view l : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    out.push_back({Field(std::string(l), "idempotency_key"),
                   Field(std::string(l), "attempt")});
  }
  return out;
}

TEST(RemindersE2eTest, SigkillBetweenClaimAndRecordLosesNothing) {
  TempDir dir;
  std::string config = WriteConfig(dir);
  {
    absl::StatusOr<std::string> yaml = ReadFile(config);
    ASSERT_TRUE(yaml.ok());
    ASSERT_TRUE(WriteFile(config, *yaml + "reminders:\n"
                                          "  poll_interval: 100ms\n"
                                          "  lease: 2s\n"
                                          "  jsonl:\n"
                                          "    path: out/reminders.jsonl\n")
                    .ok());
  }
  const std::string jsonl = dir.File("out/reminders.jsonl");

  // ipsrtd's clock reads 19:59:54 in New York now: the diary reminders of
  // enrollments created now fall due at 20:00, six seconds away.
  absl::TimeZone ny;
  ASSERT_TRUE(absl::LoadTimeZone(kZone, &ny));
  const absl::CivilSecond engine_now = TodayAt(ny, 19, 59, 54);
  const absl::CivilDay today(engine_now);
  ScopedEnv offset("IPSRT_TEST_CLOCK_OFFSET", ClockOffsetTo(engine_now, ny));

  std::map<std::string, std::string> names;  // label -> enrollment name
  {
    ScopedEnv pause("IPSRT_TEST_REMINDER_PAUSE", "120s");
    auto server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = v1::EnrollmentService::NewStub(grpc::CreateChannel(
        (*server)->address(), grpc::InsecureChannelCredentials()));
    for (const char* label : {"a", "b", "done"}) {
      v1::CreateEnrollmentRequest create;
      create.set_parent("tenants/t1");
      create.set_request_id(absl::StrCat("create-", label));
      create.set_patient_ref(absl::StrCat("Patient/", label));
      create.set_workflow_id("ipsrt-standard");
      create.set_time_zone(kZone);
      create.set_clinician_ref("Practitioner/7");
      grpc::ClientContext ctx;
      v1::Enrollment e;
      grpc::Status s = stub->CreateEnrollment(&ctx, create, &e);
      ASSERT_TRUE(s.ok()) << s.error_message();
      names[label] = e.name();
    }
    // The patient of "done" fills in today's diary before 20:00.
    {
      v1::SubmitEventRequest r;
      r.set_name(names["done"]);
      r.set_request_id("diary-done");
      v1::SrmDiaryDay* d = r.mutable_event()->mutable_srm_diary_day();
      d->set_local_date(absl::FormatCivilTime(today));
      d->set_instrument("srm5");
      for (const char* a :
           {"out_of_bed", "first_contact", "start_work", "dinner", "to_bed"}) {
        v1::SrmActivity* act = d->add_activities();
        act->set_activity(a);
        act->set_local_time("08:00");
        act->set_people_code(1);
      }
      grpc::ClientContext ctx;
      v1::SubmitEventResponse resp;
      grpc::Status s = stub->SubmitEvent(&ctx, r, &resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
    // At 20:00 the dispatcher claims, delivers and pauses before recording.
    ASSERT_TRUE(WaitFor(
        [&] {
          return (*server)->process().Log().find("test fault: pausing") !=
                 std::string::npos;
        },
        absl::Seconds(30)))
        << (*server)->process().Log();
    (*server)->process().Signal(SIGKILL);
    ASSERT_TRUE(
        (*server)->process().WaitForExit(absl::Seconds(10)).has_value());
  }
  const std::string key_a = names["a"] + "/reminder/initial.srm-diary#1";
  const std::string key_b = names["b"] + "/reminder/initial.srm-diary#1";
  std::vector<Line> before = ReadLines(jsonl);
  std::set<std::string> keys_before;
  for (const Line& l : before) keys_before.insert(l.key);
  EXPECT_EQ(keys_before, (std::set<std::string>{key_a, key_b}));

  // Restarted without the pause: after the dead process's lease (2 s) the
  // rows are claimed again and delivered with the same keys, then recorded.
  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  auto reminders = v1::ReminderService::NewStub(grpc::CreateChannel(
      (*server)->address(), grpc::InsecureChannelCredentials()));
  auto list = [&](v1::Reminder::Status status) {
    v1::ListDueRemindersRequest r;
    r.set_parent("tenants/t1");
    r.add_statuses(status);
    grpc::ClientContext ctx;
    v1::ListDueRemindersResponse resp;
    grpc::Status s = reminders->ListDueReminders(&ctx, r, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  };
  ASSERT_TRUE(
      WaitFor([&] { return list(v1::Reminder::SENT).reminders_size() == 2; },
              absl::Seconds(30)))
      << (*server)->process().Log();

  // Counting: a delivery is a line of the JSONL file; each reminder is
  // identified by its idempotency key. Exactly the expected keys appear,
  // each delivered at most once per attempt (here attempts 1 and 2: before
  // the kill and after the lease), and the done task's key never.
  std::vector<Line> lines = ReadLines(jsonl);
  std::map<std::string, std::vector<std::string>> attempts_by_key;
  for (const Line& l : lines) attempts_by_key[l.key].push_back(l.attempt);
  EXPECT_EQ(attempts_by_key.size(), 2u);
  EXPECT_THAT(attempts_by_key[key_a], ElementsAre("1", "2"));
  EXPECT_THAT(attempts_by_key[key_b], ElementsAre("1", "2"));
  for (const Line& l : lines) {
    EXPECT_THAT(l.key, Not(HasSubstr(names["done"])));
  }
  // Nothing else is due: the done task's reminder was cancelled.
  EXPECT_EQ(list(v1::Reminder::SCHEDULED).reminders_size(), 0);
  EXPECT_EQ(list(v1::Reminder::CANCELLED).reminders_size(), 1);
  v1::ListDueRemindersResponse sent = list(v1::Reminder::SENT);
  std::set<std::string> sent_keys;
  for (const v1::Reminder& r : sent.reminders()) {
    sent_keys.insert(r.idempotency_key());
    EXPECT_EQ(r.time_zone(), kZone);
    EXPECT_THAT(r.local_due_time(), HasSubstr("T20:00 ("));
    EXPECT_EQ(r.attempts(), 2);
  }
  EXPECT_EQ(sent_keys, (std::set<std::string>{key_a, key_b}));

  // The CLI lists and watches the same reminders.
  {
    ProcessResult listed =
        RunCli((*server)->address(),
               {"reminders", "list", "--tenant=t1", "--status=SENT"});
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    std::vector<std::string> rows =
        absl::StrSplit(listed.out, '\n', absl::SkipEmpty());
    ASSERT_EQ(rows.size(), 2u) << listed.out;
    for (const std::string& row : rows) {
      EXPECT_THAT(row, HasSubstr("SENT"));
      EXPECT_THAT(row, HasSubstr("T20:00 ("));
      EXPECT_THAT(row, HasSubstr(kZone));
      EXPECT_THAT(row, HasSubstr("initial.srm-diary#1"));
    }
    ProcessResult watched =
        RunCli((*server)->address(),
               {"reminders", "watch", "--tenant=t1", "--count=2"});
    EXPECT_EQ(watched.exit_code, 0) << watched.err;
    EXPECT_EQ(std::vector<std::string>(
                  absl::StrSplit(watched.out, '\n', absl::SkipEmpty()))
                  .size(),
              2u)
        << watched.out;
    EXPECT_THAT(watched.out, HasSubstr("cursor="));
    ProcessResult bad =
        RunCli((*server)->address(),
               {"reminders", "list", "--tenant=t1", "--status=LATE"});
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_THAT(bad.err,
                HasSubstr("--status must be SCHEDULED, SENT, "
                          "ACKNOWLEDGED, CANCELLED or FAILED, got \"LATE\""));
  }

  // WatchReminders from the start of the feed streams both sent reminders;
  // resuming after the first cursor streams the second only.
  auto watch = [&](const std::string& cursor, int n) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    v1::WatchRemindersRequest r;
    r.set_parent("tenants/t1");
    r.set_cursor(cursor);
    auto reader = reminders->WatchReminders(&ctx, r);
    std::vector<v1::Reminder> got;
    v1::Reminder m;
    while (static_cast<int>(got.size()) < n && reader->Read(&m)) {
      got.push_back(m);
    }
    ctx.TryCancel();
    reader->Finish().IgnoreError();
    return got;
  };
  std::vector<v1::Reminder> streamed = watch("", 2);
  ASSERT_EQ(streamed.size(), 2u);
  EXPECT_EQ(streamed[0].status(), v1::Reminder::SENT);
  std::vector<v1::Reminder> resumed = watch(streamed[0].cursor(), 1);
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_EQ(resumed[0].name(), streamed[1].name());

  // AckReminder records an event on the enrollment's timeline.
  {
    v1::AckReminderRequest ack;
    ack.set_name(streamed[0].name());
    ack.set_request_id("ack-1");
    grpc::ClientContext ctx;
    v1::Reminder acked;
    grpc::Status s = reminders->AckReminder(&ctx, ack, &acked);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(acked.status(), v1::Reminder::ACKNOWLEDGED);
    auto enrollments = v1::EnrollmentService::NewStub(grpc::CreateChannel(
        (*server)->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext tctx;
    v1::GetTimelineRequest t;
    t.set_name(streamed[0].enrollment());
    v1::GetTimelineResponse timeline;
    ASSERT_TRUE(enrollments->GetTimeline(&tctx, t, &timeline).ok());
    const v1::Event& last = timeline.events(timeline.events_size() - 1);
    EXPECT_EQ(last.type(), "reminder.acknowledged");
    EXPECT_EQ(last.request_id(), "ack-1");
    EXPECT_EQ(last.payload().reminder_acknowledged().reminder(),
              streamed[0].name());

    // A second acknowledgement of the same reminder, with another request
    // id, answers the first result and records nothing.
    v1::AckReminderRequest again = ack;
    again.set_request_id("ack-1-again");
    grpc::ClientContext actx;
    v1::Reminder acked_again;
    s = reminders->AckReminder(&actx, again, &acked_again);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(acked_again.status(), v1::Reminder::ACKNOWLEDGED);
    EXPECT_EQ(acked_again.cursor(), acked.cursor());
    grpc::ClientContext tctx2;
    v1::GetTimelineResponse timeline2;
    ASSERT_TRUE(enrollments->GetTimeline(&tctx2, t, &timeline2).ok());
    ASSERT_EQ(timeline2.events_size(), timeline.events_size());
    EXPECT_EQ(timeline2.events(timeline2.events_size() - 1).request_id(),
              "ack-1");
  }
  // The ack is on the feed too.
  std::vector<v1::Reminder> after_ack = watch(streamed[1].cursor(), 1);
  ASSERT_EQ(after_ack.size(), 1u);
  EXPECT_EQ(after_ack[0].status(), v1::Reminder::ACKNOWLEDGED);

  // A reminder that was not sent cannot be acknowledged.
  {
    v1::Reminder cancelled = list(v1::Reminder::CANCELLED).reminders(0);
    v1::AckReminderRequest ack;
    ack.set_name(cancelled.name());
    ack.set_request_id("ack-2");
    grpc::ClientContext ctx;
    v1::Reminder ignored;
    grpc::Status s = reminders->AckReminder(&ctx, ack, &ignored);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(s.error_message(),
              absl::StrCat("name: reminder ", cancelled.name(),
                           " is CANCELLED; only a sent reminder can be "
                           "acknowledged"));
  }
  EXPECT_THAT((*server)->process().Log(),
              HasSubstr("TEST HOOK IPSRT_TEST_CLOCK_OFFSET"));
}

}  // namespace
}  // namespace ipsrt::e2e
