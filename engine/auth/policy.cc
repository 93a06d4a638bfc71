#include "auth/policy.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/validation.h"
#include "ipsrt/status_macros.h"

namespace ipsrt {
namespace {

constexpr Role kAdmin = Role::kAdmin;
constexpr Role kClinician = Role::kClinician;
constexpr Role kPatient = Role::kPatient;
constexpr Role kIntegration = Role::kIntegration;

const std::vector<Role> kEveryone = {kAdmin, kClinician, kPatient,
                                     kIntegration};
const std::vector<Role> kStaff = {kAdmin, kClinician, kIntegration};

std::vector<MethodPolicy>* BuildTable() {
  using S = Scope;
  using A = AuditKind;
  return new std::vector<MethodPolicy>{
      // Diagnostics: no tenant data.
      {"/ipsrt.v1.DiagnosticsService/Ping", kEveryone},
      {"/ipsrt.v1.DiagnosticsService/GetServerInfo", kStaff},
      // Workflow catalog: templates are not patient data.
      {"/ipsrt.v1.WorkflowService/ListWorkflows", kEveryone},
      {"/ipsrt.v1.WorkflowService/GetWorkflow", kEveryone},
      {"/ipsrt.v1.WorkflowService/ValidateWorkflow", kStaff},
      {"/ipsrt.v1.WorkflowService/ReloadWorkflows", {kAdmin}},
      {"/ipsrt.v1.WorkflowService/MigrateEnrollments",
       {kAdmin},
       S::kTenant,
       "parent",
       A::kChangeAndRead},
      // Enrollments: patient data.
      {"/ipsrt.v1.EnrollmentService/CreateEnrollment", kStaff, S::kTenant,
       "parent", A::kChange},
      {"/ipsrt.v1.EnrollmentService/GetEnrollment", kEveryone, S::kEnrollment,
       "name", A::kRead},
      {"/ipsrt.v1.EnrollmentService/ListEnrollments", kEveryone, S::kTenant,
       "parent", A::kRead, "patient_ref"},
      {"/ipsrt.v1.EnrollmentService/UpdateEnrollment", kStaff, S::kEnrollment,
       "name", A::kChange},
      {"/ipsrt.v1.EnrollmentService/ListTasks", kEveryone, S::kEnrollment,
       "parent", A::kRead},
      {"/ipsrt.v1.EnrollmentService/SubmitEvent", kEveryone, S::kEnrollment,
       "name", A::kChange, "", false,
       /*event_field=*/"event"},
      {"/ipsrt.v1.EnrollmentService/GetTimeline", kEveryone, S::kEnrollment,
       "name", A::kRead},
      // Questionnaires: instrument definitions, not patient data.
      {"/ipsrt.v1.QuestionnaireService/ListQuestionnaires", kEveryone},
      {"/ipsrt.v1.QuestionnaireService/GetQuestionnaire", kEveryone},
      // Scores answers and records nothing: no resource, nothing to audit.
      {"/ipsrt.v1.QuestionnaireService/ScoreResponse", kEveryone},
      // Reminders: about enrollments, so patient data.
      {"/ipsrt.v1.ReminderService/ListDueReminders", kStaff, S::kTenant,
       "parent", A::kRead},
      {"/ipsrt.v1.ReminderService/WatchReminders",
       {kAdmin, kIntegration},
       S::kTenant,
       "parent",
       A::kRead},
      {"/ipsrt.v1.ReminderService/AckReminder", kEveryone, S::kEnrollment,
       "name", A::kChange},
      // Export: whole records leave the engine.
      {"/ipsrt.v1.ExportService/ExportEnrollment", kStaff, S::kEnrollment,
       "name", A::kRead},
      {"/ipsrt.v1.ExportService/PushEnrollment", kStaff, S::kEnrollment, "name",
       A::kChange},
      {"/ipsrt.v1.ExportService/BulkExport",
       {kAdmin, kIntegration},
       S::kTenant,
       "parent",
       A::kRead},
      // Course report: the enrollment's record as a page, read like it.
      {"/ipsrt.v1.ReportService/RenderReport", kEveryone, S::kEnrollment,
       "name", A::kRead},
      // Plugins: deployment internals.
      {"/ipsrt.v1.PluginService/ListPlugins", {kAdmin}},
      // Audit trail.
      {"/ipsrt.v1.AuditService/ListAuditRecords", {kAdmin}, S::kAudit},
      {"/ipsrt.v1.AuditService/VerifyAuditChain",
       {kAdmin},
       S::kAudit,
       "",
       A::kNone,
       "",
       /*deployment_only=*/true},
      {"/ipsrt.v1.AuditService/VerifyStore",
       {kAdmin},
       S::kAudit,
       "",
       A::kNone,
       "",
       /*deployment_only=*/true},
      // Store health (docs/durability.md): deployment internals.
      {"/ipsrt.v1.StoreService/CheckStore",
       {kAdmin},
       S::kAudit,
       "",
       A::kNone,
       "",
       /*deployment_only=*/true},
  };
}

std::vector<EventPolicy>* BuildEventTable() {
  const std::vector<Role> clinical = {kAdmin, kClinician, kIntegration};
  return new std::vector<EventPolicy>{
      // What patients report, on their own enrollment.
      {"questionnaire_response", kEveryone, false, /*patient_tasks_only=*/true},
      {"srm_diary_day", kEveryone},
      {"task_completed", kEveryone, false, /*patient_tasks_only=*/true},
      // Clinical acts: clinicians (and admins); integration callers only on
      // tenants that let their EHR record them.
      {"session_held", clinical, /*integration_by_tenant=*/true},
      {"goal_set", clinical, true},
      {"relapse_plan", clinical, true},
      {"disruption_plan", clinical, true},
      {"stage_change", clinical, true},
      {"alert_acknowledged", clinical, true},
      // The scheduler's tick; staff may send it to re-evaluate timers.
      {"time_elapsed", kStaff},
      // Recorded by their own RPCs.
      {"enrollment_created", {}, false, false, "CreateEnrollment"},
      {"enrollment_updated", {}, false, false, "UpdateEnrollment"},
      {"workflow_migrated", {}, false, false, "MigrateEnrollments"},
      {"reminder_acknowledged", {}, false, false, "AckReminder"},
  };
}

absl::Status Denied(const Principal& p, absl::string_view why) {
  return absl::PermissionDeniedError(
      absl::StrCat("permission denied: ", RoleName(p.role), " ", why));
}

// Clinicians and admins, and integration callers of the tenants listed in
// auth.integration_clinical_tenants.
bool MayRecordClinical(const Principal& p) {
  return p.role == Role::kAdmin || p.role == Role::kClinician ||
         (p.role == Role::kIntegration && p.clinical_integration);
}

absl::Status EnrollmentNotFound(const EnrollmentName& name) {
  // The store's words for an enrollment that does not exist.
  return absl::NotFoundError(
      absl::StrCat("enrollment ", name.Format(), " not found"));
}

}  // namespace

bool MethodPolicy::Allows(Role role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

const std::vector<MethodPolicy>& PolicyTable() {
  static const std::vector<MethodPolicy>* const kTable = BuildTable();
  return *kTable;
}

const MethodPolicy* FindPolicy(absl::string_view method) {
  for (const MethodPolicy& p : PolicyTable()) {
    if (p.method == method) return &p;
  }
  return nullptr;
}

bool EventPolicy::Allows(const Principal& principal) const {
  if (std::find(roles.begin(), roles.end(), principal.role) == roles.end()) {
    return false;
  }
  return principal.role != Role::kIntegration || !integration_by_tenant ||
         principal.clinical_integration;
}

const std::vector<EventPolicy>& EventPolicyTable() {
  static const std::vector<EventPolicy>* const kTable = BuildEventTable();
  return *kTable;
}

const EventPolicy* FindEventPolicy(absl::string_view payload) {
  for (const EventPolicy& p : EventPolicyTable()) {
    if (p.payload == payload) return &p;
  }
  return nullptr;
}

namespace {

// AuthorizedEvent checks the submitted event's type (`facts.event`, at
// `event_field`) before any resource is looked at: null when the method
// takes no event; PERMISSION_DENIED when the type has no policy or the
// principal may not record it; INVALID_ARGUMENT for an event the engine
// records itself.
absl::StatusOr<const EventPolicy*> AuthorizedEvent(
    const Principal& principal, const MethodPolicy& policy,
    const RequestFacts& facts, const std::string& event_field) {
  if (policy.event_field.empty() || facts.event.empty()) return nullptr;
  const EventPolicy* event = FindEventPolicy(facts.event);
  if (event == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        "permission denied: ", event_field, " has no access policy"));
  }
  if (!event->recorded_by.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(event_field, ": is recorded by ", event->recorded_by,
                     ", never submitted"));
  }
  if (!event->Allows(principal)) {
    return Denied(principal,
                  absl::StrCat("may not record ", event_field,
                               principal.role == Role::kIntegration
                                   ? " (this tenant is not in "
                                     "auth.integration_clinical_tenants)"
                                   : ""));
  }
  return event;
}

