// WalCheckpointer moves SQLite's WAL checkpoints off the commit path.
//
// By default SQLite checkpoints inside the COMMIT that pushes the WAL past
// 1,000 pages: that commit copies the WAL into the database file and
// fsyncs it before its callers hear back, so every few group commits one
// group waits for two fsyncs and a bulk copy. Attached to the store's
// writer connection, WalCheckpointer replaces that automatic checkpoint:
// the writer's WAL hook only signals, and a thread of its own runs PASSIVE
// checkpoints on a connection of its own while the writer keeps
// committing. Durability is unchanged: a commit is durable once its WAL
// frames are synced (synchronous=FULL); the checkpoint only moves them.
//
// Thread-safe; Stop (or destruction) ends the thread before the writer
// connection closes (whose close checkpoints what is left).
#ifndef IPSRT_STORE_SQLITE_CHECKPOINTER_H_
#define IPSRT_STORE_SQLITE_CHECKPOINTER_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ipsrt {

class WalCheckpointer {
 public:
  // Start opens a connection to `path`, installs the WAL hook on `writer`
  // (which turns off the writer's automatic checkpoint) and starts the
  // thread; a checkpoint is asked for once the WAL holds `pages` frames.
  static absl::StatusOr<std::unique_ptr<WalCheckpointer>> Start(
      sqlite3* writer, const std::string& path, absl::Duration busy_timeout,
      int pages = 1000);
  ~WalCheckpointer() { Stop(); }

  // Stop ends the thread, closes its connection and gives `writer` its
  // automatic checkpoint back. Idempotent.
  void Stop();

  // Checkpoints run so far (for tests and metrics).
  int64_t checkpoints() const;

 private:
  WalCheckpointer(sqlite3* writer, sqlite3* db, int pages)
      : writer_(writer), db_(db), pages_(pages) {}
  // Past this many times `pages`, the writer checkpoints inline.
  static constexpr int kInlineFactor = 4;
  static int OnCommit(void* self, sqlite3* db, const char* name, int pages);
  void Loop();

  sqlite3* const writer_;
  sqlite3* db_;
  const int pages_;
  mutable absl::Mutex mu_;
  bool wanted_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t checkpoints_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace ipsrt

#endif  // IPSRT_STORE_SQLITE_CHECKPOINTER_H_
