#include <cmath>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "expr/ast.h"
#include "expr/expr.h"

namespace ipsrt::expr {

absl::string_view TypeName(Type type) {
  switch (type) {
    case Type::kBool:
      return "bool";
    case Type::kNumber:
      return "number";
    case Type::kString:
      return "string";
  }
  return "unknown";
}

std::optional<Type> Value::type() const {
  if (is_bool()) return Type::kBool;
  if (is_number()) return Type::kNumber;
  if (is_string()) return Type::kString;
  return std::nullopt;
}

std::string Value::DebugString() const {
  if (is_bool()) return bool_value() ? "true" : "false";
  if (is_number()) return internal::FormatNumber(number_value());
  if (is_string()) return internal::QuoteString(string_value());
  return "absent";
}

namespace internal {

std::string FormatNumber(double d) {
  // Integral values print exactly with %.0f. Others get the fewest
  // fractional digits that read back as the same double, so printing and
  // re-parsing (CompiledExpr::ToString) is lossless without ever using an
  // exponent, which the language has no syntax for.
  if (d == std::trunc(d) && std::fabs(d) < 1e21) {
    if (d == 0) return "0";  // Also folds -0.
    return absl::StrFormat("%.0f", d);
  }
  for (int digits = 1; digits <= 400; ++digits) {
    std::string s = absl::StrFormat("%.*f", digits, d);
    double back = 0;
    if (absl::SimpleAtod(s, &back) && back == d) return s;
  }
  return absl::StrFormat("%.17g", d);
}

std::string QuoteString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace internal

std::string ExprError::ToString() const {
  return absl::StrCat(line, ":", column, ": ", message);
}

}  // namespace ipsrt::expr
