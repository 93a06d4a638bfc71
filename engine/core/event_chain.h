// EventChainVerifier: checks one enrollment's stored events against the
// hash chain the engine sealed them with (EventHash in enrollments.h).
//
// Event n's hash is SHA-256 over event n-1's hash and event n's
// deterministic serialization without its hash; the stored row keeps the
// payload (the serialized event, hash included), prev_hash and hash, and
// copies of the event's sequence, type, request id and record time.
// Editing a payload byte, deleting, inserting or reordering rows breaks the
// chain at that event or its successor; deleting the newest events or
// recomputing every hash after an edit does not, and is caught only against
// a head kept elsewhere (the snapshot's last_event_hash, an anchor file).
//
// Example:
//   EventChainVerifier chain("tenants/t/enrollments/e");
//   for (const EventRow& row : rows) {
//     v1::Event event;
//     if (auto broken = chain.Feed(row, &event)) return chain.Error();
//   }
#ifndef IPSRT_CORE_EVENT_CHAIN_H_
#define IPSRT_CORE_EVENT_CHAIN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "ipsrt/store.h"
#include "ipsrt/v1/enrollment.pb.h"

namespace ipsrt {

class EventChainVerifier {
 public:
  struct Break {
    // The first event that does not fit (for a missing event: the sequence
    // that should have come next).
    int64_t sequence = 0;
    std::string reason;
  };

  // `enrollment` names the enrollment in reasons
  // ("tenants/t/enrollments/e"); never patient data.
  explicit EventChainVerifier(std::string enrollment)
      : enrollment_(std::move(enrollment)) {}

  // Feed checks the next stored row (rows fed in sequence order from 1) and
  // parses it into `event` when not null. Returns the first break, and
  // keeps returning it afterwards.
  std::optional<Break> Feed(const EventRow& row, v1::Event* event = nullptr);

  // ExpectHead checks that the chain ends at `sequence` with `hash` (the
  // enrollment's revision and its snapshot's last_event_hash): a shorter
  // chain lost its newest events, a different hash was rewritten.
  std::optional<Break> ExpectHead(int64_t sequence, const std::string& hash);

  int64_t events() const { return head_sequence_; }
  int64_t head_sequence() const { return head_sequence_; }
  const std::string& head_hash() const { return head_hash_; }
  const std::optional<Break>& first_break() const { return break_; }

  // Error is DATA_LOSS naming the enrollment, the first broken sequence and
  // why; OK while the chain holds.
  absl::Status Error() const;

 private:
  std::string enrollment_;
  int64_t head_sequence_ = 0;
  std::string head_hash_;
  std::optional<Break> break_;
};

}  // namespace ipsrt

#endif  // IPSRT_CORE_EVENT_CHAIN_H_
