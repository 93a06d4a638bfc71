// The reminder channels of plugins/reminders loaded the way ipsrtd loads
// them (PluginRegistry: dlopen in process, ipsrt-plugin-runner out of
// process) and driven through reminders::PluginSender, the engine's
// ReminderSender for plugins. The webhook posts to a real HTTP server on a
// loopback port (tests/testing/webhook_receiver.h) that verifies the
// signature itself.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/clock.h"
#include "plugin_host/registry.h"
#include "reminders/dispatcher.h"
#include "reminders/plugin_sender.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/webhook_receiver.h"

namespace ipsrt {
namespace {

using ::ipsrt::reminders::PluginSender;
using ::ipsrt::reminders::ReminderDelivery;
using ::ipsrt::testing::TempDir;
using ::ipsrt::testing::WebhookReceiver;
using ::testing::HasSubstr;
using ::testing::Not;
using Reply = WebhookReceiver::Reply;

constexpr char kSecret[] = "s3cret-0123456789-abcdef";

bool WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return out.good();
}

// The engine's clock as the in-process plugins see it (host().Now()).
const absl::Time kNow = absl::FromUnixSeconds(1772931661);  // 2026-03-08

// The JSON line (and webhook body) of Delivery(attempt) delivered at kNow:
// the format of the reminders file, pinned byte for byte.
std::string Line(int attempt = 1) {
  return absl::StrCat(
      "{\"idempotency_key\":\"tenants/t1/enrollments/e1/reminder/"
      "initial.srm-diary#1\",\"reminder\":\"tenants/t1/reminders/7\","
      "\"tenant\":\"t1\",\"enrollment\":\"tenants/t1/enrollments/e1\","
      "\"kind\":\"reminder\",\"subject\":\"initial.srm-diary#1\","
      "\"due_time\":\"2026-03-08T01:00:00Z\",\"local_due_time\":"
      "\"2026-03-07T20:00 (-05:00)\",\"time_zone\":\"America/New_York\","
      "\"attempt\":",
      attempt, ",\"delivered_time\":\"2026-03-08T01:01:01Z\"}");
}

ReminderDelivery Delivery(int attempt = 1) {
  ReminderDelivery d;
  d.idempotency_key = "tenants/t1/enrollments/e1/reminder/initial.srm-diary#1";
  d.tenant = "t1";
  d.enrollment = "tenants/t1/enrollments/e1";
  d.kind = "reminder";
  d.subject = "initial.srm-diary#1";
  d.due_time = absl::FromUnixSeconds(1772931600);  // 2026-03-08T01:00:00Z
  d.local_due_time = "2026-03-07T20:00 (-05:00)";
  d.time_zone = "America/New_York";
  d.attempt = attempt;
  d.reminder = "tenants/t1/reminders/7";
  return d;
}

class Channels : public ::testing::Test {
 protected:
  PluginHostOptions Options() {
    PluginHostOptions o;
    o.plugin_dir = IPSRT_PLUGIN_DIR;
    o.runner_path = IPSRT_RUNNER_BIN;
    o.clock = &clock_;
    o.health_interval = absl::Milliseconds(100);
    return o;
  }
  PluginConfig Entry(const std::string& library, const std::string& json,
                     const std::string& transport = "in_process") {
    PluginConfig c;
    c.path = library;  // bare name: the engine's plugin directory
    c.transport = *ParsePluginTransport(transport);
    c.config_json = json;
    c.location = dir_.File("ipsrtd.yaml") + ":7:5";
    return c;
  }
  absl::StatusOr<std::unique_ptr<PluginRegistry>> Load(const PluginConfig& c) {
    return PluginRegistry::Load({c}, Options());
  }
  std::string WebhookJson(const std::string& url,
                          const std::string& extra = "") {
    return absl::StrCat(
        R"({"url":")", url, R"(","secret_file":"webhook.secret",)",
        R"("initial_backoff":"10ms","connect_timeout":"200ms")", extra, "}");
  }
  void SetUp() override {
    ASSERT_TRUE(
        WriteText(dir_.File("webhook.secret"), absl::StrCat(kSecret, "\n")));
  }

