// The SQL functions SQLite's migrations call (store/migrations.cc): the
// store adds them to its writing connection, and a test that lays out an
// old schema by hand adds them to its own.
#ifndef IPSRT_STORE_SQLITE_MIGRATION_FUNCTIONS_H_
#define IPSRT_STORE_SQLITE_MIGRATION_FUNCTIONS_H_

#include <sqlite3.h>

namespace ipsrt {

// AddSqliteMigrationFunctions adds to `db`:
//   ipsrt_request_key(tenant, request_id): RequestKey (migration 4);
//   ipsrt_digest(value): StoredDigest as a BLOB (migration 5);
//   ipsrt_outbox_key_digest(tenant, enrollment_id, stored_key):
//     schema 7's OutboxKeyDigest (prefix kOutboxKeyPrefixBytesSchema7) as a
//     BLOB (migration 7);
//   ipsrt_outbox_key_digest(tenant, enrollment_id, stored_key, prefix):
//     OutboxKeyDigest with a prefix of `prefix` bytes (migration 10).
void AddSqliteMigrationFunctions(sqlite3* db);

}  // namespace ipsrt

#endif  // IPSRT_STORE_SQLITE_MIGRATION_FUNCTIONS_H_