// AuthorizeAudit: the audit records of the principal's own tenant; every
// tenant's, and the deployment's chain (`deployment_only`), only for an
// admin of every tenant.
absl::StatusOr<Access> AuthorizeAudit(const Principal& principal,
                                      bool deployment_only, bool every_tenant,
                                      const std::string& audit_tenant) {
  if (deployment_only && !every_tenant) {
    return Denied(principal,
                  "of one tenant may not verify the "
                  "deployment's audit chain");
  }
  if (!every_tenant && audit_tenant != principal.tenant) {
    return Denied(principal,
                  "may list only the audit records of their "
                  "own tenant (set tenant to it)");
  }
  return Access{.tenant = audit_tenant};
}

// AuthorizeTenant: a resource of the principal's own tenant; a patient
// lists only their own enrollments.
absl::StatusOr<Access> AuthorizeTenant(const Principal& principal,
                                       const MethodPolicy& policy,
                                       const RequestFacts& facts,
                                       bool every_tenant) {
  Access access;
  IPSRT_ASSIGN_OR_RETURN(access.tenant,
                         ParseParent(policy.resource_field, facts.resource));
  access.resource = facts.resource;
  if (!every_tenant && access.tenant != principal.tenant) {
    // The same answer for every other tenant, existing or not.
    return Denied(principal,
                  absl::StrCat("may not access ", policy.resource_field,
                               " outside their tenant"));
  }
  if (principal.role == Role::kPatient &&
      (policy.patient_filter_field.empty() ||
       facts.patient_filter != principal.patient_ref)) {
    return Denied(
        principal,
        absl::StrCat("may list only their own enrollments (set ",
                     policy.patient_filter_field, " to their patient_ref)"));
  }
  return access;
}

