// IpsrtServer: the gRPC server with every ipsrt.v1 service, health and
// reflection, on the callback API. Used by ipsrtd and by in-process tests.
//
// Example:
//   absl::StatusOr<std::unique_ptr<IpsrtServer>> server =
//       IpsrtServer::Start(options, deps);
//   ... (*server)->port() ...
//   (*server)->Shutdown(absl::Seconds(10));
#ifndef IPSRT_SERVICE_SERVER_H_
#define IPSRT_SERVICE_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/authenticator.h"
#include "core/enrollments.h"
#include "core/integrity.h"
#include "core/questionnaires.h"
#include "ipsrt/clock.h"
#include "ipsrt/store.h"
#include "ops/call_observer.h"
#include "plugin_host/registry.h"

namespace ipsrt {

struct ServerOptions {
  // host:port; port 0 picks a free port (see IpsrtServer::port()).
  std::string listen = "127.0.0.1:0";
  int max_receive_message_bytes = 1 << 20;
  // Largest request metadata accepted (server.max_metadata_bytes): over it
  // a call is UNAUTHENTICATED; gRPC refuses over 4 times it itself.
  int max_metadata_bytes = 16 << 10;
  // PEM contents; empty cert means plaintext (loopback deployments).
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // When set, clients must present a certificate signed by this CA.
  std::string tls_client_ca_pem;
  // Per-call metrics and access log (ops/call_observer.h).
  CallObserverOptions observe;
};

struct ServerDeps {
  Store* store;
  const Clock* clock;
  IdGenerator* ids;
  WorkflowRegistry* workflows;
  Enrollments::Safety safety;
  // Loaded plugins and the instruments they serve; null means none.
  const PluginRegistry* plugins = nullptr;
  const QuestionnaireCatalog* questionnaires = nullptr;
  // The `export:` section (push targets, bulk export root); null means
  // none configured.
  const ExportConfig* exports = nullptr;
  // Authenticates callers; null means `auth.mode: none` (every caller is
  // the local admin; loopback deployments only, see config.h).
  const Authenticator* authenticator = nullptr;
  // The integrity anchor ipsrtd writes (path and HMAC key); AuditService.
  // VerifyStore checks the store against it. Null: none configured.
  const AnchorWriter::Options* anchor = nullptr;
  // events.future_leeway (see CheckClinicalTimes).
  absl::Duration future_leeway = kDefaultFutureLeeway;
};

class IpsrtServer {
 public:
  // Start binds and starts serving; health reports SERVING.
  // UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<IpsrtServer>> Start(
      const ServerOptions& options, const ServerDeps& deps);

  ~IpsrtServer();

  // The bound port.
  int port() const;

  // The full names of the ipsrt.v1 services served ("ipsrt.v1.X").
  std::vector<std::string> ServiceNames() const;

  // SetServingStatus sets grpc.health.v1's status of `service` alone (""
  // is the server as a whole); Shutdown sets every one NOT_SERVING.
  // Ignored after Shutdown began. Thread-safe.
  void SetServingStatus(const std::string& service, bool serving);

  // Shutdown reports NOT_SERVING, stops accepting calls, waits up to
  // `grace` for in-flight calls to finish, then cancels the rest. The
  // store's pending commits complete before their calls do. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  class Impl;
  explicit IpsrtServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_SERVER_H_
