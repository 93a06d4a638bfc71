// PluginSender: a ReminderSender that delivers through a loaded REMINDER
// plugin (reminders.channel in the config).
//
// Each delivery becomes one DeliverReminder call with an
// ipsrt.plugin.v1.Reminder that carries the delivery's idempotency key, so
// a channel can drop the repeat of a delivery the dispatcher resends after
// a crash. The plugin's status code is passed through unchanged (only the
// message gains the channel's name): UNAVAILABLE and DEADLINE_EXCEEDED,
// also what the host answers for an out-of-process plugin that is down or
// slow, are retried by the dispatcher; INVALID_ARGUMENT,
// FAILED_PRECONDITION and the other codes fail the reminder for good.
//
// Example:
//   absl::StatusOr<std::unique_ptr<PluginSender>> sender =
//       PluginSender::Create(*registry, "reminder-webhook",
//                            "ipsrtd.yaml:40:12");
#ifndef IPSRT_REMINDERS_PLUGIN_SENDER_H_
#define IPSRT_REMINDERS_PLUGIN_SENDER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ipsrt/plugin/v1/plugin.pb.h"
#include "plugin_host/registry.h"
#include "reminders/sender.h"

namespace ipsrt::reminders {

class PluginSender final : public ReminderSender {
 public:
  // Create binds the sender to the plugin named `channel` in `registry`,
  // which must outlive the sender. FAILED_PRECONDITION, with `location`
  // (the config's "file:line:col" of reminders.channel) and the loaded
  // plugins' names, when no plugin has that name or it is not of kind
  // reminder.
  static absl::StatusOr<std::unique_ptr<PluginSender>> Create(
      const PluginRegistry& registry, absl::string_view channel,
      absl::string_view location);

  absl::Status Deliver(const ReminderDelivery& delivery) override;

  // ToPluginReminder maps a delivery onto the plugin contract's message.
  // local_due_time keeps the contract's "YYYY-MM-DDTHH:MM" (the engine's
  // " (+HH:MM)" suffix is dropped: the offset follows from due_time and
  // time_zone).
  static plugin::v1::Reminder ToPluginReminder(
      const ReminderDelivery& delivery);

 private:
  explicit PluginSender(LoadedPlugin* plugin) : plugin_(plugin) {}
  LoadedPlugin* plugin_;
};

}  // namespace ipsrt::reminders

#endif  // IPSRT_REMINDERS_PLUGIN_SENDER_H_
