#include "expr/expr.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ipsrt::expr {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// FakeActivation answers from in-memory tables and records every call.
class FakeActivation : public Activation {
 public:
  using Function = std::function<absl::StatusOr<std::optional<Value>>(
      const std::vector<Value>&)>;

  std::optional<Value> Lookup(absl::string_view name) const override {
    auto it = values.find(std::string(name));
    if (it == values.end()) return std::nullopt;
    return it->second;
  }

  absl::StatusOr<std::optional<Value>> Call(
      absl::string_view name, absl::Span<const Value> args) const override {
    std::vector<std::string> printed;
    for (const Value& v : args) printed.push_back(v.DebugString());
    calls.push_back(absl::StrCat(name, "(", absl::StrJoin(printed, ", "), ")"));
    auto it = functions.find(std::string(name));
    if (it == functions.end()) {
      return absl::NotFoundError(absl::StrCat("no fake for ", name));
    }
    return it->second(std::vector<Value>(args.begin(), args.end()));
  }

  std::map<std::string, Value> values;
  std::map<std::string, Function> functions;
  mutable std::vector<std::string> calls;
};

Environment TestEnvironment() {
  Environment env;
  for (const char* name : {"a", "b", "c", "missing.bool"}) {
    EXPECT_TRUE(env.DeclareIdentifier(name, Type::kBool).ok());
  }
  for (const char* name : {"x", "y", "z", "missing.num", "phq9.total",
                           "asrm.total", "srm.score", "srm.weeks_recorded"}) {
    EXPECT_TRUE(env.DeclareIdentifier(name, Type::kNumber).ok());
  }
  for (const char* name : {"s", "t", "missing.str", "stage.name"}) {
    EXPECT_TRUE(env.DeclareIdentifier(name, Type::kString).ok());
  }
  EXPECT_TRUE(
      env.DeclareFunction("count", {Type::kString}, Type::kNumber).ok());
  EXPECT_TRUE(
      env.DeclareFunction("days_since", {Type::kString}, Type::kNumber).ok());
  EXPECT_TRUE(
      env.DeclareFunction("tasks.done", {Type::kString}, Type::kBool).ok());
  EXPECT_TRUE(
      env.DeclareFunction("latest", {Type::kString}, Type::kNumber).ok());
  EXPECT_TRUE(
      env.DeclareFunction("pair", {Type::kNumber, Type::kString}, Type::kString)
          .ok());
  EXPECT_TRUE(env.DeclareFunction("fail", {}, Type::kBool).ok());
  EXPECT_TRUE(env.DeclareFunction("wrong_type", {}, Type::kNumber).ok());
  return env;
}

FakeActivation TestActivation() {
  FakeActivation act;
  act.values = {
      {"a", Value::Bool(true)},
      {"b", Value::Bool(false)},
      {"c", Value::Bool(true)},
      {"x", Value::Number(4)},
      {"y", Value::Number(2.5)},
      {"z", Value::Number(0)},
      {"s", Value::String("abc")},
      {"t", Value::String("abd")},
      {"phq9.total", Value::Number(12)},
      {"asrm.total", Value::Number(3)},
      {"srm.weeks_recorded", Value::Number(2)},
      {"stage.name", Value::String("acute")},
      // srm.score and missing.* have no value; "missing.str" is supplied
      // as an explicit absent Value to cover that spelling too.
      {"missing.str", Value::Absent()},
  };
  act.functions["count"] = [](const std::vector<Value>& args) {
    std::optional<Value> r =
        Value::Number(args[0].string_value() == "session_held" ? 3 : 0);
    return absl::StatusOr<std::optional<Value>>(r);
  };
  act.functions["days_since"] = [](const std::vector<Value>& args) {
    return absl::StatusOr<std::optional<Value>>(
        std::optional<Value>(Value::Number(60)));
  };
  act.functions["tasks.done"] = [](const std::vector<Value>& args) {
    return absl::StatusOr<std::optional<Value>>(std::optional<Value>(
        Value::Bool(args[0].string_value() == "baseline")));
  };
  act.functions["latest"] = [](const std::vector<Value>& args) {
    // No observation recorded: absent.
    return absl::StatusOr<std::optional<Value>>(std::optional<Value>());
  };
  act.functions["pair"] = [](const std::vector<Value>& args) {
    return absl::StatusOr<std::optional<Value>>(
        std::optional<Value>(Value::String(
            absl::StrCat(args[0].DebugString(), ":", args[1].string_value()))));
  };
  act.functions["fail"] = [](const std::vector<Value>&) {
    return absl::StatusOr<std::optional<Value>>(
        absl::UnavailableError("store down"));
  };
  act.functions["wrong_type"] = [](const std::vector<Value>&) {
    return absl::StatusOr<std::optional<Value>>(
        std::optional<Value>(Value::String("oops")));
  };
  return act;
}

class ExprTest : public ::testing::Test {
 protected:
  // Print compiles `text` (any type) and returns its canonical form, or the
  // errors.
  std::string Print(absl::string_view text) {
    CompileResult r = Compile(text, env_);
    if (!r.ok()) return r.status().ToString();
    return r.expr->ToString();
  }

