#include "expr/parser.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ipsrt::expr::internal {
namespace {

// Grammar, lowest precedence first; every binary level is left-associative:
//   or      = and { "||" and }
//   and     = eq { "&&" eq }
//   eq      = rel { ("==" | "!=") rel }
//   rel     = add { ("<" | "<=" | ">" | ">=") add }
//   add     = mul { ("+" | "-") mul }
//   mul     = unary { ("*" | "/" | "%") unary }
//   unary   = ("!" | "-") unary | primary
//   primary = NUMBER | STRING | "true" | "false" | "(" or ")"
//           | PATH [ "(" [ or { "," or } ] ")" ]
class Parser {
 public:
  Parser(const std::vector<Token>& tokens, std::vector<ExprError>* errors)
      : tokens_(tokens), errors_(errors) {}

  std::unique_ptr<Node> Run() {
    std::unique_ptr<Node> root = ParseOr();
    if (root == nullptr) return nullptr;
    if (peek().kind != TokenKind::kEnd) {
      Fail(peek().pos, absl::StrCat("expected an operator or the end of the "
                                    "expression, found ",
                                    Describe(peek())));
      return nullptr;
    }
    return root;
  }

 private:
  // A binary level: which tokens it accepts and the next-higher level.
  using Level = std::unique_ptr<Node> (Parser::*)();

  const Token& peek() const { return tokens_[i_]; }
  const Token& Next() {
    const Token& t = tokens_[i_];
    if (i_ + 1 < tokens_.size()) ++i_;
    return t;
  }

  void Fail(Position p, std::string message) {
    // Only the first syntax error is reported: after it the parser's idea
    // of the structure is a guess, and guesses make misleading errors.
    if (failed_) return;
    failed_ = true;
    errors_->push_back(ExprError{p.line, p.column, std::move(message)});
  }

  void TooDeep(Position p) {
    Fail(p,
         absl::StrCat("expression nests deeper than ", kMaxDepth, " levels"));
  }

  // Enter/Leave bracket a recursive descent (parentheses, argument lists,
  // unary operators) so that the recursion depth stays bounded.
  bool Enter(Position p) {
    if (++nesting_ > kMaxDepth) {
      TooDeep(p);
      return false;
    }
    return true;
  }
  void Leave() { --nesting_; }

  std::unique_ptr<Node> Finish(std::unique_ptr<Node> node) {
    int h = 0;
    for (const auto& c : node->children) h = std::max(h, c->height);
    node->height = h + 1;
    if (node->height > kMaxDepth) {
      TooDeep(node->pos);
      return nullptr;
    }
    return node;
  }

  static std::optional<Op> BinaryOp(TokenKind kind) {
    switch (kind) {
      case TokenKind::kOrOr:
        return Op::kOr;
      case TokenKind::kAndAnd:
        return Op::kAnd;
      case TokenKind::kEqEq:
        return Op::kEq;
      case TokenKind::kNotEq:
        return Op::kNe;
      case TokenKind::kLess:
        return Op::kLt;
      case TokenKind::kLessEq:
        return Op::kLe;
      case TokenKind::kGreater:
        return Op::kGt;
      case TokenKind::kGreaterEq:
        return Op::kGe;
      case TokenKind::kPlus:
        return Op::kAdd;
      case TokenKind::kMinus:
        return Op::kSub;
      case TokenKind::kStar:
        return Op::kMul;
      case TokenKind::kSlash:
        return Op::kDiv;
      case TokenKind::kPercent:
        return Op::kMod;
      default:
        return std::nullopt;
    }
  }

  // ParseBinary parses `next { op next }` for the operators in `ops`.
  std::unique_ptr<Node> ParseBinary(std::initializer_list<Op> ops, Level next) {
    std::unique_ptr<Node> left = (this->*next)();
    while (left != nullptr) {
      std::optional<Op> op = BinaryOp(peek().kind);
      if (!op.has_value() ||
          std::find(ops.begin(), ops.end(), *op) == ops.end()) {
        break;
      }
      Position op_pos = Next().pos;
      std::unique_ptr<Node> right = (this->*next)();
      if (right == nullptr) return nullptr;
      auto node = std::make_unique<Node>();
      node->kind = NodeKind::kBinary;
      node->op = *op;
      node->pos = op_pos;
      node->start = left->start;
      node->children.push_back(std::move(left));
      node->children.push_back(std::move(right));
      left = Finish(std::move(node));
    }
    return left;
  }

