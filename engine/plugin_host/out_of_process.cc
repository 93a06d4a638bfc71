#include "plugin_host/out_of_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/base/call_once.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/security/credentials.h"
#include "ops/metrics_hooks.h"
#include "plugin_host/in_process.h"

extern char** environ;

namespace ipsrt {
namespace {

const char* MethodPath(PluginMethod method) {
  switch (method) {
    case PluginMethod::kDescribe:
      return "/ipsrt.plugin.v1.Plugin/Describe";
    case PluginMethod::kConfigure:
      return "/ipsrt.plugin.v1.Plugin/Configure";
    case PluginMethod::kListInstruments:
      return "/ipsrt.plugin.v1.Plugin/ListInstruments";
    case PluginMethod::kScoreResponse:
      return "/ipsrt.plugin.v1.Plugin/ScoreResponse";
    case PluginMethod::kDeliverReminder:
      return "/ipsrt.plugin.v1.Plugin/DeliverReminder";
    case PluginMethod::kPlanReminders:
      return "/ipsrt.plugin.v1.Plugin/PlanReminders";
    case PluginMethod::kRenderExport:
      return "/ipsrt.plugin.v1.Plugin/RenderExport";
    case PluginMethod::kDeliverExport:
      return "/ipsrt.plugin.v1.Plugin/DeliverExport";
  }
  return "";
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status))
    return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("was killed by signal ", WTERMSIG(status), " (",
                        strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

// Process groups of the running children, for KillAllPluginProcessGroups:
// a fixed table of atomics so that a fatal-signal handler can read it.
constexpr int kMaxGroups = 256;
std::atomic<pid_t> live_groups[kMaxGroups];

void RememberGroup(pid_t pgid) {
  for (auto& slot : live_groups) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pgid)) return;
  }
}

void ForgetGroup(pid_t pgid) {
  for (auto& slot : live_groups) {
    pid_t expected = pgid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

// One running child: its pid (= its process group), stdout drain and
// channel. Movable so that a child can be taken out from under the
// transport's lock and stopped without holding it.
struct Child {
  pid_t pid = 0;
  // The child's process group (its pid); stays set after the leader has
  // been reaped so that its descendants are still killed.
  pid_t pgid = 0;
  std::string socket_dir;
  std::shared_ptr<grpc::Channel> channel;
  std::thread drain;
  // Writing to wake[1] ends the drain thread even while a descendant of
  // the child still holds the other end of its stdout pipe.
  int wake[2] = {-1, -1};

  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&& other) noexcept { Swap(other); }
  Child& operator=(Child&& other) noexcept {
    Child old;
    old.Swap(*this);
    old.Stop();
    Swap(other);
    return *this;
  }
  ~Child() { Stop(); }

  void Swap(Child& other) noexcept {
    std::swap(pid, other.pid);
    std::swap(pgid, other.pgid);
    socket_dir.swap(other.socket_dir);
    channel.swap(other.channel);
    drain.swap(other.drain);
    std::swap(wake[0], other.wake[0]);
    std::swap(wake[1], other.wake[1]);
  }

  // Kills the whole process group (if running), reaps the leader, ends the
  // drain and cleans up. Never blocks on anything the plugin controls.
  void Stop() {
    if (pgid > 0) {
      kill(-pgid, SIGKILL);
      ForgetGroup(pgid);
      pgid = 0;
    }
    if (pid > 0) {
      kill(pid, SIGKILL);  // in case it left its group
      int status = 0;
      waitpid(pid, &status, 0);
      pid = 0;
    }
    if (wake[1] >= 0) {
      char c = 0;
      (void)!write(wake[1], &c, 1);
    }
    if (drain.joinable()) drain.join();
    for (int& fd : wake) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
    channel.reset();
    if (!socket_dir.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(socket_dir, ignored);
      socket_dir.clear();
    }
  }
};

}  // namespace

int SweepStalePluginSocketDirs(const std::string& parent) {
  int removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(parent, ec), end;
       !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::vector<absl::string_view> parts = absl::StrSplit(name, '-');
    int pid = 0;
    if (parts.size() != 4 || parts[0] != "ipsrt" || parts[1] != "plugin" ||
        !absl::SimpleAtoi(parts[2], &pid) || pid <= 0 || pid == getpid() ||
        parts[3].size() != 6) {
      continue;
    }
    struct stat st;
    if (lstat(it->path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != geteuid()) {
      continue;
    }
    // Alive (or another user's, EPERM): not ours to remove.
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    if (std::filesystem::remove_all(it->path(), ignored) > 0) ++removed;
  }
  return removed;
}

