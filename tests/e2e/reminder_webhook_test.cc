// The real ipsrtd delivering a due reminder through the reminder-webhook
// plugin (reminders.channel) to an HTTP receiver started by the test, which
// verifies the HMAC signature itself and counts deliveries by
// Idempotency-Key; and the start-up errors of a channel that is not a
// loaded reminder plugin.
#include <stdlib.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/reminder.grpc.pb.h"
#include "process.h"
#include "testing/webhook_receiver.h"

namespace ipsrt::e2e {
namespace {

using ::ipsrt::testing::WebhookReceiver;
using ::testing::HasSubstr;
using ::testing::Not;
namespace v1 = ::ipsrt::v1;

constexpr char kZone[] = "America/New_York";
constexpr char kSecret[] = "e2e-webhook-secret-0123456789";

// Appends `yaml` to the config file at `path`.
void Append(const std::string& path, const std::string& yaml) {
  absl::StatusOr<std::string> text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  ASSERT_TRUE(WriteFile(path, *text + yaml).ok());
}

TEST(ReminderWebhookE2eTest, DueReminderIsPostedSignedToTheReceiver) {
  auto receiver = WebhookReceiver::Start(kSecret);
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  // The first POST gets a 500: the plugin retries within the delivery.
  (*receiver)->Script({WebhookReceiver::Reply::kServerError});

  TempDir dir;
  ASSERT_TRUE(WriteFile(dir.File("webhook.secret"), kSecret).ok());
  std::string config = WriteConfig(dir);
  // The harness config ends with its plugins list; these entries join it.
  Append(config, absl::StrCat("  - path: libipsrt_reminder_webhook.so\n"
                              "    transport: in_process\n"
                              "    config:\n"
                              "      url: ",
                              (*receiver)->url(),
                              "\n"
                              "      secret_file: webhook.secret\n"
                              "      initial_backoff: 50ms\n"
                              "reminders:\n"
                              "  poll_interval: 100ms\n"
                              "  channel: reminder-webhook\n"));

  // ipsrtd's clock reads 19:59:57 in New York: the diary reminder of an
  // enrollment created now falls due at 20:00, three seconds away (ipsrtd
  // starts serving within a fraction of that).
  absl::TimeZone ny;
  ASSERT_TRUE(absl::LoadTimeZone(kZone, &ny));
  ScopedEnv offset("IPSRT_TEST_CLOCK_OFFSET",
                   ClockOffsetTo(TodayAt(ny, 19, 59, 57), ny));

  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  auto enrollments = v1::EnrollmentService::NewStub(grpc::CreateChannel(
      (*server)->address(), grpc::InsecureChannelCredentials()));
  v1::CreateEnrollmentRequest create;
  create.set_parent("tenants/t1");
  create.set_request_id("create-webhook");
  create.set_patient_ref("Patient/webhook-e2e");
  create.set_workflow_id("ipsrt-standard");
  create.set_time_zone(kZone);
  create.set_clinician_ref("Practitioner/7");
  v1::Enrollment enrollment;
  {
    grpc::ClientContext ctx;
    grpc::Status s = enrollments->CreateEnrollment(&ctx, create, &enrollment);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const std::string key = enrollment.name() + "/reminder/initial.srm-diary#1";

  auto reminders = v1::ReminderService::NewStub(grpc::CreateChannel(
      (*server)->address(), grpc::InsecureChannelCredentials()));
  auto sent = [&] {
    v1::ListDueRemindersRequest r;
    r.set_parent("tenants/t1");
    r.add_statuses(v1::Reminder::SENT);
    grpc::ClientContext ctx;
    v1::ListDueRemindersResponse resp;
    EXPECT_TRUE(reminders->ListDueReminders(&ctx, r, &resp).ok());
    return resp;
  };
  WaitFor([&] { return sent().reminders_size() >= 1; }, absl::Seconds(30),
          absl::Milliseconds(100));
  v1::ListDueRemindersResponse listed = sent();
  ASSERT_EQ(listed.reminders_size(), 1) << (*server)->process().Log();
  EXPECT_EQ(listed.reminders(0).idempotency_key(), key);
  EXPECT_EQ(listed.reminders(0).attempts(), 1);

  // Two POSTs (500, then 200), both signed, both with the reminder's key;
  // one accepted delivery for the key.
  std::vector<WebhookReceiver::Request> got = (*receiver)->Requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].status, 500);
  EXPECT_EQ(got[1].status, 200);
  for (const WebhookReceiver::Request& r : got) {
    EXPECT_TRUE(r.signature_valid) << r.signature;
    EXPECT_EQ(r.idempotency_key, key);
    EXPECT_THAT(r.body,
                HasSubstr(absl::StrCat("\"idempotency_key\":\"", key, "\"")));
    EXPECT_THAT(r.body, HasSubstr("T20:00 (-0"));
    EXPECT_THAT(r.body, HasSubstr("\"time_zone\":\"America/New_York\""));
    EXPECT_THAT(r.body, HasSubstr("\"subject\":\"initial.srm-diary#1\""));
    EXPECT_THAT(r.body, Not(HasSubstr("Patient/")));
  }
  EXPECT_EQ((*receiver)->AcceptedByKey(),
            (std::map<std::string, int>{{key, 1}}));

  const std::string log = (*server)->process().Log();
  EXPECT_THAT(log, HasSubstr("reminders: delivering to plugin "
                             "reminder-webhook"));
  EXPECT_THAT(log, Not(HasSubstr("Patient/webhook-e2e")));
  EXPECT_THAT(log, Not(HasSubstr(kSecret)));
}

TEST(ReminderWebhookE2eTest, ChannelThatIsNotALoadedReminderPluginStopsStart) {
  TempDir dir;
  std::string config = WriteConfig(dir);
  // Line 19 is `  channel: ...` (the harness config has 17 lines, ending
  // with its plugins list, which the entry below joins).
  Append(config,
         "  - path: libipsrt_bedtime_check.so\n"
         "reminders:\n"
         "  channel: reminder-sms\n");
  absl::StatusOr<ProcessResult> missing =
      RunProcess({IPSRTD_BIN, "--config=" + config, "--listen=127.0.0.1:0"});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->exit_code, 1);
  EXPECT_THAT(missing->err,
              HasSubstr(absl::StrCat(
                  "ipsrtd: reminders refused: ", config,
                  ":19:12: reminders.channel: no loaded plugin is named "
                  "\"reminder-sms\" (loaded reminder plugins: none); add it "
                  "under plugins:\n")));

  TempDir dir2;
  std::string config2 = WriteConfig(dir2);
  Append(config2,
         "  - path: libipsrt_bedtime_check.so\n"
         "reminders:\n"
         "  channel: bedtime-check\n");
  absl::StatusOr<ProcessResult> wrong =
      RunProcess({IPSRTD_BIN, "--config=" + config2, "--listen=127.0.0.1:0"});
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->exit_code, 1);
  EXPECT_THAT(wrong->err,
              HasSubstr(absl::StrCat("ipsrtd: reminders refused: ", config2,
                                     ":19:12: reminders.channel: plugin "
                                     "\"bedtime-check\" is not of kind "
                                     "reminder\n")));
}

}  // namespace
}  // namespace ipsrt::e2e
