#include "ipsrtd/store_flags.h"

#include "absl/flags/flag.h"
#include "common/log.h"

ABSL_FLAG(bool, adopt_store, false,
          "Serve the SQLite database even though it is not the store its "
          "identity file names, or is older than it (a deliberate restore "
          "from backup), and record its identity anew. For one start.");

namespace ipsrt {

void ApplyStoreFlags(Config& config) {
  config.store.sqlite.adopt = absl::GetFlag(FLAGS_adopt_store);
  if (config.store.sqlite.adopt) {
    IPSRT_LOG(WARNING) << "--adopt_store: the database's identity is "
                          "accepted as it is, even if it is another or an "
                          "older store than its identity file recorded";
  }
}

}  // namespace ipsrt