namespace {

// Reads and discards the child's stdout until it closes or `wake` fires.
void Drain(int fd, int wake) {
  char buffer[4096];
  pollfd p[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
  while (true) {
    int r = poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || p[1].revents != 0) break;
    if (p[0].revents != 0 && read(fd, buffer, sizeof buffer) <= 0) break;
  }
  close(fd);
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view plugin,
                      PluginMethod method, absl::Duration timeout) {
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return absl::OkStatus();
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(absl::StrCat(
          "plugin ", plugin, " did not answer ", PluginMethodName(method),
          " within ", absl::FormatDuration(timeout)));
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(
          absl::StrCat("plugin ", plugin, " is unavailable (",
                       PluginMethodName(method), "): ", s.error_message()));
    default:
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          s.error_message());
  }
}

// ChildEnvironment is the environment a plugin child starts with: the
// engine's own minus any IPSRT_PLUGIN_* variable, plus the socket
// directory, the protocol version and the clock offset (the engine's clock
// minus the system clock, in microseconds; 0 without an injected clock).
std::vector<std::string> ChildEnvironment(const std::string& socket_dir,
                                          const Clock* clock) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, "IPSRT_PLUGIN_", 13) != 0) env_strings.emplace_back(*e);
  }
  env_strings.push_back("IPSRT_PLUGIN_SOCKET_DIR=" + socket_dir);
  env_strings.push_back(
      absl::StrCat("IPSRT_PLUGIN_PROTOCOL=", kOutOfProcessProtocol));
  env_strings.push_back(absl::StrCat(
      "IPSRT_PLUGIN_CLOCK_OFFSET_US=",
      clock == nullptr
          ? 0
          : absl::ToInt64Microseconds(clock->Now() - absl::Now())));
  return env_strings;
}

// CStrings points at each string of `strings`, null-terminated, as
// execve() takes them; valid while `strings` is unchanged.
std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// ExecChild runs in the forked child and never returns: it moves into its
// own process group (so stopping it takes every descendant, a wrapper
// script's children too), dies with the engine (`parent`), applies the
// memory and CPU limits (0: none), writes stdout to `stdout_fd`, reads
// /dev/null and executes argv[0]. Only async-signal-safe calls.
[[noreturn]] void ExecChild(char* const* argv, char* const* envp, int stdout_fd,
                            rlim_t memory_limit, rlim_t cpu_limit,
                            pid_t parent) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(126);
  if (memory_limit > 0) {
    rlimit r{memory_limit, memory_limit};
    setrlimit(RLIMIT_AS, &r);
  }
  if (cpu_limit > 0) {
    rlimit r{cpu_limit, cpu_limit + 1};
    setrlimit(RLIMIT_CPU, &r);
  }
  dup2(stdout_fd, STDOUT_FILENO);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, STDIN_FILENO);
  execve(argv[0], argv, envp);
  _exit(127);
}

// HandshakeFailure stops `child` (pid `pid`) after its handshake failed
// with `failure` and says why: how the child ended when it has exited (it
// is given up to a second to become reapable, unless the handshake timed
// out), else `failure`.
absl::Status HandshakeFailure(Child& child, pid_t pid,
                              const absl::Status& failure,
                              const std::string& name) {
  int status = 0;
  pid_t reaped = 0;
  const int tries = absl::IsDeadlineExceeded(failure) ? 0 : 100;
  for (int i = 0; i < tries && reaped == 0; ++i) {
    reaped = waitpid(pid, &status, WNOHANG);
    if (reaped == 0) absl::SleepFor(absl::Milliseconds(10));
  }
  if (reaped == pid) {
    child.pid = 0;
    child.Stop();  // still kills what it left behind
    return absl::UnavailableError(
        absl::StrCat("plugin ", name, " ", DescribeExit(status),
                     " before its handshake line",
                     status == (127 << 8) ? " (could not execute it)" : ""));
  }
  child.Stop();
  return failure;
}

// PluginChannel connects to a child's announced address. Export answers
// are whole Bundles (ipsrt-plugin-runner accepts the same 64 MiB); gRPC's
// 4 MiB default would cut off long courses.
std::shared_ptr<grpc::Channel> PluginChannel(const std::string& address) {
  grpc::ChannelArguments channel_args;
  channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  channel_args.SetMaxSendMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   channel_args);
}