  // Eval compiles and evaluates `text`; compile or evaluation failures
  // fail the test.
  Value Eval(absl::string_view text) {
    CompileResult r = Compile(text, env_);
    EXPECT_TRUE(r.ok()) << text << ": " << r.status();
    if (!r.ok()) return Value::Absent();
    absl::StatusOr<Value> v = Evaluate(*r.expr, act_);
    EXPECT_TRUE(v.ok()) << text << ": " << v.status();
    return v.ok() ? *v : Value::Absent();
  }

  bool Condition(absl::string_view text) {
    CompileResult r = CompileCondition(text, env_);
    EXPECT_TRUE(r.ok()) << text << ": " << r.status();
    if (!r.ok()) return false;
    absl::StatusOr<bool> v = EvaluateCondition(*r.expr, act_);
    EXPECT_TRUE(v.ok()) << text << ": " << v.status();
    return v.ok() && *v;
  }

  std::vector<ExprError> Errors(absl::string_view text) {
    return CompileCondition(text, env_).errors;
  }

  Environment env_ = TestEnvironment();
  FakeActivation act_ = TestActivation();
};

TEST_F(ExprTest, PrecedenceAndAssociativity) {
  const std::pair<const char*, const char*> cases[] = {
      {"a || b && c", "(a || (b && c))"},
      {"a && b || c", "((a && b) || c)"},
      {"a || b || c", "((a || b) || c)"},
      {"a && b && c", "((a && b) && c)"},
      {"a == b != c", "((a == b) != c)"},
      {"x < y == a", "((x < y) == a)"},
      {"a == x < y", "(a == (x < y))"},
      {"x + y < z", "((x + y) < z)"},
      {"x + y * z", "(x + (y * z))"},
      {"x * y + z", "((x * y) + z)"},
      {"x - y - z", "((x - y) - z)"},
      {"x - y + z", "((x - y) + z)"},
      {"x / y / z", "((x / y) / z)"},
      {"x % y * z", "((x % y) * z)"},
      {"-x * y", "(-x * y)"},
      {"- -x", "--x"},
      {"-(x + y)", "-(x + y)"},
      {"!a && b", "(!a && b)"},
      {"!(a || b)", "!(a || b)"},
      {"!!a", "!!a"},
      {"(x + y) * z", "((x + y) * z)"},
      {"((((x))))", "x"},
      {"x + y >= z && a", "(((x + y) >= z) && a)"},
      {"asrm.total >= 6 || phq9.total >= 10",
       "((asrm.total >= 6) || (phq9.total >= 10))"},
      {"srm.score < 3 && srm.weeks_recorded >= 2",
       "((srm.score < 3) && (srm.weeks_recorded >= 2))"},
      {"!has(srm.score)", "!has(srm.score)"},
      {"tasks.done(\"baseline\")", "tasks.done(\"baseline\")"},
      {"days_since(\"stage_entered\")>=56",
       "(days_since(\"stage_entered\") >= 56)"},
      {"pair(1+2,s+t)", "pair((1 + 2), (s + t))"},
      {"1.50 + 0.1 + 007 + 0.0", "(((1.5 + 0.1) + 7) + 0)"},
      {"s == \"q\\\"b\\\\c\\nd\"", "(s == \"q\\\"b\\\\c\\nd\")"},
      {"true != false", "(true != false)"},
      {"a\n&&\tb", "(a && b)"},
  };
  for (const auto& [text, want] : cases) {
    EXPECT_EQ(Print(text), want) << text;
    // The canonical form compiles to itself.
    EXPECT_EQ(Print(Print(text)), want) << text;
  }
}

TEST_F(ExprTest, EveryOperator) {
  const std::pair<const char*, Value> cases[] = {
      {"x + y", Value::Number(6.5)},
      {"x - y", Value::Number(1.5)},
      {"x * y", Value::Number(10)},
      {"x / y", Value::Number(1.6)},
      {"7 % 3", Value::Number(1)},
      {"-7 % 3", Value::Number(-1)},
      {"7.5 % 2", Value::Number(1.5)},
      {"-x", Value::Number(-4)},
      {"s + t", Value::String("abcabd")},
      {"s + \"\"", Value::String("abc")},
      {"!a", Value::Bool(false)},
      {"!b", Value::Bool(true)},
      {"a && c", Value::Bool(true)},
      {"a && b", Value::Bool(false)},
      {"b && a", Value::Bool(false)},
      {"a || b", Value::Bool(true)},
      {"b || a", Value::Bool(true)},
      {"b || b", Value::Bool(false)},
      {"x == 4", Value::Bool(true)},
      {"x == 4.0", Value::Bool(true)},
      {"x != 4", Value::Bool(false)},
      {"x < 5", Value::Bool(true)},
      {"x < 4", Value::Bool(false)},
      {"x <= 4", Value::Bool(true)},
      {"x > 4", Value::Bool(false)},
      {"x > 3.99", Value::Bool(true)},
      {"x >= 4", Value::Bool(true)},
      {"y >= 4", Value::Bool(false)},
      {"a == true", Value::Bool(true)},
      {"a != b", Value::Bool(true)},
      {"b == false", Value::Bool(true)},
      {"0.1 + 0.2 == 0.3", Value::Bool(false)},  // Doubles, as documented.
  };
  for (const auto& [text, want] : cases) {
    EXPECT_EQ(Eval(text), want) << text;
  }
}

