#include "store/blob_codec.h"

#include <zlib.h>

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

// Streams are kept per thread and reset between values: initialising a
// deflate stream allocates about 256 KB, which for values of a few hundred
// bytes cost more than the deflating itself (malloc and page faults).
class Deflater {
 public:
  // Level 6 (schema 8; level 1 before): on the records ipsrtd writes, a
  // few hundred bytes each, about 4 % smaller, for a few microseconds.
  Deflater() { ok_ = deflateInit(&z_, Z_DEFAULT_COMPRESSION) == Z_OK; }
  ~Deflater() {
    if (ok_) deflateEnd(&z_);
  }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  // Deflate appends the zlib stream of `value`, deflated with the preset
  // dictionary, to `out`; its size, or nullopt when zlib fails.
  std::optional<size_t> Deflate(absl::string_view value, std::string& out) {
    if (!ok_ || deflateReset(&z_) != Z_OK) return std::nullopt;
    const size_t header = out.size();
    const uLong bound = deflateBound(&z_, static_cast<uLong>(value.size()));
    out.resize(header + bound);
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(value.data()));
    z_.avail_in = static_cast<uInt>(value.size());
    z_.next_out = reinterpret_cast<Bytef*>(out.data() + header);
    z_.avail_out = static_cast<uInt>(bound);
    if (deflateSetDictionary(&z_, reinterpret_cast<const Bytef*>(kDictionary1),
                             kDictionary1Size) != Z_OK ||
        deflate(&z_, Z_FINISH) != Z_STREAM_END) {
      return std::nullopt;
    }
    return z_.total_out;
  }

 private:
  z_stream z_{};
  bool ok_ = false;
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

std::optional<size_t> Deflate(absl::string_view value, std::string& out) {
  thread_local Deflater deflater;
  return deflater.Deflate(value, out);
}

bool Inflate(absl::string_view in, std::string& out) {
  thread_local Inflater inflater;
  return inflater.Inflate(in, out);
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
                            absl::string_view stored) {
  constexpr size_t kPrefixBytes = 6;
  constexpr size_t kHashBytes = 10;
  return absl::StrCat(
      enrollment_id.substr(0, kPrefixBytes),
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
