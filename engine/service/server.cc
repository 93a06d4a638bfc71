#include "service/server.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "service/services.h"

namespace ipsrt {

class IpsrtServer::Impl {
 public:
  std::unique_ptr<Guard> guard;
  std::vector<std::unique_ptr<grpc::Service>> services;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

absl::StatusOr<std::unique_ptr<IpsrtServer>> IpsrtServer::Start(
    const ServerOptions& options, const ServerDeps& deps) {
  auto impl = std::make_unique<Impl>();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::InsecureServerCredentials();
  if (!options.tls_cert_pem.empty()) {
    grpc::SslServerCredentialsOptions ssl(
        options.tls_client_ca_pem.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = options.tls_client_ca_pem;
    ssl.pem_key_cert_pairs.push_back(
        {options.tls_key_pem, options.tls_cert_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(options.listen, credentials, &impl->port);
  // No SO_REUSEPORT: a second server on a busy port must fail to bind,
  // not share the port's calls with the first (docs/durability.md).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // gRPC's own limit is well above ours, so that a call over ours reaches
  // the guard and gets a clear UNAUTHENTICATED rather than gRPC's
  // RESOURCE_EXHAUSTED.
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE,
                             4 * options.max_metadata_bytes);
  impl->guard = std::make_unique<Guard>(deps.authenticator, deps.store,
                                        deps.clock, options.max_metadata_bytes);
  impl->services = MakeServices(deps, *impl->guard, deps.clock->Now());
  for (auto& s : impl->services) builder.RegisterService(s.get());
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      observers = MakeCallObservers(options.observe);
  if (!observers.empty()) {
    builder.experimental().SetInterceptorCreators(std::move(observers));
  }
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "server: cannot listen on ", options.listen,
        ": the address is in use (another ipsrtd?) or not available here"));
  }
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  return std::unique_ptr<IpsrtServer>(new IpsrtServer(std::move(impl)));
}

IpsrtServer::IpsrtServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

IpsrtServer::~IpsrtServer() { Shutdown(absl::ZeroDuration()); }

int IpsrtServer::port() const { return impl_->port; }

std::vector<std::string> IpsrtServer::ServiceNames() const {
  return {"ipsrt.v1.AuditService",      "ipsrt.v1.DiagnosticsService",
          "ipsrt.v1.EnrollmentService", "ipsrt.v1.ExportService",
          "ipsrt.v1.PluginService",     "ipsrt.v1.QuestionnaireService",
          "ipsrt.v1.ReminderService",   "ipsrt.v1.WorkflowService"};
}

void IpsrtServer::SetServingStatus(const std::string& service, bool serving) {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->shut_down) return;
  // The named overload, also for "": the unnamed one sets every service.
  impl_->server->GetHealthCheckService()->SetServingStatus(service, serving);
}

void IpsrtServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  impl_->server->Wait();
}

}  // namespace ipsrt