class OutOfProcessTransport final : public PluginTransport {
 public:
  explicit OutOfProcessTransport(OutOfProcessOptions options)
      : options_(std::move(options)), name_(options_.display_name) {}

  ~OutOfProcessTransport() override { Shutdown(); }

  // First start: synchronous, errors returned.
  absl::Status Start() {
    absl::Status s = StartChild();
    if (!s.ok()) return s;
    supervisor_ = std::thread([this] { Supervise(); });
    NameThread(supervisor_, "plugin-superv");
    return absl::OkStatus();
  }

  void SetName(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    name_ = name;
  }

  absl::Status Call(PluginMethod method,
                    const google::protobuf::Message& request,
                    google::protobuf::Message* response,
                    absl::Duration timeout) override {
    std::shared_ptr<grpc::Channel> channel;
    std::string name;
    {
      absl::MutexLock lock(&mu_);
      name = name_;
      if (!serving_ || child_.channel == nullptr) {
        return absl::UnavailableError(
            absl::StrCat("plugin ", name, " is not serving: ", down_reason_));
      }
      channel = child_.channel;
    }
    absl::Status s =
        CallChannel(channel, method, request, response, timeout, name);
    if (absl::IsUnavailable(s)) {
      absl::MutexLock lock(&mu_);
      poke_ = true;  // check the child now rather than at the next tick
    } else if (absl::IsDeadlineExceeded(s)) {
      // A plugin that keeps missing deadlines is hung even if its health
      // service still answers (a handler thread is stuck, not the server).
      Child hung;  // stopped after the lock is released
      absl::MutexLock lock(&mu_);
      if (child_.channel == channel &&
          ++missed_deadlines_ >= options_.unhealthy_threshold) {
        hung.Swap(child_);
        MarkDown(absl::StrCat("the plugin missed ", missed_deadlines_,
                              " deadlines in a row and was killed; "
                              "restarting"));
        next_restart_ = absl::Now() + backoff_;
        poke_ = true;
      }
    } else if (s.ok() || !absl::IsInternal(s)) {
      absl::MutexLock lock(&mu_);
      if (child_.channel == channel) missed_deadlines_ = 0;
    }
    return s;
  }

