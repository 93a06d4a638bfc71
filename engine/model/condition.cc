#include "model/condition.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "expr/expr.h"
#include "instruments/srm.h"

namespace ipsrt {
namespace {

using expr::Type;

// Score names of the fixed instruments, as conditions see them.
struct ScoredInstrument {
  const char* id;
  int items;
};
constexpr ScoredInstrument kScoredInstruments[] = {
    {"phq9", 9}, {"gad7", 7}, {"asrm", 5}};

const std::vector<std::string>& CountableEvents() {
  static const auto* kinds = new std::vector<std::string>{
      "session_held",    "srm_diary",     "goal_set",      "relapse_plan",
      "disruption_plan", "questionnaire", "task_completed"};
  return *kinds;
}
const std::vector<std::string>& DaysSinceMarks() {
  static const auto* marks = new std::vector<std::string>{
      "enrolled", "stage_entered", "last_session", "last_response"};
  return *marks;
}

expr::Environment MakeEnvironment(const ModelContext& context) {
  expr::Environment env;
  for (const ScoredInstrument& s : kScoredInstruments) {
    if (!context.instruments.count(s.id)) continue;
    env.DeclareIdentifier(absl::StrCat(s.id, ".total"), Type::kNumber)
        .IgnoreError();
    for (int i = 1; i <= s.items; ++i) {
      env.DeclareIdentifier(absl::StrCat(s.id, ".item", i), Type::kNumber)
          .IgnoreError();
    }
  }
  for (const char* name : {"srm.score", "srm.ali", "srm.weeks_recorded",
                           "stage.sessions", "stage.days", "alerts.open"}) {
    env.DeclareIdentifier(name, Type::kNumber).IgnoreError();
  }
  // Rhythm analytics per SRM anchor activity (runtime/step.cc).
  for (const std::string& activity : Srm17Activities()) {
    for (const char* measure : {"shift_minutes", "hit_rate"}) {
      env.DeclareIdentifier(absl::StrCat("srm.", activity, ".", measure),
                            Type::kNumber)
          .IgnoreError();
    }
  }
  for (const char* name : {"goal.set", "relapse_plan.written"}) {
    env.DeclareIdentifier(name, Type::kBool).IgnoreError();
  }
  env.DeclareFunction("count", {Type::kString}, Type::kNumber).IgnoreError();
  env.DeclareFunction("days_since", {Type::kString}, Type::kNumber)
      .IgnoreError();
  env.DeclareFunction("tasks.done", {Type::kString}, Type::kBool).IgnoreError();
  env.DeclareFunction("latest", {Type::kString}, Type::kNumber).IgnoreError();
  return env;
}

// LiteralCall is `name("literal")` found in a condition's text.
struct LiteralCall {
  std::string function;
  std::string argument;
  int line = 1;
  int column = 1;  // of the literal's opening quote
};

// FindLiteralCalls scans `text` for calls of the engine's functions with a
// plain string literal argument, outside string literals. The compiled
// expression has already been checked, so a simple scan suffices.
std::vector<LiteralCall> FindLiteralCalls(absl::string_view text) {
  std::vector<LiteralCall> calls;
  int line = 1, column = 1;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '"') {
      // Skip a string literal that is not a call argument.
      size_t j = i + 1;
      while (j < text.size() && text[j] != '"') j += text[j] == '\\' ? 2 : 1;
      column += static_cast<int>(j + 1 - i);
      i = j + 1;
      continue;
    }
    for (const char* fn : {"tasks.done", "count", "days_since", "latest"}) {
      absl::string_view rest = text.substr(i);
      size_t len = std::strlen(fn);
      bool boundary =
          i == 0 || !(std::isalnum(static_cast<unsigned char>(text[i - 1])) ||
                      text[i - 1] == '_' || text[i - 1] == '.');
      if (!boundary || !absl::StartsWith(rest, fn)) continue;
      size_t k = len;
      while (k < rest.size() && rest[k] == ' ') ++k;
      if (k >= rest.size() || rest[k] != '(') continue;
      ++k;
      while (k < rest.size() && rest[k] == ' ') ++k;
      if (k >= rest.size() || rest[k] != '"') continue;
      size_t end = rest.find('"', k + 1);
      if (end == absl::string_view::npos) continue;
      calls.push_back(LiteralCall{fn,
                                  std::string(rest.substr(k + 1, end - k - 1)),
                                  line, column + static_cast<int>(k)});
    }
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    ++i;
  }
  return calls;
}

// FactsActivation answers a condition's names from ConditionFacts.
class FactsActivation final : public expr::Activation {
 public:
  explicit FactsActivation(const ConditionFacts& facts) : facts_(facts) {}

