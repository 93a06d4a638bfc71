// Checks of request fields shared by every service. Each failure is
// INVALID_ARGUMENT whose message starts with the field path, e.g.
// "time_zone: unknown IANA time zone \"Mars/Olympus\"".
#ifndef IPSRT_COMMON_VALIDATION_H_
#define IPSRT_COMMON_VALIDATION_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ipsrt {

// Longest patient or clinician reference accepted.
inline constexpr size_t kMaxReferenceLength = 256;

// CheckTenantId accepts 1-63 characters of [a-z0-9-], starting with a
// letter or digit.
absl::Status CheckTenantId(absl::string_view field, absl::string_view tenant);

// ParseParent reads "tenants/{tenant}" and returns the tenant.
absl::StatusOr<std::string> ParseParent(absl::string_view field,
                                        absl::string_view parent);

struct EnrollmentName {
  std::string tenant;
  std::string id;
  // "tenants/{tenant}/enrollments/{id}".
  std::string Format() const;
};

// ParseEnrollmentName reads "tenants/{tenant}/enrollments/{id}".
absl::StatusOr<EnrollmentName> ParseEnrollmentName(absl::string_view field,
                                                   absl::string_view name);

// CheckRequestId accepts 1-128 characters of [A-Za-z0-9._:-].
absl::Status CheckRequestId(absl::string_view field, absl::string_view id);

// CheckReference accepts a printable single-line reference of at most
// kMaxReferenceLength bytes; empty only when `required` is false. The
// message never repeats the value (references are patient data).
absl::Status CheckReference(absl::string_view field, absl::string_view value,
                            bool required);

// CheckLabels accepts at most 64 labels whose keys are 1-63 characters of
// [a-z0-9_-] starting with a letter and whose values are at most 63
// printable characters.
absl::Status CheckLabels(absl::string_view field,
                         const std::map<std::string, std::string>& labels);

// LoadPatientTimeZone loads an IANA zone by name ("Europe/London", "UTC").
// Names that are not zone identifiers ("localtime", paths, "Fixed/...")
// are refused even where the zone library would accept them, because a
// patient's zone must mean the same on every server.
absl::StatusOr<absl::TimeZone> LoadPatientTimeZone(absl::string_view field,
                                                   absl::string_view name);

// QuoteInput renders caller input for an error message: at most the first
// 64 bytes, C-escaped, in double quotes, with the full length when cut
// ("\"abc...\" (102400 bytes)"). Never quote caller input any other way.
std::string QuoteInput(absl::string_view value);

}  // namespace ipsrt

#endif  // IPSRT_COMMON_VALIDATION_H_