  FakeClock clock_{kNow};
  TempDir dir_;
};

// A delivery through `registry`'s only plugin.
absl::Status Deliver(PluginRegistry& registry, const std::string& name,
                     const ReminderDelivery& d = Delivery()) {
  auto sender = PluginSender::Create(registry, name, "ipsrtd.yaml:40:12");
  if (!sender.ok()) return sender.status();
  return (*sender)->Deliver(d);
}

// --- the sender itself ---

TEST_F(Channels, SenderMapsEveryFieldOfTheDelivery) {
  plugin::v1::Reminder r = PluginSender::ToPluginReminder(Delivery(3));
  EXPECT_EQ(r.idempotency_key(),
            "tenants/t1/enrollments/e1/reminder/initial.srm-diary#1");
  EXPECT_EQ(r.tenant(), "t1");
  EXPECT_EQ(r.enrollment(), "tenants/t1/enrollments/e1");
  EXPECT_EQ(r.kind(), "reminder");
  EXPECT_EQ(r.task_id(), "initial.srm-diary#1");
  EXPECT_EQ(r.due_time().seconds(), 1772931600);
  EXPECT_EQ(r.due_time().nanos(), 0);
  EXPECT_EQ(r.local_due_time(), "2026-03-07T20:00");
  EXPECT_EQ(r.time_zone(), "America/New_York");
  EXPECT_EQ(r.attempt(), 3);
  EXPECT_EQ(r.reminder(), "tenants/t1/reminders/7");
  EXPECT_EQ(r.recipient(), "");
}

TEST_F(Channels, SenderRefusesAMissingOrWrongKindOfPlugin) {
  auto registry = Load(Entry("libipsrt_bedtime_check.so", "{}"));
  ASSERT_TRUE(registry.ok()) << registry.status();
  auto missing =
      PluginSender::Create(**registry, "reminder-sms", "ipsrtd.yaml:40:12");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(missing.status().message(),
            "ipsrtd.yaml:40:12: reminders.channel: no loaded plugin is named "
            "\"reminder-sms\" (loaded reminder plugins: none); add it under "
            "plugins:");
  auto wrong =
      PluginSender::Create(**registry, "bedtime-check", "ipsrtd.yaml:40:12");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(wrong.status().message(),
            "ipsrtd.yaml:40:12: reminders.channel: plugin \"bedtime-check\" "
            "is not of kind reminder");
}

// --- reminder-log ---

TEST_F(Channels, LogWritesOneLineOfNamesAndTimes) {
  auto registry =
      Load(Entry("libipsrt_reminder_log.so", R"({"level":"warning"})"));
  ASSERT_TRUE(registry.ok()) << registry.status();
  ::testing::internal::CaptureStderr();
  absl::Status s = Deliver(**registry, "reminder-log");
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_THAT(log,
              HasSubstr("plugin reminder-log: reminder tenants/t1/reminders/7 "
                        "kind=reminder task=initial.srm-diary#1 "
                        "enrollment=tenants/t1/enrollments/e1 "
                        "due=2026-03-08T01:00:00Z local=2026-03-07T20:00 "
                        "America/New_York attempt=1 key=tenants/t1/"
                        "enrollments/e1/reminder/initial.srm-diary#1\n"));
  EXPECT_EQ(
      std::vector<std::string>(absl::StrSplit(log, '\n', absl::SkipEmpty()))
          .size(),
      1u)
      << log;
}

TEST_F(Channels, LogRefusesAnUnknownLevelAndKey) {
  auto bad = Load(Entry("libipsrt_reminder_log.so", R"({"level":"loud"})"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(bad.status().message(),
            absl::StrCat(dir_.File("ipsrtd.yaml"),
                         ":7:5: plugin reminder-log refused its configuration: "
                         "config.level: must be debug, info or warning, not "
                         "\"loud\""));
  auto typo = Load(Entry("libipsrt_reminder_log.so", R"({"levle":"info"})"));
  EXPECT_THAT(typo.status().message(),
              HasSubstr("config.levle: unknown key (allowed: level)"));
}

// --- reminder-jsonl ---

TEST_F(Channels, JsonlAppendsOneLineForEveryAttempt) {
  auto registry = Load(Entry("libipsrt_reminder_jsonl.so",
                             R"({"path":"out/reminders.jsonl","sync":true})"));
  ASSERT_TRUE(registry.ok()) << registry.status();
  ASSERT_TRUE(Deliver(**registry, "reminder-jsonl", Delivery(1)).ok());
  ASSERT_TRUE(Deliver(**registry, "reminder-jsonl", Delivery(2)).ok());
  absl::StatusOr<std::string> text =
      ReadFileToString(dir_.File("out/reminders.jsonl"));
  ASSERT_TRUE(text.ok()) << text.status();
  // A redelivery is a second line with the same key (nothing dropped).
  EXPECT_EQ(*text, absl::StrCat(Line(1), "\n", Line(2), "\n"));
  // Text is JSON-escaped.
  ReminderDelivery quoted = Delivery(3);
  quoted.subject = "quote\"and\\";
  ASSERT_TRUE(Deliver(**registry, "reminder-jsonl", quoted).ok());
  text = ReadFileToString(dir_.File("out/reminders.jsonl"));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("\"subject\":\"quote\\\"and\\\\\""));
}

// Out of process the plugin runs in another process: the host passes the
// engine clock's offset from the system clock at start
// (IPSRT_PLUGIN_CLOCK_OFFSET_US) and the plugin's host().Now() is the
// system clock moved by it. The fake clock stands still at kNow, months
// away from the system clock, so the delivered time lies in [kNow, kNow +
// the wall time the load and delivery took], never at the system's time.
TEST_F(Channels, JsonlOutOfProcessDeliveredTimeIsTheEnginesClock) {
  const std::string out = dir_.File("reminders.jsonl");
  PluginConfig c = Entry("libipsrt_reminder_jsonl.so",
                         absl::StrCat(R"({"path":")", out, R"(","sync":true})"),
                         "out_of_process");
  c.path = absl::StrCat(IPSRT_PLUGIN_DIR, "/libipsrt_reminder_jsonl.so");
  const absl::Time wall_before = absl::Now();
  auto registry = Load(c);
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_EQ((*registry)->Find("reminder-jsonl")->Info().transport(),
            v1::PluginInfo::OUT_OF_PROCESS);
  ASSERT_TRUE(Deliver(**registry, "reminder-jsonl").ok());
  const absl::Duration wall_elapsed = absl::Now() - wall_before;

  absl::StatusOr<std::string> text = ReadFileToString(out);
  ASSERT_TRUE(text.ok()) << text.status();
  const std::string key = "\"delivered_time\":\"";
  const size_t at = text->find(key);
  ASSERT_NE(at, std::string::npos) << *text;
  const size_t begin = at + key.size();
  const std::string delivered_text =
      text->substr(begin, text->find('"', begin) - begin);
  absl::Time delivered;
  std::string error;
  ASSERT_TRUE(
      absl::ParseTime(absl::RFC3339_full, delivered_text, &delivered, &error))
      << delivered_text << ": " << error;
  EXPECT_GE(delivered, kNow) << delivered_text;
  // The offset crosses the process boundary in whole microseconds.
  EXPECT_LE(delivered, kNow + wall_elapsed + absl::Microseconds(1))
      << delivered_text;
  // Everything but the time is the pinned line of the reminders file.
  EXPECT_EQ(*text, absl::StrCat(
                       absl::StrReplaceAll(
                           Line(), {{"2026-03-08T01:01:01Z", delivered_text}}),
                       "\n"));
}

TEST_F(Channels, JsonlConfigErrorsNameTheKey) {
  struct Case {
    std::string json;
    std::string error;
  } cases[] = {
      {"{}", "config.path: is required"},
      {R"({"path":"r.jsonl","paht":1})",
       "config.paht: unknown key (allowed: path, sync)"},
      {R"({"path":"r.jsonl","sync":"yes"})",
       "config.sync: must be true or false"},
      {R"({"path":"/proc/ipsrt/r.jsonl"})",
       "config.path: cannot open /proc/ipsrt/r.jsonl for appending: No such "
       "file or directory"},
  };
  for (const Case& c : cases) {
    auto r = Load(Entry("libipsrt_reminder_jsonl.so", c.json));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
        << c.json;
    EXPECT_EQ(r.status().message(),
              absl::StrCat(dir_.File("ipsrtd.yaml"),
                           ":7:5: plugin reminder-jsonl refused its "
                           "configuration: ",
                           c.error))
        << c.json;
  }
}

// --- reminder-webhook ---

TEST_F(Channels, WebhookPostsSignedJsonWithTheIdempotencyKey) {
  auto receiver = WebhookReceiver::Start(kSecret);
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  auto registry = Load(
      Entry("libipsrt_reminder_webhook.so", WebhookJson((*receiver)->url())));
  ASSERT_TRUE(registry.ok()) << registry.status();
  ASSERT_TRUE(Deliver(**registry, "reminder-webhook").ok());
  std::vector<WebhookReceiver::Request> got = (*receiver)->Requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].path, "/hook");
  EXPECT_TRUE(got[0].signature_valid) << got[0].signature;
  EXPECT_EQ(got[0].status, 200);
  EXPECT_EQ(got[0].idempotency_key, Delivery().idempotency_key);
  EXPECT_EQ(got[0].body, Line());
  // The timestamp is the real time of the POST (for replay checks).
  int64_t ts = 0;
  ASSERT_TRUE(absl::SimpleAtoi(got[0].timestamp, &ts));
  EXPECT_LE(std::abs(ts - absl::ToUnixSeconds(absl::Now())), 60);
}

