// The store's schema, described once: the numbered migrations of every SQL
// dialect and the table list of the current version (which `ipsrt store
// copy` copies and digests, and tests check both dialects against).
//
// Migrations are applied in order at start-up. A migration is never edited
// once released; a change of schema is a new migration. Where the dialects
// agree but for type names, one text serves both, with type tokens that
// migrations.cc spells per dialect ({INT64}: INTEGER or BIGINT, {BLOB}: BLOB
// or BYTEA, {AUTO_ID}, {WITHOUT_ROWID}); where they differ in kind
// (migration 4: SQLite rebuilds tables, PostgreSQL sets a fillfactor), each
// dialect has its own text under the same number. A test
// (tests/store/schema_test.cc) checks that both dialects' migrations end
// with exactly the tables of SchemaTables().
#ifndef IPSRT_STORE_MIGRATIONS_H_
#define IPSRT_STORE_MIGRATIONS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace ipsrt {

struct Migration {
  int version;
  std::string description;
  std::string sql;
};

// SqliteMigrations lists SQLite's migrations in increasing version order.
const std::vector<Migration>& SqliteMigrations();

// PostgresMigrations lists PostgreSQL's migrations in increasing version
// order; version N creates the same tables and columns as SQLite's N.
const std::vector<Migration>& PostgresMigrations();

// The schema version the tables below describe: the last migration's.
inline constexpr int kSchemaVersion = 10;

// RefuseNewerSchema is FAILED_PRECONDITION when a database is at `version`
// above kSchemaVersion (written by a newer ipsrtd), else OK.
absl::Status RefuseNewerSchema(int version);

// The log lines of an upgrade, the same for both stores (docs/operations.md,
// "Logs"): LogMigrationStart before migration `m` of a database found at
// schema `found`, LogMigrationsDone once the upgrade from `found` to `now`
// that began at `started` is committed. Both are silent for a new database
// (`found` 0), whose tables are laid out without a word.
void LogMigrationStart(int found, const Migration& m);
void LogMigrationsDone(int found, int now, absl::Time started);

// One column as both dialects store it: text, bytes (BLOB / BYTEA) or an
// integer (times are microseconds since the Unix epoch, UTC).
struct SchemaColumn {
  enum class Type { kText, kBytes, kInt };
  const char* name;
  Type type;
  bool nullable = false;
};

struct SchemaTable {
  const char* name;
  std::vector<SchemaColumn> columns;
  // Key columns, in order: the primary key, or the unique natural key of a
  // table whose rows SQLite keeps by an integer (enrollments, requests). A
  // copy orders rows by it.
  std::vector<const char*> key;

  // Column returns the named column (which must exist).
  const SchemaColumn& Column(const char* column) const;
};

// SchemaTables lists the tables of kSchemaVersion, parents before
// children, each with its columns in the order the migrations create them.
const std::vector<SchemaTable>& SchemaTables();

}  // namespace ipsrt

#endif  // IPSRT_STORE_MIGRATIONS_H_
