#include "core/enrollments.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "common/page_token.h"
#include "common/validation.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/status_macros.h"

namespace ipsrt {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 500;

std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

std::string ActorString(const v1::Actor& actor) {
  return absl::StrCat(actor.subject(), "/", actor.role());
}

absl::StatusOr<v1::Enrollment> ParseSnapshot(const EnrollmentRow& row) {
  v1::Enrollment e;
  if (!e.ParseFromString(row.snapshot)) {
    return absl::DataLossError(absl::StrCat(
        "store: snapshot of enrollment ", row.id, " cannot be parsed"));
  }
  return e;
}

// ValidateCreate checks every field of a CreateEnrollmentRequest and returns
// the tenant; the first problem found is reported.
absl::StatusOr<std::string> ValidateCreate(
    const v1::CreateEnrollmentRequest& r) {
  IPSRT_ASSIGN_OR_RETURN(std::string tenant, ParseParent("parent", r.parent()));
  IPSRT_RETURN_IF_ERROR(CheckRequestId("request_id", r.request_id()));
  IPSRT_RETURN_IF_ERROR(CheckReference("patient_ref", r.patient_ref(), true));
  IPSRT_RETURN_IF_ERROR(
      CheckReference("clinician_ref", r.clinician_ref(), true));
  if (r.workflow_id().empty()) {
    return absl::InvalidArgumentError("workflow_id: must not be empty");
  }
  if (r.workflow_version() < 0) {
    return absl::InvalidArgumentError(
        "workflow_version: must not be negative (0 means the newest)");
  }
  IPSRT_RETURN_IF_ERROR(
      LoadPatientTimeZone("time_zone", r.time_zone()).status());
  IPSRT_RETURN_IF_ERROR(CheckLabels(
      "labels", std::map<std::string, std::string>(r.labels().begin(),
                                                   r.labels().end())));
  return tenant;
}

}  // namespace

std::string RequestFingerprint(absl::string_view method,
                               const google::protobuf::Message& request) {
  return Sha256Hex(absl::StrCat(method, "\n", DeterministicBytes(request)));
}

std::string EventHash(absl::string_view prev_hash, const v1::Event& event) {
  v1::Event copy = event;
  copy.clear_hash();
  return Sha256Hex(absl::StrCat(prev_hash, "\n", DeterministicBytes(copy)));
}

