#include "store/blob_codec.h"

#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "common/hash.h"
#include "common/validation.h"
#include "ipsrt/status_macros.h"

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
// Compressed by zstd with dictionary 2 (schema 9).
constexpr char kZstd = '\3';
// An event payload without its hash field (StoredEventPayload).
constexpr char kEventWithoutHash = '\2';
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

// Dictionary 2 (blob_dictionary2.inc, frozen), what values are compressed
// with from schema 9 on: a zstd dictionary whose content is dictionary 1's
// bytes, with entropy tables for records like ipsrtd's, which a value of a
// few hundred bytes would otherwise pay for in its own frame.
constexpr char kDictionary2[] =
#include "store/blob_dictionary2.inc"
    ;
constexpr size_t kDictionary2Size = sizeof(kDictionary2) - 1;

// zstd (schema 9; zlib's deflate with dictionary 1 before). zlib has no
// way to load a dictionary once: deflateSetDictionary hashes all of its
// 5 KB into every stream again, which cost more than deflating the value
// (about 17 us per value, three values per SubmitEvent). zstd digests the
// dictionary once into a CDict that every compression refers to. Values
// that are kept (events, request records) are compressed at level 4;
// snapshots, which the next event overwrites, at level 3, about twice as
// fast for about 3 % more bytes (docs/storage.md, "Schema 9"). Level 5,
// the first choice for kept values, took three times level 4's time on
// values of a few hundred bytes (most of it setting up, not compressing)
// for 2 % fewer bytes per event.
constexpr int kKeptLevel = 4;
constexpr int kOverwrittenLevel = 3;
// A zstd frame starts with these 4 bytes (RFC 8878, 3.1.1); the stored form
// leaves them out, and they are put back before decompressing.
constexpr char kZstdMagic[4] = {'\x28', '\xb5', '\x2f', '\xfd'};

// The dictionary, digested once for each level and for decompressing.
const ZSTD_CDict* CompressionDictionary(BlobLifetime lifetime) {
  static const ZSTD_CDict* const kept =
      ZSTD_createCDict(kDictionary2, kDictionary2Size, kKeptLevel);
  static const ZSTD_CDict* const overwritten =
      ZSTD_createCDict(kDictionary2, kDictionary2Size, kOverwrittenLevel);
  return lifetime == BlobLifetime::kKept ? kept : overwritten;
}

const ZSTD_DDict* DecompressionDictionary() {
  static const ZSTD_DDict* const dictionary =
      ZSTD_createDDict(kDictionary2, kDictionary2Size);
  return dictionary;
}

// Contexts are kept per thread and reused: creating one allocates its
// tables, which for values of a few hundred bytes would cost more than the
// compression.
class Compressor {
 public:
  Compressor() : z_(ZSTD_createCCtx()) {
    ok_ =
        z_ != nullptr &&
        // The stored form keeps the size itself. The frame keeps a
        // checksum of the content (4 bytes, as zlib's Adler-32 was), so
        // that a damaged value reads as damaged, never as other bytes:
        // a snapshot has no hash chain of its own.
        !ZSTD_isError(ZSTD_CCtx_setParameter(z_, ZSTD_c_contentSizeFlag, 0)) &&
        !ZSTD_isError(ZSTD_CCtx_setParameter(z_, ZSTD_c_checksumFlag, 1)) &&
        // The stored form's marker names the dictionary.
        !ZSTD_isError(ZSTD_CCtx_setParameter(z_, ZSTD_c_dictIDFlag, 0));
  }
  ~Compressor() { ZSTD_freeCCtx(z_); }
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  // Compress appends the zstd frame of `value` without its magic number
  // to `out`; its size, or nullopt when zstd fails.
  std::optional<size_t> Compress(absl::string_view value, BlobLifetime lifetime,
                                 std::string& out) {
    const ZSTD_CDict* dictionary = CompressionDictionary(lifetime);
    if (!ok_ || dictionary == nullptr ||
        ZSTD_isError(ZSTD_CCtx_refCDict(z_, dictionary))) {
      return std::nullopt;
    }
    const size_t at = out.size();
    out.resize(at + ZSTD_compressBound(value.size()));
    const size_t n = ZSTD_compress2(z_, out.data() + at, out.size() - at,
                                    value.data(), value.size());
    if (ZSTD_isError(n) || n < sizeof(kZstdMagic) ||
        std::memcmp(out.data() + at, kZstdMagic, sizeof(kZstdMagic)) != 0) {
      // A failed call leaves the context in an unknown state: start over.
      ZSTD_CCtx_reset(z_, ZSTD_reset_session_only);
      return std::nullopt;
    }
    out.erase(at, sizeof(kZstdMagic));
    return n - sizeof(kZstdMagic);
  }

