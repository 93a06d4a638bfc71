#include "core/enrollments.h"

#include <string>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "common/hash.h"
#include "common/page_token.h"
#include "common/proto_time.h"
#include "common/validation.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"
#include "google/protobuf/wire_format_lite.h"
#include "instruments/fixed_instruments.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/status_macros.h"
#include "runtime/step.h"

namespace ipsrt {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 500;
// Internal attempts of an event submitted without expected_revision when
// writers in other processes got there first; each retry waits a random
// backoff that doubles (up to 64 ms), so that no writer starves.
constexpr int kSubmitAttempts = 10;

absl::Duration RetryBackoff(int attempt) {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  int64_t cap_ms = int64_t{1} << std::min(attempt, 6);
  absl::MutexLock lock(&mu);
  return absl::Microseconds(absl::Uniform<int64_t>(*gen, 0, cap_ms * 1000));
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

// ChangeAudit is the audit record committed with a change, in the same
// transaction (see store.h, WriteBatch::audit).
AuditRecord ChangeAudit(const v1::Actor& actor, absl::string_view method,
                        const std::string& tenant, const std::string& resource,
                        const std::string& request_id, absl::Time now) {
  absl::string_view service = method == "MigrateEnrollments"
                                  ? "ipsrt.v1.WorkflowService"
                                  : "ipsrt.v1.EnrollmentService";
  return AuditRecord{.tenant = tenant,
                     .subject = actor.subject(),
                     .role = actor.role(),
                     .rpc = absl::StrCat("/", service, "/", method),
                     .resource = resource,
                     .outcome = "OK",
                     .time = now,
                     .request_id = request_id};
}

constexpr char kUnreadableSnapshot[] = "the stored snapshot cannot be parsed";

absl::StatusOr<internal::EnrollmentState> ParseState(const EnrollmentRow& row) {
  internal::EnrollmentState state;
  if (!state.ParseFromString(row.snapshot)) {
    return absl::DataLossError(absl::StrCat("store: snapshot of enrollment ",
                                            row.id, " cannot be parsed"));
  }
  // A snapshot stored before the state was bounded (closed tasks and
  // acknowledged alerts kept) is read in the current shape, so the next
  // write stores that shape.
  runtime::BoundState(state);
  return state;
}

// ParseEnrollment reads only the public view (EnrollmentState field 1) from
// a stored snapshot, which is what GetEnrollment answers with: parsing the
// rest (tasks, alerts, scores, diary days) cost as much as the store's read
// itself. Occurrences of the field are merged, as a full parse merges
// them; BoundState never changes the view, so the answer is the one
// ParseState(row).enrollment() gives.
absl::StatusOr<v1::Enrollment> ParseEnrollment(const EnrollmentRow& row) {
  using google::protobuf::internal::WireFormatLite;
  constexpr int kEnrollmentField =
      internal::EnrollmentState::kEnrollmentFieldNumber;
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(row.snapshot.data()),
      static_cast<int>(row.snapshot.size()));
  v1::Enrollment enrollment;
  bool ok = true;
  while (ok) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      // The end, or a zero tag, which no message has.
      ok = in.CurrentPosition() == static_cast<int>(row.snapshot.size());
      break;
    }
    if (WireFormatLite::GetTagFieldNumber(tag) == kEnrollmentField &&
        WireFormatLite::GetTagWireType(tag) ==
            WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t size = 0;
      ok = in.ReadVarint32(&size) && size <= row.snapshot.size();
      if (ok) {
        const auto limit = in.PushLimit(static_cast<int>(size));
        ok = enrollment.MergeFromCodedStream(&in) && in.BytesUntilLimit() == 0;
        in.PopLimit(limit);
      }
    } else {
      ok = WireFormatLite::SkipField(&in, tag);
    }
  }
  if (!ok) {
    return absl::DataLossError(absl::StrCat("store: snapshot of enrollment ",
                                            row.id, " cannot be parsed"));
  }
  return enrollment;
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
  IPSRT_RETURN_IF_ERROR(
      CheckLabels("labels", std::map<std::string, std::string>(
                                r.labels().begin(), r.labels().end())));
  return tenant;
}

// Safety flags make the response carry the crisis resources.
bool IsSafetyFlag(const std::string& flag) {
  return flag == "phq9.item9_positive";
}

// RowFrom copies the queryable columns of a state into a row.
EnrollmentRow RowFrom(const EnrollmentName& name,
                      const internal::EnrollmentState& state) {
  const v1::Enrollment& e = state.enrollment();
  EnrollmentRow row;
  row.tenant = name.tenant;
  row.id = name.id;
  row.patient_ref = e.patient_ref();
  row.workflow_id = e.workflow_id();
  row.workflow_version = e.workflow_version();
  row.stage = e.stage();
  row.clinician_ref = e.clinician_ref();
  row.state = e.state();
  row.revision = e.revision();
  row.snapshot = DeterministicBytes(state);
  row.create_time =
      absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(e.create_time()));
  row.update_time =
      absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(e.update_time()));
  return row;
}

// AddEffects turns the runtime's effects into outbox rows and
// cancellations of the same batch.
void AddEffects(const EnrollmentName& name,
                const std::vector<runtime::Effect>& effects,
                WriteBatch& batch) {
  std::string prefix = name.Format();
  for (const runtime::Effect& effect : effects) {
    std::string key = absl::StrCat(prefix, "/", effect.key);
    switch (effect.kind) {
      case runtime::Effect::Kind::kScheduleReminder:
      case runtime::Effect::Kind::kScheduleSessionReminder:
      case runtime::Effect::Kind::kScheduleEscalation:
        batch.outbox.push_back(OutboxRow{
            name.tenant, name.id, std::string(runtime::OutboxKind(effect.kind)),
            effect.due, effect.subject, key});
        break;
      case runtime::Effect::Kind::kCancelReminder:
      case runtime::Effect::Kind::kCancelEscalation:
        batch.cancel_outbox_keys.push_back(key);
        break;
    }
  }
}

}  // namespace

