// Internal: the syntax tree shared by the parser, checker, printer and
// evaluator. Not part of the public API (see expr.h).
#ifndef IPSRT_EXPR_AST_H_
#define IPSRT_EXPR_AST_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "expr/expr.h"

namespace ipsrt::expr {
namespace internal {

// Position is a 1-based line and byte column within the expression text.
struct Position {
  int line = 1;
  int column = 1;
};

enum class Op {
  kOr,
  kAnd,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kNot,
  kNeg,
};

// OpSpelling returns the operator as written: "||", "!", ...
absl::string_view OpSpelling(Op op);

enum class NodeKind { kLiteral, kIdent, kCall, kUnary, kBinary };

struct Node {
  NodeKind kind = NodeKind::kLiteral;
  // Where errors about this node point: the operator of a unary or binary
  // node, otherwise the node's first character.
  Position pos;
  // The first character of the whole subexpression (its leftmost token,
  // not counting enclosing parentheses).
  Position start;
  Value literal;                                // kLiteral
  std::string name;                             // kIdent, kCall
  Op op = Op::kOr;                              // kUnary, kBinary
  std::vector<std::unique_ptr<Node>> children;  // operands or arguments
  // Height of the subtree: 1 for a leaf.
  int height = 1;
  // Static type, set by the checker. For kIdent and kCall it is the
  // declared type, which the evaluator enforces on the Activation's
  // answers.
  Type type = Type::kBool;
};

// ToString prints `node` canonically (see CompiledExpr::ToString).
std::string ToString(const Node& node);

// FormatNumber prints a finite double as the shortest plain decimal
// (no exponent) that reads back as exactly the same double.
std::string FormatNumber(double d);

// QuoteString prints `s` as a string literal, escaping " \ and newline.
std::string QuoteString(absl::string_view s);

}  // namespace internal

// CompiledExprAccess lets the compiler build, and the evaluator read, a
// CompiledExpr without widening its public interface.
struct CompiledExprAccess {
  static CompiledExpr Make(std::shared_ptr<const internal::Node> root,
                           Type type, std::vector<std::string> identifiers,
                           std::vector<std::string> functions,
                           std::vector<CallSite> call_sites) {
    CompiledExpr e;
    e.root_ = std::move(root);
    e.type_ = type;
    e.identifiers_ = std::move(identifiers);
    e.functions_ = std::move(functions);
    e.call_sites_ = std::move(call_sites);
    return e;
  }
  static const internal::Node& Root(const CompiledExpr& e) { return *e.root_; }
};

}  // namespace ipsrt::expr

#endif  // IPSRT_EXPR_AST_H_
