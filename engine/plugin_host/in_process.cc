#include "plugin_host/in_process.h"

#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "ipsrt/plugin/contract.h"
#include "ipsrt_plugin.h"
#include "plugin_host/out_of_process.h"

namespace ipsrt {
namespace {

// Size of the descriptor each ABI minor of major 1 defines. Minors only
// append fields, so this table only grows.
size_t DescriptorSizeForMinor(uint16_t minor) {
  switch (minor) {
    case 0:
      return offsetof(ipsrt_plugin_descriptor, contract);
    case 1:
      return sizeof(ipsrt_plugin_descriptor);
    default:
      return 0;
  }
}

// The plugin call running on this thread, for the fatal-signal handler
// (plain pointers to strings that live as long as the process: the
// transport's name and PluginMethodName's literals).
thread_local const char* current_plugin = nullptr;
thread_local const char* current_method = nullptr;

struct sigaction previous_actions[32];
const int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

void WriteAll(const char* text) {
  size_t n = strlen(text);
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, text, n);
    if (w <= 0) return;
    text += w;
    n -= static_cast<size_t>(w);
  }
}

// Async-signal-safe: write(2), kill(2), sigaction(2), raise(3) only.
void OnFatalSignal(int sig) {
  if (current_plugin != nullptr) {
    char number[8];
    int n = 0;
    for (int v = sig; v > 0 && n < 7; v /= 10) number[n++] = '0' + v % 10;
    char digits[8];
    for (int i = 0; i < n; ++i) digits[i] = number[n - 1 - i];
    digits[n] = '\0';
    WriteAll("E plugin_host] fatal signal ");
    WriteAll(digits);
    WriteAll(" (");
    WriteAll(sigabbrev_np(sig) != nullptr ? sigabbrev_np(sig) : "?");
    WriteAll(") in in-process plugin ");
    WriteAll(current_plugin);
    WriteAll(" during ");
    WriteAll(current_method);
    WriteAll("; ipsrtd is going down (run untrusted plugins out of process)\n");
  }
  KillAllPluginProcessGroups();
  sigaction(sig, &previous_actions[sig], nullptr);
  raise(sig);
}

}  // namespace

void InstallFatalSignalHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = &OnFatalSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_NODEFER;
    for (int sig : kFatalSignals) {
      sigaction(sig, &action, &previous_actions[sig]);
    }
  });
}

namespace {

// Collects what one call hands to ipsrt_result.
struct CallOutcome {
  std::string response;
  std::string error;
};

void SetResponse(ipsrt_result* result, const uint8_t* data, size_t size) {
  auto* outcome = static_cast<CallOutcome*>(result->host_data);
  outcome->response.assign(reinterpret_cast<const char*>(data), size);
}

void SetError(ipsrt_result* result, const char* message, size_t size) {
  auto* outcome = static_cast<CallOutcome*>(result->host_data);
  outcome->error.assign(message, size);
}

ipsrt_result MakeResult(CallOutcome* outcome) {
  ipsrt_result result;
  result.host_data = outcome;
  result.set_response = &SetResponse;
  result.set_error = &SetError;
  return result;
}

struct HostContext {
  std::string plugin_name;
  const Clock* clock;
};

void HostLog(void* host_data, int level, const char* message, size_t size) {
  auto* host = static_cast<HostContext*>(host_data);
  LogLevel l = level <= IPSRT_LOG_DEBUG     ? LogLevel::kDebug
               : level == IPSRT_LOG_INFO    ? LogLevel::kInfo
               : level == IPSRT_LOG_WARNING ? LogLevel::kWarning
                                            : LogLevel::kError;
  if (l < MinLogLevel()) return;
  LogMessage(l, "plugin", 0).stream() << "plugin " << host->plugin_name << ": "
                                      << absl::string_view(message, size);
}

int64_t HostNow(void* host_data) {
  return absl::ToUnixMicros(static_cast<HostContext*>(host_data)->clock->Now());
}

std::string Abi(uint16_t major, uint16_t minor) {
  return absl::StrCat(major, ".", minor);
}

absl::Status StatusFromPlugin(ipsrt_code code, const CallOutcome& outcome,
                              absl::string_view plugin, PluginMethod method) {
  int c = static_cast<int>(code);
  if (c < 1 || c > 16) {
    return absl::InternalError(absl::StrCat(
        "plugin ", plugin, " answered ", PluginMethodName(method),
        " with status code ", c, ", which is not a canonical code"));
  }
  return absl::Status(static_cast<absl::StatusCode>(c),
                      outcome.error.empty()
                          ? absl::StrCat("plugin ", plugin, " failed ",
                                         PluginMethodName(method))
                          : outcome.error);
}

class InProcessTransport final : public PluginTransport {
 public:
  InProcessTransport(void* library, const ipsrt_plugin_descriptor* descriptor,
                     std::unique_ptr<HostContext> host_context)
      : library_(library),
        descriptor_(descriptor),
        host_context_(std::move(host_context)) {
    host_api_.struct_size = sizeof(ipsrt_host_api);
    host_api_.abi_major = IPSRT_PLUGIN_ABI_MAJOR;
    host_api_.abi_minor = IPSRT_PLUGIN_ABI_MINOR;
    host_api_.host_data = host_context_.get();
    host_api_.log = &HostLog;
    host_api_.now_unix_micros = &HostNow;
    shared_->name = host_context_->plugin_name;
    InstallFatalSignalHandler();
  }