namespace {

// CheckTime is one clinical instant against the plausible window.
absl::Status CheckTime(absl::string_view field, absl::Time t, absl::Time now,
                       absl::Time enrolled, absl::Duration future_leeway) {
  if (t > now + future_leeway) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", Rfc3339Utc(t), " is in the future (now ", Rfc3339Utc(now),
        ", leeway ", absl::FormatDuration(future_leeway), ")"));
  }
  if (t < enrolled - kBackfillWindow) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", Rfc3339Utc(t),
                     " is more than a week before the "
                     "enrollment was created (",
                     Rfc3339Utc(enrolled), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckClinicalTimes(const v1::EventPayload& payload, absl::Time now,
                                absl::Time enrolled, absl::TimeZone zone,
                                absl::Duration future_leeway) {
  switch (payload.payload_case()) {
    case v1::EventPayload::kQuestionnaireResponse:
      if (payload.questionnaire_response().has_authored_time()) {
        return CheckTime(
            "event.questionnaire_response.authored_time",
            FromProtoTime(payload.questionnaire_response().authored_time()),
            now, enrolled, future_leeway);
      }
      return absl::OkStatus();
    case v1::EventPayload::kSrmDiaryDay: {
      absl::CivilDay date;
      absl::CivilDay first = absl::ToCivilDay(enrolled - kBackfillWindow, zone);
      if (absl::ParseCivilTime(payload.srm_diary_day().local_date(), &date) &&
          date < first) {
        return absl::InvalidArgumentError(absl::StrCat(
            "event.srm_diary_day.local_date: ",
            payload.srm_diary_day().local_date(), " is before ",
            absl::FormatCivilTime(first),
            ", a week before the enrollment was created (in the patient's "
            "zone)"));
      }
      return absl::OkStatus();  // other date errors: the workflow step
    }
    case v1::EventPayload::kSessionHeld: {
      const v1::SessionHeld& s = payload.session_held();
      if (s.duration_minutes() != 0 &&
          (s.duration_minutes() < kMinSessionMinutes ||
           s.duration_minutes() > kMaxSessionMinutes)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "event.session_held.duration_minutes: ", s.duration_minutes(),
            " is outside ", kMinSessionMinutes, "..", kMaxSessionMinutes,
            " (0 when not recorded)"));
      }
      if (s.has_start_time()) {
        return CheckTime("event.session_held.start_time",
                         FromProtoTime(s.start_time()), now, enrolled,
                         future_leeway);
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

void SealEvent(absl::string_view prev_hash, runtime::StepResult& stepped,
               v1::Event& event) {
  for (const v1::Outcome& o : stepped.outcomes) *event.add_outcomes() = o;
  SealStepped(prev_hash, stepped.state, event);
}

namespace {

// MoveOutcome moves `from` into the empty `to`. Between arenas (Step's
// outcomes are heap messages, an event being sealed often lives on an
// arena) protobuf's move is a copy of every string; the string fields are
// moved here one by one (their buffers change owner), and MergeFrom copies
// whatever else is set, so a field added to Outcome later is never lost.
void MoveOutcome(v1::Outcome& from, v1::Outcome& to) {
  if (from.GetArena() == to.GetArena()) {
    to.Swap(&from);
    return;
  }
  struct StringField {
    const std::string& (v1::Outcome::*get)() const;
    std::string* (v1::Outcome::*mutable_field)();
  };
  static constexpr StringField kStrings[] = {
      {&v1::Outcome::from, &v1::Outcome::mutable_from},
      {&v1::Outcome::to, &v1::Outcome::mutable_to},
      {&v1::Outcome::subject, &v1::Outcome::mutable_subject},
      {&v1::Outcome::reason, &v1::Outcome::mutable_reason},
      {&v1::Outcome::local_due_time, &v1::Outcome::mutable_local_due_time},
  };
  for (const StringField& f : kStrings) {
    if ((from.*f.get)().empty()) continue;
    // The arena's new empty string takes the buffer; `from` keeps none.
    (to.*f.mutable_field)()->swap(*(from.*f.mutable_field)());
  }
  to.MergeFrom(from);
}

}  // namespace

void SealEvent(absl::string_view prev_hash, runtime::StepChanges& changes,
               internal::EnrollmentState& state, v1::Event& event) {
  event.mutable_outcomes()->Reserve(changes.outcomes.size());
  for (v1::Outcome& o : changes.outcomes) MoveOutcome(o, *event.add_outcomes());
  SealStepped(prev_hash, state, event);
}

void SealStepped(absl::string_view prev_hash, internal::EnrollmentState& state,
                 v1::Event& event) {
  if (event.payload().has_srm_diary_day()) {
    // The weekly SRM score is computed by Step from the whole diary week;
    // it is recorded on the event like a questionnaire's scores.
    for (const auto& [name, value] : state.scores()) {
      if (absl::StartsWith(name, "srm.")) {
        (*event.mutable_scores())[name] = value;
      }
    }
  }
  if (event.summary().empty()) {
    // The timeline shows a goal's interpersonal problem area.
    std::string area;
    if (event.payload().has_goal_set() &&
        !event.payload().goal_set().problem_area().empty()) {
      area = absl::StrCat(" (problem area ",
                          event.payload().goal_set().problem_area(), ")");
    }
    event.set_summary(absl::StrCat(event.type(), area, " at stage ",
                                   state.enrollment().stage()));
  }
  event.set_hash(EventHash(prev_hash, event));
  state.set_last_event_hash(event.hash());
}

absl::Status ScoreEvent(v1::Event& event,
                        const QuestionnaireCatalog* questionnaires) {
  constexpr absl::string_view kField = "event.questionnaire_response";
  const v1::EventPayload& p = event.payload();
  if (!p.has_questionnaire_response()) return absl::OkStatus();
  const v1::QuestionnaireResponse& r = p.questionnaire_response();
  if (r.questionnaire_id().empty()) {
    return absl::InvalidArgumentError(
        "event.questionnaire_response.questionnaire_id: must not be empty");
  }
  if (r.questionnaire_id() == "srm5" || r.questionnaire_id() == "srm17") {
    return absl::InvalidArgumentError(
        "event.questionnaire_response.questionnaire_id: the Social Rhythm "
        "Metric is recorded as srm_diary_day events");
  }
  if (questionnaires == nullptr) {
    IPSRT_ASSIGN_OR_RETURN(ScoredResponse scored,
                           ScoreFixedInstrument(r, kField));
    for (const auto& [name, value] : scored.scores) {
      (*event.mutable_scores())[name] = value;
    }
    event.set_band(scored.band);
    for (const std::string& f : scored.flags) event.add_flags(f);
    return absl::OkStatus();
  }
  v1::ScoreResponseRequest request;
  *request.mutable_response() = r;
  IPSRT_ASSIGN_OR_RETURN(v1::ScoreResponseResponse scored,
                         questionnaires->Score(request, kField));
  for (const auto& [name, value] : scored.scores()) {
    (*event.mutable_scores())[name] = value;
  }
  event.set_band(scored.band());
  for (const std::string& f : scored.flags()) event.add_flags(f);
  return absl::OkStatus();
}

namespace {  // PriorResult looks up an already committed request: nullopt when
             // the
// request id is new, the first response when it was used for this very
// request, FAILED_PRECONDITION naming `request_id` when it was used for
// another one. The store checks again inside the commit's transaction;
// this lookup answers a retry without redoing the work.
template <typename Response>
absl::StatusOr<std::optional<Response>> PriorResult(
    Store& store, absl::string_view tenant, absl::string_view request_id,
    absl::string_view method, absl::string_view fingerprint) {
  IPSRT_ASSIGN_OR_RETURN(std::optional<RequestRecord> seen,
                         store.LookupRequest(tenant, request_id));
  if (!seen.has_value()) return std::optional<Response>();
  if (seen->method != method ||
      !SamePayloadHash(seen->payload_hash, fingerprint)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request_id: \"", request_id, "\" was already used for a different ",
        seen->method, " request; use a new request id for a new request"));
  }
  Response first;
  if (!first.ParseFromString(seen->response)) {
    return absl::DataLossError("store: stored response is corrupt");
  }
  return std::optional<Response>(std::move(first));
}

// Committed is the answer to a committed request: `fresh`, or the first
// response when the store found the request id already committed.
template <typename Response>
absl::StatusOr<Response> Committed(absl::StatusOr<CommitResult> r,
                                   Response fresh) {
  if (!r.ok()) return r.status();
  if (!r->replayed) return fresh;
  Response first;
  if (!first.ParseFromString(r->response)) {
    return absl::DataLossError("store: stored response is corrupt");
  }
  return first;
}

// StoredSubmitResponse is the idempotency record of a SubmitEvent answer:
// the answer without the recorded event and what only repeats the event
// (its scores, band and flags), and without what the enrollment never
// changes after its creation (name, patient, workflow, labels, creation
// time), which a retry reads from the enrollment as it is then. The event
// log already holds the event at (enrollment, revision), so each record
// holds only what the answer alone says (stage, state, revision, zone,
// clinician, cadence, update time); the crisis resources stay, so a retry
// shows what the first answer showed.
std::string StoredSubmitResponse(v1::SubmitEventResponse response) {
  response.clear_event();
  response.clear_scores();
  response.clear_band();
  response.clear_flags();
  v1::Enrollment& e = *response.mutable_enrollment();
  e.clear_name();
  e.clear_patient_ref();
  e.clear_workflow_id();
  e.clear_labels();
  e.clear_create_time();
  return response.SerializeAsString();
}

// CompleteSubmitResponse puts back what StoredSubmitResponse left out: the
// fields an enrollment keeps from its creation, from `en` as it is now, and
// from the event log the event whose sequence is the stored enrollment's
// revision. A record written before the compact form (it has its event)
// is complete as it is; one written before schema 8 keeps its own
// enrollment fields (it has the name).
absl::StatusOr<v1::SubmitEventResponse> CompleteSubmitResponse(
    Store& store, const EnrollmentName& en, v1::SubmitEventResponse first) {
  if (first.has_event()) return first;
  if (first.enrollment().name().empty()) {
    IPSRT_ASSIGN_OR_RETURN(EnrollmentRow row,
                           store.GetEnrollment(en.tenant, en.id));
    IPSRT_ASSIGN_OR_RETURN(internal::EnrollmentState state, ParseState(row));
    const v1::Enrollment& now = state.enrollment();
    v1::Enrollment& e = *first.mutable_enrollment();
    e.set_name(en.Format());
    e.set_patient_ref(now.patient_ref());
    e.set_workflow_id(now.workflow_id());
    *e.mutable_labels() = now.labels();
    *e.mutable_create_time() = now.create_time();
  }
  const int64_t sequence = first.enrollment().revision();
  if (first.enrollment().name() != en.Format() || sequence < 1) {
    return absl::DataLossError(
        "store: stored response names no revision of this enrollment");
  }
  IPSRT_ASSIGN_OR_RETURN(std::vector<EventRow> rows,
                         store.ListEvents(en.tenant, en.id, sequence - 1, 1));
  if (rows.empty() || rows.front().sequence != sequence ||
      !first.mutable_event()->ParseFromString(rows.front().payload)) {
    return absl::DataLossError(
        absl::StrCat("store: the event a stored response refers to (",
                     en.Format(), " sequence ", sequence, ") cannot be read"));
  }
  const v1::Event& event = first.event();
  *first.mutable_scores() = event.scores();
  first.set_band(event.band());
  *first.mutable_flags() = event.flags();
  return first;
}

// Committed completes a replayed SubmitEvent answer (see
// StoredSubmitResponse).
absl::StatusOr<v1::SubmitEventResponse> Committed(
    Store& store, const EnrollmentName& en, absl::StatusOr<CommitResult> r,
    v1::SubmitEventResponse fresh) {
  const bool replayed = r.ok() && r->replayed;
  absl::StatusOr<v1::SubmitEventResponse> answer =
      Committed(std::move(r), std::move(fresh));
  if (!answer.ok() || !replayed) return answer;
  return CompleteSubmitResponse(store, en, *std::move(answer));
}

// EventRowFor is the stored row of a sealed event.
EventRow EventRowFor(const EnrollmentName& name, const v1::Event& event,
                     absl::string_view prev_hash) {
  EventRow row;
  row.tenant = name.tenant;
  row.enrollment_id = name.id;
  row.sequence = event.sequence();
  row.payload = DeterministicBytes(event);
  row.prev_hash = std::string(prev_hash);
  row.hash = event.hash();
  return row;
}

}  // namespace

