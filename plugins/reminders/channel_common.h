// Shared by the reminder channel plugins of this directory (compiled into
// each: a plugin links nothing but the SDK and its own libraries).
//
// ReminderJson renders one delivery as the flat JSON object the built-in
// JSON Lines channel writes (engine/reminders/jsonl_sender.h); the Settings
// helpers read a plugin's `config` block and refuse bad values with
// INVALID_ARGUMENT naming the key ("config.url: ...").
#ifndef IPSRT_PLUGINS_REMINDERS_CHANNEL_COMMON_H_
#define IPSRT_PLUGINS_REMINDERS_CHANNEL_COMMON_H_

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "ipsrt/plugin/v1/plugin.pb.h"

namespace ipsrt::channels {

// ReminderJson is one JSON object, no newline: idempotency_key, reminder,
// tenant, enrollment, kind, subject (the task), due_time (UTC, RFC 3339),
// local_due_time ("YYYY-MM-DDTHH:MM (+HH:MM)" in time_zone), time_zone,
// attempt, delivered_time. Names and times only: no patient data.
std::string ReminderJson(const plugin::v1::Reminder& reminder,
                         absl::Time delivered);

// Settings reads one plugin's config block. Every accessor returns
// INVALID_ARGUMENT "config.<key>: <reason>" for a value of the wrong type.
class Settings {
 public:
  explicit Settings(const plugin::v1::ConfigureRequest& request)
      : config_(request.config()), config_dir_(request.config_dir()) {}

  // OnlyKeys refuses any key not in `allowed`.
  absl::Status OnlyKeys(std::initializer_list<absl::string_view> allowed) const;
  bool Has(absl::string_view key) const;
  // A string; `fallback` when absent; NOT a string or, when `required`,
  // absent or empty: INVALID_ARGUMENT.
  absl::StatusOr<std::string> String(absl::string_view key,
                                     absl::string_view fallback,
                                     bool required = false) const;
  absl::StatusOr<bool> Bool(absl::string_view key, bool fallback) const;
  // A whole number in [min, max].
  absl::StatusOr<int> Int(absl::string_view key, int fallback, int min,
                          int max) const;
  // A duration such as "250ms" or "5s", positive and at most `max`.
  absl::StatusOr<absl::Duration> Duration(absl::string_view key,
                                          absl::Duration fallback,
                                          absl::Duration max) const;
  // A path, relative ones against the engine config's directory.
  std::string Resolve(const std::string& path) const;

 private:
  const google::protobuf::Value* Find(absl::string_view key) const;
  const google::protobuf::Struct& config_;
  std::string config_dir_;
};

}  // namespace ipsrt::channels

#endif  // IPSRT_PLUGINS_REMINDERS_CHANNEL_COMMON_H_