TEST_F(Channels, WebhookRetriesA500ThenSucceedsOnce) {
  auto receiver = WebhookReceiver::Start(kSecret);
  ASSERT_TRUE(receiver.ok());
  (*receiver)->Script({Reply::kServerError, Reply::kTooMany});
  auto registry = Load(
      Entry("libipsrt_reminder_webhook.so", WebhookJson((*receiver)->url())));
  ASSERT_TRUE(registry.ok()) << registry.status();
  ASSERT_TRUE(Deliver(**registry, "reminder-webhook").ok());
  std::vector<WebhookReceiver::Request> got = (*receiver)->Requests();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].status, 500);
  EXPECT_EQ(got[1].status, 429);
  EXPECT_EQ(got[2].status, 200);
  for (const auto& r : got) {
    EXPECT_TRUE(r.signature_valid);
    EXPECT_EQ(r.idempotency_key, Delivery().idempotency_key);
  }
  EXPECT_EQ((*receiver)->AcceptedByKey(),
            (std::map<std::string, int>{{Delivery().idempotency_key, 1}}));
}

TEST_F(Channels, WebhookGivesUpWithUnavailableAfterMaxAttempts) {
  auto receiver = WebhookReceiver::Start(kSecret);
  ASSERT_TRUE(receiver.ok());
  (*receiver)->Script(
      {Reply::kServerError, Reply::kServerError, Reply::kServerError});
  auto registry =
      Load(Entry("libipsrt_reminder_webhook.so",
                 WebhookJson((*receiver)->url(), R"(,"max_attempts":3)")));
  ASSERT_TRUE(registry.ok()) << registry.status();
  absl::Status s = Deliver(**registry, "reminder-webhook");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(),
            "reminder channel reminder-webhook: webhook: HTTP 500 (3 "
            "attempts)");
  EXPECT_TRUE(reminders::IsRetriable(s.code()));
  EXPECT_EQ((*receiver)->Requests().size(), 3u);
  EXPECT_TRUE((*receiver)->AcceptedByKey().empty());
}

