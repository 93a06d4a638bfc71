// Numbered schema migrations, applied in order at start-up. A migration is
// never edited once released; a change of schema is a new migration.
#ifndef IPSRT_STORE_MIGRATIONS_H_
#define IPSRT_STORE_MIGRATIONS_H_

#include <string>
#include <vector>

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

}  // namespace ipsrt

#endif  // IPSRT_STORE_MIGRATIONS_H_
