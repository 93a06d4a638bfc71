// Enrollments: the engine's operations on enrollments, below any transport.
//
// The gRPC handlers, the CLI's local commands and the tests all call these.
// Each operation validates its request (INVALID_ARGUMENT naming the field
// path), applies it through the Store in one atomic, durable commit, and
// returns the resource. Thread-safe.
//
// Example:
//   Enrollments enrollments({.store = store, .clock = clock, ...});
//   enrollments.Create(request, actor, [](absl::StatusOr<v1::Enrollment> e) {
//     ...
//   });
#ifndef IPSRT_CORE_ENROLLMENTS_H_
#define IPSRT_CORE_ENROLLMENTS_H_

#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "common/validation.h"
#include "core/questionnaires.h"
#include "google/protobuf/message.h"
#include "ipsrt/clock.h"
#include "ipsrt/store.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "ipsrt/v1/workflow.pb.h"
#include "model/workflow.h"
#include "runtime/step.h"

namespace ipsrt {

// WorkflowRegistry holds the catalog now serving; a reload swaps it whole.
// Thread-safe.
class WorkflowRegistry {
 public:
  // `context` is what reloaded templates are checked against: the
  // instruments of the loaded questionnaire plugins.
  explicit WorkflowRegistry(std::shared_ptr<const WorkflowCatalog> catalog,
                            std::vector<std::string> directories = {},
                            ModelContext context = BuiltInModelContext())
      : catalog_(std::move(catalog)),
        directories_(std::move(directories)),
        context_(std::move(context)) {}
  std::shared_ptr<const WorkflowCatalog> Get() const {
    absl::MutexLock lock(&mu_);
    return catalog_;
  }
  // The instruments templates are checked against (immutable).
  const ModelContext& context() const { return context_; }

  struct ReloadResult {
    // True when the new set replaced the old one.
    bool reloaded = false;
    std::vector<YamlDiagnostic> diagnostics;
    // id@version of every template serving after the call.
    std::vector<std::string> serving;
  };
  // Reload re-reads the directories. Any error keeps the current set
  // serving and returns every diagnostic; versions loaded before stay
  // loaded (WorkflowCatalog::WithRetained), so running enrollments never
  // lose their version.
  ReloadResult Reload();

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const WorkflowCatalog> catalog_ ABSL_GUARDED_BY(mu_);
  const std::vector<std::string> directories_;
  const ModelContext context_;
  absl::Mutex reload_mu_;  // one reload at a time
};

// EnrollmentLocks serialises the read-step-commit of writes to one
// enrollment within this process, so writers in one process never make
// each other ABORTED; writers in other processes still meet the store's
// revision check. A lock may be released on another thread than the one
// that took it (commits complete on the store's thread).
class EnrollmentLocks {
 public:
  void Acquire(const std::string& key);
  void Release(const std::string& key);

 private:
  absl::Mutex mu_;
  std::set<std::string> held_ ABSL_GUARDED_BY(mu_);
};

// Plausible clinical times (README, "Plausible clinical times").
inline constexpr absl::Duration kDefaultFutureLeeway = absl::Minutes(10);
// How long before the enrollment's creation a clinical time may lie: the
// intake week recorded when the enrollment is made (the diary's own
// late-entry window is 7 days too).
inline constexpr absl::Duration kBackfillWindow = absl::Hours(7 * 24);
inline constexpr int kMinSessionMinutes = 1;
inline constexpr int kMaxSessionMinutes = 600;

// CheckClinicalTimes refuses, with INVALID_ARGUMENT naming the field, the
// clinical times of a submitted event that cannot be true: a
// questionnaire_response.authored_time or session_held.start_time later
// than `now` + `future_leeway` or earlier than `enrolled` (the enrollment's
// creation) - kBackfillWindow; an srm_diary_day.local_date before the
// local date of that instant in `zone` (later than today, or more than a
// week ago, is refused by the workflow step); a
// session_held.duration_minutes outside
// kMinSessionMinutes..kMaxSessionMinutes (0 means not recorded). Unset
// times mean "now". Late entries within these bounds are accepted.
absl::Status CheckClinicalTimes(const v1::EventPayload& payload, absl::Time now,
                                absl::Time enrolled, absl::TimeZone zone,
                                absl::Duration future_leeway);

class Enrollments {
 public:
  // Crisis resources shown to a patient with a safety flag (deployment
  // configuration).
  struct Safety {
    std::vector<std::string> crisis_resources;
  };
  struct Deps {
    Store* store;
    const Clock* clock;
    IdGenerator* ids;
    const WorkflowRegistry* workflows;
    Safety safety;
    // Instruments of the loaded questionnaire plugins; questionnaire
    // responses are scored by their plugin. Null means none are loaded.
    const QuestionnaireCatalog* questionnaires = nullptr;
    // How far after the time of recording a submitted clinical time may
    // lie (events.future_leeway; see CheckClinicalTimes).
    absl::Duration future_leeway = kDefaultFutureLeeway;
  };
  explicit Enrollments(Deps deps) : deps_(std::move(deps)) {}

  using EnrollmentCallback =
      std::function<void(absl::StatusOr<v1::Enrollment>)>;

  // Create starts a patient on a workflow, at its first stage, and records
  // an "enrollment.created" event. Idempotent by request_id; `done` runs
  // exactly once, possibly on a store thread.
  void Create(const v1::CreateEnrollmentRequest& request,
              const v1::Actor& actor, EnrollmentCallback done);

  // Get returns NOT_FOUND when the tenant has no such enrollment.
  absl::StatusOr<v1::Enrollment> Get(const v1::GetEnrollmentRequest& request);

