// OpenStore opens the store that a config selects (store.kind), so that
// ipsrtd and tools pick SQLite or PostgreSQL the same way.
#ifndef IPSRT_STORE_OPEN_STORE_H_
#define IPSRT_STORE_OPEN_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ipsrt/config.h"
#include "ipsrt/store.h"

namespace ipsrt {

// OpenStore opens store.kind's store and applies its migrations; the
// PostgreSQL password comes from ResolvePostgresPassword. `description`
// receives a one-line summary for the log (never the password);
// `schema_found`, when given, the schema version the database had before
// (0: a new database; below the store's SchemaVersion(): migrated).
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const StoreConfig& config,
                                                 std::string* description,
                                                 int* schema_found = nullptr);

}  // namespace ipsrt

#endif  // IPSRT_STORE_OPEN_STORE_H_
