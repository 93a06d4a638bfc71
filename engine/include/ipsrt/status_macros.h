// Small equivalents of the status macros that Debian 12's Abseil
// (20220623) does not ship.
//
// Example:
//   absl::StatusOr<Enrollment> Load(...) {
//     IPSRT_RETURN_IF_ERROR(CheckName(name));
//     IPSRT_ASSIGN_OR_RETURN(EnrollmentRow row, store->GetEnrollment(t, id));
//     ...
//   }
#ifndef IPSRT_STATUS_MACROS_H_
#define IPSRT_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define IPSRT_STATUS_CONCAT_INNER_(a, b) a##b
#define IPSRT_STATUS_CONCAT_(a, b) IPSRT_STATUS_CONCAT_INNER_(a, b)

// IPSRT_RETURN_IF_ERROR returns the status of `expr` from the enclosing
// function when it is not OK.
#define IPSRT_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status ipsrt_status_ = (expr);         \
    if (!ipsrt_status_.ok()) return ipsrt_status_; \
  } while (false)

// IPSRT_ASSIGN_OR_RETURN evaluates `rexpr` (a StatusOr), returns its status
// when not OK, and otherwise moves its value into `lhs` (which may be a
// declaration).
#define IPSRT_ASSIGN_OR_RETURN(lhs, rexpr) \
  IPSRT_ASSIGN_OR_RETURN_IMPL_(            \
      IPSRT_STATUS_CONCAT_(ipsrt_statusor_, __LINE__), lhs, rexpr)

#define IPSRT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // IPSRT_STATUS_MACROS_H_