namespace {

// AppendDeterministicBytes appends DeterministicBytes(m) to `out`: sized
// once, then written in place (no growing buffer, no copy).
void AppendDeterministicBytes(const google::protobuf::Message& m,
                              std::string& out) {
  const size_t size = m.ByteSizeLong();
  const size_t at = out.size();
  out.resize(at + size);
  google::protobuf::io::ArrayOutputStream array(out.data() + at,
                                                static_cast<int>(size));
  google::protobuf::io::CodedOutputStream coded(&array);
  coded.SetSerializationDeterministic(true);
  m.SerializeWithCachedSizes(&coded);
}

}  // namespace

std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  AppendDeterministicBytes(m, out);
  return out;
}

std::string RequestFingerprint(absl::string_view method,
                               const google::protobuf::Message& request) {
  return Sha256Hex(absl::StrCat(method, "\n", DeterministicBytes(request)));
}

std::string EventHash(absl::string_view prev_hash, const v1::Event& event) {
  // An event being sealed has no hash yet: hash it as it is, without a
  // copy of the whole event (payload and all) per append.
  if (event.hash().empty()) {
    // The hashed text is built in one buffer per thread, reused: its
    // capacity stays, so sealing allocates nothing for it.
    thread_local std::string hashed;
    hashed.assign(prev_hash.data(), prev_hash.size());
    hashed.push_back('\n');
    AppendDeterministicBytes(event, hashed);
    return Sha256Hex(hashed);
  }
  v1::Event copy = event;
  copy.clear_hash();
  return Sha256Hex(absl::StrCat(prev_hash, "\n", DeterministicBytes(copy)));
}

