// The audit trail's hash chain.
//
// Record n's hash is SHA-256 over record n-1's hash and the canonical bytes
// of record n (every field but the hashes, seq included, each as
// "<decimal length>:<bytes>"), in lowercase hex; the first record's
// prev_hash is "". Changing, deleting, inserting or swapping a record
// therefore breaks the chain at that record or at its successor. Deleting
// the newest records is not visible in the chain itself: compare the head
// (seq and hash, VerifyAuditChain's answer) with one kept elsewhere.
#ifndef IPSRT_STORE_AUDIT_CHAIN_H_
#define IPSRT_STORE_AUDIT_CHAIN_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "ipsrt/store.h"

namespace ipsrt {

// AuditRecordHash is the hash `record` must carry given its prev_hash.
std::string AuditRecordHash(const AuditRecord& record);

// AuditChainVerifier checks records fed in seq order, from seq 1.
class AuditChainVerifier {
 public:
  struct Break {
    // The first record that does not fit the chain (for a missing record:
    // the seq that should have come next).
    int64_t seq = 0;
    std::string reason;
  };

  // Feed checks the next record; returns the first break (and keeps
  // returning it afterwards).
  std::optional<Break> Feed(const AuditRecord& record);

  int64_t records() const { return records_; }
  // Seq and hash of the last record that verified.
  int64_t head_seq() const { return expected_seq_ - 1; }
  const std::string& head_hash() const { return prev_hash_; }
  const std::optional<Break>& first_break() const { return break_; }

 private:
  int64_t expected_seq_ = 1;
  int64_t records_ = 0;
  std::string prev_hash_;
  std::optional<Break> break_;
};

// The outcome of verifying a store's whole audit trail.
struct AuditVerification {
  bool intact = true;
  int64_t records_verified = 0;
  int64_t head_seq = 0;
  std::string head_hash;
  // When not intact.
  int64_t broken_seq = 0;
  std::string reason;
};

// VerifyAuditTrail reads every record of `store` in seq order and checks
// the chain. Errors are the store's (reading), never a broken chain.
absl::StatusOr<AuditVerification> VerifyAuditTrail(Store& store);

}  // namespace ipsrt

#endif  // IPSRT_STORE_AUDIT_CHAIN_H_
