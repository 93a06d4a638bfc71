#include "expr/lexer.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ipsrt::expr::internal {
namespace {

bool IsIdentStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsIdentChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

// DescribeChar quotes a printable character and shows any other byte in
// hex, so an error message never carries raw control or UTF-8 bytes.
std::string DescribeChar(char c) {
  if (absl::ascii_isprint(c) && c != ' ') {
    return absl::StrCat("'", std::string(1, c), "'");
  }
  return absl::StrFormat("byte 0x%02X", static_cast<unsigned char>(c));
}

class Lexer {
 public:
  Lexer(absl::string_view text, std::vector<ExprError>* errors)
      : text_(text), errors_(errors) {}

  std::vector<Token> Run() {
    std::vector<Token> tokens;
    Position end_pos;
    while (true) {
      SkipSpace();
      if (at_end()) break;
      Token t;
      t.pos = pos();
      if (LexOne(&t)) tokens.push_back(std::move(t));
      end_pos = pos();
    }
    Token end;
    end.kind = TokenKind::kEnd;
    end.pos = end_pos;
    tokens.push_back(end);
    return tokens;
  }

 private:
  bool at_end() const { return i_ >= text_.size(); }
  char peek(size_t ahead = 0) const {
    return i_ + ahead < text_.size() ? text_[i_ + ahead] : '\0';
  }
  Position pos() const {
    return Position{line_, static_cast<int>(i_ - line_start_) + 1};
  }
  void Advance() {
    if (text_[i_] == '\n') {
      ++line_;
      line_start_ = i_ + 1;
    }
    ++i_;
  }
  void Error(Position p, std::string message) {
    errors_->push_back(ExprError{p.line, p.column, std::move(message)});
  }
  void SkipSpace() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' ||
                         peek() == '\r')) {
      Advance();
    }
  }

  // LexOne reads one token starting at a non-space character. Returns
  // false (after recording an error) when there is no valid token; it
  // always consumes at least one byte.
  bool LexOne(Token* t) {
    char c = peek();
    if (IsIdentStart(c)) return LexIdent(t);
    if (absl::ascii_isdigit(c)) return LexNumber(t);
    if (c == '"') return LexString(t);
    auto one = [&](TokenKind kind) {
      t->kind = kind;
      Advance();
      return true;
    };
    auto two = [&](TokenKind kind) {
      t->kind = kind;
      Advance();
      Advance();
      return true;
    };
    switch (c) {
      case '(':
        return one(TokenKind::kLParen);
      case ')':
        return one(TokenKind::kRParen);
      case ',':
        return one(TokenKind::kComma);
      case '+':
        return one(TokenKind::kPlus);
      case '-':
        return one(TokenKind::kMinus);
      case '*':
        return one(TokenKind::kStar);
      case '/':
        return one(TokenKind::kSlash);
      case '%':
        return one(TokenKind::kPercent);
      case '<':
        return peek(1) == '=' ? two(TokenKind::kLessEq) : one(TokenKind::kLess);
      case '>':
        return peek(1) == '=' ? two(TokenKind::kGreaterEq)
                              : one(TokenKind::kGreater);
      case '!':
        return peek(1) == '=' ? two(TokenKind::kNotEq) : one(TokenKind::kBang);
      case '=':
        if (peek(1) == '=') return two(TokenKind::kEqEq);
        Error(t->pos, "unexpected character '='; use == to compare");
        Advance();
        return false;
      case '&':
        if (peek(1) == '&') return two(TokenKind::kAndAnd);
        Error(t->pos, "unexpected character '&'; use && for logical and");
        Advance();
        return false;
      case '|':
        if (peek(1) == '|') return two(TokenKind::kOrOr);
        Error(t->pos, "unexpected character '|'; use || for logical or");
        Advance();
        return false;
      case '\'':
        // Skip the whole 'quoted' run so it yields one error, not several.
        Error(t->pos, "strings use double quotes (\"...\"), not '...'");
        Advance();
        while (!at_end() && peek() != '\n' && peek() != '\'') Advance();
        if (peek() == '\'') Advance();
        return false;
      case '.':
        Error(t->pos, "unexpected character '.'");
        Advance();
        return false;
      default:
        if (static_cast<unsigned char>(c) >= 0x80) {
          // One error per UTF-8 sequence, not per byte.
          Error(t->pos, "unexpected non-ASCII character");
          Advance();
          while ((static_cast<unsigned char>(peek()) & 0xC0) == 0x80) {
            Advance();
          }
          return false;
        }
        Error(t->pos, absl::StrCat("unexpected character ", DescribeChar(c)));
        Advance();
        return false;
    }
  }

  // LexInstrumentScore reads `q("instrument-id").score.path` as the one
  // identifier "instrument-id.score.path", so scores of an instrument whose
  // id has a '-' can be named. Returns false when the text at the cursor
  // does not start with `q(`.
  bool LexInstrumentScore(Token* t, bool* ok) {
    if (peek() != 'q' || peek(1) != '(') return false;
    size_t j = 2;
    bool well_formed = peek(j) == '"' && IsIdentStart(peek(j + 1));
    size_t id_begin = i_ + j + 1;
    if (well_formed) {
      ++j;
      while (IsIdentChar(peek(j)) || peek(j) == '-') ++j;
      well_formed = peek(j) == '"' && peek(j + 1) == ')' &&
                    peek(j + 2) == '.' && IsIdentStart(peek(j + 3));
    }
    if (!well_formed) {
      Error(t->pos,
            "q() names an instrument's scores: q(\"<instrument id>\")."
            "<score>, e.g. q(\"routine-disruption\").total");
      Advance();
      *ok = false;
      return true;
    }
    std::string id(text_.substr(id_begin, i_ + j - id_begin));
    for (size_t k = 0; k < j + 3; ++k) Advance();  // q("id").
    size_t rest = i_;
    while (true) {
      while (!at_end() && IsIdentChar(peek())) Advance();
      if (peek() != '.' || !IsIdentStart(peek(1))) break;
      Advance();
    }
    t->kind = TokenKind::kIdent;
    t->text = absl::StrCat(id, ".", text_.substr(rest, i_ - rest));
    *ok = true;
    return true;
  }

  bool LexIdent(Token* t) {
    if (bool ok = false; LexInstrumentScore(t, &ok)) return ok;
    size_t begin = i_;
    while (true) {
      while (!at_end() && IsIdentChar(peek())) Advance();
      if (peek() != '.') break;
      if (!IsIdentStart(peek(1))) {
        Advance();  // The '.'.
        Error(pos(), "expected a field name after '.'");
        return false;
      }
      Advance();
    }
    t->text = std::string(text_.substr(begin, i_ - begin));
    if (t->text == "true") {
      t->kind = TokenKind::kTrue;
    } else if (t->text == "false") {
      t->kind = TokenKind::kFalse;
    } else {
      t->kind = TokenKind::kIdent;
    }
    return true;
  }

  bool LexNumber(Token* t) {
    size_t begin = i_;
    while (absl::ascii_isdigit(peek())) Advance();
    if (peek() == '.') {
      Advance();
      if (!absl::ascii_isdigit(peek())) {
        Error(pos(), "expected a digit after '.' in number");
        return false;
      }
      while (absl::ascii_isdigit(peek())) Advance();
    }
    if (IsIdentChar(peek())) {
      // "10days", "1e5": no unit suffixes or exponents.
      while (IsIdentChar(peek())) Advance();
      Error(t->pos, absl::StrCat("malformed number \"",
                                 text_.substr(begin, i_ - begin), "\""));
      return false;
    }
    absl::string_view digits = text_.substr(begin, i_ - begin);
    double value = 0;
    if (!absl::SimpleAtod(digits, &value) || !std::isfinite(value)) {
      Error(t->pos, "number is too large");
      return false;
    }
    t->kind = TokenKind::kNumber;
    t->number = value;
    return true;
  }

  bool LexString(Token* t) {
    Advance();  // Opening quote.
    std::string value;
    bool ok = true;
    while (true) {
      if (at_end() || peek() == '\n') {
        Error(t->pos, "unterminated string");
        return false;
      }
      char c = peek();
      if (c == '"') {
        Advance();
        break;
      }
      if (c == '\\') {
        Position escape = pos();
        Advance();
        char e = peek();
        if (e == '"' || e == '\\') {
          value += e;
          Advance();
        } else if (e == 'n') {
          value += '\n';
          Advance();
        } else if (at_end() || e == '\n') {
          continue;  // Reported as unterminated on the next iteration.
        } else {
          Error(escape, absl::StrCat("unknown escape '\\", std::string(1, e),
                                     "' (use \\\", \\\\ or \\n)"));
          ok = false;
          Advance();
        }
        continue;
      }
      value += c;
      Advance();
    }
    t->kind = TokenKind::kString;
    t->text = std::move(value);
    return ok;
  }

  absl::string_view text_;
  std::vector<ExprError>* errors_;
  size_t i_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
};

}  // namespace