TEST_F(Channels, WebhookClientErrorsArePermanentAndNotRetried) {
  auto receiver = WebhookReceiver::Start(kSecret);
  ASSERT_TRUE(receiver.ok());
  (*receiver)->Script({Reply::kBadRequest, Reply::kNotFound});
  auto registry = Load(
      Entry("libipsrt_reminder_webhook.so", WebhookJson((*receiver)->url())));
  ASSERT_TRUE(registry.ok()) << registry.status();
  absl::Status bad = Deliver(**registry, "reminder-webhook");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(),
            "reminder channel reminder-webhook: webhook: HTTP 400: the "
            "receiver refused the reminder");
  absl::Status missing = Deliver(**registry, "reminder-webhook");
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(missing.message(),
            "reminder channel reminder-webhook: webhook: HTTP 404: fix the "
            "receiver or config.url");
  EXPECT_FALSE(reminders::IsRetriable(bad.code()));
  EXPECT_FALSE(reminders::IsRetriable(missing.code()));
  EXPECT_EQ((*receiver)->Requests().size(), 2u);  // one POST each
}

TEST_F(Channels, WebhookWrongSecretIsRefusedByTheReceiver) {
  auto receiver = WebhookReceiver::Start("another-secret-entirely-0000");
  ASSERT_TRUE(receiver.ok());
  auto registry = Load(
      Entry("libipsrt_reminder_webhook.so", WebhookJson((*receiver)->url())));
  ASSERT_TRUE(registry.ok()) << registry.status();
  absl::Status s = Deliver(**registry, "reminder-webhook");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "reminder channel reminder-webhook: webhook: HTTP 401: fix the "
            "receiver or config.url");
  ASSERT_EQ((*receiver)->Requests().size(), 1u);
  EXPECT_FALSE((*receiver)->Requests()[0].signature_valid);
}

