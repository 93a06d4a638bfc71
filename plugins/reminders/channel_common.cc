#include "channel_common.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/json_string.h"
#include "common/proto_time.h"

namespace ipsrt::channels {
namespace {

absl::Status Bad(absl::string_view key, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat("config.", key, ": ", reason));
}

}  // namespace

std::string ReminderJson(const plugin::v1::Reminder& r, absl::Time delivered) {
  const absl::Time due = FromProtoTime(r.due_time());
  // The same "local (offset)" text as the engine's built-in channel; the
  // contract's local_due_time as sent when the zone is unknown here.
  std::string local = r.local_due_time();
  absl::TimeZone zone;
  if (absl::LoadTimeZone(r.time_zone(), &zone)) {
    local = absl::FormatTime("%Y-%m-%dT%H:%M (%Ez)", due, zone);
  }
  return absl::StrCat(
      "{\"idempotency_key\":", JsonQuote(r.idempotency_key()),
      ",\"reminder\":", JsonQuote(r.reminder()),
      ",\"tenant\":", JsonQuote(r.tenant()),
      ",\"enrollment\":", JsonQuote(r.enrollment()),
      ",\"kind\":", JsonQuote(r.kind()),
      ",\"subject\":", JsonQuote(r.task_id()),
      ",\"due_time\":", JsonQuote(Rfc3339Utc(due)),
      ",\"local_due_time\":", JsonQuote(local),
      ",\"time_zone\":", JsonQuote(r.time_zone()), ",\"attempt\":", r.attempt(),
      ",\"delivered_time\":", JsonQuote(Rfc3339Utc(delivered)), "}");
}

absl::Status Settings::OnlyKeys(
    std::initializer_list<absl::string_view> allowed) const {
  for (const auto& [key, value] : config_.fields()) {
    bool known = false;
    for (absl::string_view a : allowed) known = known || a == key;
    if (!known) {
      return Bad(key, absl::StrCat("unknown key (allowed: ",
                                   absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

const google::protobuf::Value* Settings::Find(absl::string_view key) const {
  auto it = config_.fields().find(std::string(key));
  if (it == config_.fields().end() ||
      it->second.kind_case() == google::protobuf::Value::kNullValue) {
    return nullptr;
  }
  return &it->second;
}

bool Settings::Has(absl::string_view key) const { return Find(key) != nullptr; }

absl::StatusOr<std::string> Settings::String(absl::string_view key,
                                             absl::string_view fallback,
                                             bool required) const {
  const google::protobuf::Value* v = Find(key);
  if (v == nullptr) {
    if (required) return Bad(key, "is required");
    return std::string(fallback);
  }
  if (v->kind_case() != google::protobuf::Value::kStringValue) {
    return Bad(key, "must be a string");
  }
  if (required && v->string_value().empty()) return Bad(key, "is required");
  return v->string_value();
}

absl::StatusOr<bool> Settings::Bool(absl::string_view key,
                                    bool fallback) const {
  const google::protobuf::Value* v = Find(key);
  if (v == nullptr) return fallback;
  if (v->kind_case() != google::protobuf::Value::kBoolValue) {
    return Bad(key, "must be true or false");
  }
  return v->bool_value();
}

absl::StatusOr<int> Settings::Int(absl::string_view key, int fallback, int min,
                                  int max) const {
  const google::protobuf::Value* v = Find(key);
  if (v == nullptr) return fallback;
  const std::string range =
      absl::StrCat("must be a whole number from ", min, " to ", max);
  if (v->kind_case() != google::protobuf::Value::kNumberValue) {
    return Bad(key, range);
  }
  double d = v->number_value();
  if (d != std::floor(d) || d < min || d > max) return Bad(key, range);
  return static_cast<int>(d);
}

absl::StatusOr<absl::Duration> Settings::Duration(absl::string_view key,
                                                  absl::Duration fallback,
                                                  absl::Duration max) const {
  const google::protobuf::Value* v = Find(key);
  if (v == nullptr) return fallback;
  const std::string range =
      absl::StrCat("must be a positive duration up to ",
                   absl::FormatDuration(max), ", e.g. 500ms or 5s");
  absl::Duration d;
  if (v->kind_case() != google::protobuf::Value::kStringValue ||
      !absl::ParseDuration(v->string_value(), &d) ||
      d <= absl::ZeroDuration() || d > max) {
    return Bad(key, range);
  }
  return d;
}

std::string Settings::Resolve(const std::string& path) const {
  if (path.empty() || path[0] == '/' || config_dir_.empty()) return path;
  return absl::StrCat(config_dir_, "/", path);
}

}  // namespace ipsrt::channels
