// Files beside a SQLite database that keep ipsrtd from serving the wrong,
// a shared or a full store: the identity file, the lock file, and the free
// space of the database's file system (docs/durability.md).
//
// Example:
//   absl::StatusOr<std::optional<StoreIdentity>> known =
//       ReadIdentityFile("/var/lib/ipsrtd/ipsrt.db.identity");
//   absl::StatusOr<DatabaseLock> lock =
//       DatabaseLock::Acquire("/var/lib/ipsrtd/ipsrt.db.lock");
#ifndef IPSRT_STORE_STORE_FILES_H_
#define IPSRT_STORE_STORE_FILES_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ipsrt {

// StoreIdentity names one store and how far it got: `store_id` is drawn
// when the store is initialised and never changes; `sequence` counts its
// committed group transactions. A database whose id differs from its
// identity file is another store; one whose sequence is below the file's
// was rolled back (an old copy).
struct StoreIdentity {
  std::string store_id;
  int64_t sequence = 0;
};

// IdentityFilePath is "<database>.identity"; LockFilePath "<database>.lock".
std::string IdentityFilePath(absl::string_view database_path);
std::string LockFilePath(absl::string_view database_path);

// NewStoreId returns 32 random hexadecimal digits.
std::string NewStoreId();

// ReadIdentityFile returns nullopt when `path` does not exist, DATA_LOSS
// naming the file when it cannot be parsed.
absl::StatusOr<std::optional<StoreIdentity>> ReadIdentityFile(
    const std::string& path);

// WriteIdentityFile replaces `path` atomically: written whole to a
// temporary file, flushed to disk, renamed over `path`, and the directory
// flushed, so a crash leaves the old or the new file, never a mix.
absl::Status WriteIdentityFile(const std::string& path,
                               const StoreIdentity& identity);

// DatabaseLock holds an exclusive flock(2) on a lock file for its life;
// the kernel releases it when the process dies, so a crash never leaves a
// stale lock.
class DatabaseLock {
 public:
  // Acquire creates `path` when missing and locks it without waiting;
  // FAILED_PRECONDITION naming the holder's pid when another process (or
  // another store in this process) holds it.
  static absl::StatusOr<DatabaseLock> Acquire(const std::string& path);

  DatabaseLock(DatabaseLock&& other) noexcept;
  DatabaseLock& operator=(DatabaseLock&& other) noexcept;
  DatabaseLock(const DatabaseLock&) = delete;
  DatabaseLock& operator=(const DatabaseLock&) = delete;
  ~DatabaseLock();

 private:
  explicit DatabaseLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// DiskSpace is the space of the file system holding a directory.
struct DiskSpace {
  uint64_t available_bytes = 0;  // for unprivileged writers (f_bavail)
  uint64_t total_bytes = 0;
};
absl::StatusOr<DiskSpace> DiskSpaceOf(const std::string& directory);

// FreeSpaceWatermark is the free space below which changes are refused:
// `configured` when non-negative, otherwise the smaller of 5 % of the file
// system and 256 MiB.
uint64_t FreeSpaceWatermark(int64_t configured, const DiskSpace& space);

// FormatBytes renders a byte count for operators ("3.2 MiB").
std::string FormatBytes(uint64_t bytes);

}  // namespace ipsrt

#endif  // IPSRT_STORE_STORE_FILES_H_
