// Guard: authentication, authorization and audit around every handler.
//
// Each ipsrt.v1 handler runs inside Guard::Unary (or Admit, for streams):
// the call's bearer token is authenticated (auth/authenticator.h), the
// policy table decides (auth/policy.h), the handler's work runs with the
// admitted principal, and the audit trail records the call as the policy
// says: reads after the work (the response is released only once its record
// is durable), changes inside the change's own commit, refusals and failed
// changes on their own. Nothing here logs request contents.
//
// Example:
//   return guard_.Unary(ctx, "/ipsrt.v1.EnrollmentService/GetEnrollment",
//                       *request, [=](const Admission& a, Guard::Done done) {
//                         done(Respond(enrollments_.Get(*request), response));
//                       });
#ifndef IPSRT_SERVICE_GUARD_H_
#define IPSRT_SERVICE_GUARD_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "auth/authenticator.h"
#include "auth/policy.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"
#include "ipsrt/clock.h"
#include "ipsrt/store.h"
#include "ipsrt/v1/common.pb.h"
#include "service/status_mapping.h"

namespace ipsrt {

// An admitted call.
struct Admission {
  Principal principal;
  Access access;
  const MethodPolicy* policy = nullptr;
  std::string method;
  std::string request_id;
  // The actor recorded on events: the principal's subject and role.
  v1::Actor actor() const;
};

class Guard {
 public:
  // `authenticator` may be null: every caller is then the local admin
  // (auth.mode: none). All pointers outlive the guard. A call whose
  // metadata is over `max_metadata_bytes` (key and value bytes plus 32 per
  // entry, as HTTP/2 counts them) is UNAUTHENTICATED.
  Guard(const Authenticator* authenticator, Store* store, const Clock* clock,
        int64_t max_metadata_bytes = 16 << 10);

  using Done = std::function<void(absl::Status)>;
  using Work = std::function<void(const Admission&, Done)>;

  // Unary admits the call, runs `work`, audits and finishes the call with
  // the status `work` passes to its Done (exactly once, any thread).
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx,
                                  absl::string_view method,
                                  const google::protobuf::Message& request,
                                  Work work);

  // Admit authenticates and authorizes without running anything, and calls
  // `then` with the admission or the refusal (once the refusal's audit
  // record is stored). For streaming handlers.
  void Admit(grpc::CallbackServerContext* ctx, absl::string_view method,
             const google::protobuf::Message& request,
             std::function<void(absl::StatusOr<Admission>)> then);

  // Audit appends the record of an admitted call's outcome when its policy
  // asks for one, then calls `done` with the outcome. When the append fails,
  // a failed outcome is passed on as it is (its cause is the store's), and
  // a successful one becomes the append's failure with the store's code
  // (no read leaves without its record).
  void Audit(const Admission& admission, absl::Status outcome, Done done);

 private:
  // Decide fills `refusal` when it refuses.
  absl::StatusOr<Admission> Decide(grpc::CallbackServerContext* ctx,
                                   absl::string_view method,
                                   const google::protobuf::Message& request,
                                   AuditRecord& refusal);
  absl::Status CheckMetadataSize(const Metadata& metadata) const;
  AuditRecord RefusalRecord(absl::string_view method,
                            const Principal* principal,
                            const std::string& resource,
                            const std::string& request_id,
                            const absl::Status& refusal) const;
  void Append(AuditRecord record, Done done);
  // Annotate hands the call's tenant, role and request id to the access
  // log (ops/call_observer.h).
  void Annotate(grpc::CallbackServerContext* ctx,
                const absl::StatusOr<Admission>& admission,
                const AuditRecord& refusal);

  const Authenticator* authenticator_;
  Store* store_;
  const Clock* clock_;
  const int64_t max_metadata_bytes_;
};

// IPSRT_METHOD is the gRPC path of an ipsrt.v1 method, the policy table's key.
#define IPSRT_METHOD(service, rpc) "/ipsrt.v1." #service "/" #rpc

// RefusingWriter answers a server stream with one status (a refused or
// unimplemented stream); it deletes itself when the call is done.
template <typename T>
class RefusingWriter final : public grpc::ServerWriteReactor<T> {
 public:
  void Refuse(const absl::Status& status) {
    this->Finish(ToGrpcStatus(status));
  }
  void OnDone() override { delete this; }
};

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_GUARD_H_
