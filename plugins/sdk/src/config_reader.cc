#include "ipsrt/plugin/config_reader.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ipsrt/status_macros.h"

namespace ipsrt::plugin {

std::string ConfigReader::KeyPath(absl::string_view key) const {
  return absl::StrCat(prefix_, key);
}

absl::Status ConfigReader::Error(absl::string_view key,
                                 absl::string_view reason) const {
  return absl::InvalidArgumentError(absl::StrCat(KeyPath(key), ": ", reason));
}

absl::Status ConfigReader::OnlyKeys(
    std::initializer_list<absl::string_view> allowed) const {
  for (const auto& [key, value] : config_.fields()) {
    bool known = false;
    for (absl::string_view a : allowed) known = known || a == key;
    if (!known) {
      return Error(key, absl::StrCat("unknown key (allowed: ",
                                     absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

const google::protobuf::Value* ConfigReader::Find(absl::string_view key) const {
  auto it = config_.fields().find(std::string(key));
  if (it == config_.fields().end() ||
      it->second.kind_case() == google::protobuf::Value::kNullValue) {
    return nullptr;
  }
  return &it->second;
}

bool ConfigReader::Has(absl::string_view key) const {
  return Find(key) != nullptr;
}

absl::StatusOr<std::string> ConfigReader::String(absl::string_view key,
                                                 absl::string_view fallback,
                                                 bool required) const {
  const google::protobuf::Value* v = Find(key);
  if (v == nullptr) {
    if (required) return Error(key, "is required");
    return std::string(fallback);
  }
  if (v->kind_case() != google::protobuf::Value::kStringValue) {
    return Error(key, "must be a string");
  }
  if (required && v->string_value().empty()) return Error(key, "is required");
  return v->string_value();
}

absl::StatusOr<bool> ConfigReader::Bool(absl::string_view key,
                                        bool fallback) const {
  const google::protobuf::Value* v = Find(key);
  if (v == nullptr) return fallback;
  if (v->kind_case() != google::protobuf::Value::kBoolValue) {
    return Error(key, "must be true or false");
  }
  return v->bool_value();
}

absl::StatusOr<std::string> ConfigReader::NonEmptyString(absl::string_view key,
                                                         bool required) const {
  if (Has(key)) {
    IPSRT_ASSIGN_OR_RETURN(std::string value, String(key, ""));
    if (value.empty()) return Error(key, "must not be empty");
    return value;
  }
  if (required) return Error(key, "is required");
  return std::string();
}

absl::StatusOr<int64_t> ConfigReader::Int(absl::string_view key,
                                          int64_t fallback, int64_t min,
                                          int64_t max) const {
  const google::protobuf::Value* v = Find(key);
  if (v == nullptr) return fallback;
  const double d = v->number_value();
  if (v->kind_case() != google::protobuf::Value::kNumberValue ||
      d != std::floor(d) || d < static_cast<double>(min) ||
      d > static_cast<double>(max)) {
    return Error(
        key, absl::StrCat("must be a whole number from ", min, " to ", max));
  }
  return static_cast<int64_t>(d);
}

absl::StatusOr<absl::Duration> ConfigReader::Duration(
    absl::string_view key, absl::Duration fallback, absl::Duration max) const {
  const google::protobuf::Value* v = Find(key);
  if (v == nullptr) return fallback;
  const std::string range =
      absl::StrCat("must be a positive duration up to ",
                   absl::FormatDuration(max), ", e.g. 500ms or 5s");
  absl::Duration d;
  if (v->kind_case() != google::protobuf::Value::kStringValue ||
      !absl::ParseDuration(v->string_value(), &d) ||
      d <= absl::ZeroDuration() || d > max) {
    return Error(key, range);
  }
  return d;
}

std::string ConfigReader::Resolve(const std::string& path) const {
  if (path.empty() || path[0] == '/' || config_dir_.empty()) return path;
  return absl::StrCat(config_dir_, "/", path);
}

}  // namespace ipsrt::plugin
