// Conditions in templates: compiled once at load, evaluated by the runtime.
//
// The names a condition may use (see workflows/README.md, "Conditions"):
//   phq9.total, phq9.item1..item9, gad7.total, gad7.item1..7, asrm.total,
//   asrm.item1..5         latest scores (absent until answered)
//   srm.score, srm.ali, srm.weeks_recorded    weekly Social Rhythm Metric
//   stage.sessions, stage.days               sessions held / days in stage
//   alerts.open                              unacknowledged alerts
//   goal.set, relapse_plan.written           booleans
//   count("session_held" | "srm_diary" | "goal_set" | "relapse_plan" |
//         "disruption_plan" | "task_completed" | "questionnaire" |
//         "questionnaire:<id>")
//                                            events of that kind this stage
//   days_since("enrolled" | "stage_entered" | "last_session" |
//              "last_response")              whole days, absent if never
//   tasks.done("<task id>")                  task done in this stage
//   latest("<score name>")                   same as the name itself
//   has(name)                                the value is present
// An absent value makes a comparison false, so `srm.score < 3` does not
// fire before there is a score.
#ifndef IPSRT_MODEL_CONDITION_H_
#define IPSRT_MODEL_CONDITION_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ipsrt {

// What templates may refer to beyond themselves.
struct ModelContext {
  // Instrument ids that questionnaire tasks and conditions may name.
  std::set<std::string> instruments = {"phq9", "gad7", "asrm", "srm5", "srm17"};
};

// A problem in a condition; line and column are 1-based within its text.
struct ConditionError {
  int line = 0;
  int column = 0;
  std::string message;
};

// ConditionFacts is what a condition is evaluated against; the runtime
// fills it from an enrollment's state.
struct ConditionFacts {
  // Numeric values by name ("phq9.total", "stage.sessions", ...); a name
  // missing here is absent.
  std::map<std::string, double> numbers;
  std::map<std::string, bool> booleans;
  // count(kind) values; missing kinds count 0.
  std::map<std::string, double> counts;
  // days_since(mark) values; missing marks are absent.
  std::map<std::string, double> days_since;
  std::set<std::string> tasks_done;
};

class CompiledCondition {
 public:
  // Compile parses and type-checks `text`. On failure `errors` is filled
  // (every problem found) and nullptr is returned. Literal arguments of
  // count(), days_since() and tasks.done() are checked too, except task ids,
  // which are returned through `task_refs` (with their positions) for the
  // caller to check against the whole template.
  struct TaskRef {
    std::string task_id;
    int line = 0;
    int column = 0;
  };
  static std::shared_ptr<const CompiledCondition> Compile(
      absl::string_view text, const ModelContext& context,
      std::vector<ConditionError>* errors, std::vector<TaskRef>* task_refs);

  // Evaluate is true only when the condition's value is the boolean true.
  bool Evaluate(const ConditionFacts& facts) const;

  // Canonical, fully parenthesised text (for tools and tests).
  std::string ToString() const;

  ~CompiledCondition();

 private:
  struct Impl;
  explicit CompiledCondition(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsrt

#endif  // IPSRT_MODEL_CONDITION_H_