  v1::PluginInfo::Transport transport() const override {
    return v1::PluginInfo::OUT_OF_PROCESS;
  }
  v1::PluginInfo::Health health() const override {
    absl::MutexLock lock(&mu_);
    return serving_ ? v1::PluginInfo::SERVING : v1::PluginInfo::NOT_SERVING;
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
      serving_ = false;
      down_reason_ = "the engine is shutting down";
    }
    if (supervisor_.joinable()) supervisor_.join();
    Child child;
    {
      absl::MutexLock lock(&mu_);
      child.Swap(child_);
    }
    child.Stop();
  }

  int pid() const {
    absl::MutexLock lock(&mu_);
    return child_.pid;
  }

 private:
  static absl::Status CallChannel(const std::shared_ptr<grpc::Channel>& channel,
                                  PluginMethod method,
                                  const google::protobuf::Message& request,
                                  google::protobuf::Message* response,
                                  absl::Duration timeout,
                                  absl::string_view name) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    grpc::internal::RpcMethod rpc(
        MethodPath(method), grpc::internal::RpcMethod::NORMAL_RPC, channel);
    grpc::Status s =
        grpc::internal::BlockingUnaryCall<google::protobuf::Message,
                                          google::protobuf::Message>(
            channel.get(), rpc, &ctx, request, response);
    return FromGrpc(s, name, method, timeout);
  }

  // Spawns the child, reads the handshake, checks health and configures.
  // On success the child is installed and serving.
  absl::Status StartChild() {
    std::string name;
    {
      absl::MutexLock lock(&mu_);
      name = name_;
    }
    static absl::once_flag swept;
    absl::call_once(swept, [] {
      const int removed = SweepStalePluginSocketDirs("/tmp");
      if (removed > 0) {
        IPSRT_LOG(INFO) << "plugins: removed " << removed
                        << " socket directories of ipsrtd processes that "
                           "are gone";
      }
    });
    Child child;
    std::string dir_template =
        absl::StrCat("/tmp/ipsrt-plugin-", getpid(), "-XXXXXX");
    if (mkdtemp(dir_template.data()) == nullptr) {
      return absl::InternalError(absl::StrCat(
          "plugin ", name,
          ": cannot create its socket directory: ", strerror(errno)));
    }
    child.socket_dir = dir_template;

    // Everything the child needs is prepared before fork(): only
    // async-signal-safe calls happen between fork and exec.
    std::vector<std::string> env_strings =
        ChildEnvironment(child.socket_dir, options_.clock);
    std::vector<char*> envp = CStrings(env_strings);
    std::vector<std::string> args = options_.argv;
    std::vector<char*> argv = CStrings(args);

    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(child.wake, O_CLOEXEC) != 0) {
      return absl::InternalError(
          absl::StrCat("plugin ", name, ": pipe: ", strerror(errno)));
    }
    const rlim_t memory_limit = options_.memory_limit_bytes;
    const rlim_t cpu_limit = options_.cpu_limit_seconds;
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
      close(out[0]);
      close(out[1]);
      return absl::ResourceExhaustedError(
          absl::StrCat("plugin ", name, ": fork: ", strerror(errno)));
    }
    if (pid == 0) {
      ExecChild(argv.data(), envp.data(), out[1], memory_limit, cpu_limit,
                parent);
    }
    close(out[1]);
    setpgid(pid, pid);  // also here: no race with the kill below
    child.pid = pid;
    child.pgid = pid;
    RememberGroup(pid);

    absl::StatusOr<std::string> line = ReadHandshake(out[0], name);
    if (!line.ok()) {
      close(out[0]);
      // A child that closed its output has most likely exited: say how.
      return HandshakeFailure(child, pid, line.status(), name);
    }
    child.drain = std::thread(&Drain, out[0], child.wake[0]);

    absl::StatusOr<std::string> address = ParseHandshake(*line, name);
    if (!address.ok()) {
      child.Stop();
      return address.status();
    }
    child.channel = PluginChannel(*address);

    if (absl::Status s = CheckHealth(child.channel, options_.handshake_timeout,
                                     /*wait_for_ready=*/true);
        !s.ok()) {
      child.Stop();
      return absl::UnavailableError(absl::StrCat(
          "plugin ", name, " does not answer its health check: ", s.message()));
    }
    plugin::v1::ConfigureResponse configured;
    absl::Status s =
        CallChannel(child.channel, PluginMethod::kConfigure, options_.configure,
                    &configured, options_.configure_timeout, name);
    if (!s.ok()) {
      child.Stop();
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin ", name, " refused its configuration: ", s.message()));
    }
    // The previous child (if any) ends up in `child` and is stopped on
    // return, after the lock is released.
    absl::MutexLock lock(&mu_);
    child.Swap(child_);
    serving_ = true;
    down_reason_.clear();
    consecutive_failures_ = 0;
    missed_deadlines_ = 0;
    started_at_ = absl::Now();
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ReadHandshake(int fd, const std::string& name) {
    std::string line;
    absl::Time deadline = absl::Now() + options_.handshake_timeout;
    while (true) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(
            absl::StrCat("plugin ", name, " printed no handshake line within ",
                         absl::FormatDuration(options_.handshake_timeout)));
      }
      pollfd p{fd, POLLIN, 0};
      int r =
          poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      char c;
      ssize_t n = read(fd, &c, 1);
      if (n <= 0) {
        return absl::UnavailableError(absl::StrCat(
            "plugin ", name, " closed its output before the handshake line"));
      }
      if (c == '\n') return line;
      line.push_back(c);
      if (line.size() > 4096) {
        return absl::FailedPreconditionError(absl::StrCat(
            "plugin ", name, " printed a handshake line over 4096 bytes"));
      }
    }
  }

  static absl::StatusOr<std::string> ParseHandshake(const std::string& line,
                                                    const std::string& name) {
    std::vector<std::string> parts = absl::StrSplit(line, '|');
    int protocol = 0;
    if (parts.size() != 3 || parts[0] != "IPSRT_PLUGIN" ||
        !absl::SimpleAtoi(parts[1], &protocol)) {
      return absl::FailedPreconditionError(
          absl::StrCat("plugin ", name,
                       " printed a malformed handshake line (expected "
                       "IPSRT_PLUGIN|<protocol>|unix:<path>)"));
    }
    if (protocol != kOutOfProcessProtocol) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin ", name, " speaks out-of-process protocol ", protocol,
          " but this engine speaks protocol ", kOutOfProcessProtocol));
    }
    if (parts[2].rfind("unix:", 0) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("plugin ", name, " announced address \"", parts[2],
                       "\"; only unix: sockets are accepted"));
    }
    return parts[2];
  }

  static absl::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                  absl::Duration timeout, bool wait_for_ready) {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    ctx.set_wait_for_ready(wait_for_ready);
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = stub->Check(&ctx, request, &response);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("health check failed with code ", s.error_code(), ": ",
                       s.error_message()));
    }
    if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::UnavailableError("health check answered NOT_SERVING");
    }
    return absl::OkStatus();
  }

  void MarkDown(const std::string& reason) {
    mu_.AssertHeld();
    serving_ = false;
    down_reason_ = reason;
    IPSRT_LOG(WARNING) << "plugin " << name_ << " is not serving: " << reason;
  }

  void Supervise() {
    while (true) {
      std::shared_ptr<grpc::Channel> channel;
      pid_t pid = 0;
      Child exited;  // stopped outside the lock
      {
        absl::MutexLock lock(&mu_);
        auto wake = [this] { return stopping_ || poke_; };
        mu_.AwaitWithTimeout(absl::Condition(&wake), options_.health_interval);
        if (stopping_) return;
        poke_ = false;
        pid = child_.pid;
        channel = child_.channel;
        if (pid > 0) {
          int status = 0;
          if (waitpid(pid, &status, WNOHANG) == pid) {
            child_.pid = 0;
            exited.Swap(child_);
            MarkDown(absl::StrCat("the plugin process ", DescribeExit(status),
                                  "; restarting"));
            next_restart_ = absl::Now() + backoff_;
            continue;
          }
        }
      }
      if (pid > 0) {
        absl::Status health =
            CheckHealth(channel, options_.health_timeout, false);
        Child hung;  // stopped outside the lock
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        if (child_.pid != pid) continue;  // replaced meanwhile
        if (health.ok()) {
          consecutive_failures_ = 0;
          if (!serving_) {
            serving_ = true;
            down_reason_.clear();
          }
          // A child that stayed up a while earns a fresh backoff.
          if (absl::Now() - started_at_ > absl::Minutes(1)) {
            backoff_ = options_.restart_backoff_initial;
          }
        } else if (++consecutive_failures_ >= options_.unhealthy_threshold) {
          hung.Swap(child_);
          MarkDown(
              absl::StrCat("the plugin process stopped answering health "
                           "checks and was killed; restarting"));
          next_restart_ = absl::Now() + backoff_;
        }
        continue;
      }
      {
        absl::MutexLock lock(&mu_);
        if (absl::Now() < next_restart_) continue;
      }
      absl::Status started = StartChild();
      if (started.ok()) {
        absl::MutexLock lock(&mu_);
        IPSRT_LOG(INFO) << "plugin " << name_ << " restarted";
        metrics::ObservePluginRestart(name_);
        continue;
      }
      absl::MutexLock lock(&mu_);
      backoff_ = std::min(backoff_ * 2, options_.restart_backoff_max);
      next_restart_ = absl::Now() + backoff_;
      MarkDown(absl::StrCat("restart failed (", started.message(),
                            "); next attempt in ",
                            absl::FormatDuration(backoff_)));
    }
  }

  const OutOfProcessOptions options_;
  mutable absl::Mutex mu_;
  std::string name_ ABSL_GUARDED_BY(mu_);
  Child child_ ABSL_GUARDED_BY(mu_);
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool poke_ ABSL_GUARDED_BY(mu_) = false;
  std::string down_reason_ ABSL_GUARDED_BY(mu_) = "not started";
  // Health checks failed in a row.
  int consecutive_failures_ ABSL_GUARDED_BY(mu_) = 0;
  // Calls that missed their deadline in a row.
  int missed_deadlines_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time started_at_ ABSL_GUARDED_BY(mu_);
  absl::Time next_restart_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_) =
      options_.restart_backoff_initial;
  std::thread supervisor_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PluginTransport>> StartOutOfProcessPlugin(
    OutOfProcessOptions options) {
  if (options.argv.empty()) {
    return absl::InvalidArgumentError("out-of-process plugin: no executable");
  }
  InstallFatalSignalHandler();  // a crash of ipsrtd takes the children
  auto transport = std::make_unique<OutOfProcessTransport>(std::move(options));
  if (absl::Status s = transport->Start(); !s.ok()) return s;
  return transport;
}

void KillAllPluginProcessGroups() {
  for (auto& slot : live_groups) {
    pid_t pgid = slot.load();
    if (pgid > 0) kill(-pgid, SIGKILL);
  }
}

int OutOfProcessPid(PluginTransport& transport) {
  auto* t = dynamic_cast<OutOfProcessTransport*>(&transport);
  return t == nullptr ? 0 : t->pid();
}

}  // namespace ipsrt