absl::StatusOr<absl::TimeZone> Enrollments::LoadZone(const std::string& name) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache = new absl::flat_hash_map<std::string, absl::TimeZone>();
  {
    absl::MutexLock lock(&mu);
    auto it = cache->find(name);
    if (it != cache->end()) return it->second;
  }
  IPSRT_ASSIGN_OR_RETURN(absl::TimeZone tz,
                         LoadPatientTimeZone("time_zone", name));
  absl::MutexLock lock(&mu);
  cache->emplace(name, tz);
  return tz;
}

void Enrollments::Create(const v1::CreateEnrollmentRequest& request,
                         const v1::Actor& actor, EnrollmentCallback done) {
  constexpr absl::string_view kMethod = "CreateEnrollment";
  absl::StatusOr<std::string> tenant = ValidateCreate(request);
  if (!tenant.ok()) return done(tenant.status());

  v1::CreateEnrollmentRequest unkeyed = request;
  unkeyed.clear_request_id();
  std::string fingerprint = RequestFingerprint(kMethod, unkeyed);

  // No lookup of the request id before the work: a create is cheap to
  // redo, and the commit finds a retried request inside its transaction
  // and answers with the first result (Committed), so the common, first
  // call costs no extra read.

  std::shared_ptr<const WorkflowCatalog> catalog = deps_.workflows->Get();
  const WorkflowTemplate* workflow =
      catalog->Find(request.workflow_id(), request.workflow_version());
  if (workflow == nullptr) {
    return done(absl::NotFoundError(
        request.workflow_version() == 0
            ? absl::StrCat("workflow_id: no workflow ",
                           QuoteInput(request.workflow_id()), " is loaded")
            : absl::StrCat("workflow_version: version ",
                           request.workflow_version(), " of workflow \"",
                           request.workflow_id(), "\" is not loaded")));
  }

  absl::Time now = deps_.clock->Now();
  EnrollmentName name{*tenant, deps_.ids->NewId(now)};
  v1::Event event;
  event.set_sequence(1);
  event.set_type("enrollment.created");
  *event.mutable_actor() = actor;
  *event.mutable_record_time() = ToProto(now);
  event.set_request_id(request.request_id());
  v1::EnrollmentCreated* created =
      event.mutable_payload()->mutable_enrollment_created();
  created->set_patient_ref(request.patient_ref());
  created->set_workflow_id(workflow->id);
  created->set_workflow_version(workflow->version);
  created->set_time_zone(request.time_zone());
  created->set_clinician_ref(request.clinician_ref());
  *created->mutable_labels() = request.labels();
  event.set_summary(absl::StrCat("Enrolled in ", workflow->id, "@",
                                 workflow->version, " at stage ",
                                 workflow->stages.front().id));

  internal::EnrollmentState initial;
  initial.mutable_enrollment()->set_name(name.Format());
  absl::StatusOr<runtime::StepResult> stepped =
      runtime::Step(*workflow, &Enrollments::LoadZone, initial, event);
  if (!stepped.ok()) return done(stepped.status());
  SealEvent("", *stepped, event);
  v1::Enrollment enrollment = stepped->state.enrollment();

  WriteBatch batch;
  batch.request = RequestRecord{
      *tenant,     request.request_id(),           std::string(kMethod),
      fingerprint, enrollment.SerializeAsString(), now};
  batch.create = RowFrom(name, stepped->state);
  batch.events.push_back(EventRowFor(name, event, ""));
  batch.audit.push_back(ChangeAudit(actor, kMethod, *tenant, name.Format(),
                                    request.request_id(), now));
  AddEffects(name, stepped->effects, batch);

  deps_.store->CommitAsync(
      std::move(batch),
      [done = std::move(done), created = std::move(enrollment)](
          absl::StatusOr<CommitResult> r) mutable {
        done(Committed(std::move(r), std::move(created)));
      });
}

void Enrollments::AcknowledgeReminder(const std::string& enrollment,
                                      const std::string& request_id,
                                      v1::ReminderAcknowledged ack,
                                      const v1::Actor& actor,
                                      SubmitCallback done) {
  constexpr absl::string_view kMethod = "AckReminder";
  absl::Status valid = CheckRequestId("request_id", request_id);
  if (!valid.ok()) return done(valid);
  v1::EventPayload payload;
  *payload.mutable_reminder_acknowledged() = std::move(ack);
  Apply(std::string(kMethod), "name", enrollment, request_id, 0, payload,
        RequestFingerprint(kMethod, payload), actor, kSubmitAttempts,
        std::move(done));
}

void Enrollments::Submit(const v1::SubmitEventRequest& request,
                         const v1::Actor& actor, SubmitCallback done) {
  constexpr absl::string_view kMethod = "SubmitEvent";
  absl::Status valid = CheckRequestId("request_id", request.request_id());
  if (!valid.ok()) return done(valid);
  if (request.expected_revision() < 0) {
    return done(absl::InvalidArgumentError(
        "expected_revision: must not be negative (0 skips the check)"));
  }
  switch (request.event().payload_case()) {
    case v1::EventPayload::PAYLOAD_NOT_SET:
      return done(absl::InvalidArgumentError("event: must set one payload"));
    case v1::EventPayload::kEnrollmentCreated:
    case v1::EventPayload::kEnrollmentUpdated:
    case v1::EventPayload::kWorkflowMigrated:
    case v1::EventPayload::kReminderAcknowledged:
      return done(absl::InvalidArgumentError(
          "event: enrollment_created, enrollment_updated, workflow_migrated "
          "and reminder_acknowledged are recorded by CreateEnrollment, "
          "UpdateEnrollment, MigrateEnrollments and AckReminder"));
    case v1::EventPayload::kAlertAcknowledged:
      // A clinician follows an alert up; the patient whose answer raised
      // it never closes it (docs/clinical-rules.md). The acknowledgement
      // event records who and when.
      if (actor.role() == "patient") {
        return done(absl::PermissionDeniedError(
            "event.alert_acknowledged: alerts are acknowledged by a "
            "clinician, not by the patient"));
      }
      break;
    default:
      break;
  }
  v1::SubmitEventRequest unkeyed = request;
  unkeyed.clear_request_id();
  Apply(std::string(kMethod), "name", request.name(), request.request_id(),
        request.expected_revision(), request.event(),
        RequestFingerprint(kMethod, unkeyed), actor, kSubmitAttempts,
        std::move(done));
}

