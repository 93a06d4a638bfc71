// Evaluation of a CompiledExpr against an Activation.
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "expr/ast.h"
#include "expr/expr.h"
#include "ipsrt/status_macros.h"

namespace ipsrt::expr {
namespace {

using internal::Node;
using internal::NodeKind;
using internal::Op;

// Truthy is how !, && and || read a value: only the bool true is true;
// absent is false.
bool Truthy(const Value& v) { return v.is_bool() && v.bool_value(); }

// Number wraps an arithmetic result; a non-finite one (overflow) is absent
// so that every present number stays finite and comparable.
Value Number(double d) {
  return std::isfinite(d) ? Value::Number(d) : Value::Absent();
}

// Compare applies an ordering or equality operator to two present values
// of the same type (the checker guarantees the types match).
bool Compare(Op op, const Value& a, const Value& b) {
  // -1, 0, 1 as a < b, a == b, a > b.
  int order = 0;
  if (a.is_number()) {
    order = a.number_value() < b.number_value()   ? -1
            : a.number_value() > b.number_value() ? 1
                                                  : 0;
  } else if (a.is_string()) {
    int c = a.string_value().compare(b.string_value());
    order = c < 0 ? -1 : c > 0 ? 1 : 0;
  } else {
    order = a.bool_value() == b.bool_value() ? 0 : 1;
  }
  switch (op) {
    case Op::kEq:
      return order == 0;
    case Op::kNe:
      return order != 0;
    case Op::kLt:
      return order < 0;
    case Op::kLe:
      return order <= 0;
    case Op::kGt:
      return order > 0;
    case Op::kGe:
      return order >= 0;
    default:
      return false;
  }
}

// Arithmetic applies + - * / % to two present values.
Value Arithmetic(Op op, const Value& a, const Value& b) {
  if (op == Op::kAdd && a.is_string()) {
    return Value::String(absl::StrCat(a.string_value(), b.string_value()));
  }
  double x = a.number_value();
  double y = b.number_value();
  switch (op) {
    case Op::kAdd:
      return Number(x + y);
    case Op::kSub:
      return Number(x - y);
    case Op::kMul:
      return Number(x * y);
    case Op::kDiv:
      return y == 0 ? Value::Absent() : Number(x / y);
    case Op::kMod:
      // fmod: the result has the sign of the dividend, like C and CEL.
      return y == 0 ? Value::Absent() : Number(std::fmod(x, y));
    default:
      return Value::Absent();
  }
}

// CheckType normalizes an Activation answer (nullopt and absent are both
// absent) and enforces the declared type.
absl::StatusOr<Value> CheckType(const Node& node, absl::string_view what,
                                std::optional<Value> v) {
  if (!v.has_value() || v->is_absent()) return Value::Absent();
  if (*v->type() != node.type) {
    return absl::InternalError(
        absl::StrCat(what, " \"", node.name, "\" is declared ",
                     TypeName(node.type), " but the activation supplied ",
                     TypeName(*v->type()), " ", v->DebugString()));
  }
  return *std::move(v);
}

class Evaluator {
 public:
  explicit Evaluator(const Activation& activation) : activation_(activation) {}

  // Recursion depth is bounded by kMaxDepth, enforced by the parser.
  absl::StatusOr<Value> Eval(const Node& node) {
    switch (node.kind) {
      case NodeKind::kLiteral:
        return node.literal;
      case NodeKind::kIdent:
        return CheckType(node, "identifier", activation_.Lookup(node.name));
      case NodeKind::kCall:
        return EvalCall(node);
      case NodeKind::kUnary: {
        IPSRT_ASSIGN_OR_RETURN(Value v, Eval(*node.children[0]));
        if (node.op == Op::kNot) return Value::Bool(!Truthy(v));
        if (v.is_absent()) return v;
        return Number(-v.number_value());
      }
      case NodeKind::kBinary:
        return EvalBinary(node);
    }
    return Value::Absent();
  }

 private:
  absl::StatusOr<Value> EvalCall(const Node& node) {
    if (node.name == "has") {
      IPSRT_ASSIGN_OR_RETURN(Value v, Eval(*node.children[0]));
      return Value::Bool(!v.is_absent());
    }
    std::vector<Value> args;
    args.reserve(node.children.size());
    for (const auto& child : node.children) {
      IPSRT_ASSIGN_OR_RETURN(Value v, Eval(*child));
      // A function is never asked to handle missing input; it would only
      // have to reinvent the absent rules.
      if (v.is_absent()) return Value::Absent();
      args.push_back(std::move(v));
    }
    absl::StatusOr<std::optional<Value>> result =
        activation_.Call(node.name, args);
    if (!result.ok()) {
      return absl::Status(
          result.status().code(),
          absl::StrCat(node.name, ": ", result.status().message()));
    }
    return CheckType(node, "function", *std::move(result));
  }

  absl::StatusOr<Value> EvalBinary(const Node& node) {
    IPSRT_ASSIGN_OR_RETURN(Value left, Eval(*node.children[0]));
    // && and || short-circuit left to right, so the right operand (and any
    // Activation call in it) is skipped when the left decides.
    if (node.op == Op::kAnd && !Truthy(left)) return Value::Bool(false);
    if (node.op == Op::kOr && Truthy(left)) return Value::Bool(true);
    IPSRT_ASSIGN_OR_RETURN(Value right, Eval(*node.children[1]));
    switch (node.op) {
      case Op::kAnd:
      case Op::kOr:
        return Value::Bool(Truthy(right));
      case Op::kEq:
      case Op::kNe:
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe:
        if (left.is_absent() || right.is_absent()) return Value::Bool(false);
        return Value::Bool(Compare(node.op, left, right));
      default:
        if (left.is_absent() || right.is_absent()) return Value::Absent();
        return Arithmetic(node.op, left, right);
    }
  }

  const Activation& activation_;
};

}  // namespace

absl::StatusOr<Value> Evaluate(const CompiledExpr& expr,
                               const Activation& activation) {
  return Evaluator(activation).Eval(CompiledExprAccess::Root(expr));
}

absl::StatusOr<bool> EvaluateCondition(const CompiledExpr& expr,
                                       const Activation& activation) {
  IPSRT_ASSIGN_OR_RETURN(Value v, Evaluate(expr, activation));
  return Truthy(v);
}

}  // namespace ipsrt::expr
