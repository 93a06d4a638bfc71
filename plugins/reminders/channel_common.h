// Shared by the reminder channel plugins of this directory (compiled into
// each). Their config blocks are read with the SDK's ConfigReader
// (ipsrt/plugin/config_reader.h).
#ifndef IPSRT_PLUGINS_REMINDERS_CHANNEL_COMMON_H_
#define IPSRT_PLUGINS_REMINDERS_CHANNEL_COMMON_H_

#include <string>

#include "absl/time/time.h"
#include "ipsrt/plugin/v1/plugin.pb.h"

namespace ipsrt::channels {

// ReminderJson is one delivery as one JSON object, no newline:
// idempotency_key, reminder, tenant, enrollment, kind, subject (the task),
// due_time (UTC, RFC 3339), local_due_time ("YYYY-MM-DDTHH:MM (+HH:MM)" in
// time_zone), time_zone, attempt, delivered_time. Names and times only: no
// patient data. The lines of reminder-jsonl and the webhook's body.
std::string ReminderJson(const plugin::v1::Reminder& reminder,
                         absl::Time delivered);

}  // namespace ipsrt::channels

#endif  // IPSRT_PLUGINS_REMINDERS_CHANNEL_COMMON_H_
