// Policy: the one table of who may call which RPC, and on what.
//
// Every ipsrt.v1 method has exactly one entry (a unit test walks the
// descriptor pool to keep it so); a method without an entry is refused
// (fail closed). An entry names the roles allowed and how the request's
// resource is scoped:
//   kNone        no tenant data (diagnostics, workflow catalog, plugins).
//   kTenant      `resource_field` is "tenants/{t}": the caller's tenant
//                only; another tenant is PERMISSION_DENIED for every
//                tenant, existing or not, so nothing is learnt.
//   kEnrollment  `resource_field` is "tenants/{t}/enrollments/{e}[/...]":
//                another tenant's, or for a patient another patient's,
//                enrollment is NOT_FOUND with the message of an enrollment
//                that does not exist.
//   kAudit       audit trail: tenant-scoped admins see their tenant;
//                `deployment_only` calls need an admin without tenant.
// A role not in the entry is PERMISSION_DENIED before any resource is
// looked at. Admins without a tenant reach every tenant.
//
// Events have a second table (EventPolicyTable): who may record which
// EventPayload type through SubmitEvent. Patients record what they report
// (questionnaire responses, diary days, their own tasks); clinical acts
// (sessions, goals, plans, stage changes, alert acknowledgements) are
// clinicians' and admins', and integration callers' only on the tenants the
// deployment lists in `auth.integration_clinical_tenants`.
#ifndef IPSRT_AUTH_POLICY_H_
#define IPSRT_AUTH_POLICY_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "auth/principal.h"

namespace ipsrt {

enum class Scope { kNone, kTenant, kEnrollment, kAudit };

// How a call is audited (see README, "Audit").
enum class AuditKind {
  kNone,           // no patient data: only refusals are recorded
  kRead,           // a record is appended after the call, whatever its outcome
  kChange,         // the change's commit carries the record; failures are
                   // appended on their own
  kChangeAndRead,  // both (MigrateEnrollments: dry runs read)
};

struct MethodPolicy {
  // gRPC path, "/ipsrt.v1.EnrollmentService/GetEnrollment".
  absl::string_view method;
  std::vector<Role> roles;
  Scope scope = Scope::kNone;
  // Request field holding the resource name ("name" or "parent").
  absl::string_view resource_field;
  AuditKind audit = AuditKind::kNone;
  // For patients on kTenant lists: this request field must equal the
  // patient's own patient_ref.
  absl::string_view patient_filter_field;
  // kAudit: only an admin without tenant.
  bool deployment_only = false;
  // Request field holding an EventPayload: the event's type is decided by
  // EventPolicyTable as well.
  absl::string_view event_field;

  bool Allows(Role role) const;
};

// EventPolicy is who may record one type of event (one EventPayload
// field), checked after the method's own entry.
struct EventPolicy {
  // EventPayload field name, "alert_acknowledged".
  absl::string_view payload;
  std::vector<Role> roles;
  // Integration callers record it only when their tenant is listed in
  // `auth.integration_clinical_tenants` (Principal::clinical_integration).
  bool integration_by_tenant = false;
  // Callers who may not record clinical events (patients, integration
  // callers of unlisted tenants) may name in the payload's `task_id` only
  // a task assigned to the patient: a clinician's task is a clinical act.
  bool patient_tasks_only = false;
  // Recorded by this RPC and never submitted: INVALID_ARGUMENT for all.
  absl::string_view recorded_by;

  bool Allows(const Principal& principal) const;
};

// EventPolicyTable has one entry per EventPayload field (policy.cc).
const std::vector<EventPolicy>& EventPolicyTable();

// FindEventPolicy returns the entry of `payload`, or nullptr (refuse).
const EventPolicy* FindEventPolicy(absl::string_view payload);

// PolicyTable is every entry, in one place (policy.cc).
const std::vector<MethodPolicy>& PolicyTable();

// FindPolicy returns the entry of `method`, or nullptr (refuse).
const MethodPolicy* FindPolicy(absl::string_view method);

// What an admitted call addresses.
struct Access {
  // Tenant of the resource ("" for kNone and deployment-wide calls).
  std::string tenant;
  // Resource name as given ("" for kNone).
  std::string resource;
};

// Fields of the request the decision needs, read by the caller (the gRPC
// layer reads them by reflection).
struct RequestFacts {
  std::string resource;        // value of policy.resource_field
  std::string patient_filter;  // value of policy.patient_filter_field
  std::string audit_tenant;    // kAudit: the requested tenant filter
  // policy.event_field: the EventPayload field set ("" when none) and the
  // task id that payload names ("" when none).
  std::string event;
  std::string event_task_id;
};

// Looks up the patient_ref of an enrollment; NOT_FOUND when absent.
using PatientOf = std::function<absl::StatusOr<std::string>(
    const std::string& tenant, const std::string& enrollment_id)>;

// Whether `task_id` of an enrollment may be named by its patient: false
// only when an open task of that id is assigned to someone else (an unknown
// task is the request's own error, reported by the operation).
using PatientMayNameTask = std::function<absl::StatusOr<bool>(
    const std::string& tenant, const std::string& enrollment_id,
    const std::string& task_id)>;

// Authorize decides one call: OK with what it addresses, or
// PERMISSION_DENIED / NOT_FOUND (see the file comment) or INVALID_ARGUMENT
// for a malformed resource name or an event recorded by another RPC.
// `method` must have an entry, else PERMISSION_DENIED. Order: the method's
// roles, the event's roles (PERMISSION_DENIED naming `event.<type>`), the
// resource's scope, then the task a payload names (`patient_task`; null
// refuses).
absl::StatusOr<Access> Authorize(const Principal& principal,
                                 absl::string_view method,
                                 const RequestFacts& facts,
                                 const PatientOf& patient_of,
                                 const PatientMayNameTask& patient_task = {});

}  // namespace ipsrt

#endif  // IPSRT_AUTH_POLICY_H_
