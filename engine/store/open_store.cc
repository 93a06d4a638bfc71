#include "store/open_store.h"

#include "absl/strings/str_cat.h"
#include "ipsrt/postgres_store.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/status_macros.h"
#include "store/store_files.h"

namespace ipsrt {
namespace {

// MigratedFrom is ", migrated from schema N" when opening moved an existing
// database from schema N to `now`; empty otherwise.
std::string MigratedFrom(int found, int now) {
  if (found == 0 || found == now) return "";
  return absl::StrCat(", migrated from schema ", found);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const StoreConfig& config,
                                                 std::string* description,
                                                 int* schema_found) {
  if (config.kind == StoreKind::kPostgres) {
    const PostgresConfig& pg = config.postgres;
    PostgresStore::Options o;
    o.conninfo = pg.conninfo;
    IPSRT_ASSIGN_OR_RETURN(o.password, ResolvePostgresPassword(pg));
    o.pool_size = pg.pool_size;
    o.statement_timeout = pg.statement_timeout;
    o.connect_timeout = pg.connect_timeout;
    o.migration_timeout = pg.migration_timeout;
    o.request_retention = config.request_retention;
    IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<PostgresStore> store,
                           PostgresStore::Open(o));
    *description = absl::StrCat(
        "store postgres (schema version ", store->SchemaVersion(),
        MigratedFrom(store->SchemaVersionFound(), store->SchemaVersion()),
        ", pool_size=", o.pool_size,
        ", statement_timeout=", absl::FormatDuration(o.statement_timeout),
        ", synchronous_commit=on, password ",
        !pg.password_env.empty()    ? "from environment"
        : !pg.password_file.empty() ? "from file"
                                    : "not set",
        ")");
    if (schema_found != nullptr) *schema_found = store->SchemaVersionFound();
    return std::unique_ptr<Store>(std::move(store));
  }
  SqliteStore::Options o;
  o.path = config.sqlite.path;
  o.synchronous = config.sqlite.synchronous;
  o.busy_timeout = config.sqlite.busy_timeout;
  o.max_batch = config.sqlite.max_batch;
  o.read_connections = config.sqlite.read_connections;
  o.create = config.sqlite.create;
  o.identity_file = IdentityFilePath(o.path);
  o.adopt = config.sqlite.adopt;
  if (!config.sqlite.allow_shared) o.lock_file = LockFilePath(o.path);
  o.min_free_bytes = config.sqlite.min_free_bytes;
  o.quick_check_timeout = config.sqlite.quick_check_timeout;
  o.enrollment_cache_bytes = config.sqlite.enrollment_cache_bytes;
  o.request_retention = config.request_retention;
  IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> store,
                         SqliteStore::Open(o));
  *description = absl::StrCat(
      "store sqlite at ", o.path, " (schema version ", store->SchemaVersion(),
      MigratedFrom(store->SchemaVersionFound(), store->SchemaVersion()),
      ", synchronous=",
      o.synchronous == SqliteSynchronous::kExtra ? "extra" : "full",
      ", store id ", store->StoreId(),
      o.lock_file.empty() ? ", shared: no lock" : ", locked",
      o.lock_file.empty() || o.enrollment_cache_bytes == 0
          ? ", enrollment cache off"
          : absl::StrCat(
                ", enrollment cache ",
                FormatBytes(static_cast<uint64_t>(o.enrollment_cache_bytes))),
      ")");
  if (schema_found != nullptr) *schema_found = store->SchemaVersionFound();
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace ipsrt
