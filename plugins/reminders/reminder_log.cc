// reminder-log: a reminder channel that writes one line per delivery to
// ipsrtd's log. For development and for deployments that forward the log;
// it carries names, times and the kind only (no patient data).
//
//   plugins:
//     - path: libipsrt_reminder_log.so
//       config:
//         level: info        # debug, info (default) or warning
#include <ipsrt/plugin/plugin.h>

#include "absl/strings/str_cat.h"
#include "ipsrt/plugin/config_reader.h"
#include "ipsrt/plugin/time.h"

namespace {

namespace v1 = ::ipsrt::plugin::v1;

class ReminderLog final : public ipsrt::plugin::Plugin {
 public:
  absl::Status Configure(const v1::ConfigureRequest& request) override {
    ipsrt::plugin::ConfigReader settings(request);
    if (absl::Status s = settings.OnlyKeys({"level"}); !s.ok()) return s;
    absl::StatusOr<std::string> level = settings.String("level", "info");
    if (!level.ok()) return level.status();
    if (*level == "debug") {
      level_ = IPSRT_LOG_DEBUG;
    } else if (*level == "info") {
      level_ = IPSRT_LOG_INFO;
    } else if (*level == "warning") {
      level_ = IPSRT_LOG_WARNING;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("config.level: must be debug, info or warning, not \"",
                       *level, "\""));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::DescribeResponse> Describe() override {
    v1::DescribeResponse d;
    d.set_summary("Writes one line per reminder to ipsrtd's log");
    return d;
  }

  absl::StatusOr<v1::DeliverReminderResponse> DeliverReminder(
      const v1::DeliverReminderRequest& request) override {
    const v1::Reminder& r = request.reminder();
    if (r.idempotency_key().empty()) {
      return absl::InvalidArgumentError(
          "reminder.idempotency_key: must not be empty");
    }
    host().Log(
        level_,
        absl::StrCat(
            "reminder ", r.reminder(), " kind=", r.kind(),
            " task=", r.task_id(), " enrollment=", r.enrollment(),
            " due=", ipsrt::Rfc3339Utc(ipsrt::FromProtoTime(r.due_time())),
            " local=", r.local_due_time(), " ", r.time_zone(),
            " attempt=", r.attempt(), " key=", r.idempotency_key()));
    v1::DeliverReminderResponse response;
    response.set_receipt("logged");
    return response;
  }

 private:
  int level_ = IPSRT_LOG_INFO;
};

}  // namespace

IPSRT_PLUGIN(ReminderLog, "reminder-log", "1.0.0", IPSRT_KIND_REMINDER)
