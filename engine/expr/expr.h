// The condition expression language of workflow templates.
//
// Rules and exit conditions in templates are small, typed, pure
// expressions such as
//   phq9.total >= 10
//   srm.score < 3 && srm.weeks_recorded >= 2
//   tasks.done("baseline") || days_since("stage_entered") >= 56
//   !has(srm.score)
// The language is a CEL-like subset; engine/expr/README.md describes it in
// full. This header is the whole public surface:
//
//   Environment   declares identifiers and functions with their types;
//   Compile /     parse and type-check text against an Environment, and
//   CompileCondition  report every error with a line and column;
//   CompiledExpr  the immutable checked program (cheap to copy, safe to
//                 share between threads);
//   Activation    the caller's interface supplying identifier values and
//                 function implementations at evaluation time;
//   Evaluate /    run a CompiledExpr against an Activation.
//   EvaluateCondition
//
// Absent values. Every identifier has a declared type, but its value may be
// absent when evaluated (no PHQ-9 answered yet, no SRM score this week), and
// a function may return absent. The rules are chosen so that a rule never
// fires on missing data:
//   - arithmetic (+ - * / % and unary -) with an absent operand is absent;
//   - a comparison (== != < <= > >=) with an absent operand is false;
//   - !, && and || treat absent as false (so `!x` is true for absent x);
//   - has(x) is true exactly when identifier x is present;
//   - a function call with an absent argument is absent and the function
//     is not called;
//   - division or remainder by zero, and any arithmetic whose result is not
//     finite, is absent;
//   - a condition holds only when the result is the bool true.
//
// Example:
//   Environment env;
//   IPSRT_RETURN_IF_ERROR(env.DeclareIdentifier("phq9.total", Type::kNumber));
//   IPSRT_RETURN_IF_ERROR(
//       env.DeclareFunction("tasks.done", {Type::kString}, Type::kBool));
//   CompileResult compiled =
//       CompileCondition("phq9.total >= 10 && !tasks.done(\"safety\")", env);
//   if (!compiled.ok()) return compiled.status();  // or read .errors
//   IPSRT_ASSIGN_OR_RETURN(bool fires,
//                          EvaluateCondition(*compiled.expr, activation));
#ifndef IPSRT_EXPR_EXPR_H_
#define IPSRT_EXPR_EXPR_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ipsrt::expr {

// kMaxExpressionLength is the longest expression text accepted, in bytes.
inline constexpr size_t kMaxExpressionLength = 4096;
// kMaxDepth bounds nesting: both the depth of the syntax tree (each
// operator, call and operand is a level) and the number of parentheses,
// argument lists and unary operators open at any point. Deeper input is a
// compile error, never a stack overflow.
inline constexpr int kMaxDepth = 64;

// Type is the static type of an expression or identifier.
enum class Type { kBool, kNumber, kString };

// TypeName returns "bool", "number" or "string".
absl::string_view TypeName(Type type);

// Value is the result of evaluation: absent, or a bool, number or string.
// Numbers are doubles; they are always finite.
class Value {
 public:
  // The default Value is absent.
  Value() = default;

  static Value Absent() { return Value(); }
  static Value Bool(bool b) { return Value(Rep(b)); }
  static Value Number(double d) { return Value(Rep(d)); }
  static Value String(std::string s) { return Value(Rep(std::move(s))); }

  bool is_absent() const { return rep_.index() == 0; }
  bool is_bool() const { return rep_.index() == 1; }
  bool is_number() const { return rep_.index() == 2; }
  bool is_string() const { return rep_.index() == 3; }
  // type returns the value's type, or nullopt when absent.
  std::optional<Type> type() const;

  // The accessors require the matching is_*() to be true.
  bool bool_value() const { return std::get<1>(rep_); }
  double number_value() const { return std::get<2>(rep_); }
  const std::string& string_value() const { return std::get<3>(rep_); }

  // DebugString renders the value as expression syntax ("true", "12.5",
  // "\"baseline\"") or "absent".
  std::string DebugString() const;

  friend bool operator==(const Value& a, const Value& b) = default;
  friend void PrintTo(const Value& v, std::ostream* os) {
    *os << v.DebugString();
  }

 private:
  using Rep = std::variant<std::monostate, bool, double, std::string>;
  explicit Value(Rep rep) : rep_(std::move(rep)) {}
  Rep rep_;
};

// FunctionSignature is a declared function's parameter and result types.
struct FunctionSignature {
  std::vector<Type> parameters;
  Type result = Type::kBool;
};

// Environment declares the names an expression may use. Names are dotted
// paths of segments [A-Za-z_][A-Za-z0-9_]* ("phq9.total", "tasks.done");
// a path is one flat name, so "phq9" and "phq9.total" are unrelated. An
// Environment is not modified by compiling and may be shared by concurrent
// Compile calls once fully declared.
class Environment {
 public:
  // DeclareIdentifier adds an identifier of the given type. Fails with
  // INVALID_ARGUMENT for a malformed name or one using a reserved word
  // (true, false, has), and ALREADY_EXISTS when the name is already an
  // identifier or function.
  absl::Status DeclareIdentifier(absl::string_view name, Type type);

  // DeclareFunction adds a function; errors as for DeclareIdentifier.
  absl::Status DeclareFunction(absl::string_view name,
                               std::vector<Type> parameters, Type result);

