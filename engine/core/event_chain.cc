#include "core/event_chain.h"

#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "core/enrollments.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/util/time_util.h"
#include "google/protobuf/wire_format_lite.h"

namespace ipsrt {
namespace {

// WithoutHashField is a stored payload (the event's deterministic bytes)
// without its `hash` field, i.e. the bytes EventHash hashed: fields are
// written in number order, so dropping field 8 from the stored bytes gives
// them without serializing again. nullopt for bytes that are not a message.
// Hashing these raw bytes is as strong as hashing a re-serialization: equal
// bytes parse to an equal event.
std::optional<std::string> WithoutHashField(const std::string& payload) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(payload.data()),
      static_cast<int>(payload.size()));
  std::string out;
  out.reserve(payload.size());
  int start = 0;
  while (true) {
    uint32_t tag = in.ReadTag();
    if (tag == 0) break;
    if (!WireFormatLite::SkipField(&in, tag)) return std::nullopt;
    int end = in.CurrentPosition();
    if (WireFormatLite::GetTagFieldNumber(tag) != v1::Event::kHashFieldNumber) {
      out.append(payload, start, end - start);
    }
    start = end;
  }
  if (start != static_cast<int>(payload.size())) return std::nullopt;
  return out;
}

// HashMatches checks the row's hash: first over the stored bytes without
// the hash field (no re-serialization), then, should those bytes not be
// the deterministic form, over the parsed event serialized again.
bool HashMatches(const EventRow& row, const v1::Event& event) {
  std::optional<std::string> hashed = WithoutHashField(row.payload);
  if (hashed.has_value() &&
      Sha256Hex(absl::StrCat(row.prev_hash, "\n", *hashed)) == row.hash) {
    return true;
  }
  return EventHash(row.prev_hash, event) == row.hash;
}

}  // namespace

std::optional<EventChainVerifier::Break> EventChainVerifier::Feed(
    const EventRow& row, v1::Event* event) {
  if (break_.has_value()) return break_;
  const int64_t expected = head_sequence_ + 1;
  v1::Event parsed;
  v1::Event& e = event != nullptr ? *event : parsed;
  if (row.sequence > expected) {
    break_ = Break{expected, absl::StrCat("event ", expected,
                                          " is missing (deleted): the next "
                                          "stored event is ",
                                          row.sequence)};
  } else if (row.sequence < expected) {
    break_ = Break{row.sequence,
                   absl::StrCat("event ", row.sequence, " appears after ",
                                head_sequence_, " (reordered or duplicated)")};
  } else if (row.prev_hash != head_hash_) {
    break_ = Break{row.sequence,
                   absl::StrCat("event ", row.sequence,
                                " does not link to the event before it "
                                "(prev_hash differs: an event before it was "
                                "deleted, replaced or reordered)")};
  } else if (!e.ParseFromString(row.payload)) {
    break_ = Break{row.sequence, absl::StrCat("event ", row.sequence,
                                              " cannot be parsed (its payload "
                                              "was modified)")};
  } else if (e.sequence() != row.sequence) {
    break_ = Break{
        row.sequence,
        absl::StrCat("event ", row.sequence, " holds the event recorded as ",
                     e.sequence(), " (rows were moved or reordered)")};
  } else if (e.hash() != row.hash || !HashMatches(row, e)) {
    // The hash covers the one before it (rows keep no prev_hash from
    // schema 6 on), so a replaced predecessor shows here too.
    break_ = Break{row.sequence, absl::StrCat("event ", row.sequence,
                                              " does not match its hash (its "
                                              "payload was modified)")};
  }
  if (break_.has_value()) return break_;
  head_sequence_ = row.sequence;
  head_hash_ = row.hash;
  return std::nullopt;
}

std::optional<EventChainVerifier::Break> EventChainVerifier::ExpectHead(
    int64_t sequence, const std::string& hash) {
  if (break_.has_value()) return break_;
  if (head_sequence_ < sequence) {
    break_ = Break{
        head_sequence_ + 1,
        absl::StrCat("event ", head_sequence_ + 1,
                     " is missing (deleted): the enrollment is at "
                     "revision ",
                     sequence, " but its events end at ", head_sequence_)};
  } else if (head_sequence_ > sequence) {
    break_ = Break{sequence + 1,
                   absl::StrCat("event ", sequence + 1,
                                " is beyond the enrollment's revision ",
                                sequence, " (inserted)")};
  } else if (head_hash_ != hash) {
    break_ = Break{sequence,
                   absl::StrCat("event ", sequence,
                                " is not the head the enrollment's snapshot "
                                "recorded (the chain was rewritten)")};
  }
  return break_;
}

absl::Status EventChainVerifier::Error() const {
  if (!break_.has_value()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat("store: ", enrollment_, ": event chain broken at sequence ",
                   break_->sequence, ": ", break_->reason));
}

}  // namespace ipsrt
