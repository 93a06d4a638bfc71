#include "core/event_chain.h"

#include "absl/strings/str_cat.h"
#include "core/enrollments.h"
#include "google/protobuf/util/time_util.h"

namespace ipsrt {

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
  } else if (e.hash() != row.hash || EventHash(row.prev_hash, e) != row.hash) {
    break_ = Break{row.sequence, absl::StrCat("event ", row.sequence,
                                              " does not match its hash (its "
                                              "payload was modified)")};
  } else if (e.sequence() != row.sequence || e.type() != row.type ||
             e.request_id() != row.request_id ||
             google::protobuf::util::TimeUtil::TimestampToMicroseconds(
                 e.record_time()) != absl::ToUnixMicros(row.record_time)) {
    break_ = Break{row.sequence,
                   absl::StrCat("event ", row.sequence,
                                " differs from its row's sequence, type, "
                                "request id or record time (the row was "
                                "modified or moved)")};
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
