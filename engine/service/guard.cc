#include "service/guard.h"

#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ipsrt/internal/state.pb.h"
#include "ops/call_observer.h"
#include "service/request_limits.h"
#include "service/status_mapping.h"

namespace ipsrt {
namespace {

std::string StringField(const google::protobuf::Message& m,
                        absl::string_view field) {
  if (field.empty()) return "";
  const google::protobuf::FieldDescriptor* f =
      m.GetDescriptor()->FindFieldByName(std::string(field));
  if (f == nullptr || f->is_repeated() ||
      f->type() != google::protobuf::FieldDescriptor::TYPE_STRING) {
    return "";
  }
  return m.GetReflection()->GetString(m, f);
}

Metadata CallMetadata(grpc::CallbackServerContext* ctx) {
  Metadata md;
  for (const auto& [key, value] : ctx->client_metadata()) {
    md.emplace(std::string(key.data(), key.size()),
               std::string(value.data(), value.size()));
  }
  return md;
}

// EventFacts reads the payload type set in `field` (an EventPayload) and
// the task id that payload names, if any.
void EventFacts(const google::protobuf::Message& request,
                absl::string_view field, RequestFacts& facts) {
  const google::protobuf::FieldDescriptor* f =
      request.GetDescriptor()->FindFieldByName(std::string(field));
  if (f == nullptr ||
      f->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE ||
      f->is_repeated()) {
    return;
  }
  const google::protobuf::Message& event =
      request.GetReflection()->GetMessage(request, f);
  const google::protobuf::OneofDescriptor* oneof =
      event.GetDescriptor()->FindOneofByName("payload");
  if (oneof == nullptr) return;
  const google::protobuf::FieldDescriptor* set =
      event.GetReflection()->GetOneofFieldDescriptor(event, oneof);
  if (set == nullptr ||
      set->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
    return;
  }
  facts.event = set->name();
  facts.event_task_id =
      StringField(event.GetReflection()->GetMessage(event, set), "task_id");
}

std::string OutcomeOf(const absl::Status& s) {
  return absl::StatusCodeToString(s.code());
}

}  // namespace

v1::Actor Admission::actor() const {
  v1::Actor a;
  a.set_subject(principal.subject);
  a.set_role(std::string(RoleName(principal.role)));
  return a;
}

Guard::Guard(const Authenticator* authenticator, Store* store,
             const Clock* clock, int64_t max_metadata_bytes)
    : authenticator_(authenticator),
      store_(store),
      clock_(clock),
      max_metadata_bytes_(max_metadata_bytes) {}

absl::Status Guard::CheckMetadataSize(const Metadata& metadata) const {
  int64_t total = 0, token = 0;
  for (const auto& [key, value] : metadata) {
    total += static_cast<int64_t>(key.size() + value.size()) + 32;
    if (key == "authorization") token += static_cast<int64_t>(value.size());
  }
  if (total <= max_metadata_bytes_) return absl::OkStatus();
  return absl::UnauthenticatedError(absl::StrCat(
      "request metadata of ", total, " bytes (authorization: ", token,
      " bytes) is over the server's limit of ", max_metadata_bytes_,
      " bytes (server.max_metadata_bytes); use a smaller bearer token or "
      "raise the limit"));
}

absl::StatusOr<Admission> Guard::Decide(
    grpc::CallbackServerContext* ctx, absl::string_view method,
    const google::protobuf::Message& request, AuditRecord& refusal) {
  const MethodPolicy* policy = FindPolicy(method);
  std::string resource =
      policy == nullptr ? "" : StringField(request, policy->resource_field);
  // Changes carry their idempotency key; any call may add x-request-id.
  std::string request_id = StringField(request, "request_id");
  if (request_id.empty()) {
    auto it = ctx->client_metadata().find("x-request-id");
    if (it != ctx->client_metadata().end() && it->second.size() <= 128) {
      request_id.assign(it->second.data(), it->second.size());
    }
  }

  const Metadata metadata = CallMetadata(ctx);
  absl::Status size = CheckMetadataSize(metadata);
  absl::StatusOr<Principal> principal =
      !size.ok() ? absl::StatusOr<Principal>(size)
      : authenticator_ == nullptr
          ? absl::StatusOr<Principal>(LocalAdmin())
          : authenticator_->Authenticate(metadata, clock_->Now());
  if (!principal.ok()) {
    refusal = RefusalRecord(method, nullptr, resource, request_id,
                            principal.status());
    return principal.status();
  }
  RequestFacts facts;
  facts.resource = resource;
  if (policy != nullptr) {
    facts.patient_filter = StringField(request, policy->patient_filter_field);
    if (policy->scope == Scope::kAudit) {
      facts.audit_tenant = StringField(request, "tenant");
    }
    if (!policy->event_field.empty()) {
      EventFacts(request, policy->event_field, facts);
    }
  }
  absl::StatusOr<Access> access = Authorize(
      *principal, method, facts,
      [this](const std::string& tenant,
             const std::string& id) -> absl::StatusOr<std::string> {
        absl::StatusOr<EnrollmentRow> row = store_->GetEnrollment(tenant, id);
        if (!row.ok()) return row.status();
        return row->patient_ref;
      },
      [this](const std::string& tenant, const std::string& id,
             const std::string& task_id) -> absl::StatusOr<bool> {
        absl::StatusOr<EnrollmentRow> row = store_->GetEnrollment(tenant, id);
        if (!row.ok()) return row.status();
        internal::EnrollmentState state;
        if (!state.ParseFromString(row->snapshot)) {
          return absl::DataLossError(absl::StrCat(
              "store: snapshot of enrollment ", id, " cannot be parsed"));
        }
        for (const internal::TaskState& t : state.tasks()) {
          if (t.task_id() == task_id && t.status() == v1::Task::OPEN) {
            return t.assignee() == v1::Task::PATIENT;
          }
        }
        return true;
      });
  if (!access.ok()) {
    refusal = RefusalRecord(method, &*principal, resource, request_id,
                            access.status());
    return access.status();
  }
  return Admission{.principal = *std::move(principal),
                   .access = *std::move(access),
                   .policy = policy,
                   .method = std::string(method),
                   .request_id = std::move(request_id)};
}

void Guard::Annotate(grpc::CallbackServerContext* ctx,
                     const absl::StatusOr<Admission>& admission,
                     const AuditRecord& refusal) {
  const grpc::ServerContextBase* base = ctx;
  if (admission.ok()) {
    AnnotateCall(base, admission->access.tenant,
                 RoleName(admission->principal.role), admission->request_id);
  } else {
    AnnotateCall(base, refusal.tenant, refusal.role, refusal.request_id);
  }
}

void Guard::Admit(grpc::CallbackServerContext* ctx, absl::string_view method,
                  const google::protobuf::Message& request,
                  std::function<void(absl::StatusOr<Admission>)> then) {
  if (absl::Status s = CheckRequestLimits(request); !s.ok()) return then(s);
  AuditRecord refusal;
  absl::StatusOr<Admission> admission = Decide(ctx, method, request, refusal);
  Annotate(ctx, admission, refusal);
  if (admission.ok()) return then(std::move(admission));
  // The refusal's record is stored before the answer; a failed append
  // cannot make the answer any more refused, so it stays the refusal.
  Append(std::move(refusal),
         [then = std::move(then), status = admission.status()](absl::Status) {
           then(status);
         });
}

grpc::ServerUnaryReactor* Guard::Unary(grpc::CallbackServerContext* ctx,
                                       absl::string_view method,
                                       const google::protobuf::Message& request,
                                       Work work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // Oversized fields are refused before anything reads them (no audit
  // record: nothing was attempted, and none would hold the value).
  if (absl::Status s = CheckRequestLimits(request); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  AuditRecord refusal;
  absl::StatusOr<Admission> admission = Decide(ctx, method, request, refusal);
  Annotate(ctx, admission, refusal);
  if (!admission.ok()) {
    Append(std::move(refusal),
           [reactor, status = admission.status()](absl::Status) {
             reactor->Finish(ToGrpcStatus(status));
           });
    return reactor;
  }
  auto shared = std::make_shared<Admission>(*std::move(admission));
  work(*shared, [this, reactor, shared](absl::Status outcome) {
    Audit(*shared, std::move(outcome), [reactor](absl::Status final_status) {
      reactor->Finish(ToGrpcStatus(final_status));
    });
  });
  return reactor;
}

void Guard::Audit(const Admission& a, absl::Status outcome, Done done) {
  AuditKind kind = a.policy->audit;
  bool record = kind == AuditKind::kRead || kind == AuditKind::kChangeAndRead ||
                (kind == AuditKind::kChange && !outcome.ok());
  if (!record) return done(std::move(outcome));
  AuditRecord r{.tenant = a.access.tenant,
                .subject = a.principal.subject,
                .role = std::string(RoleName(a.principal.role)),
                .rpc = a.method,
                .resource = a.access.resource,
                .outcome = OutcomeOf(outcome),
                .time = clock_->Now(),
                .request_id = a.request_id};
  Append(std::move(r), [done = std::move(done),
                        outcome = std::move(outcome)](absl::Status appended) {
    // A failed call keeps its own cause; a result is withheld with the
    // store's cause (disk full, unreachable, corrupt), never a generic one.
    if (!appended.ok() && outcome.ok()) {
      return done(absl::Status(
          appended.code(),
          absl::StrCat("audit: the call's audit record could not be stored, "
                       "so its result is withheld: ",
                       appended.message())));
    }
    done(outcome);
  });
}

AuditRecord Guard::RefusalRecord(absl::string_view method,
                                 const Principal* principal,
                                 const std::string& resource,
                                 const std::string& request_id,
                                 const absl::Status& refusal) const {
  AuditRecord r{.subject = principal ? principal->subject : "",
                .role = principal ? std::string(RoleName(principal->role)) : "",
                .rpc = std::string(method),
                .resource = resource,
                .outcome = OutcomeOf(refusal),
                .time = clock_->Now(),
                .request_id = request_id};
  // The tenant the caller aimed at, when the name says it.
  if (absl::StartsWith(resource, "tenants/")) {
    absl::string_view rest = absl::string_view(resource).substr(8);
    r.tenant = std::string(rest.substr(0, rest.find('/')));
  }
  return r;
}

void Guard::Append(AuditRecord record, Done done) {
  WriteBatch batch;
  batch.audit.push_back(std::move(record));
  store_->CommitAsync(std::move(batch),
                      [done = std::move(done)](absl::StatusOr<CommitResult> r) {
                        done(r.status());
                      });
}

}  // namespace ipsrt