void Enrollments::Update(const v1::UpdateEnrollmentRequest& request,
                         const v1::Actor& actor, EnrollmentCallback done) {
  constexpr absl::string_view kMethod = "UpdateEnrollment";
  absl::Status valid = CheckRequestId("request_id", request.request_id());
  if (valid.ok() && request.time_zone().empty() &&
      request.clinician_ref().empty()) {
    valid = absl::InvalidArgumentError(
        "time_zone: give a new time_zone or clinician_ref to change");
  }
  if (valid.ok() && !request.time_zone().empty()) {
    valid = LoadPatientTimeZone("time_zone", request.time_zone()).status();
  }
  if (valid.ok()) {
    valid = CheckReference("clinician_ref", request.clinician_ref(), false);
  }
  if (!valid.ok()) return done(valid);
  v1::UpdateEnrollmentRequest unkeyed = request;
  unkeyed.clear_request_id();
  v1::EventPayload payload;
  v1::EnrollmentUpdated* u = payload.mutable_enrollment_updated();
  u->set_time_zone(request.time_zone());
  u->set_clinician_ref(request.clinician_ref());
  u->set_reason(request.reason());
  Apply(std::string(kMethod), "name", request.name(), request.request_id(),
        request.expected_revision(), std::move(payload),
        RequestFingerprint(kMethod, unkeyed), actor, kSubmitAttempts,
        [done = std::move(done)](absl::StatusOr<v1::SubmitEventResponse> r) {
          if (!r.ok()) return done(r.status());
          done(r->enrollment());
        });
}

void EnrollmentLocks::Acquire(const std::string& key) {
  struct Free {
    const std::set<std::string>* held;
    const std::string* key;
    bool operator()() const { return held->count(*key) == 0; }
  };
  absl::MutexLock lock(&mu_);
  Free free{&held_, &key};
  mu_.Await(absl::Condition(&free));
  held_.insert(key);
}

void EnrollmentLocks::Release(const std::string& key) {
  absl::MutexLock lock(&mu_);
  held_.erase(key);
}

namespace {

// IdempotencyKey is the key a write is recorded under: the request id,
// except that a reminder is acknowledged once whatever the request id ("/"
// keeps the key apart from every request id a client may choose).
std::string IdempotencyKey(const std::string& request_id,
                           const v1::EventPayload& payload) {
  if (!payload.has_reminder_acknowledged()) return request_id;
  absl::string_view reminder = payload.reminder_acknowledged().reminder();
  return absl::StrCat("reminder/", reminder.substr(reminder.rfind('/') + 1));
}

// WriteTarget is what an event is applied to: the enrollment's row and
// state, and the workflow version the event runs under (held alive by
// `catalog`).
struct WriteTarget {
  EnrollmentRow row;
  internal::EnrollmentState state;
  std::shared_ptr<const WorkflowCatalog> catalog;
  const WorkflowTemplate* workflow = nullptr;
};

// LoadWriteTarget reads enrollment `en` for a write of `payload`: ABORTED
// when `expected_revision` (0: any) is stale, FAILED_PRECONDITION when the
// workflow version the event needs (the migration's target for a
// workflow_migrated payload) is not loaded.
absl::StatusOr<WriteTarget> LoadWriteTarget(const Enrollments::Deps& deps,
                                            const EnrollmentName& en,
                                            int64_t expected_revision,
                                            const v1::EventPayload& payload) {
  WriteTarget target;
  IPSRT_ASSIGN_OR_RETURN(target.row,
                         deps.store->GetEnrollment(en.tenant, en.id));
  if (expected_revision != 0 && expected_revision != target.row.revision) {
    return absl::AbortedError(
        absl::StrCat("expected_revision: enrollment ", en.id,
                     " is at revision ", target.row.revision, ", not ",
                     expected_revision, "; read it again and retry"));
  }
  IPSRT_ASSIGN_OR_RETURN(target.state, ParseState(target.row));
  target.catalog = deps.workflows->Get();
  int version = payload.has_workflow_migrated()
                    ? payload.workflow_migrated().to_version()
                    : target.state.enrollment().workflow_version();
  target.workflow =
      target.catalog->Find(target.state.enrollment().workflow_id(), version);
  if (target.workflow == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("enrollment ", en.id, " needs workflow ",
                     target.state.enrollment().workflow_id(), "@", version,
                     ", which is not loaded; load that version or migrate the "
                     "enrollment"));
  }
  return target;
}

// NextEvent makes `payload` the target's next event, recorded at `now`,
// and validates its content: scored by its instrument's plugin, clinical
// times plausible in the enrollment's zone. Does not step the workflow.
absl::StatusOr<v1::Event> NextEvent(const Enrollments::Deps& deps,
                                    const WriteTarget& target,
                                    const v1::Actor& actor,
                                    const std::string& request_id,
                                    v1::EventPayload payload, absl::Time now) {
  v1::Event event;
  event.set_sequence(target.row.revision + 1);
  event.set_type(runtime::EventTypeFor(payload));
  *event.mutable_actor() = actor;
  *event.mutable_record_time() = ToProto(now);
  event.set_request_id(request_id);
  *event.mutable_payload() = std::move(payload);
  static const QuestionnaireCatalog* const kNoInstruments =
      new QuestionnaireCatalog();
  IPSRT_RETURN_IF_ERROR(ScoreEvent(event, deps.questionnaires != nullptr
                                              ? deps.questionnaires
                                              : kNoInstruments));
  const v1::Enrollment& enrollment = target.state.enrollment();
  IPSRT_ASSIGN_OR_RETURN(absl::TimeZone zone,
                         Enrollments::LoadZone(enrollment.time_zone()));
  IPSRT_RETURN_IF_ERROR(CheckClinicalTimes(
      event.payload(), now, FromProtoTime(enrollment.create_time()), zone,
      deps.future_leeway));
  return event;
}