TEST_F(Channels, WebhookThatHangsIsDeadlineExceededWithoutRetryHere) {
  auto receiver = WebhookReceiver::Start(kSecret);
  ASSERT_TRUE(receiver.ok());
  (*receiver)->Script({Reply::kHang});
  auto registry =
      Load(Entry("libipsrt_reminder_webhook.so",
                 WebhookJson((*receiver)->url(), R"(,"timeout":"300ms")")));
  ASSERT_TRUE(registry.ok()) << registry.status();
  absl::Status s = Deliver(**registry, "reminder-webhook");
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(),
            "reminder channel reminder-webhook: webhook: no answer within "
            "300ms (config.timeout)");
  EXPECT_TRUE(reminders::IsRetriable(s.code()));
  EXPECT_EQ((*receiver)->Requests().size(), 1u);
}

TEST_F(Channels, WebhookConnectionRefusedIsRetriedThenUnavailable) {
  // A bound socket that never listens: connections to it are refused.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string url =
      absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port), "/hook");
  auto registry = Load(Entry("libipsrt_reminder_webhook.so",
                             WebhookJson(url, R"(,"max_attempts":2)")));
  ASSERT_TRUE(registry.ok()) << registry.status();
  absl::Status s = Deliver(**registry, "reminder-webhook");
  ::close(fd);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(),
            "reminder channel reminder-webhook: webhook: Couldn't connect to "
            "server (2 attempts)");
}

