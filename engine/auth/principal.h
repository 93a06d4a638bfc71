// Principal: who an authenticated call acts as.
//
// Every ipsrt.v1 call is made by one principal, taken from its bearer token
// (a JWT or a static API token, see authenticator.h) or, on a loopback
// deployment configured with `auth.mode: none`, the local administrator.
#ifndef IPSRT_AUTH_PRINCIPAL_H_
#define IPSRT_AUTH_PRINCIPAL_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace ipsrt {

// Role is what a principal may do (see policy.h for the table).
enum class Role {
  kAdmin,        // operates the deployment: workflows, migrations, audit
  kClinician,    // treats the patients of one tenant
  kPatient,      // one patient: only their own enrollments
  kIntegration,  // EHR and system callers of one tenant
};

// RoleName is "admin", "clinician", "patient" or "integration".
absl::string_view RoleName(Role role);

// ParseRole is the inverse of RoleName; nullopt for anything else.
std::optional<Role> ParseRole(absl::string_view name);

struct Principal {
  // Stable id of the caller ("sub" of a JWT, `subject` of an API token).
  std::string subject;
  Role role = Role::kPatient;
  // The tenant the principal belongs to. Empty only for an admin, meaning
  // every tenant of the deployment.
  std::string tenant;
  // For patients: the patient_ref of the enrollments they may reach.
  std::string patient_ref;
  // For integration callers: their tenant is listed in
  // `auth.integration_clinical_tenants`, so they may record clinical events
  // (sessions, goals, plans, stage changes, alert acknowledgements).
  bool clinical_integration = false;
};

}  // namespace ipsrt

#endif  // IPSRT_AUTH_PRINCIPAL_H_
