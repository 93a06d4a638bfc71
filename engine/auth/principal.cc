#include "auth/principal.h"

namespace ipsrt {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kClinician:
      return "clinician";
    case Role::kPatient:
      return "patient";
    case Role::kIntegration:
      return "integration";
  }
  return "unknown";
}

std::optional<Role> ParseRole(absl::string_view name) {
  for (Role r :
       {Role::kAdmin, Role::kClinician, Role::kPatient, Role::kIntegration}) {
    if (RoleName(r) == name) return r;
  }
  return std::nullopt;
}

}  // namespace ipsrt