 private:
  ZSTD_CCtx* z_;
  bool ok_ = false;
};

class Decompressor {
 public:
  Decompressor() : z_(ZSTD_createDCtx()) {}
  ~Decompressor() { ZSTD_freeDCtx(z_); }
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;

  // Decompress fills `out` (sized to the recorded size) from the frame
  // `in` (without its magic number). False when the frame is damaged or
  // does not decompress to exactly out.size() bytes.
  bool Decompress(absl::string_view in, std::string& out) {
    if (z_ == nullptr || DecompressionDictionary() == nullptr) return false;
    frame_.assign(kZstdMagic, sizeof(kZstdMagic));
    frame_.append(in.data(), in.size());
    const size_t n =
        ZSTD_decompress_usingDDict(z_, out.data(), out.size(), frame_.data(),
                                   frame_.size(), DecompressionDictionary());
    return !ZSTD_isError(n) && n == out.size();
  }

 private:
  ZSTD_DCtx* z_;
  std::string frame_;  // reused: its capacity stays
};

class Inflater {
 public:
  Inflater() { ok_ = inflateInit(&z_) == Z_OK; }
  ~Inflater() {
    if (ok_) inflateEnd(&z_);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Inflate fills `out` (sized to the recorded size) from the zlib stream
  // `in`: a stream deflated with dictionary 1, or without one (values
  // written before the dictionary). False when the stream is damaged, names
  // another dictionary, or does not inflate to exactly out.size() bytes.
  bool Inflate(absl::string_view in, std::string& out) {
    if (!ok_ || inflateReset(&z_) != Z_OK) return false;
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    z_.next_out = reinterpret_cast<Bytef*>(out.data());
    z_.avail_out = static_cast<uInt>(out.size());
    int r = inflate(&z_, Z_FINISH);
    if (r == Z_NEED_DICT && z_.adler == BlobDictionaryId() &&
        inflateSetDictionary(&z_, reinterpret_cast<const Bytef*>(kDictionary1),
                             kDictionary1Size) == Z_OK) {
      r = inflate(&z_, Z_FINISH);
    }
    return r == Z_STREAM_END && z_.total_out == out.size();
  }

 private:
  z_stream z_{};
  bool ok_ = false;
};

std::optional<size_t> Compress(absl::string_view value, BlobLifetime lifetime,
                               std::string& out) {
  thread_local Compressor compressor;
  return compressor.Compress(value, lifetime, out);
}

bool Decompress(absl::string_view in, std::string& out) {
  thread_local Decompressor decompressor;
  return decompressor.Decompress(in, out);
}

bool Inflate(absl::string_view in, std::string& out) {
  thread_local Inflater inflater;
  return inflater.Inflate(in, out);
}

// MaxExpansion bounds the size `compressed` bytes of the given form can
// decompress to, so that a damaged recorded size is refused before memory
// is allocated for it: deflate expands at most 1032:1 (a 258-byte match in
// the shortest code); a zstd block takes at least 3 bytes (its header) and
// holds at most 128 KiB.
uint64_t MaxExpansion(char form, size_t compressed) {
  if (form == kDeflated) return uint64_t{1032} * compressed + 1024;
  return (uint64_t{compressed} / 3 + 1) * ZSTD_BLOCKSIZE_MAX;
}

}  // namespace

absl::string_view BlobDictionary() {
  return absl::string_view(kDictionary1, kDictionary1Size);
}

absl::string_view BlobZstdDictionary() {
  return absl::string_view(kDictionary2, kDictionary2Size);
}

uint32_t BlobDictionaryId() {
  static const uint32_t kId = static_cast<uint32_t>(
      adler32(adler32(0, nullptr, 0),
              reinterpret_cast<const Bytef*>(kDictionary1), kDictionary1Size));
  return kId;
}

