// PostgresStore: the Store on a PostgreSQL server (libpq), for deployments
// that run several ipsrtd replicas on one database.
//
// Semantics are those of SqliteStore (store.h): every WriteBatch is one
// PostgreSQL transaction, so on any failure nothing of it is visible. The
// correctness of concurrent writers, in this process or in other replicas,
// rests on the database alone: the request record is inserted first under
// its primary key (a concurrent duplicate waits for the first and then
// replays it), updates carry `WHERE revision = expected`, and event
// sequences are a primary key.
//
// Durability: every connection runs with synchronous_commit=on, so a commit
// is flushed to the server's WAL before its callback runs.
//
// Connections: a pool of `pool_size` connections shared by commits (run on
// `pool_size` store threads) and reads. A connection that breaks (server
// restart, network) fails its call with UNAVAILABLE and is re-opened on its
// next use; a call whose very first statement finds the connection dead is
// retried once on a fresh connection, since nothing of it ran. A commit whose
// COMMIT was sent but not answered fails UNAVAILABLE: it may or may not have
// committed, and a retry with the same request id replays it either way.
//
// Schema migrations (PostgresMigrations()) are applied at Open in one
// transaction under pg_advisory_xact_lock, so replicas that start together
// apply them once.
//
// Example:
//   PostgresStore::Options options;
//   options.conninfo = "host=db.internal dbname=ipsrt user=ipsrtd";
//   options.password = password_from_file;
//   absl::StatusOr<std::unique_ptr<PostgresStore>> store =
//       PostgresStore::Open(options);
#ifndef IPSRT_POSTGRES_STORE_H_
#define IPSRT_POSTGRES_STORE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ipsrt/sql_store.h"
#include "ipsrt/store.h"

namespace ipsrt {

class PostgresStore final : public SqlStore {
 public:
  struct Options {
    // libpq connection string ("host=... port=... dbname=... user=...") or
    // URI. Must not carry a password: see `password`.
    std::string conninfo;
    // Password, kept out of `conninfo` so that it never appears where the
    // connection string is shown. Empty: none (trust, peer or .pgpass).
    std::string password;
    // Connections, and store threads running commits.
    int pool_size = 8;
    // Longest a statement may run; a longer one fails UNAVAILABLE.
    absl::Duration statement_timeout = absl::Seconds(5);
    // Longest a connection attempt may take.
    absl::Duration connect_timeout = absl::Seconds(5);
    // Longest a statement of a schema migration may run, in place of
    // `statement_timeout`, while Open applies pending migrations (a
    // migration rewrites whole tables: minutes on a large store, see
    // docs/storage.md); also how long Open waits for another replica's
    // migrations. Zero: no limit. Exceeding it fails Open DEADLINE_EXCEEDED
    // and leaves the schema as it was.
    absl::Duration migration_timeout = absl::ZeroDuration();
    // How long a request's record is kept (see SqliteStore::Options).
    absl::Duration request_retention = absl::Hours(7 * 24);
    // Test hook: called before each write step of a batch with the step's
    // name (SqlCore::Options::fault_hook in store/sql_core.h); a non-OK
    // status fails that step as if PostgreSQL had.
    std::function<absl::Status(absl::string_view step)> fault_hook;
  };

  // Open connects, applies pending schema migrations and starts the store
  // threads. UNAVAILABLE when the server cannot be reached;
  // FAILED_PRECONDITION when the database's schema is newer than this build
  // knows; INVALID_ARGUMENT for a bad option.
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Open(
      const Options& options);

  ~PostgresStore() override;

  void CommitAsync(
      WriteBatch batch,
      std::function<void(absl::StatusOr<CommitResult>)> done) override;
  int SchemaVersion() const override;
  // SchemaVersionFound is the schema version the database had when Open
  // began: 0 for a new one, below SchemaVersion() when Open migrated it.
  int SchemaVersionFound() const;
  absl::string_view Kind() const override { return "postgres"; }
  void Close() override;
  absl::Status Probe() override;

 private:
  class Impl;
  PostgresStore(std::unique_ptr<SqlCore> core, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsrt

#endif  // IPSRT_POSTGRES_STORE_H_