  // List pages through a tenant's enrollments in creation order.
  absl::StatusOr<v1::ListEnrollmentsResponse> List(
      const v1::ListEnrollmentsRequest& request);

  // Timeline returns the enrollment's events in order.
  absl::StatusOr<v1::GetTimelineResponse> Timeline(
      const v1::GetTimelineRequest& request);

  using SubmitCallback =
      std::function<void(absl::StatusOr<v1::SubmitEventResponse>)>;

  // Submit records one event and everything the workflow does in response,
  // atomically. Idempotent by request_id; ABORTED when expected_revision is
  // stale (0 skips the check: the event applies to the current revision,
  // retried internally on a concurrent change).
  void Submit(const v1::SubmitEventRequest& request, const v1::Actor& actor,
              SubmitCallback done);

  // AcknowledgeReminder records a "reminder.acknowledged" event on
  // `enrollment` (its name). Idempotent per reminder (ack.reminder): a
  // second acknowledgement, whatever its request id, answers the first
  // result and records no event.
  void AcknowledgeReminder(const std::string& enrollment,
                           const std::string& request_id,
                           v1::ReminderAcknowledged ack, const v1::Actor& actor,
                           SubmitCallback done);

  // Update changes the time zone or clinician (an "enrollment.updated"
  // event); same rules as Submit.
  void Update(const v1::UpdateEnrollmentRequest& request,
              const v1::Actor& actor, EnrollmentCallback done);

  // Tasks lists the enrollment's open tasks (with include_closed, also the
  // tasks closed in the current stage and closed alert tasks, derived from
  // the event log).
  absl::StatusOr<v1::ListTasksResponse> Tasks(
      const v1::ListTasksRequest& request);

  // Migrate moves a tenant's enrollments between versions of a workflow
  // (see WorkflowService.MigrateEnrollments). Blocks until every
  // enrollment has moved or the first failure; enrollments moved before a
  // failure stay moved, and a retry with the same request id moves the
  // rest.
  absl::StatusOr<v1::MigrateEnrollmentsResponse> Migrate(
      const v1::MigrateEnrollmentsRequest& request, const v1::Actor& actor);

  // ZoneLoader for the runtime: cached IANA zone loading.
  static absl::StatusOr<absl::TimeZone> LoadZone(const std::string& name);

 private:
  struct Loaded;
  // ClosedTasksFromLog derives the closed tasks ListTasks shows with
  // include_closed from the enrollment's event log (runtime::ClosedTasks).
  absl::StatusOr<std::vector<internal::TaskState>> ClosedTasksFromLog(
      const EnrollmentName& name, const internal::EnrollmentState& state);
  void Apply(const std::string& method, const std::string& name_field,
             const std::string& name, const std::string& request_id,
             int64_t expected_revision, v1::EventPayload payload,
             const std::string& fingerprint, const v1::Actor& actor,
             int attempts_left, SubmitCallback done);

  Deps deps_;
  EnrollmentLocks locks_;
};

// SealEvent completes an event after Step: it records the outcomes and the
// scores Step derived (the weekly SRM score of a diary day), a summary when
// none is set, and the hash chaining it to `prev_hash`, and sets the
// state's last_event_hash. The server and the simulator both use it, so
// their events are the same.
void SealEvent(absl::string_view prev_hash, runtime::StepResult& stepped,
               v1::Event& event);
// The same after StepInPlace: the outcomes are moved into the event.
void SealEvent(absl::string_view prev_hash, runtime::StepChanges& changes,
               internal::EnrollmentState& state, v1::Event& event);
// SealStepped is SealEvent's work after the outcomes are on the event.
void SealStepped(absl::string_view prev_hash, internal::EnrollmentState& state,
                 v1::Event& event);

// ScoreEvent validates a submitted event's content (a questionnaire
// response's items and range) and records its scores, band and flags on the
// event, as the engine does before Step; they are recorded once and never
// recomputed (Step and Replay read them from the event). The response is
// scored by the plugin that serves its instrument in `questionnaires`;
// INVALID_ARGUMENT names the item (`event.questionnaire_response.answers[
// "9"]: ...`), NOT_FOUND the questionnaire_id no plugin serves. A null
// catalog scores PHQ-9, GAD-7 and ASRM with the same scoring code compiled
// into the engine (the offline simulator, which loads no plugins).
absl::Status ScoreEvent(v1::Event& event,
                        const QuestionnaireCatalog* questionnaires);

// DeterministicBytes serialises a message with map entries in key order,
// so equal messages give equal bytes (snapshots, hashes).
std::string DeterministicBytes(const google::protobuf::Message& message);

// RequestFingerprint hashes a request for idempotency: the method name and
// the deterministic serialization of the request. Callers clear the
// request's `request_id` first.
std::string RequestFingerprint(absl::string_view method,
                               const google::protobuf::Message& request);

// EventHash chains an event to its predecessor: SHA-256 over the previous
// hash and the event's deterministic serialization without its hash.
std::string EventHash(absl::string_view prev_hash, const v1::Event& event);

// FindUnreadableEnrollments reads every stored enrollment of `tenant` and
// returns those whose snapshot cannot be decoded (the ones GetEnrollment
// answers DATA_LOSS for), by resource name with the reason; never their
// content. For `ipsrt store check`; reads in pages, O(enrollments).
absl::StatusOr<std::vector<v1::UnreadableRecord>> FindUnreadableEnrollments(
    Store& store, absl::string_view tenant);

}  // namespace ipsrt

#endif  // IPSRT_CORE_ENROLLMENTS_H_
