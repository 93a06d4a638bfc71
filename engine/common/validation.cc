#include "common/validation.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ipsrt {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

bool IsIdChar(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-';
}

}  // namespace

absl::Status CheckTenantId(absl::string_view field, absl::string_view tenant) {
  if (tenant.empty()) return Invalid(field, "tenant must not be empty");
  if (tenant.size() > 63) return Invalid(field, "tenant is over 63 characters");
  if (tenant[0] == '-') return Invalid(field, "tenant must not start with '-'");
  for (char c : tenant) {
    if (!IsIdChar(c)) {
      return Invalid(field, "tenant may contain only a-z, 0-9 and '-'");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseParent(absl::string_view field,
                                        absl::string_view parent) {
  if (parent.empty()) {
    return Invalid(field, "must not be empty; expected \"tenants/{tenant}\"");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(parent, '/');
  if (parts.size() != 2 || parts[0] != "tenants") {
    return Invalid(field, "expected \"tenants/{tenant}\"");
  }
  absl::Status s = CheckTenantId(field, parts[1]);
  if (!s.ok()) return s;
  return std::string(parts[1]);
}

std::string EnrollmentName::Format() const {
  return absl::StrCat("tenants/", tenant, "/enrollments/", id);
}

absl::StatusOr<EnrollmentName> ParseEnrollmentName(absl::string_view field,
                                                   absl::string_view name) {
  if (name.empty()) {
    return Invalid(field,
                   "must not be empty; expected "
                   "\"tenants/{tenant}/enrollments/{enrollment}\"");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  if (parts.size() != 4 || parts[0] != "tenants" || parts[2] != "enrollments") {
    return Invalid(field,
                   "expected \"tenants/{tenant}/enrollments/{enrollment}\"");
  }
  absl::Status s = CheckTenantId(field, parts[1]);
  if (!s.ok()) return s;
  if (parts[3].empty() || parts[3].size() > 64) {
    return Invalid(field, "enrollment id must be 1-64 characters");
  }
  for (char c : parts[3]) {
    if (!IsIdChar(c)) {
      return Invalid(field, "enrollment id may contain only a-z, 0-9 and '-'");
    }
  }
  return EnrollmentName{std::string(parts[1]), std::string(parts[3])};
}

absl::Status CheckRequestId(absl::string_view field, absl::string_view id) {
  if (id.empty()) {
    return Invalid(field,
                   "must not be empty; choose a unique id per request so that "
                   "a retry is recognised");
  }
  if (id.size() > 128) return Invalid(field, "is over 128 characters");
  for (char c : id) {
    if (!(absl::ascii_isalnum(c) || c == '.' || c == '_' || c == ':' ||
          c == '-')) {
      return Invalid(field, "may contain only A-Z, a-z, 0-9 and . _ : -");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckReference(absl::string_view field, absl::string_view value,
                            bool required) {
  if (value.empty()) {
    return required ? Invalid(field, "must not be empty") : absl::OkStatus();
  }
  if (value.size() > kMaxReferenceLength) {
    return Invalid(field, absl::StrCat("is over ", kMaxReferenceLength,
                                       " bytes (", value.size(), ")"));
  }
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      return Invalid(field, "must not contain control characters");
    }
  }
  if (absl::StripAsciiWhitespace(value) != value) {
    return Invalid(field, "must not start or end with white space");
  }
  return absl::OkStatus();
}

absl::Status CheckLabels(absl::string_view field,
                         const std::map<std::string, std::string>& labels) {
  if (labels.size() > 64) return Invalid(field, "at most 64 labels");
  for (const auto& [key, value] : labels) {
    std::string path = absl::StrCat(field, "[\"", key.substr(0, 63), "\"]");
    if (key.empty() || key.size() > 63 || !absl::ascii_islower(key[0])) {
      return Invalid(path, "key must be 1-63 characters starting with a-z");
    }
    for (char c : key) {
      if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' ||
            c == '-')) {
        return Invalid(path, "key may contain only a-z, 0-9, _ and -");
      }
    }
    if (value.size() > 63) return Invalid(path, "value is over 63 characters");
    for (unsigned char c : value) {
      if (c < 0x20 || c == 0x7f) {
        return Invalid(path, "value must not contain control characters");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::TimeZone> LoadPatientTimeZone(absl::string_view field,
                                                   absl::string_view name) {
  if (name.empty()) {
    return Invalid(field,
                   "must not be empty; give the patient's IANA time zone, "
                   "e.g. \"America/New_York\"");
  }
  bool shaped = name.size() <= 64 && name != "localtime" &&
                !absl::StartsWith(name, "Fixed/") && name[0] != '/' &&
                !absl::StrContains(name, "..");
  for (char c : name) {
    if (!(absl::ascii_isalnum(c) || c == '/' || c == '_' || c == '-' ||
          c == '+')) {
      shaped = false;
    }
  }
  absl::TimeZone tz;
  if (!shaped || !absl::LoadTimeZone(std::string(name), &tz)) {
    return Invalid(field,
                   absl::StrCat("unknown IANA time zone \"", name.substr(0, 64),
                                "\"; e.g. \"Europe/London\""));
  }
  return tz;
}

std::string QuoteInput(absl::string_view value) {
  constexpr size_t kMaxQuoted = 64;
  if (value.size() <= kMaxQuoted) {
    return absl::StrCat("\"", absl::CHexEscape(value), "\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(value.substr(0, kMaxQuoted)),
                      "...\" (", value.size(), " bytes)");
}

}  // namespace ipsrt
