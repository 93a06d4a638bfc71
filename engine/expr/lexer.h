// Internal: splits expression text into tokens with positions.
#ifndef IPSRT_EXPR_LEXER_H_
#define IPSRT_EXPR_LEXER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "expr/ast.h"
#include "expr/expr.h"

namespace ipsrt::expr::internal {

enum class TokenKind {
  kEnd,
  kIdent,   // A dotted path, e.g. "phq9.total"; `text` is the path.
  kNumber,  // `number` holds the value.
  kString,  // `text` holds the unescaped contents.
  kTrue,
  kFalse,
  kLParen,
  kRParen,
  kComma,
  kOrOr,
  kAndAnd,
  kEqEq,
  kNotEq,
  kLess,
  kLessEq,
  kGreater,
  kGreaterEq,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kPercent,
  kBang,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  Position pos;
  std::string text;
  double number = 0;
};

// Describe names a token for an error message: `")"`, `identifier "x"`,
// `number 3`, `string "a"`, `end of expression`.
std::string Describe(const Token& token);

// Lex tokenizes `text`. On success the result ends with a kEnd token placed
// just after the last token. Every lexical error is appended to `errors`;
// the tokens are then meaningless.
std::vector<Token> Lex(absl::string_view text, std::vector<ExprError>* errors);

}  // namespace ipsrt::expr::internal

#endif  // IPSRT_EXPR_LEXER_H_
