// Environment, Compile and the type checker.
#include <algorithm>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "expr/ast.h"
#include "expr/expr.h"
#include "expr/lexer.h"
#include "expr/parser.h"

namespace ipsrt::expr {
namespace {

using internal::Node;
using internal::NodeKind;
using internal::Op;
using internal::OpSpelling;
using internal::Position;

bool IsReserved(absl::string_view segment) {
  return segment == "true" || segment == "false";
}

// EditDistance is the Levenshtein distance between `a` and `b`.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Suggest returns the declared name closest to `name`, if it is close
// enough to be a plausible typo: at most a third of the name's length
// (minimum 1, maximum 3) edits. Ties go to the alphabetically first name
// so the message is deterministic.
template <typename Map>
std::optional<std::string> Suggest(absl::string_view name, const Map& names) {
  size_t limit = std::clamp<size_t>(name.size() / 3, 1, 3);
  std::optional<std::string> best;
  size_t best_distance = limit + 1;
  for (const auto& [candidate, unused] : names) {
    size_t d = EditDistance(name, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  return best;
}

std::string Quoted(absl::string_view name) {
  return absl::StrCat("\"", name, "\"");
}

// QuotedIdent quotes an identifier as an author writes it: a score of an
// instrument whose id has a '-' as q("id").score, others as "name".
std::string QuotedIdent(absl::string_view name) {
  size_t dot = name.find('.');
  if (dot == absl::string_view::npos ||
      name.substr(0, dot).find('-') == absl::string_view::npos) {
    return Quoted(name);
  }
  return absl::StrCat("q(\"", name.substr(0, dot), "\")", name.substr(dot));
}

std::string WithSuggestion(std::string message,
                           const std::optional<std::string>& suggestion) {
  if (suggestion.has_value()) {
    absl::StrAppend(&message, "; did you mean ", QuotedIdent(*suggestion), "?");
  }
  return message;
}

// Checker assigns a static type to every node and records every name and
// type error. A check returning nullopt means the subexpression already
// produced an error; operators over such operands stay silent so that one
// mistake yields one message. Operators whose result is bool whatever their
// operands (comparisons, && || !) still return bool, so that independent
// mistakes elsewhere in a condition are reported too.
class Checker {
 public:
  Checker(const Environment& env, std::vector<ExprError>* errors)
      : env_(env), errors_(errors) {}

  std::optional<Type> Check(Node& node) {
    switch (node.kind) {
      case NodeKind::kLiteral:
        node.type = *node.literal.type();
        return node.type;
      case NodeKind::kIdent:
        return CheckIdent(node);
      case NodeKind::kCall:
        return node.name == "has" ? CheckHas(node) : CheckCall(node);
      case NodeKind::kUnary:
        return CheckUnary(node);
      case NodeKind::kBinary:
        return CheckBinary(node);
    }
    return std::nullopt;
  }

  std::vector<std::string> identifiers() const {
    return {identifiers_.begin(), identifiers_.end()};
  }
  std::vector<std::string> functions() const {
    return {functions_.begin(), functions_.end()};
  }
  std::vector<CallSite> call_sites() const {
    std::vector<CallSite> sites = call_sites_;
    std::stable_sort(
        sites.begin(), sites.end(), [](const CallSite& a, const CallSite& b) {
          return std::tie(a.line, a.column) < std::tie(b.line, b.column);
        });
    return sites;
  }

 private:
  void Error(Position p, std::string message) {
    errors_->push_back(ExprError{p.line, p.column, std::move(message)});
  }

  std::optional<Type> CheckIdent(Node& node) {
    const Type* type = env_.FindIdentifier(node.name);
    if (type == nullptr) {
      if (env_.FindFunction(node.name) != nullptr) {
        Error(node.pos, absl::StrCat(Quoted(node.name),
                                     " is a function; call it with "
                                     "arguments, e.g. ",
                                     node.name, "(...)"));
      } else {
        Error(node.pos, WithSuggestion(absl::StrCat("unknown identifier ",
                                                    QuotedIdent(node.name)),
                                       Suggest(node.name, env_.identifiers())));
      }
      return std::nullopt;
    }
    identifiers_.insert(node.name);
    node.type = *type;
    return node.type;
  }

  std::optional<Type> CheckHas(Node& node) {
    node.type = Type::kBool;
    if (node.children.size() != 1 ||
        node.children[0]->kind != NodeKind::kIdent) {
      Error(node.pos,
            "has() expects one identifier argument, e.g. has(srm.score)");
      for (auto& child : node.children) Check(*child);
      return node.type;
    }
    CheckIdent(*node.children[0]);
    return node.type;
  }

  std::optional<Type> CheckCall(Node& node) {
    std::vector<std::optional<Type>> arg_types;
    for (auto& child : node.children) arg_types.push_back(Check(*child));

    const FunctionSignature* sig = env_.FindFunction(node.name);
    if (sig == nullptr) {
      if (env_.FindIdentifier(node.name) != nullptr) {
        Error(node.pos, absl::StrCat(Quoted(node.name),
                                     " is an identifier, not a function"));
      } else {
        Error(node.pos, WithSuggestion(absl::StrCat("unknown function ",
                                                    Quoted(node.name)),
                                       Suggest(node.name, env_.functions())));
      }
      return std::nullopt;
    }
    functions_.insert(node.name);
    CallSite site{node.name, node.pos.line, node.pos.column, {}};
    for (const auto& child : node.children) {
      site.literal_arguments.push_back(
          child->kind == NodeKind::kLiteral
              ? std::optional<Value>(child->literal)
              : std::nullopt);
    }
    call_sites_.push_back(std::move(site));
    node.type = sig->result;
    if (arg_types.size() != sig->parameters.size()) {
      std::vector<std::string> names;
      for (Type t : sig->parameters) names.emplace_back(TypeName(t));
      Error(node.pos,
            absl::StrCat(
                "function ", Quoted(node.name), " expects ",
                sig->parameters.size(),
                sig->parameters.size() == 1 ? " argument" : " arguments", " (",
                absl::StrJoin(names, ", "), "), got ", arg_types.size()));
      return node.type;
    }
    for (size_t i = 0; i < arg_types.size(); ++i) {
      if (arg_types[i].has_value() && *arg_types[i] != sig->parameters[i]) {
        Error(node.children[i]->start,
              absl::StrCat("argument ", i + 1, " of ", Quoted(node.name),
                           " must be ", TypeName(sig->parameters[i]), ", got ",
                           TypeName(*arg_types[i])));
      }
    }
    return node.type;
  }

  // Silenced is the type of a node whose operand failed: a bool result is
  // certain whatever the operand, so checking continues above it; a number
  // result would only invite follow-on errors, so it becomes unknown.
  static std::optional<Type> Silenced(const Node& node) {
    if (node.type == Type::kBool) return node.type;
    return std::nullopt;
  }

  std::optional<Type> CheckUnary(Node& node) {
    std::optional<Type> operand = Check(*node.children[0]);
    Type want = node.op == Op::kNot ? Type::kBool : Type::kNumber;
    node.type = want;
    if (!operand.has_value()) return Silenced(node);
    if (*operand != want) {
      Error(node.pos, absl::StrCat("operator ", Quoted(OpSpelling(node.op)),
                                   " expects a ", TypeName(want),
                                   " operand, got ", TypeName(*operand)));
      return Silenced(node);
    }
    return node.type;
  }

  std::optional<Type> CheckBinary(Node& node) {
    std::optional<Type> left = Check(*node.children[0]);
    std::optional<Type> right = Check(*node.children[1]);
    std::string op = Quoted(OpSpelling(node.op));
    auto got = [&] {
      return absl::StrCat(", got ", TypeName(*left), " and ", TypeName(*right));
    };
    bool known = left.has_value() && right.has_value();
    switch (node.op) {
      case Op::kOr:
      case Op::kAnd:
        node.type = Type::kBool;
        if (known && (*left != Type::kBool || *right != Type::kBool)) {
          Error(node.pos,
                absl::StrCat("operator ", op, " expects bool operands", got()));
        }
        return node.type;
      case Op::kEq:
      case Op::kNe:
        node.type = Type::kBool;
        if (known && *left != *right) {
          Error(node.pos,
                absl::StrCat("operator ", op,
                             " expects operands of the same type", got()));
        }
        return node.type;
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe:
        node.type = Type::kBool;
        if (known && (*left != *right || *left == Type::kBool)) {
          Error(node.pos,
                absl::StrCat("operator ", op,
                             " expects two numbers or two strings", got()));
        }
        return node.type;
      case Op::kAdd:
        if (!known) return std::nullopt;
        if (*left != *right || *left == Type::kBool) {
          Error(node.pos,
                absl::StrCat("operator ", op,
                             " expects two numbers or two strings", got()));
          return std::nullopt;
        }
        node.type = *left;
        return node.type;
      case Op::kSub:
      case Op::kMul:
      case Op::kDiv:
      case Op::kMod:
        node.type = Type::kNumber;
        if (!known) return std::nullopt;
        if (*left != Type::kNumber || *right != Type::kNumber) {
          Error(node.pos, absl::StrCat("operator ", op,
                                       " expects number operands", got()));
          return std::nullopt;
        }
        return node.type;
      case Op::kNot:
      case Op::kNeg:
        break;
    }
    return std::nullopt;
  }

  const Environment& env_;
  std::vector<ExprError>* errors_;
  std::set<std::string> identifiers_;
  std::set<std::string> functions_;
  std::vector<CallSite> call_sites_;
};

CompileResult CompileImpl(absl::string_view text, const Environment& env,
                          bool condition) {
  CompileResult result;
  if (text.size() > kMaxExpressionLength) {
    result.errors.push_back(ExprError{
        1, 1,
        absl::StrCat("expression is ", text.size(),
                     " bytes long; the limit is ", kMaxExpressionLength)});
    return result;
  }
  std::vector<internal::Token> tokens = internal::Lex(text, &result.errors);
  if (!result.errors.empty()) return result;
  std::unique_ptr<Node> root = internal::Parse(tokens, &result.errors);
  if (root == nullptr) return result;

  Checker checker(env, &result.errors);
  std::optional<Type> type = checker.Check(*root);
  if (condition && type.has_value() && *type != Type::kBool) {
    Position start = tokens.front().pos;
    result.errors.push_back(ExprError{
        start.line, start.column,
        absl::StrCat("condition must be bool, got ", TypeName(*type))});
  }
  if (!result.errors.empty()) {
    std::stable_sort(result.errors.begin(), result.errors.end(),
                     [](const ExprError& a, const ExprError& b) {
                       return std::tie(a.line, a.column) <
                              std::tie(b.line, b.column);
                     });
    return result;
  }
  result.expr =
      CompiledExprAccess::Make(std::move(root), *type, checker.identifiers(),
                               checker.functions(), checker.call_sites());
  return result;
}

}  // namespace

absl::Status Environment::CheckNewName(absl::string_view name) const {
  if (name.empty()) return absl::InvalidArgumentError("empty name");
  bool first = true;
  for (absl::string_view segment : absl::StrSplit(name, '.')) {
    bool valid = !segment.empty() &&
                 (absl::ascii_isalpha(segment[0]) || segment[0] == '_');
    for (char c : segment) {
      // The first segment may be an instrument id with '-', read through
      // q("id").score.
      valid = valid && (absl::ascii_isalnum(c) || c == '_' ||
                        (first && c == '-' && name.find('.') != name.npos));
    }
    first = false;
    if (!valid) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed name ", Quoted(name),
                       ": expected dot-separated [A-Za-z_][A-Za-z0-9_]*"));
    }
    if (IsReserved(segment)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "name ", Quoted(name), " uses the reserved word ", Quoted(segment)));
    }
  }
  if (name == "has") {
    return absl::InvalidArgumentError(
        "name \"has\" is reserved for the built-in has()");
  }
  if (identifiers_.contains(name) || functions_.contains(name)) {
    return absl::AlreadyExistsError(
        absl::StrCat(Quoted(name), " is already declared"));
  }
  return absl::OkStatus();
}