TEST_F(Channels, WebhookConfigErrorsNameTheKeyAndNeverTheSecret) {
  ASSERT_TRUE(WriteText(dir_.File("short.secret"), "tiny"));
  struct Case {
    std::string json;
    std::string error;
  } cases[] = {
      {R"({"secret_file":"webhook.secret"})", "config.url: is required"},
      {R"({"url":"ftp://x/","secret_file":"webhook.secret"})",
       "config.url: must start with http:// or https://"},
      {R"({"url":"http://127.0.0.1:1/"})", "config.secret_file: is required"},
      {R"({"url":"http://127.0.0.1:1/","secret_file":"none.secret"})",
       absl::StrCat("config.secret_file: cannot read ",
                    dir_.File("none.secret"))},
      {R"({"url":"http://127.0.0.1:1/","secret_file":"short.secret"})",
       absl::StrCat("config.secret_file: ", dir_.File("short.secret"),
                    " must hold at least 16 bytes (e.g. openssl rand -hex "
                    "32)")},
      {R"({"url":"http://127.0.0.1:1/","secret_file":"webhook.secret",)"
       R"("timeout":"5"})",
       "config.timeout: must be a positive duration up to 1m, e.g. 500ms or "
       "5s"},
      {R"({"url":"http://127.0.0.1:1/","secret_file":"webhook.secret",)"
       R"("connect_timeout":"3s","timeout":"1s"})",
       "config.connect_timeout: must not be longer than config.timeout "
       "(which bounds the whole POST)"},
      {R"({"url":"http://127.0.0.1:1/","secret_file":"webhook.secret",)"
       R"("max_attempts":0})",
       "config.max_attempts: must be a whole number from 1 to 10"},
      {R"({"url":"http://127.0.0.1:1/","secret_file":"webhook.secret",)"
       R"("secret":"x"})",
       "config.secret: unknown key (allowed: url, secret_file, "
       "connect_timeout, timeout, max_attempts, initial_backoff, ca_file)"},
  };
  for (const Case& c : cases) {
    auto r = Load(Entry("libipsrt_reminder_webhook.so", c.json));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
        << c.json;
    EXPECT_EQ(r.status().message(),
              absl::StrCat(dir_.File("ipsrtd.yaml"),
                           ":7:5: plugin reminder-webhook refused its "
                           "configuration: ",
                           c.error))
        << c.json;
    EXPECT_THAT(r.status().message(), Not(HasSubstr(kSecret)));
    EXPECT_THAT(r.status().message(), Not(HasSubstr("tiny")));
  }
}

TEST_F(Channels, WebhookOutOfProcessRetriesAndKeepsTheKeyAcrossAttempts) {
  auto receiver = WebhookReceiver::Start(kSecret);
  ASSERT_TRUE(receiver.ok());
  (*receiver)->Script({Reply::kServerError});
  PluginConfig c = Entry("libipsrt_reminder_webhook.so",
                         WebhookJson((*receiver)->url()), "out_of_process");
  c.path = absl::StrCat(IPSRT_PLUGIN_DIR, "/libipsrt_reminder_webhook.so");
  auto registry = Load(c);
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_EQ((*registry)->Find("reminder-webhook")->Info().transport(),
            v1::PluginInfo::OUT_OF_PROCESS);
  // The dispatcher's second attempt (after a crash, say) carries the same
  // key; the receiver sees two accepted POSTs for one key and drops one.
  ASSERT_TRUE(Deliver(**registry, "reminder-webhook", Delivery(1)).ok());
  ASSERT_TRUE(Deliver(**registry, "reminder-webhook", Delivery(2)).ok());
  std::vector<WebhookReceiver::Request> got = (*receiver)->Requests();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].status, 500);
  EXPECT_EQ(got[1].status, 200);
  EXPECT_EQ(got[2].status, 200);
  EXPECT_THAT(got[2].body, HasSubstr("\"attempt\":2,"));
  for (const auto& r : got) EXPECT_TRUE(r.signature_valid);
  EXPECT_EQ((*receiver)->AcceptedByKey(),
            (std::map<std::string, int>{{Delivery().idempotency_key, 2}}));
}

TEST_F(Channels, WebhookOutOfProcessRefusesBadConfigAtLoad) {
  PluginConfig c = Entry("libipsrt_reminder_webhook.so",
                         R"({"url":"ftp://x/","secret_file":"webhook.secret"})",
                         "out_of_process");
  c.path = absl::StrCat(IPSRT_PLUGIN_DIR, "/libipsrt_reminder_webhook.so");
  auto r = Load(c);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(),
              HasSubstr("refused its configuration: config.url: must start "
                        "with http:// or https://"));
}

}  // namespace
}  // namespace ipsrt