  std::unique_ptr<Node> ParseOr() {
    return ParseBinary({Op::kOr}, &Parser::ParseAnd);
  }
  std::unique_ptr<Node> ParseAnd() {
    return ParseBinary({Op::kAnd}, &Parser::ParseEquality);
  }
  std::unique_ptr<Node> ParseEquality() {
    return ParseBinary({Op::kEq, Op::kNe}, &Parser::ParseRelation);
  }
  std::unique_ptr<Node> ParseRelation() {
    return ParseBinary({Op::kLt, Op::kLe, Op::kGt, Op::kGe},
                       &Parser::ParseAdditive);
  }
  std::unique_ptr<Node> ParseAdditive() {
    return ParseBinary({Op::kAdd, Op::kSub}, &Parser::ParseMultiplicative);
  }
  std::unique_ptr<Node> ParseMultiplicative() {
    return ParseBinary({Op::kMul, Op::kDiv, Op::kMod}, &Parser::ParseUnary);
  }

  std::unique_ptr<Node> ParseUnary() {
    TokenKind kind = peek().kind;
    if (kind != TokenKind::kBang && kind != TokenKind::kMinus) {
      return ParsePrimary();
    }
    Position op_pos = Next().pos;
    if (!Enter(op_pos)) return nullptr;
    std::unique_ptr<Node> operand = ParseUnary();
    Leave();
    if (operand == nullptr) return nullptr;
    auto node = std::make_unique<Node>();
    node->kind = NodeKind::kUnary;
    node->op = kind == TokenKind::kBang ? Op::kNot : Op::kNeg;
    node->pos = op_pos;
    node->start = op_pos;
    node->children.push_back(std::move(operand));
    return Finish(std::move(node));
  }

  std::unique_ptr<Node> ParsePrimary() {
    const Token& t = Next();
    auto leaf = [&](NodeKind kind) {
      auto node = std::make_unique<Node>();
      node->kind = kind;
      node->pos = t.pos;
      node->start = t.pos;
      return node;
    };
    switch (t.kind) {
      case TokenKind::kNumber: {
        auto node = leaf(NodeKind::kLiteral);
        node->literal = Value::Number(t.number);
        return node;
      }
      case TokenKind::kString: {
        auto node = leaf(NodeKind::kLiteral);
        node->literal = Value::String(t.text);
        return node;
      }
      case TokenKind::kTrue:
      case TokenKind::kFalse: {
        auto node = leaf(NodeKind::kLiteral);
        node->literal = Value::Bool(t.kind == TokenKind::kTrue);
        return node;
      }
      case TokenKind::kLParen: {
        if (!Enter(t.pos)) return nullptr;
        std::unique_ptr<Node> inner = ParseOr();
        Leave();
        if (inner == nullptr) return nullptr;
        if (!Expect(TokenKind::kRParen, "\")\"")) return nullptr;
        return inner;
      }
      case TokenKind::kIdent: {
        if (peek().kind != TokenKind::kLParen) {
          auto node = leaf(NodeKind::kIdent);
          node->name = t.text;
          return node;
        }
        auto node = leaf(NodeKind::kCall);
        node->name = t.text;
        if (!Enter(Next().pos)) return nullptr;
        std::unique_ptr<Node> call = ParseArguments(std::move(node));
        Leave();
        return call;
      }
      default:
        Fail(t.pos, absl::StrCat("expected an operand, found ", Describe(t)));
        return nullptr;
    }
  }

  // ParseArguments reads the arguments after "(" up to and including ")".
  std::unique_ptr<Node> ParseArguments(std::unique_ptr<Node> call) {
    if (peek().kind == TokenKind::kRParen) {
      Next();
      return Finish(std::move(call));
    }
    while (true) {
      std::unique_ptr<Node> arg = ParseOr();
      if (arg == nullptr) return nullptr;
      call->children.push_back(std::move(arg));
      if (peek().kind == TokenKind::kComma) {
        Next();
        continue;
      }
      if (!Expect(TokenKind::kRParen, "\",\" or \")\"")) return nullptr;
      return Finish(std::move(call));
    }
  }

  bool Expect(TokenKind kind, absl::string_view what) {
    if (peek().kind == kind) {
      Next();
      return true;
    }
    Fail(peek().pos,
         absl::StrCat("expected ", what, ", found ", Describe(peek())));
    return false;
  }

  const std::vector<Token>& tokens_;
  std::vector<ExprError>* errors_;
  size_t i_ = 0;
  int nesting_ = 0;
  bool failed_ = false;
};

}  // namespace

std::unique_ptr<Node> Parse(const std::vector<Token>& tokens,
                            std::vector<ExprError>* errors) {
  return Parser(tokens, errors).Run();
}

}  // namespace ipsrt::expr::internal