  // FindIdentifier / FindFunction return the declaration, or nullptr.
  const Type* FindIdentifier(absl::string_view name) const;
  const FunctionSignature* FindFunction(absl::string_view name) const;

  const std::map<std::string, Type, std::less<>>& identifiers() const {
    return identifiers_;
  }
  const std::map<std::string, FunctionSignature, std::less<>>& functions()
      const {
    return functions_;
  }

 private:
  absl::Status CheckNewName(absl::string_view name) const;

  std::map<std::string, Type, std::less<>> identifiers_;
  std::map<std::string, FunctionSignature, std::less<>> functions_;
};

// ExprError is one compile error. `line` and `column` are 1-based and count
// bytes within the expression text itself, so a caller that read the text
// from a YAML scalar adds the scalar's own position.
struct ExprError {
  int line = 0;
  int column = 0;
  std::string message;

  // ToString returns "line:column: message".
  std::string ToString() const;

  friend bool operator==(const ExprError& a, const ExprError& b) = default;
  friend void PrintTo(const ExprError& e, std::ostream* os) {
    *os << e.ToString();
  }
};

// CallSite is one call of a declared function, for checks that need the
// arguments as written, e.g. that tasks.done("x") names a real task.
struct CallSite {
  std::string function;
  // Position of the function name, as in ExprError.
  int line = 0;
  int column = 0;
  // One entry per argument: its value when the argument is a literal,
  // nullopt when it is computed.
  std::vector<std::optional<Value>> literal_arguments;

  friend bool operator==(const CallSite& a, const CallSite& b) = default;
};

namespace internal {
struct Node;
}  // namespace internal

// CompiledExpr is a parsed, type-checked expression. It is immutable, cheap
// to copy (the tree is shared) and safe to evaluate from many threads.
class CompiledExpr {
 public:
  // type is the static type of the whole expression.
  Type type() const { return type_; }

  // identifiers returns every identifier the expression names, including
  // the operand of has(), sorted and without duplicates.
  const std::vector<std::string>& identifiers() const { return identifiers_; }
  // functions returns every declared function the expression calls, sorted
  // and without duplicates; the built-in has() is not listed.
  const std::vector<std::string>& functions() const { return functions_; }
  // call_sites returns every call of a declared function in source order
  // (has() excluded).
  const std::vector<CallSite>& call_sites() const { return call_sites_; }

  // ToString prints the tree canonically: every binary operation in
  // parentheses with single spaces around the operator, unary operators
  // and calls unspaced, numbers in shortest exact decimal form, e.g.
  // "((phq9.total >= 10) && !tasks.done(\"safety\"))". Compiling the output
  // again yields the same tree.
  std::string ToString() const;

 private:
  friend struct CompiledExprAccess;
  CompiledExpr() = default;

  std::shared_ptr<const internal::Node> root_;
  Type type_ = Type::kBool;
  std::vector<std::string> identifiers_;
  std::vector<std::string> functions_;
  std::vector<CallSite> call_sites_;
};

// CompileResult is the outcome of Compile: either `expr` is set and
// `errors` is empty, or `expr` is empty and `errors` lists every error
// found, ordered by position.
//
// Syntax errors stop at the first one the parser meets (lexical errors,
// such as an unterminated string, are all reported); once the text parses,
// every name and type error is reported, without follow-on errors caused by
// an operand that already failed.
struct CompileResult {
  std::optional<CompiledExpr> expr;
  std::vector<ExprError> errors;

  bool ok() const { return errors.empty(); }
  // status is OK, or INVALID_ARGUMENT whose message is the errors'
  // ToString() joined by "; ".
  absl::Status status() const;
};

// Compile parses and type-checks `text` against `env`.
CompileResult Compile(absl::string_view text, const Environment& env);

// CompileCondition is Compile that also requires the result type to be bool
// (error "condition must be bool, got number" at the expression's start).
CompileResult CompileCondition(absl::string_view text, const Environment& env);

// Activation supplies identifier values and function implementations during
// evaluation. Implementations must be deterministic for a given evaluation
// if the result is to be; Evaluate calls them at most once per occurrence,
// left to right, skipping operands that && and || short-circuit.
class Activation {
 public:
  virtual ~Activation() = default;

  // Lookup returns the value of the declared identifier `name`, or nullopt
  // (or an absent Value) when it has none. A present value must have the
  // declared type.
  virtual std::optional<Value> Lookup(absl::string_view name) const = 0;

  // Call runs the declared function `name`. `args` match the declared
  // parameter types and are never absent. Returns the result (nullopt or an
  // absent Value for absent, otherwise the declared result type), or an
  // error, which Evaluate passes on with its code unchanged.
  virtual absl::StatusOr<std::optional<Value>> Call(
      absl::string_view name, absl::Span<const Value> args) const = 0;
};

// Evaluate runs `expr`. It never throws and is deterministic given the
// Activation's answers. Fails only when the Activation does: an error from
// Call (same code, message prefixed with the function name), or INTERNAL
// when Lookup or Call returns a value of the wrong type.
absl::StatusOr<Value> Evaluate(const CompiledExpr& expr,
                               const Activation& activation);

// EvaluateCondition is Evaluate reduced to "is the result the bool true";
// absent and non-bool results are false. Errors as for Evaluate: a failing
// Activation is reported, never silently treated as false.
absl::StatusOr<bool> EvaluateCondition(const CompiledExpr& expr,
                                       const Activation& activation);

}  // namespace ipsrt::expr

#endif  // IPSRT_EXPR_EXPR_H_