TEST_F(ExprTest, StringComparisonsAreBytewise) {
  const std::pair<const char*, bool> cases[] = {
      {"s == \"abc\"", true},
      {"s != t", true},
      {"s < t", true},
      {"s <= \"abc\"", true},
      {"s > \"ab\"", true},
      {"s >= t", false},
      {"\"\" < \"a\"", true},
      {"\"B\" < \"a\"", true},
      {"\"abc\" == \"ABC\"", false},
      {"stage.name == \"acute\"", true},
      {"s + \"d\" == \"abcd\"", true},
  };
  for (const auto& [text, want] : cases) {
    EXPECT_EQ(Condition(text), want) << text;
  }
}

TEST_F(ExprTest, DivisionByZeroIsAbsent) {
  EXPECT_EQ(Eval("x / z"), Value::Absent());
  EXPECT_EQ(Eval("x % z"), Value::Absent());
  EXPECT_EQ(Eval("x / (y - 2.5)"), Value::Absent());
  EXPECT_EQ(Eval("0 / 0"), Value::Absent());
  EXPECT_FALSE(Condition("x / z >= 0"));
  EXPECT_FALSE(Condition("x / z < 0"));
  EXPECT_TRUE(Condition("!has(srm.score) || x / z > 0"));
}

TEST_F(ExprTest, NonFiniteArithmeticIsAbsent) {
  std::string big = "1" + std::string(300, '0');
  EXPECT_EQ(Eval(big), Value::Number(1e300));
  EXPECT_EQ(Eval(absl::StrCat(big, " * ", big)), Value::Absent());
  EXPECT_EQ(Eval(absl::StrCat("-", big, " * ", big)), Value::Absent());
}

TEST_F(ExprTest, AbsentSemantics) {
  // srm.score and missing.* are declared but have no value.
  const std::pair<const char*, Value> cases[] = {
      // Arithmetic propagates absent.
      {"missing.num + 1", Value::Absent()},
      {"1 - missing.num", Value::Absent()},
      {"missing.num * 0", Value::Absent()},
      {"missing.num / 1", Value::Absent()},
      {"1 % missing.num", Value::Absent()},
      {"-missing.num", Value::Absent()},
      {"missing.str + s", Value::Absent()},
      {"s + missing.str", Value::Absent()},
      // Comparisons with absent are false, whichever operator.
      {"srm.score < 3", Value::Bool(false)},
      {"srm.score >= 3", Value::Bool(false)},
      {"missing.num == missing.num", Value::Bool(false)},
      {"missing.num != 3", Value::Bool(false)},
      {"3 <= missing.num", Value::Bool(false)},
      {"3 > missing.num", Value::Bool(false)},
      {"missing.str == \"\"", Value::Bool(false)},
      {"missing.bool == false", Value::Bool(false)},
      {"missing.bool != true", Value::Bool(false)},
      // !, && and || read absent as false.
      {"!missing.bool", Value::Bool(true)},
      {"missing.bool && a", Value::Bool(false)},
      {"a && missing.bool", Value::Bool(false)},
      {"missing.bool || a", Value::Bool(true)},
      {"missing.bool || b", Value::Bool(false)},
      {"a || missing.bool", Value::Bool(true)},
      {"b || missing.bool", Value::Bool(false)},
      // A negated comparison does fire on absent data: use has().
      {"!(srm.score < 3)", Value::Bool(true)},
      {"has(srm.score) && !(srm.score < 3)", Value::Bool(false)},
      // has() tests presence.
      {"has(srm.score)", Value::Bool(false)},
      {"!has(srm.score)", Value::Bool(true)},
      {"has(missing.str)", Value::Bool(false)},
      {"has(x)", Value::Bool(true)},
      {"has(b)", Value::Bool(true)},  // Present though false.
      // A bare absent identifier evaluates to absent.
      {"missing.bool", Value::Absent()},
      {"srm.score", Value::Absent()},
      // Functions may return absent.
      {"latest(\"phq9\")", Value::Absent()},
      {"latest(\"phq9\") > 0", Value::Bool(false)},
  };
  for (const auto& [text, want] : cases) {
    EXPECT_EQ(Eval(text), want) << text;
  }
  EXPECT_FALSE(Condition("missing.bool"));
  EXPECT_FALSE(Condition("srm.score < 3 && srm.weeks_recorded >= 2"));
  EXPECT_TRUE(Condition("a"));
}

TEST_F(ExprTest, FunctionWithAbsentArgumentIsAbsentAndNotCalled) {
  EXPECT_EQ(Eval("count(missing.str)"), Value::Absent());
  EXPECT_EQ(Eval("pair(srm.score, \"x\")"), Value::Absent());
  EXPECT_THAT(act_.calls, IsEmpty());
}

