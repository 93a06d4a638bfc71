// Session cadence with the real ipsrtd and its SQLite store: the
// maintenance rule's switch to weekly sessions cancels the monthly session
// reminder in the event's commit and plans the weekly one, and no later
// dispatcher ever delivers the cancelled reminder, even at its due time
// and across restarts.
//
// Time: ipsrtd runs three times on the same data directory with the test
// hook IPSRT_TEST_CLOCK_OFFSET (see reminders_test.cc) putting its clock
// on 31 January 2027 09:00, then a second before the weekly reminder
// (6 February 10:00), then a second before the monthly ones (27 February
// 10:00), in New York.
#include <stdlib.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
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

using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;
namespace v1 = ::ipsrt::v1;

constexpr char kZone[] = "America/New_York";

// ClockAt is the IPSRT_TEST_CLOCK_OFFSET that makes ipsrtd read `local`
// (New York) now.
std::string ClockAt(absl::CivilSecond local) {
  absl::TimeZone ny;
  absl::LoadTimeZone(kZone, &ny);
  return ClockOffsetTo(local, ny);
}

// SessionDeliveries lists the idempotency keys of the session reminders
// in the JSON Lines channel's file, one per delivery.
std::vector<std::string> SessionDeliveries(const std::string& jsonl) {
  std::vector<std::string> keys;
  absl::StatusOr<std::string> text = ReadFile(jsonl);
  if (!text.ok()) return keys;
  for (absl::string_view line :
       absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    if (!absl::StrContains(line, "\"kind\":\"session\"")) continue;
    constexpr absl::string_view kKey = "\"idempotency_key\":\"";
    size_t at = line.find(kKey);
    if (at == absl::string_view::npos) continue;
    at += kKey.size();
    keys.emplace_back(line.substr(at, line.find('"', at) - at));
  }
  return keys;
}

