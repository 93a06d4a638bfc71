#include "store/blob_codec.h"

#include <zlib.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ipsrt {
namespace {

constexpr char kMarker = '\0';
constexpr char kRaw = '\0';
constexpr char kDeflated = '\1';
constexpr size_t kMinPacked = 64;
// Larger values are never written (a snapshot is a few KB).
constexpr uint64_t kMaxSize = uint64_t{1} << 30;

void PutVarint(uint64_t v, std::string& out) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool GetVarint(absl::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    uint8_t b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

std::string PackBlob(absl::string_view value) {
  if (value.size() >= kMinPacked && value.size() < kMaxSize) {
    uLongf bound = compressBound(static_cast<uLong>(value.size()));
    std::string out;
    out.push_back(kMarker);
    out.push_back(kDeflated);
    PutVarint(value.size(), out);
    size_t header = out.size();
    out.resize(header + bound);
    uLongf written = bound;
    if (compress2(reinterpret_cast<Bytef*>(out.data() + header), &written,
                  reinterpret_cast<const Bytef*>(value.data()),
                  static_cast<uLong>(value.size()), Z_BEST_SPEED) == Z_OK &&
        header + written < value.size()) {
      out.resize(header + written);
      return out;
    }
  }
  if (!value.empty() && value.front() == kMarker) {
    return absl::StrCat(absl::string_view("\0\0", 2), value);
  }
  return std::string(value);
}

absl::StatusOr<std::string> UnpackBlob(absl::string_view stored,
                                       absl::string_view what) {
  if (stored.empty() || stored.front() != kMarker) return std::string(stored);
  if (stored.size() >= 2 && stored[1] == kRaw) {
    return std::string(stored.substr(2));
  }
  absl::string_view in = stored.substr(stored.size() >= 2 ? 2 : 1);
  uint64_t size = 0;
  if (stored.size() >= 2 && stored[1] == kDeflated && GetVarint(in, size) &&
      size < kMaxSize) {
    std::string out(size, '\0');
    uLongf got = static_cast<uLongf>(size);
    if (uncompress(reinterpret_cast<Bytef*>(out.data()), &got,
                   reinterpret_cast<const Bytef*>(in.data()),
                   static_cast<uLong>(in.size())) == Z_OK &&
        got == size) {
      return out;
    }
  }
  return absl::DataLossError(
      absl::StrCat("store: ", what,
                   " is damaged (its deflated form cannot "
                   "be read); run `ipsrt store check`"));
}

}  // namespace ipsrt