// AuthorizeEnrollment: an enrollment (or a resource under it) of the
// principal's tenant; a patient's own only, and NOT_FOUND, as for a missing
// one, otherwise; a patient-task-only event names a task of the patient.
absl::StatusOr<Access> AuthorizeEnrollment(
    const Principal& principal, const MethodPolicy& policy,
    const RequestFacts& facts, bool every_tenant, const EventPolicy* event,
    const std::string& event_field, const PatientOf& patient_of,
    const PatientMayNameTask& patient_task) {
  Access access;
  std::vector<absl::string_view> parts = absl::StrSplit(facts.resource, '/');
  std::string enrollment =
      parts.size() >= 4 ? absl::StrJoin(parts.begin(), parts.begin() + 4, "/")
                        : facts.resource;
  IPSRT_ASSIGN_OR_RETURN(
      EnrollmentName name,
      ParseEnrollmentName(policy.resource_field, enrollment));
  access.tenant = name.tenant;
  access.resource = facts.resource;
  if (!every_tenant && name.tenant != principal.tenant) {
    return EnrollmentNotFound(name);
  }
  if (principal.role == Role::kPatient) {
    absl::StatusOr<std::string> patient = patient_of(name.tenant, name.id);
    if (absl::IsNotFound(patient.status()) ||
        (patient.ok() && *patient != principal.patient_ref)) {
      return EnrollmentNotFound(name);
    }
    if (!patient.ok()) return patient.status();
  }
  if (event != nullptr && event->patient_tasks_only &&
      !facts.event_task_id.empty() && !MayRecordClinical(principal)) {
    absl::StatusOr<bool> own =
        patient_task ? patient_task(name.tenant, name.id, facts.event_task_id)
                     : absl::StatusOr<bool>(false);
    if (!own.ok()) return own.status();
    if (!*own) {
      return Denied(principal,
                    absl::StrCat("may complete only tasks assigned to "
                                 "the patient (",
                                 event_field, ".task_id)"));
    }
  }
  return access;
}

}  // namespace

absl::StatusOr<Access> Authorize(const Principal& principal,
                                 absl::string_view method,
                                 const RequestFacts& facts,
                                 const PatientOf& patient_of,
                                 const PatientMayNameTask& patient_task) {
  const MethodPolicy* policy = FindPolicy(method);
  if (policy == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("permission denied: ", method, " has no access policy"));
  }
  if (!policy->Allows(principal.role)) {
    return Denied(principal, absl::StrCat("may not call ", method));
  }
  const std::string event_field =
      absl::StrCat(policy->event_field, ".", facts.event);
  IPSRT_ASSIGN_OR_RETURN(
      const EventPolicy* event,
      AuthorizedEvent(principal, *policy, facts, event_field));
  const bool every_tenant =
      principal.role == Role::kAdmin && principal.tenant.empty();
  Access access;
  switch (policy->scope) {
    case Scope::kNone:
      return access;
    case Scope::kAudit:
      return AuthorizeAudit(principal, policy->deployment_only, every_tenant,
                            facts.audit_tenant);
    case Scope::kTenant:
      return AuthorizeTenant(principal, *policy, facts, every_tenant);
    case Scope::kEnrollment:
      return AuthorizeEnrollment(principal, *policy, facts, every_tenant, event,
                                 event_field, patient_of, patient_task);
  }
  return absl::InternalError("policy: unknown scope");
}

}  // namespace ipsrt
