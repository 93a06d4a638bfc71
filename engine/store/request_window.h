// The idempotency window: how long a request's first response is kept, and
// how a retry that comes after it is refused (both stores).
//
// A request id's record, when pruned, leaves the id's key (RequestKey) in
// the same transaction, and the key outlives it; a request whose record is
// gone but whose key is known was applied before, and is refused
// ALREADY_EXISTS (ExpiredRequestError) instead of being applied a second
// time. While the record is kept, the record itself answers, so the key is
// not written before (from schema 7's release on; keys written earlier stay
// and do no harm).
#ifndef IPSRT_STORE_REQUEST_WINDOW_H_
#define IPSRT_STORE_REQUEST_WINDOW_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ipsrt {

// RequestKey is the first 8 bytes of SHA-256(tenant "\n" request_id) as a
// big-endian signed integer (PostgreSQL computes the same in migration 4).
// Two request ids share a key with a chance of about n / 2^64 among n ids.
int64_t RequestKey(absl::string_view tenant, absl::string_view request_id);

// ExpiredRequestError is the refusal of a request id whose record was
// pruned after `retention`.
absl::Status ExpiredRequestError(absl::string_view request_id,
                                 absl::Duration retention);

// PruneBefore is the create time before which records may be deleted when
// a request is committed at `now`; InfinitePast when records are kept for
// ever (retention zero or infinite).
absl::Time PruneBefore(absl::Time now, absl::Duration retention);

// Test hook for the interrupted-migration tests: when the environment
// variable IPSRT_TEST_PAUSE_MIGRATION is "VERSION:FILE", PauseInMigration
// (called inside migration VERSION's transaction, after its statements and
// before its commit) creates FILE and sleeps until the process is killed.
// Without the variable it returns at once.
void PauseInMigration(int version);

}  // namespace ipsrt

#endif  // IPSRT_STORE_REQUEST_WINDOW_H_
