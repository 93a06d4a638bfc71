#include "push_target.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/struct.pb.h"
#include "ipsrt/plugin/config_reader.h"
#include "ipsrt/status_macros.h"

namespace ipsrt::fhir_push {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// Every error names the full key path ("config.targets.ehr.timeout: ...").
using Section = ::ipsrt::plugin::ConfigReader;

bool IsTargetName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

// CheckBaseUrl refuses what would leak or misroute: other schemes,
// credentials in the URL (they would appear wherever the URL is shown),
// queries and fragments, whitespace.
absl::Status CheckBaseUrl(const Section& s, const std::string& url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://") &&
      !absl::ConsumePrefix(&rest, "https://")) {
    return s.Error("base_url", "must start with http:// or https://");
  }
  absl::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.empty()) return s.Error("base_url", "has no host");
  if (absl::StrContains(authority, "@")) {
    return s.Error("base_url",
                   "must not contain credentials; use bearer_token_file or "
                   "bearer_token_env");
  }
  for (char c : url) {
    if (c == '?' || c == '#' || absl::ascii_isspace(c) ||
        !absl::ascii_isprint(c)) {
      return s.Error("base_url",
                     "must be a plain URL without query, fragment or spaces");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PushTarget> ReadTarget(const std::string& name,
                                      const Value& value,
                                      const std::string& config_dir) {
  PushTarget t;
  t.name = name;
  t.key_path = absl::StrCat("config.targets.", name);
  if (!IsTargetName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(t.key_path,
                     ": a target name uses only letters, digits, '-', '_' "
                     "and '.'"));
  }
  if (value.kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError(absl::StrCat(
        t.key_path, ": must be a map with base_url and the other settings"));
  }
  Section s(value.struct_value(), config_dir, absl::StrCat(t.key_path, "."));
  IPSRT_RETURN_IF_ERROR(s.OnlyKeys(
      {"base_url", "bearer_token_env", "bearer_token_file", "connect_timeout",
       "timeout", "max_attempts", "initial_backoff", "max_backoff",
       "max_bundle_bytes", "ca_file"}));

  IPSRT_ASSIGN_OR_RETURN(std::string base_url,
                         s.NonEmptyString("base_url", true));
  IPSRT_RETURN_IF_ERROR(CheckBaseUrl(s, base_url));
  while (absl::EndsWith(base_url, "/")) base_url.pop_back();
  t.base_url = base_url;

  IPSRT_ASSIGN_OR_RETURN(t.bearer_token_env,
                         s.NonEmptyString("bearer_token_env"));
  IPSRT_ASSIGN_OR_RETURN(std::string token_file,
                         s.NonEmptyString("bearer_token_file"));
  if (!t.bearer_token_env.empty() && !token_file.empty()) {
    return s.Error(
        "bearer_token_file",
        "set either bearer_token_env or bearer_token_file, not both");
  }
  if (!token_file.empty()) {
    t.bearer_token_file = s.Resolve(token_file);
  }

  IPSRT_ASSIGN_OR_RETURN(
      t.connect_timeout,
      s.Duration("connect_timeout", t.connect_timeout, absl::Seconds(60)));
  IPSRT_ASSIGN_OR_RETURN(t.timeout,
                         s.Duration("timeout", t.timeout, absl::Minutes(5)));
  if (t.connect_timeout > t.timeout) {
    return s.Error(
        "connect_timeout",
        absl::StrCat("must not be longer than ", s.KeyPath("timeout"),
                     " (which bounds the whole POST)"));
  }
  IPSRT_ASSIGN_OR_RETURN(int64_t attempts,
                         s.Int("max_attempts", t.max_attempts, 1, 10));
  t.max_attempts = static_cast<int>(attempts);
  IPSRT_ASSIGN_OR_RETURN(
      t.initial_backoff,
      s.Duration("initial_backoff", t.initial_backoff, absl::Minutes(1)));
  IPSRT_ASSIGN_OR_RETURN(
      t.max_backoff,
      s.Duration("max_backoff", std::max(t.max_backoff, t.initial_backoff),
                 absl::Minutes(5)));
  if (t.max_backoff < t.initial_backoff) {
    return s.Error("max_backoff", absl::StrCat("must not be shorter than ",
                                               s.KeyPath("initial_backoff")));
  }
  IPSRT_ASSIGN_OR_RETURN(t.max_bundle_bytes,
                         s.Int("max_bundle_bytes", 0, 1, int64_t{1} << 31));
  IPSRT_ASSIGN_OR_RETURN(std::string ca_file, s.NonEmptyString("ca_file"));
  if (!ca_file.empty()) {
    t.ca_file = s.Resolve(ca_file);
    if (!std::ifstream(t.ca_file)) {
      return s.Error("ca_file", absl::StrCat("cannot read ", t.ca_file));
    }
  }

  // A token source that does not work now would fail every push: refuse
  // to start instead.
  absl::StatusOr<std::string> token = t.BearerToken();
  if (!token.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(t.key_path, ".", token.status().message()));
  }
  return t;
}