  ~InProcessTransport() override { Shutdown(); }

  absl::Status Create() {
    CallOutcome outcome;
    ipsrt_result result = MakeResult(&outcome);
    void* instance = nullptr;
    ipsrt_code code = descriptor_->create(&host_api_, &instance, &result);
    if (code != IPSRT_CODE_OK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin ", host_context_->plugin_name, " failed to initialize: ",
          outcome.error.empty() ? "no reason given" : outcome.error));
    }
    if (instance == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("plugin ", host_context_->plugin_name,
                       " failed to initialize: create returned no instance"));
    }
    instance_ = instance;
    return absl::OkStatus();
  }

  absl::Status Call(PluginMethod method,
                    const google::protobuf::Message& request,
                    google::protobuf::Message* response,
                    absl::Duration timeout) override {
    ipsrt_call_fn fn = Function(method);
    if (fn == nullptr) {
      return absl::UnimplementedError(
          absl::StrCat("plugin ", host_context_->plugin_name, " has no ",
                       PluginMethodName(method), " entry point"));
    }
    auto call = std::make_shared<PendingCall>();
    if (!request.SerializeToString(&call->request)) {
      return absl::InternalError("plugin request does not serialize");
    }
    const absl::Time deadline = absl::Now() + timeout;
    void* instance = nullptr;
    {
      absl::MutexLock lock(&shared_->mu);
      if (instance_ == nullptr) {
        return absl::UnavailableError(
            absl::StrCat("plugin ", shared_->name, " has been shut down"));
      }
      if (shared_->overdue > 0) {
        return absl::UnavailableError(
            absl::StrCat("plugin ", shared_->name,
                         " is not serving: ", shared_->down_reason));
      }
      Shared* shared = shared_.get();
      auto slot_free = [shared] {
        return shared->running < shared->max_concurrent;
      };
      if (!shared_->mu.AwaitWithDeadline(absl::Condition(&slot_free),
                                         deadline)) {
        return absl::DeadlineExceededError(absl::StrCat(
            "plugin ", shared_->name, " did not answer ",
            PluginMethodName(method), " within ", absl::FormatDuration(timeout),
            " (all ", shared_->max_concurrent,
            " of its concurrent call slots stayed busy)"));
      }
      ++shared_->running;
      instance = instance_;
    }
    // The call runs on its own thread so that the caller can stop waiting
    // at its deadline. A plugin call cannot be interrupted: an overdue one
    // keeps its slot, and the plugin stays NOT_SERVING, until it returns.
    // The thread owns what it uses (the transport may be gone by then).
    std::thread([shared = shared_, call, fn, instance, method] {
      current_plugin = shared->name.c_str();
      current_method = PluginMethodName(method).data();
      ipsrt_result result = MakeResult(&call->outcome);
      ipsrt_code code =
          fn(instance, reinterpret_cast<const uint8_t*>(call->request.data()),
             call->request.size(), &result);
      current_plugin = nullptr;
      current_method = nullptr;
      absl::MutexLock lock(&shared->mu);
      call->code = code;
      --shared->running;
      if (call->abandoned && --shared->overdue == 0) {
        IPSRT_LOG(INFO) << "plugin " << shared->name << ": its overdue "
                        << PluginMethodName(method)
                        << " call returned; serving again";
      }
      call->done = true;
    }).detach();
    {
      absl::MutexLock lock(&shared_->mu);
      PendingCall* c = call.get();
      auto done = [c] { return c->done; };
      if (!shared_->mu.AwaitWithDeadline(absl::Condition(&done), deadline)) {
        call->abandoned = true;
        ++shared_->overdue;
        shared_->down_reason = absl::StrCat(
            "a ", PluginMethodName(method), " call overran its ",
            absl::FormatDuration(timeout), " deadline and is still running");
        IPSRT_LOG(WARNING) << "plugin " << shared_->name
                           << " is not serving: " << shared_->down_reason;
        return absl::DeadlineExceededError(
            absl::StrCat("plugin ", shared_->name, " did not answer ",
                         PluginMethodName(method), " within ",
                         absl::FormatDuration(timeout)));
      }
    }
    if (call->code != IPSRT_CODE_OK) {
      return StatusFromPlugin(call->code, call->outcome,
                              host_context_->plugin_name, method);
    }
    if (!response->ParseFromString(call->outcome.response)) {
      return absl::InternalError(absl::StrCat(
          "plugin ", host_context_->plugin_name, " answered ",
          PluginMethodName(method), " with bytes that are not a valid ",
          response->GetDescriptor()->full_name()));
    }
    return absl::OkStatus();
  }

  v1::PluginInfo::Transport transport() const override {
    return v1::PluginInfo::IN_PROCESS;
  }
  v1::PluginInfo::Health health() const override {
    absl::MutexLock lock(&shared_->mu);
    return instance_ != nullptr && shared_->overdue == 0
               ? v1::PluginInfo::SERVING
               : v1::PluginInfo::NOT_SERVING;
  }

  // Destroys the instance once no call runs in it. A call that never
  // returns leaves the instance alive (destroying it under a running call
  // would be worse). The library stays mapped for the life of the
  // process: its code may still be referenced (static destructors,
  // protobuf registrations), and unloading buys nothing a restart doesn't.
  void Shutdown() override {
    void* instance = nullptr;
    {
      absl::MutexLock lock(&shared_->mu);
      if (instance_ == nullptr) return;
      // Calls still within their deadline get up to 5 s to finish; an
      // overdue one is not waited for.
      Shared* shared = shared_.get();
      auto idle = [shared] { return shared->running == shared->overdue; };
      shared_->mu.AwaitWithTimeout(absl::Condition(&idle), absl::Seconds(5));
      if (shared_->running > 0) {
        IPSRT_LOG(WARNING) << "plugin " << shared_->name << ": "
                           << shared_->running
                           << " call(s) still running at shutdown; its "
                              "instance is not destroyed";
        instance_ = nullptr;
        return;
      }
      instance = instance_;
      instance_ = nullptr;
    }
    descriptor_->destroy(instance);
  }

  void SetMaxConcurrentCalls(int n) {
    absl::MutexLock lock(&shared_->mu);
    shared_->max_concurrent = n < 1 ? 1 : n;
  }

 private:
  ipsrt_call_fn Function(PluginMethod method) const {
    switch (method) {
      case PluginMethod::kDescribe:
        return descriptor_->describe;
      case PluginMethod::kConfigure:
        return descriptor_->configure;
      case PluginMethod::kListInstruments:
        return descriptor_->list_instruments;
      case PluginMethod::kScoreResponse:
        return descriptor_->score_response;
      case PluginMethod::kDeliverReminder:
        return descriptor_->deliver_reminder;
      case PluginMethod::kPlanReminders:
        return descriptor_->plan_reminders;
      case PluginMethod::kRenderExport:
        return descriptor_->render_export;
      case PluginMethod::kDeliverExport:
        return descriptor_->deliver_export;
    }
    return nullptr;
  }

  // Call accounting, shared with the threads running calls (which may
  // outlive the transport when a call never returns).
  struct Shared {
    std::string name;
    absl::Mutex mu;
    int max_concurrent ABSL_GUARDED_BY(mu) = 4;
    int running ABSL_GUARDED_BY(mu) = 0;
    // Calls whose caller gave up at the deadline but that still run.
    int overdue ABSL_GUARDED_BY(mu) = 0;
    std::string down_reason ABSL_GUARDED_BY(mu);
  };
  // One call's request and outcome, shared by the caller and the thread
  // running it (which may outlive the caller's wait).
  struct PendingCall {
    std::string request;
    CallOutcome outcome;
    ipsrt_code code = IPSRT_CODE_OK;  // guarded by Shared::mu
    bool done = false;                // guarded by Shared::mu
    bool abandoned = false;  // guarded by Shared::mu: the caller gave up
  };

  void* library_;
  const ipsrt_plugin_descriptor* descriptor_;
  std::unique_ptr<HostContext> host_context_;
  ipsrt_host_api host_api_;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  void* instance_ = nullptr;  // guarded by shared_->mu after Create
};