std::string Describe(const Token& token) {
  switch (token.kind) {
    case TokenKind::kEnd:
      return "end of expression";
    case TokenKind::kIdent:
      return absl::StrCat("identifier \"", token.text, "\"");
    case TokenKind::kNumber:
      return absl::StrCat("number ", FormatNumber(token.number));
    case TokenKind::kString:
      return absl::StrCat("string ", QuoteString(token.text));
    case TokenKind::kTrue:
      return "\"true\"";
    case TokenKind::kFalse:
      return "\"false\"";
    case TokenKind::kLParen:
      return "\"(\"";
    case TokenKind::kRParen:
      return "\")\"";
    case TokenKind::kComma:
      return "\",\"";
    case TokenKind::kOrOr:
      return "\"||\"";
    case TokenKind::kAndAnd:
      return "\"&&\"";
    case TokenKind::kEqEq:
      return "\"==\"";
    case TokenKind::kNotEq:
      return "\"!=\"";
    case TokenKind::kLess:
      return "\"<\"";
    case TokenKind::kLessEq:
      return "\"<=\"";
    case TokenKind::kGreater:
      return "\">\"";
    case TokenKind::kGreaterEq:
      return "\">=\"";
    case TokenKind::kPlus:
      return "\"+\"";
    case TokenKind::kMinus:
      return "\"-\"";
    case TokenKind::kStar:
      return "\"*\"";
    case TokenKind::kSlash:
      return "\"/\"";
    case TokenKind::kPercent:
      return "\"%\"";
    case TokenKind::kBang:
      return "\"!\"";
  }
  return "token";
}

std::vector<Token> Lex(absl::string_view text, std::vector<ExprError>* errors) {
  return Lexer(text, errors).Run();
}

}  // namespace ipsrt::expr::internal