void Enrollments::Create(const v1::CreateEnrollmentRequest& request,
                         const v1::Actor& actor, EnrollmentCallback done) {
  constexpr absl::string_view kMethod = "CreateEnrollment";
  absl::StatusOr<std::string> tenant = ValidateCreate(request);
  if (!tenant.ok()) return done(tenant.status());

  v1::CreateEnrollmentRequest unkeyed = request;
  unkeyed.clear_request_id();
  std::string fingerprint = RequestFingerprint(kMethod, unkeyed);

  // A retry usually finds its first result here without queueing a write;
  // the commit below checks again inside the transaction.
  absl::StatusOr<std::optional<RequestRecord>> seen =
      deps_.store->LookupRequest(*tenant, request.request_id());
  if (!seen.ok()) return done(seen.status());
  if (seen->has_value()) {
    const RequestRecord& r = **seen;
    if (r.method != kMethod || r.payload_hash != fingerprint) {
      return done(absl::FailedPreconditionError(absl::StrCat(
          "request_id: \"", request.request_id(),
          "\" was already used for a different ", r.method,
          " request; use a new request id for a new request")));
    }
    v1::Enrollment first;
    if (!first.ParseFromString(r.response)) {
      return done(absl::DataLossError("store: stored response is corrupt"));
    }
    return done(first);
  }

  std::shared_ptr<const WorkflowCatalog> catalog = deps_.workflows->Get();
  const WorkflowTemplate* workflow =
      catalog->Find(request.workflow_id(), request.workflow_version());
  if (workflow == nullptr) {
    return done(absl::NotFoundError(
        request.workflow_version() == 0
            ? absl::StrCat("workflow_id: no workflow \"", request.workflow_id(),
                           "\" is loaded")
            : absl::StrCat("workflow_version: version ",
                           request.workflow_version(), " of workflow \"",
                           request.workflow_id(), "\" is not loaded")));
  }
  const StageTemplate& first_stage = workflow->stages.front();

  absl::Time now = deps_.clock->Now();
  EnrollmentName name{*tenant, deps_.ids->NewId(now)};
  v1::Enrollment e;
  e.set_name(name.Format());
  e.set_patient_ref(request.patient_ref());
  e.set_workflow_id(workflow->id);
  e.set_workflow_version(workflow->version);
  e.set_time_zone(request.time_zone());
  e.set_clinician_ref(request.clinician_ref());
  e.set_stage(first_stage.id);
  e.set_state(v1::Enrollment::ACTIVE);
  e.set_revision(1);
  e.set_session_cadence(first_stage.session_cadence);
  *e.mutable_create_time() = ToProto(now);
  *e.mutable_update_time() = ToProto(now);
  *e.mutable_labels() = request.labels();

  v1::Event event;
  event.set_sequence(1);
  event.set_type("enrollment.created");
  *event.mutable_actor() = actor;
  *event.mutable_record_time() = ToProto(now);
  event.set_request_id(request.request_id());
  event.set_summary(absl::StrCat("Enrolled in ", workflow->id, "@",
                                 workflow->version, " at stage ",
                                 first_stage.id));
  event.set_hash(EventHash("", event));

  WriteBatch batch;
  batch.request = RequestRecord{*tenant,
                                request.request_id(),
                                std::string(kMethod),
                                fingerprint,
                                e.SerializeAsString(),
                                now};
  EnrollmentRow row;
  row.tenant = *tenant;
  row.id = name.id;
  row.patient_ref = e.patient_ref();
  row.workflow_id = e.workflow_id();
  row.workflow_version = e.workflow_version();
  row.stage = e.stage();
  row.clinician_ref = e.clinician_ref();
  row.state = e.state();
  row.revision = e.revision();
  row.snapshot = batch.request.response;
  row.create_time = now;
  row.update_time = now;
  batch.create = std::move(row);
  EventRow ev;
  ev.tenant = *tenant;
  ev.enrollment_id = name.id;
  ev.sequence = 1;
  ev.type = event.type();
  ev.actor = ActorString(actor);
  ev.request_id = request.request_id();
  ev.record_time = now;
  ev.payload = event.SerializeAsString();
  ev.hash = event.hash();
  batch.events.push_back(std::move(ev));

  deps_.store->CommitAsync(
      std::move(batch),
      [done = std::move(done),
       created = std::move(e)](absl::StatusOr<CommitResult> r) mutable {
        if (!r.ok()) return done(r.status());
        if (!r->replayed) return done(std::move(created));
        v1::Enrollment first;
        if (!first.ParseFromString(r->response)) {
          return done(absl::DataLossError("store: stored response is corrupt"));
        }
        done(std::move(first));
      });
}

absl::StatusOr<v1::Enrollment> Enrollments::Get(
    const v1::GetEnrollmentRequest& request) {
  IPSRT_ASSIGN_OR_RETURN(EnrollmentName name,
                         ParseEnrollmentName("name", request.name()));
  IPSRT_ASSIGN_OR_RETURN(EnrollmentRow row,
                         deps_.store->GetEnrollment(name.tenant, name.id));
  return ParseSnapshot(row);
}

