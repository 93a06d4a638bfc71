// Opaque page tokens for keyset paging.
//
// A token records where the previous page ended and a fingerprint of the
// request's filters, so a token reused with other filters is refused
// instead of silently skipping or repeating rows.
#ifndef IPSRT_COMMON_PAGE_TOKEN_H_
#define IPSRT_COMMON_PAGE_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ipsrt {

struct PagePosition {
  // Fingerprint of the filters the listing was made with.
  std::string filter_fingerprint;
  // Sort key of the last row returned.
  int64_t key_int = 0;
  std::string key_text;
};

// EncodePageToken returns a URL-safe opaque token.
std::string EncodePageToken(const PagePosition& position);

// DecodePageToken reverses EncodePageToken and checks the fingerprint.
// INVALID_ARGUMENT naming "page_token" when the token is malformed or was
// made for other filters.
absl::StatusOr<PagePosition> DecodePageToken(
    absl::string_view token, absl::string_view expected_fingerprint);

// ClampPageSize returns the page size to use: `requested` when in 1..max,
// `default_size` for 0, `max` above it. Negative is INVALID_ARGUMENT
// naming "page_size".
absl::StatusOr<int> ClampPageSize(int requested, int default_size, int max);

}  // namespace ipsrt

#endif  // IPSRT_COMMON_PAGE_TOKEN_H_
