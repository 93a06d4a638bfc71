// Conditions in templates: compiled once at load, evaluated by the runtime.
//
// The names a condition may use (see workflows/README.md, "Conditions"):
//   <score name>          latest scores of the instruments in the
//                         ModelContext (phq9.total, phq9.item9, ...), or
//                         q("<instrument id>").<score> for any id, e.g.
//                         q("routine-disruption").total (absent until
//                         answered)
//   srm.score, srm.ali, srm.weeks_recorded, srm.days_recorded
//                                            weekly Social Rhythm Metric
//   stage.sessions, stage.days               sessions held / days in stage
//   course.sessions, course.days             the same since enrollment
//   alerts.open                              unacknowledged alerts
//   goal.set, relapse_plan.written           booleans
//   goal.problem_area                        string ("" until a goal is set)
//   <named condition>                        a template's `conditions`
//   count("session_held" | "srm_diary" | "goal_set" | "relapse_plan" |
//         "disruption_plan" | "task_completed" | "questionnaire" |
//         "questionnaire:<id>")
//                                            events of that kind this stage
//   days_since("enrolled" | "stage_entered" | "last_session" |
//              "last_response")              whole days, absent if never
//   tasks.done("<task id>")                  task done in this stage
//   latest("<score name>")                   same as the name itself
//   weeks_held("<named>", M)                 of the last M course weeks
//                                            (this one included), how many
//                                            the condition held in
//   consecutive_weeks("<named>")             course weeks in a row, up to
//                                            this one, it held in
//   weeks_clear("<named>")                   whole weeks since it last
//                                            stopped holding (0 while it
//                                            holds; absent if it never held)
//   has(name)                                the value is present
// An absent value makes a comparison false, so `srm.score < 3` does not
// fire before there is a score.
#ifndef IPSRT_MODEL_CONDITION_H_
#define IPSRT_MODEL_CONDITION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ipsrt {

// SafetyFloor is a safety-critical flag of an instrument: whenever a
// response raises `flag`, the engine raises an urgent clinician alert,
// whatever the template says (docs/clinical-rules.md). A template refines
// it with its own per-event rule on the instrument whose condition reads
// one of `scores` and raises an urgent alert acknowledged within at most
// `acknowledge_within`; the default alert is then raised only on events
// where no such rule fired, so a template can never remove it.
struct SafetyFloor {
  std::string flag;        // e.g. "phq9.item9_positive"
  std::string instrument;  // e.g. "phq9"
  std::string title;       // the default alert's title
  // The scores the flag's condition reads, e.g. {"phq9.item9"}.
  std::vector<std::string> scores;
  // The default alert's acknowledgement deadline, ISO-8601 ("PT4H").
  std::string acknowledge_within = "PT4H";
};

// What templates may refer to beyond themselves: the instruments a set of
// questionnaire plugins serves (BuiltInModelContext: the core instruments;
// ipsrtd and `ipsrt validate --config` build one from the loaded plugins).
struct ModelContext {
  // Instrument ids that questionnaire tasks and conditions may name.
  std::set<std::string> instruments;
  // Score names (all numbers) of each instrument's responses, by id, e.g.
  // "phq9" -> {"phq9.total", "phq9.item1", ...}.
  std::map<std::string, std::vector<std::string>> scores;
  // Safety-critical flags, in the order declared.
  std::vector<SafetyFloor> safety_floors;
};

// BuiltInModelContext is the context of the built-in instruments (the
// core-instruments plugin's PHQ-9, GAD-7, ASRM, SRM-5 and SRM-17), derived
// from the same scoring table the plugin describes.
const ModelContext& BuiltInModelContext();

// A problem in a condition; line and column are 1-based within its text.
struct ConditionError {
  int line = 0;
  int column = 0;
  std::string message;
};

// WeekHistory is a named condition's history in course weeks.
struct WeekHistory {
  // Bit i set: it held in the i-th week before the current one (bit 0:
  // the current week).
  uint64_t weeks_held = 0;
  // Whole weeks since it last stopped holding (0 while it holds);
  // nullopt when it never held.
  std::optional<double> weeks_clear;
};

// ConditionFacts is what a condition is evaluated against; the runtime
// fills it from an enrollment's state.
struct ConditionFacts {
  std::map<std::string, std::string> strings;
  // Named conditions' histories, by name.
  std::map<std::string, WeekHistory> weeks;
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

// FactSource answers a condition's names where they live, so that nothing
// is copied per evaluation: the runtime reads the enrollment's state
// directly (runtime/step.cc). An answer is what the ConditionFacts field of
// the same name would hold; a name it lacks is absent (count: 0, tasks.done:
// false, weeks: an empty history). ConditionFacts itself is one source.
class FactSource {
 public:
  virtual ~FactSource() = default;
  // Numeric identifiers ("phq9.total", "stage.sessions", ...) and latest().
  virtual std::optional<double> Number(absl::string_view name) const = 0;
  // Boolean identifiers (goal.set, named conditions, ...).
  virtual std::optional<bool> Boolean(absl::string_view name) const = 0;
  // String identifiers (goal.problem_area); nullptr when absent.
  virtual const std::string* String(absl::string_view name) const = 0;
  virtual double Count(absl::string_view kind) const = 0;
  virtual std::optional<double> DaysSince(absl::string_view mark) const = 0;
  virtual bool TaskDone(absl::string_view task_id) const = 0;
  virtual WeekHistory Weeks(absl::string_view named) const = 0;
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
  // Compile with a template's named conditions in scope (bool identifiers,
  // and the names weeks_held(), consecutive_weeks() and weeks_clear() may
  // take).
  static std::shared_ptr<const CompiledCondition> Compile(
      absl::string_view text, const ModelContext& context,
      const std::set<std::string>& named, std::vector<ConditionError>* errors,
      std::vector<TaskRef>* task_refs);

  // identifiers returns every identifier the condition reads, sorted.
  const std::vector<std::string>& identifiers() const;

  // IsReservedName is true for a name a named condition may not take (a
  // built-in identifier or function of `context`).
  static bool IsReservedName(absl::string_view name,
                             const ModelContext& context);

  // Evaluate is true only when the condition's value is the boolean true.
  bool Evaluate(const ConditionFacts& facts) const;
  // The same over any source: identifiers are looked up as numbers, then
  // booleans, then strings, as in ConditionFacts.
  bool Evaluate(const FactSource& facts) const;

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
