#include "store/sqlite_checkpointer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/thread_name.h"

namespace ipsrt {

absl::StatusOr<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(
    sqlite3* writer, const std::string& path, absl::Duration busy_timeout,
    int pages) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = absl::UnavailableError(absl::StrCat(
        "store: cannot open a checkpoint connection to ", path, ": ",
        db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(
      db, static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
  // This connection never commits, so it never checkpoints on its own.
  sqlite3_wal_autocheckpoint(db, 0);
  std::unique_ptr<WalCheckpointer> c(new WalCheckpointer(writer, db, pages));
  // Replaces the writer's automatic checkpoint (itself a WAL hook).
  sqlite3_wal_hook(writer, &WalCheckpointer::OnCommit, c.get());
  c->thread_ = std::thread([p = c.get()] { p->Loop(); });
  NameThread(c->thread_, "wal-checkpoint");
  return c;
}

int WalCheckpointer::OnCommit(void* self, sqlite3* db, const char*, int pages) {
  auto* c = static_cast<WalCheckpointer*>(self);
  if (pages >= kInlineFactor * c->pages_) {
    // The thread falls behind (a slow disk, long readers): the writer
    // checkpoints inline as SQLite's automatic checkpoint would, so the
    // WAL, and every reader's search through it, stays bounded.
    sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                              nullptr);
    return SQLITE_OK;
  }
  if (pages >= c->pages_) {
    absl::MutexLock lock(&c->mu_);
    c->wanted_ = true;
  }
  return SQLITE_OK;
}

void WalCheckpointer::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return wanted_ || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      wanted_ = false;
    }
    // PASSIVE: copies what no reader still needs and never blocks the
    // writer or the readers; a later request finishes the rest. Errors
    // (busy, I/O) leave the WAL to the next attempt: nothing is lost, and
    // the writer's own commits report real I/O faults.
    sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                              nullptr);
    absl::MutexLock lock(&mu_);
    ++checkpoints_;
  }
}

void WalCheckpointer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (db_ != nullptr) {
    sqlite3_wal_hook(writer_, nullptr, nullptr);
    sqlite3_wal_autocheckpoint(writer_, 1000);
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

int64_t WalCheckpointer::checkpoints() const {
  absl::MutexLock lock(&mu_);
  return checkpoints_;
}

}  // namespace ipsrt
