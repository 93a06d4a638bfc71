// Out-of-process transport: the plugin runs as a child process and serves
// `service ipsrt.plugin.v1.Plugin` over gRPC on a unix socket.
//
// Start-up handshake (the child's first line on stdout):
//   IPSRT_PLUGIN|<protocol>|unix:<socket path>
// <protocol> is kOutOfProcessProtocol. The engine passes the directory to
// create the socket in as IPSRT_PLUGIN_SOCKET_DIR (mode 0700, owned by the
// engine), the protocol it speaks as IPSRT_PLUGIN_PROTOCOL and its clock's
// offset from the system clock as IPSRT_PLUGIN_CLOCK_OFFSET_US. The child
// must serve grpc.health.v1 (service "") and dies with the engine
// (PR_SET_PDEATHSIG).
//
// Containment: the child leads its own process group, and every stop
// (shutdown, restart, failed start) kills the whole group, so a wrapper
// script's children go with it. Stopping never waits on the child's
// stdout pipe (a descendant may hold it). A descendant that leaves the
// group (setsid) escapes; run such plugins under a service manager.
//
// Supervision: a thread health-checks the child every `health_interval`.
// When the child exits, or fails `unhealthy_threshold` checks in a row (it
// hangs; it is then killed), the plugin is NOT_SERVING, calls fail
// UNAVAILABLE at once, and the child is restarted with exponential backoff
// and sent the same Configure request again. Nothing the child does can
// stop the engine: every call has a deadline.
#ifndef IPSRT_PLUGIN_HOST_OUT_OF_PROCESS_H_
#define IPSRT_PLUGIN_HOST_OUT_OF_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ipsrt/clock.h"
#include "ipsrt/plugin/v1/plugin.pb.h"
#include "plugin_host/plugin.h"

namespace ipsrt {

inline constexpr int kOutOfProcessProtocol = 1;

struct OutOfProcessOptions {
  // Executable and its arguments.
  std::vector<std::string> argv;
  // Name for messages before the plugin has described itself (its path).
  std::string display_name;
  absl::Duration handshake_timeout = absl::Seconds(10);
  absl::Duration health_interval = absl::Seconds(1);
  absl::Duration health_timeout = absl::Seconds(1);
  int unhealthy_threshold = 3;
  absl::Duration restart_backoff_initial = absl::Milliseconds(200);
  absl::Duration restart_backoff_max = absl::Seconds(30);
  // Sent after every start; a restarted plugin that refuses it stays down
  // and is retried with backoff.
  plugin::v1::ConfigureRequest configure;
  absl::Duration configure_timeout = absl::Seconds(10);
  // Limits applied in the child before exec (0: none): its address space
  // (RLIMIT_AS; allocation fails beyond it) and CPU seconds (RLIMIT_CPU;
  // SIGXCPU, then SIGKILL). Each process of the group gets its own limit.
  uint64_t memory_limit_bytes = 0;
  uint64_t cpu_limit_seconds = 0;
  // The engine's clock: the child gets its offset from the system clock in
  // IPSRT_PLUGIN_CLOCK_OFFSET_US (at each start) so that the plugin's
  // host().Now() agrees with the engine. Null: no offset.
  const Clock* clock = nullptr;
};

// StartOutOfProcessPlugin starts the child, reads the handshake, checks
// health, sends Configure and starts supervision. Errors from the first
// start are returned (the engine refuses to start); FAILED_PRECONDITION for
// a bad handshake or a refused Configure (with the plugin's message),
// UNAVAILABLE when the child dies or cannot be reached.
absl::StatusOr<std::unique_ptr<PluginTransport>> StartOutOfProcessPlugin(
    OutOfProcessOptions options);

// Kills the process group of every running out-of-process plugin. Safe
// in a signal handler (reads a fixed table and calls kill(2)); the engine
// calls it on a fatal signal so that its children do not outlive it.
void KillAllPluginProcessGroups();

// Test seam and diagnostics: the process id serving now (0 when none).
int OutOfProcessPid(PluginTransport& transport);

// A plugin child's socket directory is `parent`/ipsrt-plugin-PID-XXXXXX,
// PID being the ipsrtd that made it, which removes it when it stops the
// child. A killed ipsrtd cannot, so the first plugin start of each process
// calls SweepStalePluginSocketDirs("/tmp"): it removes each such directory
// whose PID names no running process, and only a real directory (not a
// symbolic link) owned by this user; anything else, including the unnamed
// directories of releases before this one, is left alone. Processes are
// looked up in this PID namespace: containers that share a /tmp should
// not share a user id. Returns how many it removed.
int SweepStalePluginSocketDirs(const std::string& parent);

}  // namespace ipsrt

#endif  // IPSRT_PLUGIN_HOST_OUT_OF_PROCESS_H_