// SubmitResponseFor is the answer to a sealed event that took the
// enrollment to `enrollment`: the enrollment, the event, its scores and
// flags, and the crisis resources when a flag is a safety flag.
v1::SubmitEventResponse SubmitResponseFor(const v1::Event& event,
                                          const v1::Enrollment& enrollment,
                                          const Enrollments::Safety& safety) {
  v1::SubmitEventResponse response;
  *response.mutable_enrollment() = enrollment;
  *response.mutable_event() = event;
  *response.mutable_scores() = event.scores();
  response.set_band(event.band());
  bool urgent = false;
  for (const std::string& f : event.flags()) {
    response.add_flags(f);
    urgent = urgent || IsSafetyFlag(f);
  }
  if (urgent) {
    for (const std::string& c : safety.crisis_resources) {
      response.add_crisis_resources(c);
    }
  }
  return response;
}

// SubmitBatch is the write of a sealed event that took the enrollment to
// `state`: the idempotency record `request`, the enrollment's new row
// (conditional on `revision`, the one it was read at), the event (after
// `prev_hash`), its `audit` record and the outbox rows of `effects`.
WriteBatch SubmitBatch(const EnrollmentName& en, int64_t revision,
                       const std::string& prev_hash, const v1::Event& event,
                       const internal::EnrollmentState& state,
                       const std::vector<runtime::Effect>& effects,
                       RequestRecord request, AuditRecord audit) {
  WriteBatch batch;
  batch.request = std::move(request);
  batch.update = EnrollmentUpdate{revision, RowFrom(en, state)};
  batch.events.push_back(EventRowFor(en, event, prev_hash));
  batch.audit.push_back(std::move(audit));
  AddEffects(en, effects, batch);
  return batch;
}

}  // namespace

void Enrollments::Apply(const std::string& method,
                        const std::string& name_field, const std::string& name,
                        const std::string& request_id,
                        int64_t expected_revision, v1::EventPayload payload,
                        const std::string& fingerprint, const v1::Actor& actor,
                        int attempts_left, SubmitCallback done_unlocked) {
  absl::StatusOr<EnrollmentName> parsed = ParseEnrollmentName(name_field, name);
  if (!parsed.ok()) return done_unlocked(parsed.status());
  const EnrollmentName en = *parsed;
  const std::string lock_key = en.Format();
  locks_.Acquire(lock_key);
  // Every path out of this write, early or from the commit, releases the
  // enrollment's lock before answering.
  auto inner = std::make_shared<SubmitCallback>(std::move(done_unlocked));
  SubmitCallback done = [this, lock_key,
                         inner](absl::StatusOr<v1::SubmitEventResponse> r) {
    locks_.Release(lock_key);
    (*inner)(std::move(r));
  };

  std::string key = IdempotencyKey(request_id, payload);
  // No lookup of the idempotency record before the work: the commit finds
  // a retried request inside its transaction and answers with the first
  // result (Committed), so the common, first call costs no extra read. A
  // retry that cannot be applied again (its expected_revision is now stale,
  // or the event no longer fits the state it produced) is answered from
  // the record here, before any refusal.
  auto refuse = [&](absl::Status refusal) {
    absl::StatusOr<std::optional<v1::SubmitEventResponse>> prior =
        PriorResult<v1::SubmitEventResponse>(*deps_.store, en.tenant, key,
                                             method, fingerprint);
    if (!prior.ok()) return done(prior.status());
    if (!prior->has_value()) return done(std::move(refusal));
    absl::StatusOr<v1::SubmitEventResponse> replay =
        CompleteSubmitResponse(*deps_.store, en, **std::move(prior));
    if (!replay.ok()) return done(replay.status());
    // A retry answered from the idempotency record is still an access: its
    // audit record is stored before the answer.
    WriteBatch audit_only;
    audit_only.audit.push_back(ChangeAudit(
        actor, method, en.tenant, en.Format(), request_id, deps_.clock->Now()));
    audit_only.audit.back().outcome = "OK (replayed)";
    deps_.store->CommitAsync(std::move(audit_only),
                             [done, replay = *std::move(replay)](
                                 absl::StatusOr<CommitResult> r) mutable {
                               if (!r.ok()) return done(r.status());
                               done(std::move(replay));
                             });
  };

  absl::StatusOr<WriteTarget> target =
      LoadWriteTarget(deps_, en, expected_revision, payload);
  if (!target.ok()) return refuse(target.status());
  // Time never runs backwards within an enrollment's log.
  absl::Time now = std::max(deps_.clock->Now(), target->row.update_time);
  absl::StatusOr<v1::Event> event =
      NextEvent(deps_, *target, actor, request_id, std::move(payload), now);
  if (!event.ok()) return refuse(event.status());
  // The loaded state is this write's own: it is stepped in place, not
  // copied (a refused event leaves it unchanged).
  const std::string prev_hash = target->state.last_event_hash();
  absl::StatusOr<runtime::StepChanges> changes = runtime::StepInPlace(
      *target->workflow, &Enrollments::LoadZone, target->state, *event);
  if (!changes.ok()) return refuse(changes.status());
  SealEvent(prev_hash, *changes, target->state, *event);
  v1::SubmitEventResponse response =
      SubmitResponseFor(*event, target->state.enrollment(), deps_.safety);

  WriteBatch batch = SubmitBatch(
      en, target->row.revision, prev_hash, *event, target->state,
      changes->effects,
      RequestRecord{en.tenant, key, method, fingerprint,
                    StoredSubmitResponse(response), now},
      ChangeAudit(actor, method, en.tenant, en.Format(), request_id, now));

  v1::EventPayload retry_payload = event->payload();
  deps_.store->CommitAsync(
      std::move(batch),
      [this, en, method, name_field, name, request_id, expected_revision,
       retry_payload = std::move(retry_payload), fingerprint, actor,
       attempts_left, done = std::move(done), inner, lock_key,
       response = std::move(response)](absl::StatusOr<CommitResult> r) mutable {
        if (!r.ok()) {
          if (absl::IsAborted(r.status()) && expected_revision == 0 &&
              attempts_left > 1) {
            // Another process appended first; the caller asked for "the
            // current revision", so apply again on top of it. Not on this
            // thread (a store thread): Apply may wait for an enrollment
            // lock whose holder waits for the store.
            locks_.Release(lock_key);
            std::thread([this, method, name_field, name, request_id,
                         retry_payload = std::move(retry_payload), fingerprint,
                         actor, attempts_left, inner]() mutable {
              absl::SleepFor(RetryBackoff(kSubmitAttempts - attempts_left + 1));
              Apply(method, name_field, name, request_id, 0,
                    std::move(retry_payload), fingerprint, actor,
                    attempts_left - 1,
                    [inner](absl::StatusOr<v1::SubmitEventResponse> x) {
                      (*inner)(std::move(x));
                    });
            }).detach();
            return;
          }
        }
        done(Committed(*deps_.store, en, std::move(r), std::move(response)));
      });
}

