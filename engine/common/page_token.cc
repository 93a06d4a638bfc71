#include "common/page_token.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ipsrt {
namespace {
constexpr absl::string_view kVersion = "p1";
}  // namespace

std::string EncodePageToken(const PagePosition& position) {
  std::string raw =
      absl::StrCat(kVersion, "\n", position.filter_fingerprint, "\n",
                   position.key_int, "\n", position.key_text);
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<PagePosition> DecodePageToken(
    absl::string_view token, absl::string_view expected_fingerprint) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError(
        "page_token: not a token returned by this server");
  }
  std::vector<std::string> parts =
      absl::StrSplit(raw, absl::MaxSplits('\n', 3));
  PagePosition p;
  if (parts.size() != 4 || parts[0] != kVersion ||
      !absl::SimpleAtoi(parts[2], &p.key_int)) {
    return absl::InvalidArgumentError(
        "page_token: not a token returned by this server");
  }
  if (parts[1] != expected_fingerprint) {
    return absl::InvalidArgumentError(
        "page_token: was made for a listing with other filters; start again "
        "without a page token");
  }
  p.filter_fingerprint = parts[1];
  p.key_text = parts[3];
  return p;
}

absl::StatusOr<int> ClampPageSize(int requested, int default_size, int max) {
  if (requested < 0) {
    return absl::InvalidArgumentError("page_size: must not be negative");
  }
  if (requested == 0) return default_size;
  return requested > max ? max : requested;
}

}  // namespace ipsrt
