#include "store/blob_codec.h"

#include <zlib.h>

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ipsrt {
namespace {

// The preset dictionary values are deflated with (blob_dictionary.inc).
// Records of one kind repeat most of their bytes from record to record
// (field tags, task keys and titles, score names, the enrollment's
// references), but a record of a few hundred bytes has no earlier copy of
// them in its own stream; with the dictionary it does.
constexpr char kDictionary1[] =
#include "store/blob_dictionary.inc"
    ;
constexpr uInt kDictionary1Size = sizeof(kDictionary1) - 1;

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

// Deflate appends the zlib stream of `value`, deflated with the preset
// dictionary at the fastest level, to `out`; its size, or nullopt when zlib
// fails.
std::optional<size_t> Deflate(absl::string_view value, std::string& out) {
  z_stream z{};
  if (deflateInit(&z, Z_BEST_SPEED) != Z_OK) return std::nullopt;
  const size_t header = out.size();
  const uLong bound = deflateBound(&z, static_cast<uLong>(value.size()));
  out.resize(header + bound);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(value.data()));
  z.avail_in = static_cast<uInt>(value.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data() + header);
  z.avail_out = static_cast<uInt>(bound);
  const bool ok =
      deflateSetDictionary(&z, reinterpret_cast<const Bytef*>(kDictionary1),
                           kDictionary1Size) == Z_OK &&
      deflate(&z, Z_FINISH) == Z_STREAM_END;
  const size_t written = z.total_out;
  deflateEnd(&z);
  if (!ok) return std::nullopt;
  return written;
}

// Inflate fills `out` (sized to the recorded size) from the zlib stream
// `in`: a stream deflated with dictionary 1, or without one (values
// written before the dictionary). False when the stream is damaged, names
// another dictionary, or does not inflate to exactly out.size() bytes.
bool Inflate(absl::string_view in, std::string& out) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return false;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int r = inflate(&z, Z_FINISH);
  if (r == Z_NEED_DICT && z.adler == BlobDictionaryId() &&
      inflateSetDictionary(&z, reinterpret_cast<const Bytef*>(kDictionary1),
                           kDictionary1Size) == Z_OK) {
    r = inflate(&z, Z_FINISH);
  }
  const bool ok = r == Z_STREAM_END && z.total_out == out.size();
  inflateEnd(&z);
  return ok;
}

}  // namespace

uint32_t BlobDictionaryId() {
  static const uint32_t kId = static_cast<uint32_t>(
      adler32(adler32(0, nullptr, 0),
              reinterpret_cast<const Bytef*>(kDictionary1), kDictionary1Size));
  return kId;
}

std::string PackBlob(absl::string_view value) {
  if (value.size() >= kMinPacked && value.size() < kMaxSize) {
    std::string out;
    out.push_back(kMarker);
    out.push_back(kDeflated);
    PutVarint(value.size(), out);
    const size_t header = out.size();
    std::optional<size_t> written = Deflate(value, out);
    if (written.has_value() && header + *written < value.size()) {
      out.resize(header + *written);
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
    if (Inflate(in, out)) return out;
  }
  return absl::DataLossError(
      absl::StrCat("store: ", what,
                   " is damaged (its deflated form cannot "
                   "be read); run `ipsrt store check`"));
}

}  // namespace ipsrt