TEST_F(ExprTest, FunctionCallsGoThroughTheActivation) {
  EXPECT_TRUE(Condition("count(\"session_held\") >= 3"));
  EXPECT_FALSE(Condition("count(\"other\") >= 3"));
  EXPECT_TRUE(Condition("days_since(\"stage_entered\") >= 56"));
  EXPECT_TRUE(Condition("tasks.done(\"baseline\")"));
  EXPECT_FALSE(Condition("tasks.done(\"safety_plan\")"));
  EXPECT_EQ(Eval("pair(x * 2, s)"), Value::String("8:abc"));
  EXPECT_THAT(
      act_.calls,
      ElementsAre("count(\"session_held\")", "count(\"other\")",
                  "days_since(\"stage_entered\")", "tasks.done(\"baseline\")",
                  "tasks.done(\"safety_plan\")", "pair(8, \"abc\")"));
}

TEST_F(ExprTest, AndOrShortCircuitLeftToRight) {
  EXPECT_FALSE(Condition("b && tasks.done(\"x\")"));
  EXPECT_TRUE(Condition("a || tasks.done(\"y\")"));
  EXPECT_THAT(act_.calls, IsEmpty());
  // A failing call on the skipped side is never made.
  EXPECT_TRUE(Condition("a || fail()"));
  EXPECT_TRUE(Condition("tasks.done(\"baseline\") || count(\"z\") > 0"));
  EXPECT_THAT(act_.calls, ElementsAre("tasks.done(\"baseline\")"));
}

TEST_F(ExprTest, ActivationErrorsArePassedOn) {
  CompileResult r = CompileCondition("a && fail()", env_);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<bool> v = EvaluateCondition(*r.expr, act_);
  EXPECT_EQ(v.status(), absl::UnavailableError("fail: store down"));
}

TEST_F(ExprTest, WrongTypedActivationAnswersAreInternalErrors) {
  CompileResult r = Compile("wrong_type()", env_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Evaluate(*r.expr, act_).status(),
            absl::InternalError("function \"wrong_type\" is declared number "
                                "but the activation supplied string \"oops\""));

  act_.values["x"] = Value::Bool(true);
  r = Compile("x + 1", env_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Evaluate(*r.expr, act_).status(),
            absl::InternalError("identifier \"x\" is declared number but the "
                                "activation supplied bool true"));
}

TEST_F(ExprTest, EvaluationIsDeterministic) {
  CompileResult r = Compile(
      "pair(count(\"session_held\") + x / y, s + stage.name) + \"!\"", env_);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<Value> first = Evaluate(*r.expr, act_);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, Value::String("4.6:abcacute!"));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Evaluate(*r.expr, act_), first);
}

TEST_F(ExprTest, ReferencedNames) {
  CompileResult r = Compile(
      "has(srm.score) && count(\"x\") > phq9.total && tasks.done(\"y\") && "
      "count(\"z\") > phq9.total + srm.score",
      env_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r.expr->identifiers(), ElementsAre("phq9.total", "srm.score"));
  EXPECT_THAT(r.expr->functions(), ElementsAre("count", "tasks.done"));
  EXPECT_EQ(r.expr->type(), Type::kBool);

  r = Compile("1 + 2", env_);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r.expr->identifiers(), IsEmpty());
  EXPECT_THAT(r.expr->functions(), IsEmpty());
  EXPECT_EQ(r.expr->type(), Type::kNumber);
}

