// `ipsrt store copy`: moves a SQLite deployment's database into an empty
// PostgreSQL database, every table and row as it is, and verifies the
// result (row counts, a content digest per table, the events' hash chains
// and the audit chain, every hash recomputed).
//
// Example:
//   ipsrt store copy --from=sqlite:/var/lib/ipsrtd/ipsrt.db
//       --to=postgres:"host=db dbname=ipsrt user=ipsrtd"
//       --password_env=IPSRT_PG_PASSWORD
#ifndef IPSRT_CLI_STORE_COPY_H_
#define IPSRT_CLI_STORE_COPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/commands.h"
#include "ipsrt/postgres_store.h"

namespace ipsrt::cli {

struct TableCopy {
  std::string table;
  int64_t source_rows = 0;
  int64_t destination_rows = 0;
  // SHA-256 over every row in key order, on each side.
  std::string source_digest;
  std::string destination_digest;
};

struct StoreCopyReport {
  int schema_version = 0;
  std::vector<TableCopy> tables;
  // Events whose hash was recomputed and whose link to the previous event
  // was checked, and the enrollments they belong to.
  int64_t events_verified = 0;
  int64_t chains_verified = 0;
  // Audit records whose hash was recomputed and whose prev_hash links to
  // the previous record's hash, in a dense seq order from 1.
  int64_t audit_rows_linked = 0;
};

// CopySqliteToPostgres copies the database file `sqlite_path` (read in one
// snapshot; stop ipsrtd first so nothing is missed) into the database of
// `destination`, creating its schema. FAILED_PRECONDITION when the
// destination holds rows already or a schema version differs; DATA_LOSS
// when a verification fails; UNAVAILABLE when PostgreSQL cannot be reached.
// Rows and checks run in one transaction: on any failure the destination
// stays empty.
absl::StatusOr<StoreCopyReport> CopySqliteToPostgres(
    const std::string& sqlite_path, const PostgresStore::Options& destination);

// StoreCommands lists `store`.
std::vector<Command> StoreCommands();

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_STORE_COPY_H_