// CheckDescriptor applies the checks of ipsrt_plugin.h, in its order.
absl::Status CheckDescriptor(const ipsrt_plugin_descriptor* d,
                             const std::string& path) {
  const std::string host_abi =
      Abi(IPSRT_PLUGIN_ABI_MAJOR, IPSRT_PLUGIN_ABI_MINOR);
  if (d == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("plugin library ", path, ": ", IPSRT_PLUGIN_ENTRY_SYMBOL,
                     " returned no descriptor"));
  }
  if (d->abi_major != IPSRT_PLUGIN_ABI_MAJOR) {
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin library ", path, " was built for plugin ABI ",
        Abi(d->abi_major, d->abi_minor), " but this engine speaks ABI ",
        host_abi, ": rebuild it against plugin SDK ", IPSRT_PLUGIN_ABI_MAJOR,
        ".x"));
  }
  if (d->abi_minor > IPSRT_PLUGIN_ABI_MINOR) {
    return absl::FailedPreconditionError(
        absl::StrCat("plugin library ", path, " needs plugin ABI ",
                     Abi(d->abi_major, d->abi_minor),
                     " but this engine speaks ABI ", host_abi,
                     " (older minor): upgrade ipsrtd or rebuild the plugin "
                     "against SDK ",
                     host_abi));
  }
  size_t expected = DescriptorSizeForMinor(d->abi_minor);
  if (d->struct_size != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin library ", path, ": its descriptor is ", d->struct_size,
        " bytes but ABI ", Abi(d->abi_major, d->abi_minor), " defines ",
        expected, " bytes (built with a modified ipsrt_plugin.h?)"));
  }
  if (d->name == nullptr || d->name[0] == '\0' || d->version == nullptr ||
      d->version[0] == '\0') {
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin library ", path, ": its descriptor has no name or version"));
  }
  if (d->abi_minor >= 1 && d->contract != nullptr &&
      strcmp(d->contract, IPSRT_PLUGIN_CONTRACT) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin ", d->name, " (", path, ") was built with plugin SDK contract ",
        absl::CHexEscape(absl::string_view(d->contract).substr(0, 64)),
        " but this engine's is ", IPSRT_PLUGIN_CONTRACT,
        ": its generated message code would not match the engine's; rebuild "
        "it against this engine's SDK (",
        IPSRT_PLUGIN_SDK_VERSION, ")"));
  }
  const uint32_t known =
      IPSRT_KIND_QUESTIONNAIRE | IPSRT_KIND_REMINDER | IPSRT_KIND_EXPORTER;
  if (d->kinds == 0 || (d->kinds & ~known) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "plugin ", d->name, " (", path, ") declares kinds 0x",
        absl::Hex(d->kinds),
        "; expected a non-empty combination of questionnaire (0x1), reminder "
        "(0x2) and exporter (0x4)"));
  }
  struct Required {
    uint32_t kind;  // 0: every plugin
    const void* fn;
    const char* entry;
  };
  const Required required[] = {
      {0, reinterpret_cast<const void*>(d->create), "create"},
      {0, reinterpret_cast<const void*>(d->destroy), "destroy"},
      {0, reinterpret_cast<const void*>(d->describe), "describe"},
      {0, reinterpret_cast<const void*>(d->configure), "configure"},
      {IPSRT_KIND_QUESTIONNAIRE,
       reinterpret_cast<const void*>(d->list_instruments), "list_instruments"},
      {IPSRT_KIND_QUESTIONNAIRE,
       reinterpret_cast<const void*>(d->score_response), "score_response"},
      {IPSRT_KIND_REMINDER, reinterpret_cast<const void*>(d->deliver_reminder),
       "deliver_reminder"},
      {IPSRT_KIND_EXPORTER, reinterpret_cast<const void*>(d->render_export),
       "render_export"},
      {IPSRT_KIND_EXPORTER, reinterpret_cast<const void*>(d->deliver_export),
       "deliver_export"},
  };
  for (const Required& r : required) {
    if ((r.kind == 0 || (d->kinds & r.kind) != 0) && r.fn == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("plugin ", d->name, " (", path,
                       ") is missing entry point ", r.entry));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PluginTransport>> LoadInProcessPlugin(
    const std::string& path, const Clock* clock, int max_concurrent_calls) {
  // RTLD_LOCAL keeps the plugin's own symbols out of the global namespace;
  // RTLD_NOW surfaces unresolved symbols here rather than mid-call.
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot load plugin library ", path, ": ", why ? why : "unknown"));
  }
  void* symbol = dlsym(library, IPSRT_PLUGIN_ENTRY_SYMBOL);
  if (symbol == nullptr) {
    dlclose(library);
    return absl::FailedPreconditionError(
        absl::StrCat("plugin library ", path, " is missing entry point ",
                     IPSRT_PLUGIN_ENTRY_SYMBOL, " (is it an ipsrt plugin?)"));
  }
  auto entry = reinterpret_cast<ipsrt_plugin_entry_fn>(symbol);
  const ipsrt_plugin_descriptor* descriptor = entry();
  if (absl::Status s = CheckDescriptor(descriptor, path); !s.ok()) {
    dlclose(library);
    return s;
  }
  auto context = std::make_unique<HostContext>();
  context->plugin_name = descriptor->name;
  context->clock = clock;
  auto transport = std::make_unique<InProcessTransport>(library, descriptor,
                                                        std::move(context));
  if (absl::Status s = transport->Create(); !s.ok()) return s;
  transport->SetMaxConcurrentCalls(max_concurrent_calls);
  return transport;
}

}  // namespace ipsrt
