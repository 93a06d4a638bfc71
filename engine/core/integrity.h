// Integrity verification of a whole store, and anchored heads.
//
// VerifyStore walks every tenant's enrollments and checks each one's event
// chain (core/event_chain.h) against its stored revision and snapshot head,
// and the audit trail's chain (store/audit_chain.h). It finds edited,
// deleted, inserted and reordered rows; it cannot find a store whose newest
// rows were deleted together with the snapshot's head, or whose chains were
// recomputed after an edit: the chains then hold. For those, an anchor
// records the heads outside the database under a keyed HMAC-SHA256
// (AnchorText), written periodically by ipsrtd (AnchorWriter), and
// CheckAnchor compares the store with it: every anchored head must still be
// in the store, at its sequence, with its hash.
//
// Anchor file (text, one record a line, fields separated by one space;
// tenant and enrollment ids never contain spaces):
//   ipsrt-anchor 1
//   time 2026-03-01T10:00:00Z
//   audit <seq> <hash>
//   events <count>
//   event <tenant> <enrollment id> <sequence> <hash>     (sorted)
//   hmac-sha256 <64 hex digits over every byte before this line>
#ifndef IPSRT_CORE_INTEGRITY_H_
#define IPSRT_CORE_INTEGRITY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "ipsrt/clock.h"
#include "ipsrt/config.h"
#include "ipsrt/store.h"
#include "ipsrt/v1/audit.pb.h"
#include "store/audit_chain.h"

namespace ipsrt {

// The last event of one enrollment's chain.
struct EventHead {
  std::string tenant;
  std::string enrollment_id;
  int64_t sequence = 0;
  std::string hash;
};

// One finding: the first broken record of a chain and why.
struct IntegrityProblem {
  // "tenants/t/enrollments/e", "audit" or "anchor".
  std::string record;
  // The first broken sequence (event sequence or audit seq); 0 when none.
  int64_t sequence = 0;
  std::string reason;
};

struct IntegrityProgress {
  int64_t tenants_done = 0;
  int64_t tenants_total = 0;
  int64_t enrollments_verified = 0;
  int64_t events_verified = 0;
};

struct IntegrityReport {
  int64_t tenants = 0;
  int64_t enrollments_verified = 0;
  int64_t events_verified = 0;
  AuditVerification audit;
  // Head of every enrollment's verified chain, sorted by (tenant, id).
  std::vector<EventHead> heads;
  // At most kMaxProblems, the first one per enrollment.
  std::vector<IntegrityProblem> problems;
  int64_t problems_total = 0;
  bool intact() const { return problems_total == 0; }
};

inline constexpr int kMaxIntegrityProblems = 100;

struct VerifyStoreOptions {
  // Called after each tenant and every 100 enrollments.
  std::function<void(const IntegrityProgress&)> on_progress;
  // Polled between enrollments; true stops with CANCELLED.
  std::function<bool()> cancelled;
};

// VerifyStore checks every enrollment's events and the audit trail. Broken
// chains are findings in the report; errors are the store's (reading) or
// CANCELLED.
absl::StatusOr<IntegrityReport> VerifyStore(
    Store& store, const VerifyStoreOptions& options = {});

// ReportProto is the final VerifyStoreProgress message of `report`.
v1::VerifyStoreProgress ReportProto(const IntegrityReport& report,
                                    bool anchor_checked);

// The heads an anchor records.
struct Anchor {
  absl::Time time;
  int64_t audit_seq = 0;
  std::string audit_hash;
  std::vector<EventHead> events;  // sorted by (tenant, id)
};

// ReadAnchorKey reads an HMAC key file: its bytes with surrounding
// whitespace removed, at least 32. FAILED_PRECONDITION naming the file.
absl::StatusOr<std::string> ReadAnchorKey(const std::string& path);

// AnchorText is the anchor file's content, sealed with `key`.
std::string AnchorText(const Anchor& anchor, absl::string_view key);

// ParseAnchor reads an anchor file's content and checks its HMAC with
// `key`. DATA_LOSS when the HMAC does not match (edited file or another
// key) or the text is not an anchor, naming the line.
absl::StatusOr<Anchor> ParseAnchor(absl::string_view text,
                                   absl::string_view key);

// WriteAnchorFile replaces `path` atomically (a 0600 temporary file beside
// it, synced, renamed over it, the directory synced).
absl::Status WriteAnchorFile(const std::string& path, absl::string_view text);

// CurrentHeads reads the store's heads without verifying the chains: each
// enrollment's revision and the hash of that event, and the audit head.
// `audit_after` (optional) caches the audit head between calls so later
// calls read only new audit records.
absl::StatusOr<Anchor> CurrentHeads(Store& store, absl::Time now,
                                    Anchor* previous = nullptr);

// CheckAnchor adds to `report` (from VerifyStore of the same store) a
// problem for every anchored head the store no longer has: an enrollment
// gone, a chain shorter than anchored (newest events deleted), or another
// hash at the anchored sequence (the chain was rewritten and recomputed at
// or before it); likewise for the audit head.
absl::Status CheckAnchor(Store& store, const Anchor& anchor,
                         IntegrityReport& report);

// AnchorWriter writes the store's heads to a file every `interval`, on its
// own thread once started. Each anchor must extend the previous one (the
// file it found at start, then its own last): when a previously anchored
// head is gone or rewritten, it keeps the old file, logs the first finding
// (record names and sequences only) and reports DATA_LOSS.
class AnchorWriter {
 public:
  struct Options {
    std::string path;
    std::string key;
    absl::Duration interval = absl::Minutes(5);
  };
  // `previous`: the anchor file's content at start, if there was one.
  AnchorWriter(Store* store, const Clock* clock, Options options,
               std::optional<Anchor> previous);
  // Once started: stops the thread and writes a last anchor.
  ~AnchorWriter();

  // WriteNow checks the heads extend the previous anchor and writes a new
  // one; DATA_LOSS naming the first broken record when they do not.
  absl::Status WriteNow();
  // Start writes every interval until destroyed.
  void Start();

 private:
  void Run();

  Store* store_;
  const Clock* clock_;
  Options options_;
  absl::Mutex mu_;
  std::optional<Anchor> previous_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

// StartIntegrity runs the `integrity:` section's start-up part: with
// verify_on_start, VerifyStore, and FAILED_PRECONDITION listing the first
// broken records when a chain does not hold; then the anchor's options
// (key read from its file), or nullopt when no anchor is configured.
absl::StatusOr<std::optional<AnchorWriter::Options>> StartIntegrity(
    const IntegrityConfig& config, Store& store);

// StartAnchorWriter reads the existing anchor file (if any, checking its
// HMAC), writes a first anchor that must extend it, and starts the writer.
// FAILED_PRECONDITION when the file does not verify or the store no longer
// has a head it anchored.
absl::StatusOr<std::unique_ptr<AnchorWriter>> StartAnchorWriter(
    const AnchorWriter::Options& options, Store* store, const Clock* clock);

}  // namespace ipsrt

#endif  // IPSRT_CORE_INTEGRITY_H_