class Client {
 public:
  explicit Client(const std::string& address)
      : channel_(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        enrollments_(v1::EnrollmentService::NewStub(channel_)),
        reminders_(v1::ReminderService::NewStub(channel_)) {}

  std::string Enroll(const std::string& label) {
    v1::CreateEnrollmentRequest create;
    create.set_parent("tenants/t1");
    create.set_request_id(absl::StrCat("create-", label));
    create.set_patient_ref(absl::StrCat("Patient/", label));
    create.set_workflow_id("ipsrt-preventive-first");
    create.set_time_zone(kZone);
    create.set_clinician_ref("Practitioner/7");
    grpc::ClientContext ctx;
    v1::Enrollment e;
    grpc::Status s = enrollments_->CreateEnrollment(&ctx, create, &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return e.name();
  }

  v1::SubmitEventResponse Submit(const std::string& name,
                                 const std::string& request_id,
                                 v1::EventPayload payload) {
    v1::SubmitEventRequest r;
    r.set_name(name);
    r.set_request_id(request_id);
    *r.mutable_event() = std::move(payload);
    grpc::ClientContext ctx;
    v1::SubmitEventResponse resp;
    grpc::Status s = enrollments_->SubmitEvent(&ctx, r, &resp);
    EXPECT_TRUE(s.ok()) << request_id << ": " << s.error_message();
    return resp;
  }

  // Sessions lists the tenant's session reminders of `status`, whatever
  // their due time, as "<enrollment label>/<subject> <local due time>".
  std::vector<std::string> Sessions(
      v1::Reminder::Status status,
      const std::map<std::string, std::string>& labels) {
    v1::ListDueRemindersRequest r;
    r.set_parent("tenants/t1");
    *r.mutable_due_before() =
        TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(absl::FromCivil(
            absl::CivilSecond(2028, 1, 1, 0, 0, 0), absl::UTCTimeZone())));
    r.add_statuses(status);
    r.set_page_size(100);
    grpc::ClientContext ctx;
    v1::ListDueRemindersResponse resp;
    grpc::Status s = reminders_->ListDueReminders(&ctx, r, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> out;
    for (const v1::Reminder& m : resp.reminders()) {
      if (m.kind() != "session") continue;
      auto label = labels.find(m.enrollment());
      out.push_back(
          absl::StrCat(label == labels.end() ? m.enrollment() : label->second,
                       "/", m.task_id(), " ", m.local_due_time()));
    }
    return out;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollments_;
  std::unique_ptr<v1::ReminderService::Stub> reminders_;
};

v1::EventPayload ToMaintenance() {
  v1::EventPayload p;
  p.mutable_stage_change()->set_to_stage("maintenance");
  p.mutable_stage_change()->set_reason("stable after the relapse plan");
  return p;
}

// A PHQ-9 with total 12 (items 1-6 at 2, item 9 at 0).
v1::EventPayload Phq9Total12() {
  v1::EventPayload p;
  v1::QuestionnaireResponse* r = p.mutable_questionnaire_response();
  r->set_questionnaire_id("phq9");
  for (int i = 1; i <= 9; ++i) {
    (*r->mutable_answers())[absl::StrCat(i)] = i <= 6 ? 2 : 0;
  }
  return p;
}

TEST(SessionCadenceE2eTest, SwitchToWeeklyCancelsTheMonthlyReminderForGood) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
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
  std::map<std::string, std::string> labels;  // enrollment name -> label
  std::string steady, switched;

  // Sunday 31 January 2027, 09:00: both patients enter maintenance
  // (monthly sessions at 10:00, reminded the day before); one then has an
  // early warning sign and goes weekly.
  {
    ScopedEnv clock("IPSRT_TEST_CLOCK_OFFSET",
                    ClockAt(absl::CivilSecond(2027, 1, 31, 9, 0, 0)));
    auto server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    Client client((*server)->address());
    steady = client.Enroll("steady");
    switched = client.Enroll("switched");
    labels = {{steady, "steady"}, {switched, "switched"}};
    client.Submit(steady, "steady-maintenance", ToMaintenance());
    client.Submit(switched, "switched-maintenance", ToMaintenance());
    EXPECT_THAT(
        client.Sessions(v1::Reminder::SCHEDULED, labels),
        UnorderedElementsAre(
            "steady/session:maintenance#1 2027-02-27T10:00 (-05:00)",
            "switched/session:maintenance#1 2027-02-27T10:00 (-05:00)"));

    v1::SubmitEventResponse warned =
        client.Submit(switched, "switched-phq9", Phq9Total12());
    EXPECT_EQ(warned.enrollment().session_cadence(), "P1W");
    std::vector<std::string> outcomes;
    for (const v1::Outcome& o : warned.event().outcomes()) {
      if (absl::StartsWith(o.subject(), "session:")) {
        outcomes.push_back(absl::StrCat(v1::Outcome::Kind_Name(o.kind()), " ",
                                        o.subject(), " ", o.local_due_time()));
      }
    }
    EXPECT_THAT(outcomes,
                ElementsAre("REMINDER_CANCELLED session:maintenance#1 ",
                            "SESSION_PLANNED session:maintenance#2 "
                            "2027-02-07T10:00 (-05:00)",
                            "REMINDER_SCHEDULED session:maintenance#2 "
                            "2027-02-06T10:00 (-05:00)"));
    EXPECT_THAT(
        client.Sessions(v1::Reminder::SCHEDULED, labels),
        UnorderedElementsAre(
            "steady/session:maintenance#1 2027-02-27T10:00 (-05:00)",
            "switched/session:maintenance#2 2027-02-06T10:00 (-05:00)"));
    EXPECT_THAT(
        client.Sessions(v1::Reminder::CANCELLED, labels),
        UnorderedElementsAre(
            "steady/session:initial#1 2027-02-06T10:00 (-05:00)",
            "switched/session:initial#1 2027-02-06T10:00 (-05:00)",
            "switched/session:maintenance#1 2027-02-27T10:00 (-05:00)"));
    ASSERT_TRUE((*server)->Terminate().ok());
  }
  const std::string weekly = switched + "/reminder/session:maintenance#2";
  const std::string cancelled = switched + "/reminder/session:maintenance#1";
  const std::string monthly = steady + "/reminder/session:maintenance#1";

  // Saturday 6 February, 10:00: the weekly reminder is delivered.
  {
    ScopedEnv clock("IPSRT_TEST_CLOCK_OFFSET",
                    ClockAt(absl::CivilSecond(2027, 2, 6, 9, 59, 59)));
    auto server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    Client client((*server)->address());
    ASSERT_TRUE(WaitFor(
        [&] { return !client.Sessions(v1::Reminder::SENT, labels).empty(); },
        absl::Seconds(20)))
        << (*server)->process().Log();
    EXPECT_THAT(SessionDeliveries(jsonl), ElementsAre(weekly));
    ASSERT_TRUE((*server)->Terminate().ok());
  }

  // Saturday 27 February, 10:00: the monthly reminders' due time. The
  // steady patient's is delivered; the cancelled one is not.
  {
    ScopedEnv clock("IPSRT_TEST_CLOCK_OFFSET",
                    ClockAt(absl::CivilSecond(2027, 2, 27, 9, 59, 59)));
    auto server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    Client client((*server)->address());
    ASSERT_TRUE(WaitFor(
        [&] { return client.Sessions(v1::Reminder::SENT, labels).size() >= 2; },
        absl::Seconds(20)))
        << (*server)->process().Log();
    EXPECT_THAT(
        client.Sessions(v1::Reminder::SENT, labels),
        UnorderedElementsAre(
            "steady/session:maintenance#1 2027-02-27T10:00 (-05:00)",
            "switched/session:maintenance#2 2027-02-06T10:00 (-05:00)"));
    EXPECT_THAT(
        client.Sessions(v1::Reminder::CANCELLED, labels),
        ::testing::Contains(
            "switched/session:maintenance#1 2027-02-27T10:00 (-05:00)"));
    ASSERT_TRUE((*server)->Terminate().ok());
  }
  EXPECT_THAT(SessionDeliveries(jsonl), ElementsAre(weekly, monthly));
  for (const std::string& key : SessionDeliveries(jsonl)) {
    EXPECT_NE(key, cancelled);
  }
}

// `ipsrt simulate` on a maintenance scenario shows each planned session and
// its reminder with local and UTC times, and the re-plans of the switch to
// weekly and back (before and after New York's spring-forward change).
TEST(SessionCadenceSimulateTest, ShowsSessionsRemindersAndReplans) {
  ProcessResult r = RunCliNoServer(
      {"simulate",
       std::string(IPSRT_WORKFLOWS_DIR) + "/ipsrt-preventive-first.yaml",
       std::string("--scenario=") + IPSRT_SCENARIOS_DIR +
           "/maintenance-cadence.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* line : {
           // Enrolment: weekly, a week on at 10:00.
           "    session planned     session:initial#1  at 2026-03-05T10:00 "
           "(-05:00) = 2026-03-05 15:00 UTC  cadence P1W (stage initial)\n",
           // Maintenance: monthly; the intake session's reminder cancelled.
           "    reminder cancelled  session:initial#1  was at "
           "2026-03-04T10:00 (-05:00) = 2026-03-04 15:00 UTC (stage "
           "maintenance)\n",
           "    session planned     session:maintenance#1  at "
           "2026-03-26T10:00 (-04:00) = 2026-03-26 14:00 UTC  cadence P1M, "
           "replaces session:initial#1 (stage maintenance)\n",
           "    reminder scheduled  session:maintenance#1  at "
           "2026-03-25T10:00 (-04:00) = 2026-03-25 14:00 UTC\n",
           // PHQ-9 12: weekly from the stage entry; the monthly reminder
           // cancelled.
           "    cadence changed     P1M -> P1W (rule early-warning)\n",
           "    reminder cancelled  session:maintenance#1  was at "
           "2026-03-25T10:00 (-04:00) = 2026-03-25 14:00 UTC (cadence P1W, "
           "rule early-warning)\n",
           "    session planned     session:maintenance#2  at "
           "2026-03-05T10:00 (-05:00) = 2026-03-05 15:00 UTC  cadence P1W, "
           "replaces session:maintenance#1 (cadence P1W, rule "
           "early-warning)\n",
           "    reminder scheduled  session:maintenance#2  at "
           "2026-03-04T10:00 (-05:00) = 2026-03-04 15:00 UTC\n",
           // Held on 5 March: the next a week on, after the clocks changed.
           "    session planned     session:maintenance#3  at "
           "2026-03-12T10:00 (-04:00) = 2026-03-12 14:00 UTC  cadence P1W, "
           "replaces session:maintenance#2 (session held)\n",
           // PHQ-9 3, then a session held on 19 March: still weekly.
           "    session planned     session:maintenance#4  at "
           "2026-03-26T10:00 (-04:00) = 2026-03-26 14:00 UTC  cadence P1W, "
           "replaces session:maintenance#3 (session held)\n",
           // 24 March, two clear weeks after PHQ-9 3: monthly from the last
           // session held; the weekly reminder cancelled.
           "    reminder cancelled  session:maintenance#4  was at "
           "2026-03-25T10:00 (-04:00) = 2026-03-25 14:00 UTC (cadence P1M, "
           "rule early-warning)\n",
           "    session planned     session:maintenance#5  at "
           "2026-04-19T10:00 (-04:00) = 2026-04-19 14:00 UTC  cadence P1M, "
           "replaces session:maintenance#4 (cadence P1M, rule "
           "early-warning)\n",
       }) {
    EXPECT_THAT(r.out, ::testing::HasSubstr(line));
  }
}

}  // namespace
}  // namespace ipsrt::e2e