absl::StatusOr<v1::ListEnrollmentsResponse> Enrollments::List(
    const v1::ListEnrollmentsRequest& request) {
  IPSRT_ASSIGN_OR_RETURN(std::string tenant,
                         ParseParent("parent", request.parent()));
  IPSRT_ASSIGN_OR_RETURN(
      int page_size,
      ClampPageSize(request.page_size(), kDefaultPageSize, kMaxPageSize));
  IPSRT_RETURN_IF_ERROR(
      CheckReference("patient_ref", request.patient_ref(), false));
  IPSRT_RETURN_IF_ERROR(
      CheckReference("clinician_ref", request.clinician_ref(), false));
  EnrollmentFilter filter;
  filter.tenant = tenant;
  filter.workflow_id = request.workflow_id();
  filter.stage = request.stage();
  filter.patient_ref = request.patient_ref();
  filter.clinician_ref = request.clinician_ref();
  filter.state = request.state();
  std::string fingerprint =
      Sha256Hex(absl::StrCat(filter.tenant, "\n", filter.workflow_id, "\n",
                             filter.stage, "\n", filter.patient_ref, "\n",
                             filter.clinician_ref, "\n", filter.state))
          .substr(0, 16);
  std::optional<EnrollmentCursor> after;
  if (!request.page_token().empty()) {
    IPSRT_ASSIGN_OR_RETURN(PagePosition pos,
                           DecodePageToken(request.page_token(), fingerprint));
    after = EnrollmentCursor{absl::FromUnixMicros(pos.key_int), pos.key_text};
  }
  IPSRT_ASSIGN_OR_RETURN(
      std::vector<EnrollmentRow> rows,
      deps_.store->ListEnrollments(filter, after, page_size + 1));
  v1::ListEnrollmentsResponse response;
  bool more = static_cast<int>(rows.size()) > page_size;
  if (more) rows.resize(page_size);
  for (const EnrollmentRow& row : rows) {
    IPSRT_ASSIGN_OR_RETURN(*response.add_enrollments(), ParseSnapshot(row));
  }
  if (more) {
    const EnrollmentRow& last = rows.back();
    response.set_next_page_token(EncodePageToken(PagePosition{
        fingerprint, absl::ToUnixMicros(last.create_time), last.id}));
  }
  return response;
}

absl::StatusOr<v1::GetTimelineResponse> Enrollments::Timeline(
    const v1::GetTimelineRequest& request) {
  IPSRT_ASSIGN_OR_RETURN(EnrollmentName name,
                         ParseEnrollmentName("name", request.name()));
  IPSRT_ASSIGN_OR_RETURN(
      int page_size,
      ClampPageSize(request.page_size(), kDefaultPageSize, kMaxPageSize));
  if (request.after_sequence() < 0) {
    return absl::InvalidArgumentError("after_sequence: must not be negative");
  }
  std::string fingerprint = Sha256Hex(name.Format()).substr(0, 16);
  int64_t after = request.after_sequence();
  if (!request.page_token().empty()) {
    IPSRT_ASSIGN_OR_RETURN(PagePosition pos,
                           DecodePageToken(request.page_token(), fingerprint));
    after = pos.key_int;
  }
  // NOT_FOUND for an unknown enrollment rather than an empty timeline.
  IPSRT_RETURN_IF_ERROR(
      deps_.store->GetEnrollment(name.tenant, name.id).status());
  IPSRT_ASSIGN_OR_RETURN(
      std::vector<EventRow> rows,
      deps_.store->ListEvents(name.tenant, name.id, after, page_size + 1));
  v1::GetTimelineResponse response;
  bool more = static_cast<int>(rows.size()) > page_size;
  if (more) rows.resize(page_size);
  for (const EventRow& row : rows) {
    if (!response.add_events()->ParseFromString(row.payload)) {
      return absl::DataLossError(absl::StrCat(
          "store: event ", row.sequence, " of enrollment ", name.id,
          " cannot be parsed"));
    }
  }
  if (more) {
    response.set_next_page_token(EncodePageToken(
        PagePosition{fingerprint, rows.back().sequence, ""}));
  }
  return response;
}

}  // namespace ipsrt
