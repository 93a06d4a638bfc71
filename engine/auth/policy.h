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

  bool Allows(Role role) const;
};

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
};

// Looks up the patient_ref of an enrollment; NOT_FOUND when absent.
using PatientOf = std::function<absl::StatusOr<std::string>(
    const std::string& tenant, const std::string& enrollment_id)>;

// Authorize decides one call: OK with what it addresses, or
// PERMISSION_DENIED / NOT_FOUND (see the file comment) or INVALID_ARGUMENT
// for a malformed resource name. `method` must have an entry, else
// PERMISSION_DENIED.
absl::StatusOr<Access> Authorize(const Principal& principal,
                                 absl::string_view method,
                                 const RequestFacts& facts,
                                 const PatientOf& patient_of);

}  // namespace ipsrt

#endif  // IPSRT_AUTH_POLICY_H_
