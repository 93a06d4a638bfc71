// SHA-256 helpers (OpenSSL) for request fingerprints and event chains.
#ifndef IPSRT_COMMON_HASH_H_
#define IPSRT_COMMON_HASH_H_

#include <string>

#include "absl/strings/string_view.h"

namespace ipsrt {

// Sha256Hex returns the SHA-256 of `data` as 64 lowercase hex digits.
std::string Sha256Hex(absl::string_view data);

}  // namespace ipsrt

#endif  // IPSRT_COMMON_HASH_H_
