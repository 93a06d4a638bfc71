#include "ops/call_observer.h"

#include <atomic>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "google/protobuf/descriptor.h"
#include "ops/metrics_hooks.h"

namespace ipsrt {
namespace {

using grpc::experimental::InterceptionHookPoints;

std::atomic<bool> access_log_on{false};

struct Annotation {
  std::string tenant;
  std::string actor_role;
  std::string request_id;
};

// Annotations of the calls in flight, by server context.
class Annotations {
 public:
  void Put(const void* ctx, Annotation a) {
    absl::MutexLock lock(&mu_);
    by_ctx_[ctx] = std::move(a);
  }
  Annotation Take(const void* ctx) {
    absl::MutexLock lock(&mu_);
    auto it = by_ctx_.find(ctx);
    if (it == by_ctx_.end()) return {};
    Annotation a = std::move(it->second);
    by_ctx_.erase(it);
    return a;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<const void*, Annotation> by_ctx_ ABSL_GUARDED_BY(mu_);
};

Annotations& AllAnnotations() {
  static auto* a = new Annotations();
  return *a;
}

// KnownMethod is `path` when it names a method of a service in this
// binary's descriptor pool ("/pkg.Service/Method"), else "unknown".
std::string KnownMethod(const char* path) {
  absl::string_view p = path == nullptr ? "" : path;
  if (!absl::StartsWith(p, "/")) return "unknown";
  absl::string_view rest = p.substr(1);
  size_t slash = rest.find('/');
  if (slash == absl::string_view::npos) return "unknown";
  std::string full =
      absl::StrCat(rest.substr(0, slash), ".", rest.substr(slash + 1));
  if (google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
          full) == nullptr) {
    return "unknown";
  }
  return std::string(p);
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

class CallObserver final : public grpc::experimental::Interceptor {
 public:
  CallObserver(grpc::experimental::ServerRpcInfo* info,
               CallObserverOptions options)
      : info_(info),
        ctx_(info->server_context()),
        options_(options),
        began_(absl::Now()) {}

  ~CallObserver() override {
    // A call that ended without a status (cancelled) leaves no annotation.
    if (options_.access_log && !finished_) {
      AllAnnotations().Take(ctx_);
    }
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      finished_ = true;
      grpc::Status status = methods->GetSendStatus();
      absl::Duration elapsed = absl::Now() - began_;
      std::string method = KnownMethod(info_->method());
      std::string code = CodeName(status.error_code());
      if (options_.metrics) metrics::ObserveCall(method, code, elapsed);
      if (options_.access_log) {
        Annotation a = AllAnnotations().Take(ctx_);
        LogAccess({.method = std::move(method),
                   .code = std::move(code),
                   .latency_seconds = absl::ToDoubleSeconds(elapsed),
                   .request_id = std::move(a.request_id),
                   .tenant = std::move(a.tenant),
                   .actor_role = std::move(a.actor_role)});
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  // The call's context, as a key only (never dereferenced here).
  const void* ctx_;
  const CallObserverOptions options_;
  const absl::Time began_;
  bool finished_ = false;
};

class CallObserverFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallObserverFactory(CallObserverOptions options)
      : options_(options) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallObserver(info, options_);
  }

 private:
  const CallObserverOptions options_;
};

}  // namespace

std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MakeCallObservers(const CallObserverOptions& options) {
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      out;
  if (!options.metrics && !options.access_log) return out;
  if (options.access_log) access_log_on.store(true, std::memory_order_release);
  out.push_back(std::make_unique<CallObserverFactory>(options));
  return out;
}

void AnnotateCall(const void* ctx, absl::string_view tenant,
                  absl::string_view actor_role, absl::string_view request_id) {
  if (!access_log_on.load(std::memory_order_acquire)) return;
  AllAnnotations().Put(ctx, {.tenant = std::string(tenant),
                             .actor_role = std::string(actor_role),
                             .request_id = std::string(request_id)});
}

}  // namespace ipsrt