  std::optional<expr::Value> Lookup(absl::string_view name) const override {
    std::string key(name);
    if (auto it = facts_.numbers.find(key); it != facts_.numbers.end()) {
      return expr::Value::Number(it->second);
    }
    if (auto it = facts_.booleans.find(key); it != facts_.booleans.end()) {
      return expr::Value::Bool(it->second);
    }
    return std::nullopt;
  }

  absl::StatusOr<std::optional<expr::Value>> Call(
      absl::string_view name,
      absl::Span<const expr::Value> args) const override {
    const std::string& arg = args[0].string_value();
    if (name == "count") {
      auto it = facts_.counts.find(arg);
      return std::optional<expr::Value>(
          expr::Value::Number(it == facts_.counts.end() ? 0 : it->second));
    }
    if (name == "days_since") {
      auto it = facts_.days_since.find(arg);
      if (it == facts_.days_since.end()) return std::optional<expr::Value>();
      return std::optional<expr::Value>(expr::Value::Number(it->second));
    }
    if (name == "tasks.done") {
      return std::optional<expr::Value>(
          expr::Value::Bool(facts_.tasks_done.count(arg) > 0));
    }
    if (name == "latest") {
      auto it = facts_.numbers.find(arg);
      if (it == facts_.numbers.end()) return std::optional<expr::Value>();
      return std::optional<expr::Value>(expr::Value::Number(it->second));
    }
    return absl::InternalError(absl::StrCat("no function ", name));
  }

 private:
  const ConditionFacts& facts_;
};

}  // namespace

struct CompiledCondition::Impl {
  expr::CompiledExpr expr;
};

CompiledCondition::CompiledCondition(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
CompiledCondition::~CompiledCondition() = default;

std::shared_ptr<const CompiledCondition> CompiledCondition::Compile(
    absl::string_view text, const ModelContext& context,
    std::vector<ConditionError>* errors, std::vector<TaskRef>* task_refs) {
  static const expr::Environment* const default_env =
      new expr::Environment(MakeEnvironment(ModelContext()));
  expr::Environment custom;
  const expr::Environment* env = default_env;
  if (context.instruments != ModelContext().instruments) {
    custom = MakeEnvironment(context);
    env = &custom;
  }
  expr::CompileResult compiled = expr::CompileCondition(text, *env);
  for (const expr::ExprError& e : compiled.errors) {
    errors->push_back(ConditionError{e.line, e.column, e.message});
  }
  if (!compiled.ok()) return nullptr;
  bool bad_argument = false;
  for (const LiteralCall& call : FindLiteralCalls(text)) {
    auto fail = [&](const std::string& message) {
      errors->push_back(ConditionError{call.line, call.column, message});
      bad_argument = true;
    };
    const std::string& arg = call.argument;
    if (call.function == "tasks.done") {
      task_refs->push_back(TaskRef{arg, call.line, call.column});
    } else if (call.function == "count") {
      bool known = std::find(CountableEvents().begin(), CountableEvents().end(),
                             arg) != CountableEvents().end() ||
                   (absl::StartsWith(arg, "questionnaire:") &&
                    context.instruments.count(arg.substr(14)));
      if (!known) {
        fail(absl::StrCat("count(\"", arg, "\"): unknown event kind (use ",
                          absl::StrJoin(CountableEvents(), ", "),
                          " or questionnaire:<instrument>)"));
      }
    } else if (call.function == "days_since") {
      if (std::find(DaysSinceMarks().begin(), DaysSinceMarks().end(), arg) ==
          DaysSinceMarks().end()) {
        fail(absl::StrCat("days_since(\"", arg, "\"): unknown mark (use ",
                          absl::StrJoin(DaysSinceMarks(), ", "), ")"));
      }
    } else if (call.function == "latest") {
      if (env->FindIdentifier(arg) == nullptr ||
          *env->FindIdentifier(arg) != Type::kNumber) {
        fail(absl::StrCat("latest(\"", arg, "\"): unknown score name"));
      }
    }
  }
  if (bad_argument) return nullptr;
  auto impl = std::make_unique<Impl>(Impl{*std::move(compiled.expr)});
  return std::shared_ptr<const CompiledCondition>(
      new CompiledCondition(std::move(impl)));
}

bool CompiledCondition::Evaluate(const ConditionFacts& facts) const {
  FactsActivation activation(facts);
  absl::StatusOr<bool> result =
      expr::EvaluateCondition(impl_->expr, activation);
  // FactsActivation answers every declared name with the declared type, so
  // evaluation cannot fail; a failure would be a programming error, and the
  // safe reading of a condition that cannot be evaluated is "does not hold".
  return result.ok() && *result;
}

std::string CompiledCondition::ToString() const {
  return impl_->expr.ToString();
}

}  // namespace ipsrt
