// Child processes, scratch directories and loopback ports for end-to-end
// tests that run the real ipsrtd and ipsrt binaries.
//
// Every wait is bounded, and every child is killed and reaped by the time
// its owner is destroyed, so a failing test never leaves a process behind.
#ifndef IPSRT_TESTS_E2E_PROCESS_H_
#define IPSRT_TESTS_E2E_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ipsrt::e2e {

// TempDir is a fresh directory, removed with its contents on destruction.
class TempDir {
 public:
  // Aborts the test binary when no directory can be made (nothing can run).
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // File returns path()/name.
  std::string File(const std::string& name) const;

 private:
  std::string path_;
};

// WriteFile replaces `path` with `contents`.
absl::Status WriteFile(const std::string& path, const std::string& contents);

// ReadFile returns the file's contents; NOT_FOUND when it cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);

struct ProcessResult {
  // The exit status when the process exited normally; -1 otherwise.
  int exit_code = -1;
  // The signal that ended the process, or 0.
  int term_signal = 0;
  // The process outlived the timeout and was killed.
  bool timed_out = false;
  std::string out;
  std::string err;
};

// RunProcess runs `argv` (argv[0] is a path) with stdin from /dev/null,
// captures stdout and stderr, and waits up to `timeout`, killing the
// process after it. INTERNAL when the process cannot be started.
absl::StatusOr<ProcessResult> RunProcess(
    const std::vector<std::string>& argv,
    absl::Duration timeout = absl::Seconds(30));

// ChildProcess is a process running in the background with stdout and
// stderr appended to a log file. Not thread-safe.
class ChildProcess {
 public:
  // Spawn starts `argv`; INTERNAL when it cannot be started.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(
      const std::vector<std::string>& argv, const std::string& log_path);

  // Kills (SIGKILL) and reaps the process if it is still running.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Exited reaps the process without blocking and tells whether it has
  // ended.
  bool Exited();

  // Signal sends `signal` unless the process has been reaped.
  void Signal(int signal);

  // WaitForExit waits up to `timeout` for the process to end and returns
  // its raw wait status (see WIFEXITED); nullopt when it is still running.
  std::optional<int> WaitForExit(absl::Duration timeout);

  // Log returns what the process wrote so far.
  std::string Log() const;

 private:
  ChildProcess(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}

  pid_t pid_;
  std::string log_path_;
  std::optional<int> wait_status_;
};

// DescribeWaitStatus renders a wait status for failure messages, e.g.
// "exit 1" or "signal 9".
std::string DescribeWaitStatus(int wait_status);

// UnusedPort is a loopback port bound to a socket that never listens, so a
// connection to it is refused for as long as the object lives.
class UnusedPort {
 public:
  UnusedPort();
  ~UnusedPort();
  UnusedPort(const UnusedPort&) = delete;
  UnusedPort& operator=(const UnusedPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace ipsrt::e2e

#endif  // IPSRT_TESTS_E2E_PROCESS_H_
