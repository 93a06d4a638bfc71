#include "model/condition.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "expr/expr.h"
#include "instruments/srm.h"

namespace ipsrt {
namespace {

using expr::Type;

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

// The functions over a named condition's weekly history.
constexpr const char* kWeekFunctions[] = {"weeks_held", "consecutive_weeks",
                                          "weeks_clear"};
// weeks_held's window is at most this many weeks (the history's bits).
constexpr int kMaxWeeks = 52;

expr::Environment MakeEnvironment(const ModelContext& context) {
  expr::Environment env;
  for (const auto& [id, names] : context.scores) {
    if (!context.instruments.count(id)) continue;
    for (const std::string& name : names) {
      env.DeclareIdentifier(name, Type::kNumber).IgnoreError();
    }
  }
  for (const char* name : {"srm.score", "srm.ali", "srm.weeks_recorded",
                           "srm.days_recorded", "stage.sessions", "stage.days",
                           "course.sessions", "course.days", "alerts.open"}) {
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
  env.DeclareIdentifier("goal.problem_area", Type::kString).IgnoreError();
  env.DeclareFunction("count", {Type::kString}, Type::kNumber).IgnoreError();
  env.DeclareFunction("days_since", {Type::kString}, Type::kNumber)
      .IgnoreError();
  env.DeclareFunction("tasks.done", {Type::kString}, Type::kBool).IgnoreError();
  env.DeclareFunction("latest", {Type::kString}, Type::kNumber).IgnoreError();
  env.DeclareFunction("weeks_held", {Type::kString, Type::kNumber},
                      Type::kNumber)
      .IgnoreError();
  env.DeclareFunction("consecutive_weeks", {Type::kString}, Type::kNumber)
      .IgnoreError();
  env.DeclareFunction("weeks_clear", {Type::kString}, Type::kNumber)
      .IgnoreError();
  return env;
}

// EnvironmentFor returns the environment of `context`, built once per
// distinct set of instruments and score names.
std::shared_ptr<const expr::Environment> EnvironmentFor(
    const ModelContext& context) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache =
      new std::map<std::map<std::string, std::vector<std::string>>,
                   std::shared_ptr<const expr::Environment>>();
  std::map<std::string, std::vector<std::string>> key;
  for (const auto& [id, names] : context.scores) {
    if (context.instruments.count(id)) key.emplace(id, names);
  }
  absl::MutexLock lock(&mu);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  if (cache->size() > 64) cache->clear();  // bounded; contexts are few
  auto env =
      std::make_shared<const expr::Environment>(MakeEnvironment(context));
  cache->emplace(std::move(key), env);
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
    for (const char* fn : {"tasks.done", "count", "days_since", "latest",
                           "weeks_held", "consecutive_weeks", "weeks_clear"}) {
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

// MapFacts is the FactSource of a ConditionFacts.
class MapFacts final : public FactSource {
 public:
  explicit MapFacts(const ConditionFacts& facts) : facts_(facts) {}

  std::optional<double> Number(absl::string_view name) const override {
    auto it = facts_.numbers.find(std::string(name));
    if (it == facts_.numbers.end()) return std::nullopt;
    return it->second;
  }
  std::optional<bool> Boolean(absl::string_view name) const override {
    auto it = facts_.booleans.find(std::string(name));
    if (it == facts_.booleans.end()) return std::nullopt;
    return it->second;
  }
  const std::string* String(absl::string_view name) const override {
    auto it = facts_.strings.find(std::string(name));
    return it == facts_.strings.end() ? nullptr : &it->second;
  }
  double Count(absl::string_view kind) const override {
    auto it = facts_.counts.find(std::string(kind));
    return it == facts_.counts.end() ? 0 : it->second;
  }
  std::optional<double> DaysSince(absl::string_view mark) const override {
    auto it = facts_.days_since.find(std::string(mark));
    if (it == facts_.days_since.end()) return std::nullopt;
    return it->second;
  }
  bool TaskDone(absl::string_view task_id) const override {
    return facts_.tasks_done.count(std::string(task_id)) > 0;
  }
  WeekHistory Weeks(absl::string_view named) const override {
    auto it = facts_.weeks.find(std::string(named));
    return it == facts_.weeks.end() ? WeekHistory() : it->second;
  }

 private:
  const ConditionFacts& facts_;
};

// FactsActivation answers a condition's names from a FactSource.
class FactsActivation final : public expr::Activation {
 public:
  explicit FactsActivation(const FactSource& facts) : facts_(facts) {}

  std::optional<expr::Value> Lookup(absl::string_view name) const override {
    if (std::optional<double> n = facts_.Number(name); n.has_value()) {
      return expr::Value::Number(*n);
    }
    if (std::optional<bool> b = facts_.Boolean(name); b.has_value()) {
      return expr::Value::Bool(*b);
    }
    if (const std::string* s = facts_.String(name); s != nullptr) {
      return expr::Value::String(*s);
    }
    return std::nullopt;
  }

  absl::StatusOr<std::optional<expr::Value>> Call(
      absl::string_view name,
      absl::Span<const expr::Value> args) const override {
    const std::string& arg = args[0].string_value();
    auto number = [](std::optional<double> n) {
      return n.has_value() ? std::optional<expr::Value>(expr::Value::Number(*n))
                           : std::optional<expr::Value>();
    };
    if (name == "count") {
      return std::optional<expr::Value>(expr::Value::Number(facts_.Count(arg)));
    }
    if (name == "days_since") return number(facts_.DaysSince(arg));
    if (name == "tasks.done") {
      return std::optional<expr::Value>(
          expr::Value::Bool(facts_.TaskDone(arg)));
    }
    if (name == "weeks_held" || name == "consecutive_weeks" ||
        name == "weeks_clear") {
      const WeekHistory history = facts_.Weeks(arg);
      if (name == "weeks_clear") return number(history.weeks_clear);
      int weeks = kMaxWeeks;
      if (name == "weeks_held") {
        double m = args[1].number_value();
        if (m < 1) return std::optional<expr::Value>(expr::Value::Number(0));
        weeks = m >= kMaxWeeks ? kMaxWeeks : static_cast<int>(m);
      }
      int n = 0;
      for (int i = 0; i < weeks; ++i) {
        bool held = (history.weeks_held >> i) & 1;
        if (held) ++n;
        if (!held && name == "consecutive_weeks") break;
      }
      return std::optional<expr::Value>(expr::Value::Number(n));
    }
    if (name == "latest") return number(facts_.Number(arg));
    return absl::InternalError(absl::StrCat("no function ", name));
  }

 private:
  const FactSource& facts_;
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
  return Compile(text, context, {}, errors, task_refs);
}

bool CompiledCondition::IsReservedName(absl::string_view name,
                                       const ModelContext& context) {
  std::shared_ptr<const expr::Environment> env = EnvironmentFor(context);
  return env->FindIdentifier(name) != nullptr ||
         env->FindFunction(name) != nullptr;
}

std::shared_ptr<const CompiledCondition> CompiledCondition::Compile(
    absl::string_view text, const ModelContext& context,
    const std::set<std::string>& named, std::vector<ConditionError>* errors,
    std::vector<TaskRef>* task_refs) {
  std::shared_ptr<const expr::Environment> shared = EnvironmentFor(context);
  const expr::Environment* env = shared.get();
  expr::Environment with_named;
  if (!named.empty()) {
    with_named = *shared;
    for (const std::string& name : named) {
      with_named.DeclareIdentifier(name, Type::kBool).IgnoreError();
    }
    env = &with_named;
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
    } else if (call.function == "weeks_held" ||
               call.function == "consecutive_weeks" ||
               call.function == "weeks_clear") {
      if (!named.count(arg)) {
        fail(absl::StrCat(
            call.function, "(\"", arg, "\"): unknown named condition",
            named.empty()
                ? " (declare it under `conditions`)"
                : absl::StrCat(" (known: ", absl::StrJoin(named, ", "), ")")));
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
  return Evaluate(MapFacts(facts));
}

bool CompiledCondition::Evaluate(const FactSource& facts) const {
  FactsActivation activation(facts);
  absl::StatusOr<bool> result =
      expr::EvaluateCondition(impl_->expr, activation);
  // FactsActivation answers every declared name with the declared type, so
  // evaluation cannot fail; a failure would be a programming error, and the
  // safe reading of a condition that cannot be evaluated is "does not hold".
  return result.ok() && *result;
}

const std::vector<std::string>& CompiledCondition::identifiers() const {
  return impl_->expr.identifiers();
}

std::string CompiledCondition::ToString() const {
  return impl_->expr.ToString();
}

}  // namespace ipsrt
