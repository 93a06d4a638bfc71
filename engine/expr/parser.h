// Internal: recursive-descent parser from tokens to a syntax tree.
#ifndef IPSRT_EXPR_PARSER_H_
#define IPSRT_EXPR_PARSER_H_

#include <memory>
#include <vector>

#include "expr/ast.h"
#include "expr/expr.h"
#include "expr/lexer.h"

namespace ipsrt::expr::internal {

// Parse builds the tree for `tokens` (as returned by Lex without errors).
// On a syntax error it appends that one error to `errors` and returns
// nullptr. Node types are left for the checker to fill in.
std::unique_ptr<Node> Parse(const std::vector<Token>& tokens,
                            std::vector<ExprError>* errors);

}  // namespace ipsrt::expr::internal

#endif  // IPSRT_EXPR_PARSER_H_
