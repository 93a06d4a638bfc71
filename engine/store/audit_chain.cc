#include "store/audit_chain.h"

#include "absl/strings/str_cat.h"
#include "common/hash.h"

namespace ipsrt {
namespace {

void Field(std::string& out, absl::string_view value) {
  absl::StrAppend(&out, value.size(), ":", value);
}

}  // namespace

std::string AuditRecordHash(const AuditRecord& r) {
  std::string canonical;
  Field(canonical, absl::StrCat(r.seq));
  Field(canonical, r.tenant);
  Field(canonical, r.subject);
  Field(canonical, r.role);
  Field(canonical, r.rpc);
  Field(canonical, r.resource);
  Field(canonical, r.outcome);
  Field(canonical, absl::StrCat(absl::ToUnixMicros(r.time)));
  Field(canonical, r.request_id);
  return Sha256Hex(absl::StrCat(r.prev_hash, canonical));
}

std::optional<AuditChainVerifier::Break> AuditChainVerifier::Feed(
    const AuditRecord& r) {
  if (break_.has_value()) return break_;
  if (r.seq > expected_seq_) {
    break_ = Break{
        expected_seq_,
        absl::StrCat("record ", expected_seq_,
                     " is missing (deleted): the next record is ", r.seq)};
  } else if (r.seq < expected_seq_) {
    break_ = Break{r.seq, absl::StrCat("record ", r.seq, " appears after ",
                                       expected_seq_ - 1, " (reordered)")};
  } else if (r.prev_hash != prev_hash_) {
    break_ =
        Break{r.seq, absl::StrCat("record ", r.seq,
                                  " does not link to the record before it "
                                  "(prev_hash differs: a record before it was "
                                  "deleted, replaced or reordered)")};
  } else if (AuditRecordHash(r) != r.hash) {
    break_ = Break{r.seq, absl::StrCat("record ", r.seq,
                                       " does not match its hash (modified "
                                       "or moved, or the record before it "
                                       "was replaced)")};
  }
  if (break_.has_value()) return break_;
  ++records_;
  ++expected_seq_;
  prev_hash_ = r.hash;
  return std::nullopt;
}

absl::StatusOr<AuditVerification> VerifyAuditTrail(Store& store) {
  AuditChainVerifier verifier;
  int64_t after = 0;
  constexpr int kPage = 1000;
  while (!verifier.first_break().has_value()) {
    absl::StatusOr<std::vector<AuditRecord>> page =
        store.ListAudit(AuditFilter{}, after, kPage);
    if (!page.ok()) return page.status();
    for (const AuditRecord& r : *page) {
      if (verifier.Feed(r).has_value()) break;
      after = r.seq;
    }
    if (static_cast<int>(page->size()) < kPage) break;
  }
  AuditVerification v;
  v.records_verified = verifier.records();
  v.head_seq = verifier.head_seq();
  v.head_hash = verifier.head_hash();
  if (verifier.first_break().has_value()) {
    v.intact = false;
    v.broken_seq = verifier.first_break()->seq;
    v.reason = verifier.first_break()->reason;
  }
  return v;
}

}  // namespace ipsrt
