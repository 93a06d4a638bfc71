// CheckSqliteFile: the offline and online examination of a SQLite store
// (`ipsrt store check`, StoreService.CheckStore; docs/durability.md).
//
// Example:
//   absl::StatusOr<StoreCheckReport> r =
//   CheckSqliteFile("/var/lib/ipsrtd/ipsrt.db"); if (r.ok() && !r->ok()) { /*
//   restore from backup */ }
#ifndef IPSRT_STORE_STORE_CHECK_H_
#define IPSRT_STORE_STORE_CHECK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ipsrt {

// What CheckSqliteFile found. Rows are named by tenant and enrollment id
// (and event sequence), never by content: the report holds no patient data.
struct StoreCheckReport {
  // PRAGMA integrity_check's findings; empty when it said "ok".
  std::vector<std::string> integrity;
  int64_t enrollments_read = 0;
  int64_t events_read = 0;
  // Rows that cannot be read or decoded, e.g.
  // "tenants/t1/enrollments/e1: snapshot cannot be decoded" or
  // "tenants/t1/enrollments/e1/events/7..9: cannot be read (database disk
  // image is malformed)", or "... /events/7 and later: ..." when the end of
  // the log cannot be told.
  std::vector<std::string> damaged_rows;
  bool ok() const { return integrity.empty() && damaged_rows.empty(); }
};

// CheckSqliteFile opens `path` read-only (its own connection; a running
// server may keep serving) and runs the full integrity_check, then reads
// and decodes every enrollment and event it can reach: enrollments
// through the enrollments_by_create_time index (so a damaged table page
// does not hide the keys on it), events one sequence at a time past a
// damaged page, up to the event whose hash the enrollment's snapshot
// names. NOT_FOUND when the file does not exist; FAILED_PRECONDITION when
// it cannot be opened as a database at all.
absl::StatusOr<StoreCheckReport> CheckSqliteFile(const std::string& path);

}  // namespace ipsrt

#endif  // IPSRT_STORE_STORE_CHECK_H_
