#include "expr/ast.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "expr/expr.h"

namespace ipsrt::expr {
namespace internal {

absl::string_view OpSpelling(Op op) {
  switch (op) {
    case Op::kOr:
      return "||";
    case Op::kAnd:
      return "&&";
    case Op::kEq:
      return "==";
    case Op::kNe:
      return "!=";
    case Op::kLt:
      return "<";
    case Op::kLe:
      return "<=";
    case Op::kGt:
      return ">";
    case Op::kGe:
      return ">=";
    case Op::kAdd:
      return "+";
    case Op::kSub:
      return "-";
    case Op::kMul:
      return "*";
    case Op::kDiv:
      return "/";
    case Op::kMod:
      return "%";
    case Op::kNot:
      return "!";
    case Op::kNeg:
      return "-";
  }
  return "?";
}

namespace {

void Print(const Node& node, std::string* out) {
  switch (node.kind) {
    case NodeKind::kLiteral:
      absl::StrAppend(out, node.literal.DebugString());
      return;
    case NodeKind::kIdent:
      if (size_t dot = node.name.find('.');
          node.name.substr(0, dot).find('-') != std::string::npos) {
        // An instrument id with '-' is only readable through q().
        absl::StrAppend(out, "q(\"", node.name.substr(0, dot), "\")",
                        node.name.substr(dot));
        return;
      }
      absl::StrAppend(out, node.name);
      return;
    case NodeKind::kCall:
      absl::StrAppend(out, node.name, "(");
      for (size_t i = 0; i < node.children.size(); ++i) {
        if (i > 0) absl::StrAppend(out, ", ");
        Print(*node.children[i], out);
      }
      absl::StrAppend(out, ")");
      return;
    case NodeKind::kUnary:
      // Binary operands bring their own parentheses, so "-" "-" never
      // fuse into anything ambiguous and no extra ones are needed.
      absl::StrAppend(out, OpSpelling(node.op));
      Print(*node.children[0], out);
      return;
    case NodeKind::kBinary:
      absl::StrAppend(out, "(");
      Print(*node.children[0], out);
      absl::StrAppend(out, " ", OpSpelling(node.op), " ");
      Print(*node.children[1], out);
      absl::StrAppend(out, ")");
      return;
  }
}

}  // namespace

std::string ToString(const Node& node) {
  std::string out;
  Print(node, &out);
  return out;
}

}  // namespace internal

std::string CompiledExpr::ToString() const {
  return internal::ToString(*root_);
}

}  // namespace ipsrt::expr