namespace {

// CheckMigrationVersions checks a migration's workflow and versions: both
// given, different, and both loaded in `catalog` (NOT_FOUND otherwise), and
// that every stage_mapping entry names a stage of each version.
absl::Status CheckMigrationVersions(
    const v1::MigrateEnrollmentsRequest& request,
    const WorkflowCatalog& catalog) {
  if (request.workflow_id().empty()) {
    return absl::InvalidArgumentError("workflow_id: must not be empty");
  }
  if (request.from_version() <= 0 || request.to_version() <= 0) {
    return absl::InvalidArgumentError(
        "from_version: both from_version and to_version must be given (>= 1)");
  }
  if (request.from_version() == request.to_version()) {
    return absl::InvalidArgumentError(
        "to_version: must differ from from_version");
  }
  if (!request.dry_run()) {
    IPSRT_RETURN_IF_ERROR(CheckRequestId("request_id", request.request_id()));
  }
  const WorkflowTemplate* from =
      catalog.Find(request.workflow_id(), request.from_version());
  const WorkflowTemplate* to =
      catalog.Find(request.workflow_id(), request.to_version());
  for (const auto& [version, t] : {std::pair{request.from_version(), from},
                                   std::pair{request.to_version(), to}}) {
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          version == request.from_version() ? "from_version" : "to_version",
          ": workflow ", request.workflow_id(), "@", version,
          " is not loaded"));
    }
  }
  for (const auto& [old_stage, new_stage] : request.stage_mapping()) {
    std::string field = absl::StrCat("stage_mapping[\"", old_stage, "\"]");
    if (from->FindStage(old_stage) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", from->id, "@", from->version,
                       " has no stage \"", old_stage, "\""));
    }
    if (to->FindStage(new_stage) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", to->id, "@", to->version,
                       " has no stage \"", new_stage, "\""));
    }
  }
  return absl::OkStatus();
}

// EnrollmentsOnVersion lists every enrollment of `tenant` on version
// `version` of `workflow_id`, oldest first, reading the store page by page.
absl::StatusOr<std::vector<EnrollmentRow>> EnrollmentsOnVersion(
    Store& store, const std::string& tenant, const std::string& workflow_id,
    int version) {
  constexpr int kPage = 500;
  std::vector<EnrollmentRow> rows;
  EnrollmentFilter filter;
  filter.tenant = tenant;
  filter.workflow_id = workflow_id;
  std::optional<EnrollmentCursor> after;
  while (true) {
    IPSRT_ASSIGN_OR_RETURN(std::vector<EnrollmentRow> page,
                           store.ListEnrollments(filter, after, kPage));
    for (EnrollmentRow& row : page) {
      if (row.workflow_version == version) rows.push_back(std::move(row));
    }
    if (page.size() < static_cast<size_t>(kPage)) break;
    after = EnrollmentCursor{page.back().create_time, page.back().id};
  }
  return rows;
}

// PlanMigration is the dry-run answer: each enrollment with its stage now
// and the stage it moves to. INVALID_ARGUMENT, naming the first stage in
// name order, when an enrollment's stage has no mapping.
absl::StatusOr<v1::MigrateEnrollmentsResponse> PlanMigration(
    const v1::MigrateEnrollmentsRequest& request, const std::string& tenant,
    const std::vector<EnrollmentRow>& rows) {
  std::map<std::string, int> unmapped;
  for (const EnrollmentRow& row : rows) {
    if (!request.stage_mapping().count(row.stage)) ++unmapped[row.stage];
  }
  if (!unmapped.empty()) {
    const auto& [stage, n] = *unmapped.begin();
    return absl::InvalidArgumentError(
        absl::StrCat("stage_mapping: no mapping for stage \"", stage, "\" (", n,
                     " enrollment", n == 1 ? " is" : "s are", " in it)"));
  }
  v1::MigrateEnrollmentsResponse response;
  response.set_dry_run(request.dry_run());
  for (const EnrollmentRow& row : rows) {
    v1::MigratedEnrollment* m = response.add_enrollments();
    m->set_name(EnrollmentName{tenant, row.id}.Format());
    m->set_from_stage(row.stage);
    m->set_to_stage(request.stage_mapping().at(row.stage));
  }
  return response;
}

}  // namespace

absl::StatusOr<v1::MigrateEnrollmentsResponse> Enrollments::Migrate(
    const v1::MigrateEnrollmentsRequest& request, const v1::Actor& actor) {
  constexpr absl::string_view kMethod = "MigrateEnrollments";
  IPSRT_ASSIGN_OR_RETURN(std::string tenant,
                         ParseParent("parent", request.parent()));
  std::shared_ptr<const WorkflowCatalog> catalog = deps_.workflows->Get();
  IPSRT_RETURN_IF_ERROR(CheckMigrationVersions(request, *catalog));
  IPSRT_ASSIGN_OR_RETURN(
      std::vector<EnrollmentRow> rows,
      EnrollmentsOnVersion(*deps_.store, tenant, request.workflow_id(),
                           request.from_version()));
  IPSRT_ASSIGN_OR_RETURN(v1::MigrateEnrollmentsResponse response,
                         PlanMigration(request, tenant, rows));
  if (request.dry_run()) return response;
  v1::MigrateEnrollmentsRequest unkeyed = request;
  unkeyed.clear_request_id();
  unkeyed.clear_dry_run();
  for (v1::MigratedEnrollment& m : *response.mutable_enrollments()) {
    v1::EventPayload payload;
    v1::WorkflowMigrated* w = payload.mutable_workflow_migrated();
    w->set_from_version(request.from_version());
    w->set_to_version(request.to_version());
    w->set_from_stage(m.from_stage());
    w->set_to_stage(m.to_stage());
    w->set_reason(request.reason());
    std::string id = m.name().substr(m.name().rfind('/') + 1);
    absl::Notification applied;
    absl::StatusOr<v1::SubmitEventResponse> result;
    // Each enrollment moves in its own commit; a retry of the whole
    // migration finds the moved ones by their request ids.
    Apply(std::string(kMethod), "name", m.name(),
          absl::StrCat(request.request_id(), ":", id), 0, std::move(payload),
          RequestFingerprint(absl::StrCat(kMethod, "\n", id), unkeyed), actor,
          kSubmitAttempts, [&](absl::StatusOr<v1::SubmitEventResponse> r) {
            result = std::move(r);
            applied.Notify();
          });
    applied.WaitForNotification();
    if (!result.ok()) {
      return absl::Status(result.status().code(),
                          absl::StrCat("migrating ", m.name(), ": ",
                                       result.status().message()));
    }
    m.set_revision(result->enrollment().revision());
  }
  return response;
}

