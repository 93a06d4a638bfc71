// SHA-256 digests (OpenSSL) as lowercase hex: request fingerprints, event
// chains, receipts and webhook signatures. Part of the plugin SDK's support
// library (ipsrt::plugin_support); the engine uses the same functions.
#ifndef IPSRT_PLUGIN_HASH_H_
#define IPSRT_PLUGIN_HASH_H_

#include <string>

#include "absl/strings/string_view.h"

namespace ipsrt {

// Sha256Hex returns the SHA-256 of `data` as 64 lowercase hex digits.
std::string Sha256Hex(absl::string_view data);

// HmacSha256Hex returns HMAC-SHA256(key, data) as 64 lowercase hex digits.
std::string HmacSha256Hex(absl::string_view key, absl::string_view data);

}  // namespace ipsrt

#endif  // IPSRT_PLUGIN_HASH_H_
