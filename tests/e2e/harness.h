// Running ipsrtd and ipsrt as the user would: the built binaries, a config
// file of the test's own, a fresh data directory and a free port.
//
// Example:
//   TempDir dir;
//   absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
//       Ipsrtd::Start(WriteConfig(dir));
//   ProcessResult r = RunCli((*server)->address(), {"health"});
#ifndef IPSRT_TESTS_E2E_HARNESS_H_
#define IPSRT_TESTS_E2E_HARNESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "process.h"
#include "tests/testing/scoped_env.h"

namespace ipsrt::e2e {

// How long ipsrtd may take to start serving or to drain and exit.
inline constexpr absl::Duration kServerDeadline = absl::Seconds(20);

// WriteConfig writes dir/ipsrtd.yaml: SQLite at dir/ipsrt.db (a relative
// path, resolved against the config's directory), the repository's
// workflows, a listen address that --listen overrides. Returns its path.
std::string WriteConfig(const TempDir& dir);

// Ipsrtd is one running ipsrtd process; destroying it kills and reaps the
// process if it still runs.
class Ipsrtd {
 public:
  // Start runs ipsrtd --config=`config_path` --listen=127.0.0.1:0 with a
  // port file beside the config, and waits up to kServerDeadline for the
  // port. FAILED_PRECONDITION (with the server's log) when ipsrtd exits
  // first; DEADLINE_EXCEEDED when no port appears in time.
  static absl::StatusOr<std::unique_ptr<Ipsrtd>> Start(
      const std::string& config_path);

  int port() const { return port_; }
  // "127.0.0.1:<port>".
  std::string address() const;
  ChildProcess& process() { return *process_; }

  // Terminate sends SIGTERM and waits up to kServerDeadline; returns the
  // wait status, or DEADLINE_EXCEEDED when ipsrtd is still running.
  absl::StatusOr<int> Terminate();

 private:
  Ipsrtd(std::unique_ptr<ChildProcess> process, int port)
      : process_(std::move(process)), port_(port) {}

  std::unique_ptr<ChildProcess> process_;
  int port_;
};

// Openssl runs the openssl command line tool; the test fails if it does.
void Openssl(const TempDir& dir, std::vector<std::string> args);

// MakeCertificates writes ca.crt, server.{crt,key} (for localhost and
// 127.0.0.1) and client.{crt,key}, both signed by the CA, with openssl.
void MakeCertificates(const TempDir& dir);

// RunCli runs `ipsrt --server=<server> <args...>` to completion (bounded).
ProcessResult RunCli(const std::string& server,
                     const std::vector<std::string>& args);

// RunCliNoServer runs `ipsrt <args...>` without --server.
ProcessResult RunCliNoServer(const std::vector<std::string>& args);

// ScopedEnv (tests/testing/scoped_env.h): an environment variable for the
// processes started in a scope.
using ::ipsrt::testing::ScopedEnv;

// ClockOffsetTo is the value of IPSRT_TEST_CLOCK_OFFSET (ipsrtd's test
// hook that moves its clock; see reminders_test.cc) that makes ipsrtd,
// started now, read `local` in `zone` as its time.
std::string ClockOffsetTo(absl::CivilSecond local, absl::TimeZone zone);

// TodayAt is `hour`:`minute`:`second` on today's date in `zone`.
absl::CivilSecond TodayAt(absl::TimeZone zone, int hour, int minute,
                          int second);

// WaitFor calls `pred` every `poll` until it returns true or `timeout`
// has passed, then once more; returns the last answer. For conditions a
// server reaches in its own time (a reminder sent, a log line written).
template <typename Pred>
bool WaitFor(Pred pred, absl::Duration timeout,
             absl::Duration poll = absl::Milliseconds(50)) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (pred()) return true;
    absl::SleepFor(poll);
  }
  return pred();
}

}  // namespace ipsrt::e2e

#endif  // IPSRT_TESTS_E2E_HARNESS_H_
