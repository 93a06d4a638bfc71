#include "store/store_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"

namespace ipsrt {
namespace {

std::string Errno() { return std::strerror(errno); }

// WriteAll writes `data` to `fd` whole, retrying short writes.
bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

std::string IdentityFilePath(absl::string_view database_path) {
  return absl::StrCat(database_path, ".identity");
}

std::string LockFilePath(absl::string_view database_path) {
  return absl::StrCat(database_path, ".lock");
}

std::string NewStoreId() {
  absl::BitGen gen;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

absl::StatusOr<std::optional<StoreIdentity>> ReadIdentityFile(
    const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return std::optional<StoreIdentity>();
  }
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: cannot read identity file ", path, ": ",
                     text.status().message()));
  }
  StoreIdentity identity;
  bool have_id = false, have_sequence = false;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(": ", 1));
    if (kv.first == "store_id") {
      identity.store_id = std::string(kv.second);
      have_id = !identity.store_id.empty();
    } else if (kv.first == "sequence") {
      have_sequence = absl::SimpleAtoi(kv.second, &identity.sequence);
    }
  }
  if (!have_id || !have_sequence) {
    return absl::DataLossError(absl::StrCat(
        "store: identity file ", path,
        " is damaged (no store_id or sequence line); restore it from the "
        "backup taken with the database, or start with --adopt_store to "
        "accept the database as it is"));
  }
  return std::optional<StoreIdentity>(std::move(identity));
}

absl::Status WriteIdentityFile(const std::string& path,
                               const StoreIdentity& identity) {
  const std::string text = absl::StrCat(
      "# ipsrtd store identity (docs/durability.md); written by ipsrtd, do "
      "not edit.\n# It stays with its database: back up and restore the two "
      "together.\nstore_id: ",
      identity.store_id, "\nsequence: ", identity.sequence, "\n");
  const std::string tmp = absl::StrCat(path, ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: cannot write ", tmp, ": ", Errno()));
  }
  bool ok = WriteAll(fd, text) && ::fsync(fd) == 0;
  std::string error = ok ? "" : Errno();
  ::close(fd);
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    error = Errno();
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return absl::ResourceExhaustedError(
        absl::StrCat("store: cannot write identity file ", path, ": ", error));
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<DatabaseLock> DatabaseLock::Acquire(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: cannot open lock file ", path, ": ", Errno()));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string holder;
    absl::StatusOr<std::string> pid = ReadFileToString(path);
    if (pid.ok() && !pid->empty()) {
      holder =
          absl::StrCat(" (pid ", absl::StripTrailingAsciiWhitespace(*pid), ")");
    }
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("store: cannot lock ", path, ": ", std::strerror(err)));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "store: the database is in use by another ipsrtd", holder,
        ": lock file ", path,
        " is held. One ipsrtd serves one SQLite file; stop the other one, or "
        "use store.kind: postgres to run several replicas"));
  }
  // The holder's pid, for the message above; the lock itself is the flock.
  if (::ftruncate(fd, 0) == 0) {
    WriteAll(fd, absl::StrCat(::getpid(), "\n"));
  }
  return DatabaseLock(fd);
}

DatabaseLock::DatabaseLock(DatabaseLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)) {}

DatabaseLock& DatabaseLock::operator=(DatabaseLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

DatabaseLock::~DatabaseLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

absl::StatusOr<DiskSpace> DiskSpaceOf(const std::string& directory) {
  struct statvfs st;
  if (::statvfs(directory.empty() ? "." : directory.c_str(), &st) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "store: cannot read the free space of ", directory, ": ", Errno()));
  }
  return DiskSpace{
      .available_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize,
      .total_bytes = static_cast<uint64_t>(st.f_blocks) * st.f_frsize};
}

uint64_t FreeSpaceWatermark(int64_t configured, const DiskSpace& space) {
  if (configured >= 0) return static_cast<uint64_t>(configured);
  constexpr uint64_t kCap = uint64_t{256} << 20;
  return std::min(space.total_bytes / 20, kCap);
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < (1 << 10)) return absl::StrCat(bytes, " B");
  if (bytes < (1 << 20)) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  if (bytes < (uint64_t{1} << 30)) {
    return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
  }
  return absl::StrFormat("%.1f GiB", bytes / 1073741824.0);
}

}  // namespace ipsrt