absl::Status CheckToken(const std::string& token, absl::string_view where) {
  if (token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(where, " is empty"));
  }
  for (char c : token) {
    // RFC 6750's b64token is a subset of visible ASCII; anything else
    // (a second line, a control character) would corrupt the header.
    if (c < 0x21 || c > 0x7e) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, " does not hold one line of visible ASCII"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

plugin::RetryPolicy PushTarget::Retries() const {
  return {.max_attempts = max_attempts,
          .initial_backoff = initial_backoff,
          .max_backoff = max_backoff};
}

absl::StatusOr<std::string> PushTarget::BearerToken() const {
  if (!bearer_token_env.empty()) {
    const std::string where = absl::StrCat(
        "bearer_token_env: environment variable ", bearer_token_env);
    const char* value = std::getenv(bearer_token_env.c_str());
    if (value == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(where, " is not set"));
    }
    std::string token(absl::StripAsciiWhitespace(value));
    IPSRT_RETURN_IF_ERROR(CheckToken(token, where));
    return token;
  }
  if (!bearer_token_file.empty()) {
    const std::string where =
        absl::StrCat("bearer_token_file: ", bearer_token_file);
    std::ifstream in(bearer_token_file, std::ios::binary);
    if (!in) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, " cannot be read"));
    }
    std::stringstream text;
    text << in.rdbuf();
    // A final newline (echo > file) is not part of the token.
    std::string token(absl::StripAsciiWhitespace(text.str()));
    IPSRT_RETURN_IF_ERROR(CheckToken(token, where));
    return token;
  }
  return std::string();
}

const PushTarget* PushTargets::Find(absl::string_view name) const {
  auto it =
      targets_.find(name.empty() ? absl::string_view(default_target_) : name);
  return it == targets_.end() ? nullptr : &it->second;
}

std::string PushTargets::Names() const {
  std::vector<absl::string_view> names;
  for (const auto& [name, target] : targets_) names.push_back(name);
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<PushTargets> ReadPushTargets(
    const plugin::v1::ConfigureRequest& request) {
  Section root(request);
  IPSRT_RETURN_IF_ERROR(root.OnlyKeys({"targets", "default_target"}));
  const Value* targets = root.Find("targets");
  if (targets == nullptr) {
    return root.Error("targets",
                      "is required: a map of target name to "
                      "{base_url, ...}");
  }
  if (targets->kind_case() != Value::kStructValue ||
      targets->struct_value().fields().empty()) {
    return root.Error("targets",
                      "must be a map with at least one target, e.g. ehr: "
                      "{base_url: https://fhir.example.org/r4}");
  }
  PushTargets result;
  // In name order, so that the first error reported does not depend on
  // the map's hashing.
  std::map<std::string, const Value*> by_name;
  for (const auto& [name, value] : targets->struct_value().fields()) {
    by_name.emplace(name, &value);
  }
  for (const auto& [name, value] : by_name) {
    IPSRT_ASSIGN_OR_RETURN(PushTarget target,
                           ReadTarget(name, *value, request.config_dir()));
    result.targets_.emplace(name, std::move(target));
  }
  IPSRT_ASSIGN_OR_RETURN(result.default_target_,
                         root.NonEmptyString("default_target"));
  if (result.default_target_.empty()) {
    if (result.targets_.size() > 1) {
      return root.Error("default_target",
                        absl::StrCat("is required when there are several "
                                     "targets (",
                                     result.Names(), ")"));
    }
    result.default_target_ = result.targets_.begin()->first;
  } else if (result.Find(result.default_target_) == nullptr) {
    return root.Error(
        "default_target",
        absl::StrCat("names no target: \"", result.default_target_,
                     "\" is not one of ", result.Names()));
  }
  return result;
}

}  // namespace ipsrt::fhir_push