TEST_F(ExprTest, CallSitesInSourceOrder) {
  CompileResult r = Compile(
      "tasks.done(\"baseline\") &&\n"
      "  pair(count(\"session_held\"), \"x\") == s && has(x)",
      env_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(
      r.expr->call_sites(),
      ElementsAre(CallSite{"tasks.done", 1, 1, {Value::String("baseline")}},
                  CallSite{"pair", 2, 3, {std::nullopt, Value::String("x")}},
                  CallSite{"count", 2, 8, {Value::String("session_held")}}));
}

TEST_F(ExprTest, ValueDebugString) {
  EXPECT_EQ(Value().DebugString(), "absent");
  EXPECT_EQ(Value::Bool(false).DebugString(), "false");
  EXPECT_EQ(Value::Number(-0.0).DebugString(), "0");
  EXPECT_EQ(Value::Number(56).DebugString(), "56");
  EXPECT_EQ(Value::Number(0.1).DebugString(), "0.1");
  EXPECT_EQ(Value::Number(1e-7).DebugString(), "0.0000001");
  EXPECT_EQ(Value::Number(1e20).DebugString(), "100000000000000000000");
  EXPECT_EQ(Value::Number(1.0 / 3).DebugString(), "0.3333333333333333");
  EXPECT_EQ(Value::String("a\"b\n").DebugString(), "\"a\\\"b\\n\"");
  EXPECT_EQ(Eval("1 / 3"), Value::Number(1.0 / 3));
  EXPECT_EQ(Print("0.3333333333333333 == 1 / 3"),
            "(0.3333333333333333 == (1 / 3))");
  EXPECT_TRUE(Condition("0.3333333333333333 == 1 / 3"));
}

// --- Compile errors: exact position and message. ---

TEST_F(ExprTest, UnknownIdentifierSuggestsClosestName) {
  EXPECT_THAT(Errors("phq9.totl >= 10"),
              ElementsAre(ExprError{1, 1,
                                    "unknown identifier \"phq9.totl\"; did "
                                    "you mean \"phq9.total\"?"}));
  EXPECT_THAT(Errors("a && srm.scores < 3"),
              ElementsAre(ExprError{1, 6,
                                    "unknown identifier \"srm.scores\"; did "
                                    "you mean \"srm.score\"?"}));
  EXPECT_THAT(
      Errors("unrelated_name > 1"),
      ElementsAre(ExprError{1, 1, "unknown identifier \"unrelated_name\""}));
  EXPECT_THAT(Errors("has(srm.scor)"),
              ElementsAre(ExprError{1, 5,
                                    "unknown identifier \"srm.scor\"; did "
                                    "you mean \"srm.score\"?"}));
  EXPECT_THAT(Errors("tasks.done"),
              ElementsAre(ExprError{1, 1,
                                    "\"tasks.done\" is a function; call it "
                                    "with arguments, e.g. tasks.done(...)"}));
}

TEST_F(ExprTest, FunctionErrors) {
  EXPECT_THAT(Errors("cout(\"x\") > 1"),
              ElementsAre(ExprError{
                  1, 1, "unknown function \"cout\"; did you mean \"count\"?"}));
  EXPECT_THAT(Errors("frobnicate()"),
              ElementsAre(ExprError{1, 1, "unknown function \"frobnicate\""}));
  EXPECT_THAT(
      Errors("a && x(1) > 0"),
      ElementsAre(ExprError{1, 6, "\"x\" is an identifier, not a function"}));
  EXPECT_THAT(
      Errors("count() > 1"),
      ElementsAre(ExprError{
          1, 1, "function \"count\" expects 1 argument (string), got 0"}));
  EXPECT_THAT(Errors("pair(1) == s"),
              ElementsAre(ExprError{1, 1,
                                    "function \"pair\" expects 2 arguments "
                                    "(number, string), got 1"}));
  EXPECT_THAT(Errors("count(3) > 1"),
              ElementsAre(ExprError{
                  1, 7, "argument 1 of \"count\" must be string, got number"}));
  EXPECT_THAT(
      Errors("pair(s, x + 1) == s"),
      ElementsAre(
          ExprError{1, 6, "argument 1 of \"pair\" must be number, got string"},
          ExprError{1, 9,
                    "argument 2 of \"pair\" must be string, got number"}));
  EXPECT_THAT(Errors("has(1)"),
              ElementsAre(ExprError{1, 1,
                                    "has() expects one identifier argument, "
                                    "e.g. has(srm.score)"}));
  EXPECT_THAT(Errors("has(x, y)"),
              ElementsAre(ExprError{1, 1,
                                    "has() expects one identifier argument, "
                                    "e.g. has(srm.score)"}));
  EXPECT_THAT(Errors("has(count(\"x\"))"),
              ElementsAre(ExprError{1, 1,
                                    "has() expects one identifier argument, "
                                    "e.g. has(srm.score)"}));
  EXPECT_THAT(Errors("has"),
              ElementsAre(ExprError{1, 1, "unknown identifier \"has\""}));
}

TEST_F(ExprTest, OperatorTypeErrors) {
  const std::pair<const char*, ExprError> cases[] = {
      {"phq9.total >= \"ten\"",
       {1, 12,
        "operator \">=\" expects two numbers or two strings, got number and "
        "string"}},
      {"srm.score && true",
       {1, 11, "operator \"&&\" expects bool operands, got number and bool"}},
      {"a || s",
       {1, 3, "operator \"||\" expects bool operands, got bool and string"}},
      {"x == s",
       {1, 3,
        "operator \"==\" expects operands of the same type, got number and "
        "string"}},
      {"a != 1",
       {1, 3,
        "operator \"!=\" expects operands of the same type, got bool and "
        "number"}},
      {"a < b",
       {1, 3,
        "operator \"<\" expects two numbers or two strings, got bool and "
        "bool"}},
      {"x + s > 1",
       {1, 3,
        "operator \"+\" expects two numbers or two strings, got number and "
        "string"}},
      {"a + a",
       {1, 3,
        "operator \"+\" expects two numbers or two strings, got bool and "
        "bool"}},
      {"s - s == 0",
       {1, 3, "operator \"-\" expects number operands, got string and string"}},
      {"x * a > 0",
       {1, 3, "operator \"*\" expects number operands, got number and bool"}},
      {"x / s > 0",
       {1, 3, "operator \"/\" expects number operands, got number and string"}},
      {"x % a > 0",
       {1, 3, "operator \"%\" expects number operands, got number and bool"}},
      {"!x", {1, 1, "operator \"!\" expects a bool operand, got number"}},
      {"-s == s",
       {1, 1, "operator \"-\" expects a number operand, got string"}},
  };
  for (const auto& [text, want] : cases) {
    EXPECT_THAT(Errors(text), ElementsAre(want)) << text;
  }
}

TEST_F(ExprTest, ConditionMustBeBool) {
  EXPECT_THAT(
      Errors("x + 1"),
      ElementsAre(ExprError{1, 1, "condition must be bool, got number"}));
  EXPECT_THAT(
      Errors("\n  (s + t)"),
      ElementsAre(ExprError{2, 3, "condition must be bool, got string"}));
  // Compile accepts any type.
  CompileResult r = Compile("x + 1", env_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.expr->type(), Type::kNumber);
}

TEST_F(ExprTest, ReportsEveryTypeErrorInOrderWithoutCascades) {
  EXPECT_THAT(
      Errors("phq9.totl >= 10 && srm.score && count(1) > 0 || counts(\"x\")"),
      ElementsAre(
          ExprError{1, 1,
                    "unknown identifier \"phq9.totl\"; did you mean "
                    "\"phq9.total\"?"},
          ExprError{1, 17,
                    "operator \"&&\" expects bool operands, got bool and "
                    "number"},
          ExprError{1, 39,
                    "argument 1 of \"count\" must be string, got number"},
          ExprError{1, 49,
                    "unknown function \"counts\"; did you mean \"count\"?"}));
  // One mistake, one message: operators over a failed operand stay quiet.
  EXPECT_THAT(
      Errors("x + s > 1 && 5"),
      ElementsAre(ExprError{1, 3,
                            "operator \"+\" expects two numbers or two "
                            "strings, got number and string"},
                  ExprError{1, 11,
                            "operator \"&&\" expects bool operands, got "
                            "bool and number"}));
  EXPECT_THAT(
      Errors("-s == s"),
      ElementsAre(ExprError{
          1, 1, "operator \"-\" expects a number operand, got string"}));
  EXPECT_THAT(Errors("-(unknown + 1) * 2 > 2 && !unknown2"),
              ElementsAre(ExprError{1, 3, "unknown identifier \"unknown\""},
                          ExprError{1, 28, "unknown identifier \"unknown2\""}));
}

TEST_F(ExprTest, ErrorsInMultiLineText) {
  // As read from a YAML block scalar: positions are within the scalar.
  EXPECT_THAT(Errors("phq9.total >= 10 &&\n  srm.scor < 3\n"),
              ElementsAre(ExprError{2, 3,
                                    "unknown identifier \"srm.scor\"; did you "
                                    "mean \"srm.score\"?"}));
  EXPECT_THAT(Errors("a &&\n  (b ||\n   c"),
              ElementsAre(ExprError{3, 5,
                                    "expected \")\", found end of "
                                    "expression"}));
  EXPECT_THAT(Errors("a &&\n"),
              ElementsAre(ExprError{1, 5,
                                    "expected an operand, found end of "
                                    "expression"}));
  EXPECT_THAT(Errors("a\n&& x\n&& s"),
              ElementsAre(ExprError{2, 1,
                                    "operator \"&&\" expects bool operands, "
                                    "got bool and number"},
                          ExprError{3, 1,
                                    "operator \"&&\" expects bool operands, "
                                    "got bool and string"}));
  EXPECT_THAT(Errors("s == \"abc\ndef\""),
              ElementsAre(ExprError{1, 6, "unterminated string"},
                          ExprError{2, 4, "unterminated string"}));
}

TEST_F(ExprTest, SyntaxErrors) {
  const std::pair<const char*, ExprError> cases[] = {
      {"", {1, 1, "expected an operand, found end of expression"}},
      {"   ", {1, 1, "expected an operand, found end of expression"}},
      {"x >= ", {1, 5, "expected an operand, found end of expression"}},
      {"(x > 1", {1, 7, "expected \")\", found end of expression"}},
      {"x > 1)",
       {1, 6,
        "expected an operator or the end of the expression, found \")\""}},
      {"x > 1 1",
       {1, 7,
        "expected an operator or the end of the expression, found number 1"}},
      {"a b",
       {1, 3,
        "expected an operator or the end of the expression, found "
        "identifier \"b\""}},
      {"a && && b", {1, 6, "expected an operand, found \"&&\""}},
      {"()", {1, 2, "expected an operand, found \")\""}},
      {"count(\"a\" \"b\") > 0",
       {1, 11, "expected \",\" or \")\", found string \"b\""}},
      {"count(\"a\",) > 0", {1, 11, "expected an operand, found \")\""}},
      {"count(,)", {1, 7, "expected an operand, found \",\""}},
      {"s == \"abc", {1, 6, "unterminated string"}},
      {"s == \"abc\\", {1, 6, "unterminated string"}},
      {"s == \"a\\qb\"",
       {1, 8, "unknown escape '\\q' (use \\\", \\\\ or \\n)"}},
      {"x = 1", {1, 3, "unexpected character '='; use == to compare"}},
      {"a & b", {1, 3, "unexpected character '&'; use && for logical and"}},
      {"a | b", {1, 3, "unexpected character '|'; use || for logical or"}},
      {"s == 'x y' && a",
       {1, 6, "strings use double quotes (\"...\"), not '...'"}},
      {"x # 1", {1, 3, "unexpected character '#'"}},
      {"x \x01 1", {1, 3, "unexpected character byte 0x01"}},
      {"x \xE2\x89\xA5 1", {1, 3, "unexpected non-ASCII character"}},
      {"10days > x", {1, 1, "malformed number \"10days\""}},
      {"1e5 > x", {1, 1, "malformed number \"1e5\""}},
      {"5. > x", {1, 3, "expected a digit after '.' in number"}},
      {".5 > x", {1, 1, "unexpected character '.'"}},
      {"phq9. > 1", {1, 6, "expected a field name after '.'"}},
      {"phq9.1 > 1", {1, 6, "expected a field name after '.'"}},
  };
  for (const auto& [text, want] : cases) {
    EXPECT_THAT(Errors(text), ElementsAre(want)) << text;
  }
}

TEST_F(ExprTest, ReportsEveryLexicalError) {
  EXPECT_THAT(
      Errors("x = 1 & b # c"),
      ElementsAre(
          ExprError{1, 3, "unexpected character '='; use == to compare"},
          ExprError{1, 7, "unexpected character '&'; use && for logical and"},
          ExprError{1, 11, "unexpected character '#'"}));
}

TEST_F(ExprTest, StatusJoinsErrors) {
  CompileResult r = CompileCondition("x = 1 & b", env_);
  EXPECT_EQ(r.status(),
            absl::InvalidArgumentError(
                "1:3: unexpected character '='; use == to compare; 1:7: "
                "unexpected character '&'; use && for logical and"));
  EXPECT_FALSE(r.expr.has_value());
  EXPECT_TRUE(CompileCondition("a", env_).status().ok());
}

TEST_F(ExprTest, LengthLimit) {
  std::string longest = "a" + std::string(kMaxExpressionLength - 1, ' ');
  EXPECT_TRUE(CompileCondition(longest, env_).ok());
  EXPECT_THAT(Errors(longest + " "),
              ElementsAre(ExprError{
                  1, 1, "expression is 4097 bytes long; the limit is 4096"}));
}

TEST_F(ExprTest, DepthLimit) {
  auto parens = [](int n) {
    return std::string(n, '(') + "a" + std::string(n, ')');
  };
  EXPECT_TRUE(CompileCondition(parens(kMaxDepth), env_).ok());
  EXPECT_THAT(
      Errors(parens(kMaxDepth + 1)),
      ElementsAre(ExprError{1, 65, "expression nests deeper than 64 levels"}));
  // Far deeper input still fails cleanly, without exhausting the stack.
  EXPECT_THAT(
      Errors(parens(2000)),
      ElementsAre(ExprError{1, 65, "expression nests deeper than 64 levels"}));
  EXPECT_THAT(
      Errors(std::string(4000, '!') + "a"),
      ElementsAre(ExprError{1, 65, "expression nests deeper than 64 levels"}));

  // The tree's height counts too: 63 operators over a leaf is 64 levels.
  EXPECT_TRUE(CompileCondition(std::string(63, '!') + "a", env_).ok());
  EXPECT_THAT(
      Errors(std::string(64, '!') + "a"),
      ElementsAre(ExprError{1, 1, "expression nests deeper than 64 levels"}));
  std::string chain = "x";
  for (int i = 0; i < 63; ++i) chain += " + x";
  EXPECT_TRUE(Compile(chain, env_).ok());
  chain += " + x";  // The 64th "+" sits at column 4 * 63 + 3.
  EXPECT_THAT(
      Compile(chain, env_).errors,
      ElementsAre(ExprError{1, 255, "expression nests deeper than 64 levels"}));
}

TEST(EnvironmentTest, DeclarationRules) {
  Environment env;
  EXPECT_TRUE(env.DeclareIdentifier("phq9.total", Type::kNumber).ok());
  EXPECT_TRUE(env.DeclareIdentifier("phq9", Type::kBool).ok());
  EXPECT_TRUE(env.DeclareIdentifier("_x.y_2", Type::kString).ok());
  EXPECT_TRUE(
      env.DeclareFunction("tasks.done", {Type::kString}, Type::kBool).ok());
  EXPECT_EQ(env.DeclareIdentifier("phq9.total", Type::kNumber),
            absl::AlreadyExistsError("\"phq9.total\" is already declared"));
  EXPECT_EQ(env.DeclareFunction("phq9.total", {}, Type::kNumber),
            absl::AlreadyExistsError("\"phq9.total\" is already declared"));
  EXPECT_EQ(env.DeclareIdentifier("tasks.done", Type::kBool),
            absl::AlreadyExistsError("\"tasks.done\" is already declared"));
  EXPECT_EQ(env.DeclareIdentifier("", Type::kBool),
            absl::InvalidArgumentError("empty name"));
  for (const char* bad : {"1a", "a..b", "a.", ".a", "a-b", "a b", "a.1"}) {
    EXPECT_EQ(env.DeclareIdentifier(bad, Type::kBool),
              absl::InvalidArgumentError(absl::StrCat(
                  "malformed name \"", bad,
                  "\": expected dot-separated [A-Za-z_][A-Za-z0-9_]*")))
        << bad;
  }
  EXPECT_EQ(env.DeclareIdentifier("x.true", Type::kBool),
            absl::InvalidArgumentError(
                "name \"x.true\" uses the reserved word \"true\""));
  EXPECT_EQ(env.DeclareFunction("has", {Type::kString}, Type::kBool),
            absl::InvalidArgumentError(
                "name \"has\" is reserved for the built-in has()"));
  ASSERT_NE(env.FindIdentifier("phq9"), nullptr);
  EXPECT_EQ(*env.FindIdentifier("phq9"), Type::kBool);
  EXPECT_EQ(env.FindIdentifier("tasks.done"), nullptr);
  ASSERT_NE(env.FindFunction("tasks.done"), nullptr);
  EXPECT_EQ(env.FindFunction("tasks.done")->result, Type::kBool);
}

// --- Robustness: random input must never crash, and whatever compiles
// must print, re-compile to the same tree, and evaluate. ---

class TokenSoupTest : public ExprTest {
 protected:
  // Uniform pick from the raw engine output, because std distributions are
  // not specified bit-for-bit and the test must be the same everywhere.
  size_t Pick(size_t n) { return static_cast<size_t>(rng_() % n); }

  void CheckOne(const std::string& text) {
    for (bool condition : {false, true}) {
      CompileResult r =
          condition ? CompileCondition(text, env_) : Compile(text, env_);
      ASSERT_EQ(r.ok(), r.expr.has_value()) << text;
      for (const ExprError& e : r.errors) {
        ASSERT_GE(e.line, 1) << text;
        ASSERT_GE(e.column, 1) << text;
        ASSERT_FALSE(e.message.empty()) << text;
      }
      if (!r.ok()) continue;
      ++compiled_;
      std::string printed = r.expr->ToString();
      if (printed.size() <= kMaxExpressionLength) {
        CompileResult again = Compile(printed, env_);
        ASSERT_TRUE(again.ok())
            << text << " -> " << printed << ": " << again.status();
        ASSERT_EQ(again.expr->ToString(), printed) << text;
      }
      absl::StatusOr<Value> v = Evaluate(*r.expr, act_);
      if (!v.ok()) {
        // Only the deliberately failing fakes may fail.
        ASSERT_TRUE(absl::StrContains(text, "fail") ||
                    absl::StrContains(text, "wrong_type"))
            << text << ": " << v.status();
      } else if (v->is_number()) {
        ASSERT_TRUE(std::isfinite(v->number_value())) << text;
      }
    }
  }

  std::mt19937 rng_{20240607};
  int compiled_ = 0;
};

TEST_F(TokenSoupTest, RandomTokensNeverCrash) {
  const std::vector<std::string> vocabulary = {"a",
                                               "b",
                                               "x",
                                               "y",
                                               "z",
                                               "s",
                                               "srm.score",
                                               "phq9.total",
                                               "missing.num",
                                               "missing.bool",
                                               "unknown",
                                               "count",
                                               "tasks.done",
                                               "has",
                                               "pair",
                                               "fail",
                                               "latest",
                                               "0",
                                               "1",
                                               "2.5",
                                               "10",
                                               "007",
                                               "\"\"",
                                               "\"str\"",
                                               "\"a\\\"b\"",
                                               "true",
                                               "false",
                                               "(",
                                               "(",
                                               ")",
                                               ")",
                                               ",",
                                               "||",
                                               "&&",
                                               "==",
                                               "!=",
                                               "<",
                                               "<=",
                                               ">",
                                               ">=",
                                               "+",
                                               "-",
                                               "*",
                                               "/",
                                               "%",
                                               "!",
                                               "!",
                                               "-",
                                               "=",
                                               "&",
                                               "|",
                                               "#",
                                               "'",
                                               "\"",
                                               "\\",
                                               ".",
                                               "\n",
                                               "\xC3\xA9",
                                               "(\"session_held\")",
                                               "(x)",
                                               "()"};
  for (int i = 0; i < 20000; ++i) {
    std::string text;
    size_t n = Pick(24);
    for (size_t j = 0; j < n; ++j) {
      text += vocabulary[Pick(vocabulary.size())];
      if (Pick(3) != 0) text += " ";
    }
    CheckOne(text);
    if (HasFatalFailure()) return;
  }
  // The soup must be rich enough to exercise the checker and evaluator.
  EXPECT_GT(compiled_, 300);
}

TEST_F(TokenSoupTest, RandomBytesNeverCrash) {
  for (int i = 0; i < 5000; ++i) {
    std::string text(Pick(48), '\0');
    for (char& c : text) c = static_cast<char>(Pick(256));
    CheckOne(text);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace ipsrt::expr