std::string PackBlob(absl::string_view value, BlobLifetime lifetime) {
  if (value.size() >= kMinPacked && value.size() < kMaxSize) {
    std::string out;
    out.push_back(kMarker);
    out.push_back(kZstd);
    PutVarint(value.size(), out);
    const size_t header = out.size();
    std::optional<size_t> written = Compress(value, lifetime, out);
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
  if (stored.size() >= 2 && (stored[1] == kDeflated || stored[1] == kZstd) &&
      GetVarint(in, size) && size < kMaxSize &&
      size <= MaxExpansion(stored[1], in.size())) {
    std::string out(size, '\0');
    if (stored[1] == kZstd ? Decompress(in, out) : Inflate(in, out)) {
      return out;
    }
  }
  return absl::DataLossError(
      absl::StrCat("store: ", what,
                   " is damaged (its deflated form cannot "
                   "be read); run `ipsrt store check`"));
}

namespace {

constexpr size_t kDigestBytes = 32;

bool IsHexDigest(absl::string_view v) {
  if (v.size() != 2 * kDigestBytes) return false;
  for (char ch : v) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string StoredDigest(absl::string_view hex) {
  if (!IsHexDigest(hex)) return std::string(hex);
  return absl::HexStringToBytes(hex);
}

absl::Status CheckDigest(absl::string_view value, absl::string_view what) {
  if (value.size() == kDigestBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("store: ", what,
                     " must be a SHA-256 digest in lowercase hex (64 "
                     "digits), or not 32 bytes long"));
  }
  return absl::OkStatus();
}

std::string DigestFromStored(absl::string_view stored) {
  if (stored.size() != kDigestBytes) return std::string(stored);
  return absl::BytesToHexString(stored);
}

constexpr size_t kRequestHashBytes = 16;

std::string StoredRequestHash(absl::string_view hex) {
  if (!IsHexDigest(hex)) return std::string(hex);
  return absl::HexStringToBytes(hex.substr(0, 2 * kRequestHashBytes));
}

std::string RequestHashFromStored(absl::string_view stored) {
  if (stored.size() != kRequestHashBytes && stored.size() != kDigestBytes) {
    return std::string(stored);
  }
  return absl::BytesToHexString(stored);
}

absl::Status CheckRequestHash(absl::string_view value) {
  if (value.size() == kRequestHashBytes || value.size() == kDigestBytes) {
    return absl::InvalidArgumentError(
        "store: a request's payload hash must be a SHA-256 digest in "
        "lowercase hex (64 digits), or neither 16 nor 32 bytes long");
  }
  return absl::OkStatus();
}

absl::StatusOr<OutboxKeyParts> ParseOutboxKey(absl::string_view key) {
  // The enrollment's name is the key's first four segments.
  std::vector<absl::string_view> parts =
      absl::StrSplit(key, absl::MaxSplits('/', 4));
  absl::StatusOr<EnrollmentName> name =
      parts.size() == 5
          ? ParseEnrollmentName(
                "outbox idempotency key",
                absl::StrJoin(parts.begin(), parts.begin() + 4, "/"))
          : absl::InvalidArgumentError("");
  if (!name.ok() || parts[4].empty()) {
    return absl::InvalidArgumentError(
        "store: an outbox idempotency key must be an enrollment's name, "
        "\"/\", then a key within the enrollment");
  }
  return OutboxKeyParts{std::move(name->tenant), std::move(name->id),
                        std::string(parts[4])};
}

absl::StatusOr<std::string> StoredOutboxKey(absl::string_view tenant,
                                            absl::string_view enrollment_id,
                                            absl::string_view key) {
  absl::StatusOr<OutboxKeyParts> parts = ParseOutboxKey(key);
  if (!parts.ok()) return parts.status();
  if (parts->tenant != tenant || parts->enrollment_id != enrollment_id) {
    return absl::InvalidArgumentError(
        "store: an outbox row's idempotency key must be under its own "
        "enrollment's name");
  }
  return std::move(parts->stored);
}

std::string OutboxKeyDigest(absl::string_view tenant,
                            absl::string_view enrollment_id,
                            absl::string_view stored, size_t prefix_bytes) {
  constexpr size_t kHashBytes = 10;
  return absl::StrCat(
      enrollment_id.substr(0, prefix_bytes),
      absl::HexStringToBytes(
          Sha256Hex(absl::StrCat(tenant, "\n", enrollment_id, "\n", stored)))
          .substr(0, kHashBytes));
}

std::string OutboxKeyFromStored(absl::string_view tenant,
                                absl::string_view enrollment_id,
                                absl::string_view stored) {
  return absl::StrCat(
      EnrollmentName{std::string(tenant), std::string(enrollment_id)}.Format(),
      "/", stored);
}

namespace {

constexpr uint32_t kEventHashField = 8;

// Fields is where each top-level field of a serialized message starts and
// ends, or nothing when the bytes are not a message's wire form (groups,
// which events do not use, count as not).
struct WireField {
  uint32_t number;
  size_t begin, end;  // [begin, end) of tag and value
  size_t value_begin;
};
std::optional<std::vector<WireField>> Fields(absl::string_view message) {
  std::vector<WireField> fields;
  absl::string_view in = message;
  while (!in.empty()) {
    const size_t begin = message.size() - in.size();
    uint64_t tag = 0;
    if (!GetVarint(in, tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) {
      return std::nullopt;
    }
    const size_t value_begin = message.size() - in.size();
    uint64_t n = 0;
    switch (tag & 7) {
      case 0:
        if (!GetVarint(in, n)) return std::nullopt;
        break;
      case 1:
      case 5: {
        const size_t width = (tag & 7) == 1 ? 8 : 4;
        if (in.size() < width) return std::nullopt;
        in.remove_prefix(width);
        break;
      }
      case 2:
        if (!GetVarint(in, n) || n > in.size()) return std::nullopt;
        in.remove_prefix(n);
        break;
      default:
        return std::nullopt;
    }
    fields.push_back(WireField{static_cast<uint32_t>(tag >> 3), begin,
                               message.size() - in.size(), value_begin});
  }
  return fields;
}

// WithHashField is `message` (without field 8) with `hash` as field 8
// before its first field numbered above 8; nothing when it is not a
// message's wire form or already has field 8.
std::optional<std::string> WithHashField(absl::string_view message,
                                         absl::string_view hash) {
  std::optional<std::vector<WireField>> fields = Fields(message);
  if (!fields.has_value()) return std::nullopt;
  size_t at = message.size();
  for (const WireField& f : *fields) {
    if (f.number == kEventHashField) return std::nullopt;
    if (f.number > kEventHashField && at == message.size()) at = f.begin;
  }
  std::string out;
  out.reserve(message.size() + hash.size() + 3);
  out.append(message.data(), at);
  out.push_back(static_cast<char>(kEventHashField << 3 | 2));
  PutVarint(hash.size(), out);
  out.append(hash.data(), hash.size());
  out.append(message.data() + at, message.size() - at);
  return out;
}

}  // namespace

std::string StoredEventPayload(absl::string_view payload,
                               absl::string_view hash) {
  std::optional<std::vector<WireField>> fields = Fields(payload);
  const WireField* hash_field = nullptr;
  if (fields.has_value() && !hash.empty()) {
    for (const WireField& f : *fields) {
      if (f.number != kEventHashField) continue;
      if (hash_field != nullptr) return PackBlob(payload);  // twice
      hash_field = &f;
    }
  }
  std::string value;
  PutVarint(hash.size(), value);
  value.append(hash.data(), hash.size());
  if (hash_field == nullptr ||
      payload.substr(hash_field->value_begin,
                     hash_field->end - hash_field->value_begin) != value) {
    return PackBlob(payload);
  }
  std::string without = absl::StrCat(payload.substr(0, hash_field->begin),
                                     payload.substr(hash_field->end));
  std::optional<std::string> again = WithHashField(without, hash);
  if (!again.has_value() || *again != payload) return PackBlob(payload);
  std::string out;
  out.push_back(kMarker);
  out.push_back(kEventWithoutHash);
  out.append(PackBlob(without));
  return out;
}

absl::StatusOr<std::string> EventPayloadFromStored(absl::string_view stored,
                                                   absl::string_view hash) {
  if (stored.size() < 2 || stored[0] != kMarker ||
      stored[1] != kEventWithoutHash) {
    return UnpackBlob(stored, "an event payload");
  }
  IPSRT_ASSIGN_OR_RETURN(std::string without,
                         UnpackBlob(stored.substr(2), "an event payload"));
  std::optional<std::string> payload = WithHashField(without, hash);
  if (!payload.has_value()) {
    return absl::DataLossError(
        "store: an event payload is damaged (it cannot take its hash back); "
        "run `ipsrt store check`");
  }
  return *std::move(payload);
}

namespace {

constexpr char kApiPrefix[] = "/ipsrt.v1.";
constexpr char kWhole = '=';
constexpr char kCoded = '/';

// A stored form from schema 8 on may start with "/" and a letter standing
// for the commonest next part: the API's services in an rpc, the
// enrollments collection in a resource. Forms of schemas 6 and 7 never
// start with "/" (Shortened kept such values whole behind "="), so their
// rows read as before. Codes are never reused or changed.
struct PrefixCode {
  char code;
  const char* part;
};
constexpr PrefixCode kRpcCodes[] = {
    {'a', "AuditService/"},      {'d', "DiagnosticsService/"},
    {'e', "EnrollmentService/"}, {'x', "ExportService/"},
    {'p', "PluginService/"},     {'q', "QuestionnaireService/"},
    {'m', "ReminderService/"},   {'r', "ReportService/"},
    {'s', "StoreService/"},      {'w', "WorkflowService/"},
};
constexpr PrefixCode kResourceCodes[] = {{'e', "enrollments/"}};

// Coded is the stored form of `c`'s code; CodeIn is the entry of `codes`
// whose code `stored` starts with ("/" and the letter), or null.
std::string Coded(const PrefixCode& c) { return {kCoded, c.code}; }
const PrefixCode* CodeIn(absl::Span<const PrefixCode> codes,
                         absl::string_view stored) {
  if (stored.size() < 2 || stored.front() != kCoded) return nullptr;
  for (const PrefixCode& c : codes) {
    if (stored[1] == c.code) return &c;
  }
  return nullptr;
}

// Shortened is `value` without `prefix` (and with a coded next part) when
// the rest can stand for it (it is not mistaken for a whole or coded value
// on reading), else the whole value marked.
std::string Shortened(absl::string_view value, absl::string_view prefix,
                      absl::Span<const PrefixCode> codes) {
  if (!prefix.empty() && absl::StartsWith(value, prefix)) {
    absl::string_view rest = value.substr(prefix.size());
    if (rest.empty()) return std::string();
    if (rest.front() != kWhole && rest.front() != kCoded) {
      for (const PrefixCode& c : codes) {
        if (absl::StartsWith(rest, c.part)) {
          return absl::StrCat(Coded(c), rest.substr(std::strlen(c.part)));
        }
      }
      return std::string(rest);
    }
  }
  return absl::StrCat(absl::string_view(&kWhole, 1), value);
}

std::string Lengthened(absl::string_view stored, absl::string_view prefix,
                       absl::Span<const PrefixCode> codes) {
  if (!stored.empty() && stored.front() == kWhole) {
    return std::string(stored.substr(1));
  }
  if (const PrefixCode* c = CodeIn(codes, stored)) {
    return absl::StrCat(prefix, c->part, stored.substr(2));
  }
  // Not a form this store writes (a damaged row): as it is, which its
  // record's hash then refuses.
  return absl::StrCat(prefix, stored);
}

std::string TenantPrefix(absl::string_view tenant) {
  return tenant.empty() ? std::string() : absl::StrCat("tenants/", tenant, "/");
}

}  // namespace

std::string StoredAuditRpc(absl::string_view rpc) {
  return Shortened(rpc, kApiPrefix, kRpcCodes);
}

std::string StoredAuditRpcBeforeSchema8(absl::string_view rpc) {
  return Shortened(rpc, kApiPrefix, {});
}

std::string AuditRpcFromStored(absl::string_view stored) {
  return Lengthened(stored, kApiPrefix, kRpcCodes);
}

// The methods that write request records, by their code; the rest are
// kept as they are.
constexpr PrefixCode kMethodCodes[] = {
    {'c', "CreateEnrollment"},   {'s', "SubmitEvent"},
    {'a', "AckReminder"},        {'u', "UpdateEnrollment"},
    {'m', "MigrateEnrollments"}, {'p', "PushEnrollment"},
};

std::string StoredRequestMethod(absl::string_view method) {
  for (const PrefixCode& c : kMethodCodes) {
    if (method == c.part) return Coded(c);
  }
  if (!method.empty() &&
      (method.front() == kWhole || method.front() == kCoded)) {
    return absl::StrCat(absl::string_view(&kWhole, 1), method);
  }
  return std::string(method);
}

std::string RequestMethodFromStored(absl::string_view stored) {
  if (!stored.empty() && stored.front() == kWhole) {
    return std::string(stored.substr(1));
  }
  const PrefixCode* c =
      stored.size() == 2 ? CodeIn(kMethodCodes, stored) : nullptr;
  return c != nullptr ? std::string(c->part) : std::string(stored);
}

std::string StoredAuditResource(absl::string_view tenant,
                                absl::string_view resource) {
  return Shortened(resource, TenantPrefix(tenant), kResourceCodes);
}

std::string AuditResourceFromStored(absl::string_view tenant,
                                    absl::string_view stored) {
  return Lengthened(stored, TenantPrefix(tenant), kResourceCodes);
}

}  // namespace ipsrt