absl::StatusOr<v1::Enrollment> Enrollments::Get(
    const v1::GetEnrollmentRequest& request) {
  IPSRT_ASSIGN_OR_RETURN(EnrollmentName name,
                         ParseEnrollmentName("name", request.name()));
  IPSRT_ASSIGN_OR_RETURN(EnrollmentRow row,
                         deps_.store->GetEnrollment(name.tenant, name.id));
  return ParseEnrollment(row);
}

absl::StatusOr<v1::ListTasksResponse> Enrollments::Tasks(
    const v1::ListTasksRequest& request) {
  IPSRT_ASSIGN_OR_RETURN(EnrollmentName name,
                         ParseEnrollmentName("parent", request.parent()));
  IPSRT_ASSIGN_OR_RETURN(
      int page_size,
      ClampPageSize(request.page_size(), kDefaultPageSize, kMaxPageSize));
  IPSRT_ASSIGN_OR_RETURN(EnrollmentRow row,
                         deps_.store->GetEnrollment(name.tenant, name.id));
  IPSRT_ASSIGN_OR_RETURN(internal::EnrollmentState state, ParseState(row));
  std::vector<internal::TaskState> closed;
  if (request.include_closed()) {
    IPSRT_ASSIGN_OR_RETURN(closed, ClosedTasksFromLog(name, state));
  }
  std::vector<v1::Task> tasks = runtime::TaskList(state, closed);
  std::string fingerprint =
      Sha256Hex(absl::StrCat(name.Format(), "\n", request.include_closed(),
                             "\n", row.revision))
          .substr(0, 16);
  int64_t start = 0;
  if (!request.page_token().empty()) {
    IPSRT_ASSIGN_OR_RETURN(PagePosition pos,
                           DecodePageToken(request.page_token(), fingerprint));
    start = pos.key_int;
  }
  v1::ListTasksResponse response;
  for (int64_t i = start;
       i < static_cast<int64_t>(tasks.size()) && i < start + page_size; ++i) {
    *response.add_tasks() = tasks[i];
  }
  if (start + page_size < static_cast<int64_t>(tasks.size())) {
    response.set_next_page_token(
        EncodePageToken(PagePosition{fingerprint, start + page_size, ""}));
  }
  return response;
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
    // One unreadable record never hides the others: it is named, the rest
    // are listed.
    absl::StatusOr<internal::EnrollmentState> state = ParseState(row);
    if (!state.ok()) {
      v1::UnreadableRecord* u = response.add_unreadable();
      u->set_name(EnrollmentName{tenant, row.id}.Format());
      u->set_reason(kUnreadableSnapshot);
      continue;
    }
    *response.add_enrollments() = state->enrollment();
  }
  if (more) {
    const EnrollmentRow& last = rows.back();
    response.set_next_page_token(EncodePageToken(PagePosition{
        fingerprint, absl::ToUnixMicros(last.create_time), last.id}));
  }
  return response;
}

absl::StatusOr<std::vector<internal::TaskState>>
Enrollments::ClosedTasksFromLog(const EnrollmentName& name,
                                const internal::EnrollmentState& state) {
  // The state keeps only open tasks; closed ones are derived from the
  // event log (read in pages) by folding it as Replay does.
  constexpr int kPage = 1000;
  std::vector<v1::Event> events;
  int64_t after = 0;
  while (true) {
    IPSRT_ASSIGN_OR_RETURN(
        std::vector<EventRow> rows,
        deps_.store->ListEvents(name.tenant, name.id, after, kPage));
    for (const EventRow& row : rows) {
      if (row.sequence > state.enrollment().revision()) break;
      if (!events.emplace_back().ParseFromString(row.payload)) {
        return absl::DataLossError(absl::StrCat("store: event ", row.sequence,
                                                " of enrollment ", name.id,
                                                " cannot be parsed"));
      }
    }
    if (static_cast<int>(rows.size()) < kPage) break;
    after = rows.back().sequence;
  }
  std::shared_ptr<const WorkflowCatalog> catalog = deps_.workflows->Get();
  const std::string& workflow_id = state.enrollment().workflow_id();
  return runtime::ClosedTasks(
      [&](int version) { return catalog->Find(workflow_id, version); },
      &Enrollments::LoadZone, name.Format(), events);
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
      return absl::DataLossError(absl::StrCat("store: event ", row.sequence,
                                              " of enrollment ", name.id,
                                              " cannot be parsed"));
    }
  }
  if (more) {
    response.set_next_page_token(
        EncodePageToken(PagePosition{fingerprint, rows.back().sequence, ""}));
  }
  return response;
}

absl::StatusOr<std::vector<v1::UnreadableRecord>> FindUnreadableEnrollments(
    Store& store, absl::string_view tenant) {
  constexpr int kPage = 500;
  std::vector<v1::UnreadableRecord> out;
  EnrollmentFilter filter;
  filter.tenant = std::string(tenant);
  std::optional<EnrollmentCursor> after;
  while (true) {
    IPSRT_ASSIGN_OR_RETURN(std::vector<EnrollmentRow> page,
                           store.ListEnrollments(filter, after, kPage));
    for (const EnrollmentRow& row : page) {
      if (ParseState(row).ok()) continue;
      v1::UnreadableRecord& u = out.emplace_back();
      u.set_name(EnrollmentName{filter.tenant, row.id}.Format());
      u.set_reason(kUnreadableSnapshot);
    }
    if (static_cast<int>(page.size()) < kPage) break;
    after = EnrollmentCursor{page.back().create_time, page.back().id};
  }
  return out;
}

}  // namespace ipsrt