absl::Status Environment::DeclareIdentifier(absl::string_view name, Type type) {
  if (absl::Status s = CheckNewName(name); !s.ok()) return s;
  identifiers_.emplace(std::string(name), type);
  return absl::OkStatus();
}

absl::Status Environment::DeclareFunction(absl::string_view name,
                                          std::vector<Type> parameters,
                                          Type result) {
  if (absl::Status s = CheckNewName(name); !s.ok()) return s;
  functions_.emplace(std::string(name),
                     FunctionSignature{std::move(parameters), result});
  return absl::OkStatus();
}

const Type* Environment::FindIdentifier(absl::string_view name) const {
  auto it = identifiers_.find(name);
  return it == identifiers_.end() ? nullptr : &it->second;
}

const FunctionSignature* Environment::FindFunction(
    absl::string_view name) const {
  auto it = functions_.find(name);
  return it == functions_.end() ? nullptr : &it->second;
}

absl::Status CompileResult::status() const {
  if (errors.empty()) return absl::OkStatus();
  std::vector<std::string> parts;
  for (const ExprError& e : errors) parts.push_back(e.ToString());
  return absl::InvalidArgumentError(absl::StrJoin(parts, "; "));
}

CompileResult Compile(absl::string_view text, const Environment& env) {
  return CompileImpl(text, env, /*condition=*/false);
}

CompileResult CompileCondition(absl::string_view text, const Environment& env) {
  return CompileImpl(text, env, /*condition=*/true);
}

}  // namespace ipsrt::expr
