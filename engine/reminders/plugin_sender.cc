#include "reminders/plugin_sender.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ipsrt::reminders {

absl::StatusOr<std::unique_ptr<PluginSender>> PluginSender::Create(
    const PluginRegistry& registry, absl::string_view channel,
    absl::string_view location) {
  LoadedPlugin* plugin = registry.Find(channel);
  if (plugin == nullptr) {
    std::vector<std::string> names;
    for (LoadedPlugin* p : registry.WithKind(plugin::v1::REMINDER)) {
      names.push_back(p->name());
    }
    return absl::FailedPreconditionError(absl::StrCat(
        location, ": reminders.channel: no loaded plugin is named \"", channel,
        "\" (loaded reminder plugins: ",
        names.empty() ? "none" : absl::StrJoin(names, ", "),
        "); add it under plugins:"));
  }
  if (!plugin->HasKind(plugin::v1::REMINDER)) {
    return absl::FailedPreconditionError(
        absl::StrCat(location, ": reminders.channel: plugin \"", channel,
                     "\" is not of kind reminder"));
  }
  return std::unique_ptr<PluginSender>(new PluginSender(plugin));
}

plugin::v1::Reminder PluginSender::ToPluginReminder(const ReminderDelivery& d) {
  plugin::v1::Reminder r;
  r.set_idempotency_key(d.idempotency_key);
  r.set_tenant(d.tenant);
  r.set_enrollment(d.enrollment);
  r.set_kind(d.kind);
  r.set_task_id(d.subject);
  const int64_t micros = absl::ToUnixMicros(d.due_time);
  int64_t seconds = micros / 1000000;
  int64_t rest = micros % 1000000;
  if (rest < 0) {
    rest += 1000000;
    --seconds;
  }
  r.mutable_due_time()->set_seconds(seconds);
  r.mutable_due_time()->set_nanos(static_cast<int32_t>(rest * 1000));
  r.set_local_due_time(d.local_due_time.substr(0, d.local_due_time.find(' ')));
  r.set_time_zone(d.time_zone);
  r.set_attempt(d.attempt);
  r.set_reminder(d.reminder);
  return r;
}

absl::Status PluginSender::Deliver(const ReminderDelivery& delivery) {
  plugin::v1::DeliverReminderRequest request;
  *request.mutable_reminder() = ToPluginReminder(delivery);
  absl::StatusOr<plugin::v1::DeliverReminderResponse> response =
      plugin_->DeliverReminder(request);
  if (response.ok()) return absl::OkStatus();
  // Same code, so the dispatcher's retry rule sees the channel's verdict.
  return absl::Status(response.status().code(),
                      absl::StrCat("reminder channel ", plugin_->name(), ": ",
                                   response.status().message()));
}

}  // namespace ipsrt::reminders
