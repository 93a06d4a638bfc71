// Workflow templates as loaded from YAML, and the catalog of loaded ones.
//
// A template is data: stages in order, each with tasks, a session cadence,
// exit transitions and rules; template-wide rules apply in every stage.
// The format is documented in workflows/README.md and checked by
// workflows/schema/workflow.schema.json. ParseWorkflowTemplate reports every
// problem with file:line:col and YAML path, and a template with any error is
// never returned, so nothing half-loads.
#ifndef IPSRT_MODEL_WORKFLOW_H_
#define IPSRT_MODEL_WORKFLOW_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/yaml_reader.h"
#include "model/condition.h"
#include "model/duration.h"

namespace ipsrt {

// Where a node was written, 1-based.
struct SourcePos {
  int line = 0;
  int column = 0;
};

// A condition: its text, where it was written, and its checked program.
struct Condition {
  std::string text;
  std::string path;  // YAML path, e.g. "stages[1].exit[0].when"
  SourcePos pos;     // of the first character of the text
  std::shared_ptr<const CompiledCondition> program;
};

enum class TaskKind {
  kQuestionnaire,
  kSession,
  kGoal,
  kRelapsePlan,
  kDisruptionPlan,
  kClinicianForm,
  kNote,
};

// TaskKindName gives the YAML spelling, e.g. "relapse_plan".
absl::string_view TaskKindName(TaskKind kind);

enum class Assignee { kPatient, kClinician };

struct TaskTemplate {
  std::string id;
  TaskKind kind = TaskKind::kClinicianForm;
  std::string title;
  std::string description;
  Assignee assignee = Assignee::kClinician;
  // Instrument id for questionnaire tasks, e.g. "phq9".
  std::string questionnaire;
  // Due this long after the stage is entered (first occurrence).
  std::optional<IsoDuration> due;
  // Recurs with this period while the stage lasts.
  std::optional<IsoDuration> repeat;
  // Local time of day ("20:00") at which occurrences fall due and remind.
  std::optional<int> remind_at_minutes;
  SourcePos pos;
};

struct AlertSpec {
  std::string id;
  std::string title;
  bool urgent = false;
  // Time to acknowledge before escalation; none means no escalation.
  std::optional<IsoDuration> acknowledge_within;
};

struct Action {
  enum class Kind {
    kSetCadence,
    kRestoreCadence,
    kMoveTo,
    kRaiseAlert,
    kScheduleQuestionnaire,
  };
  Kind kind = Kind::kSetCadence;
  IsoDuration cadence;        // kSetCadence
  std::string stage;          // kMoveTo
  AlertSpec alert;            // kRaiseAlert
  std::string questionnaire;  // kScheduleQuestionnaire
  IsoDuration within;         // kScheduleQuestionnaire: due after this
  std::string path;
  SourcePos pos;
};

// A rule fires its `then` actions when its condition holds. With `on`
// empty it is edge-triggered: `then` when the condition becomes true,
// `otherwise` when it becomes false again. With `on` set (an event kind
// such as "questionnaire:phq9") it is evaluated only on such events and
// fires `then` on every one where the condition holds.
struct RuleTemplate {
  std::string id;
  std::string on;
  Condition when;
  std::vector<Action> then;
  std::vector<Action> otherwise;
  SourcePos pos;
};

struct ExitTemplate {
  std::string to;
  Condition when;
  SourcePos pos;
};

// SessionSchedule is a template's `sessions` block: sessions are planned
// from the current cadence at a local time of day, and each planned
// session is reminded ahead of time (runtime/session_plan.h).
struct SessionSchedule {
  // Local time of day of a planned session, minutes after midnight.
  int at_minutes = 0;
  // The reminder falls due this long before the session.
  IsoDuration remind_before;
};

struct StageTemplate {
  std::string id;
  std::string title;
  std::string description;
  // Session cadence as written ("P1W") and parsed.
  std::string session_cadence;
  IsoDuration cadence;
  std::vector<TaskTemplate> tasks;
  std::vector<ExitTemplate> exits;  // first whose condition holds is taken
  std::vector<RuleTemplate> rules;
  // Marked `open_ended: true`: a stage the course may stay in for good
  // (maintenance), so a cycle through it (maintenance <-> weekly) is not
  // reported as a cycle with no exit.
  bool open_ended = false;
  SourcePos pos;
  // Task id -> index in `tasks`; built by WorkflowTemplate::BuildIndex.
  std::map<std::string, int, std::less<>> task_index;
};

// NamedCondition is an entry of a template's `conditions`: a condition
// rules and exits read by name, whose weekly history the engine keeps
// (weeks_held, consecutive_weeks, weeks_clear).
struct NamedCondition {
  std::string name;
  Condition when;
};

// AppliedSafetyFloor is a safety floor as it applies to one template: the
// rules that refine it (per-event rules on the instrument that read the
// flag's scores and raise an urgent alert); empty when the engine's
// default alert is the only route.
struct AppliedSafetyFloor {
  SafetyFloor floor;
  IsoDuration acknowledge_within;
  std::vector<std::string> refined_by;
};

// The interpersonal problem areas of IPSRT, the default checked list of
// goal_set.problem_area (a template's `problem_areas` extends it).
const std::vector<std::string>& DefaultProblemAreas();

struct WorkflowTemplate {
  std::string id;
  int version = 0;
  std::string title;
  std::string description;
  std::vector<StageTemplate> stages;  // at least one, in order
  std::vector<RuleTemplate> rules;    // apply in every stage
  // Named conditions, in the order written (each may read earlier ones).
  std::vector<NamedCondition> conditions;
  // The engine's safety floors (one per safety-critical instrument flag).
  std::vector<AppliedSafetyFloor> safety_floors;
  // Accepted goal_set.problem_area values: the defaults, then the
  // template's own.
  std::vector<std::string> problem_areas;
  // Instrument ids the template names (tasks, schedule_questionnaire,
  // `on: questionnaire:<id>`, count("questionnaire:<id>")), sorted.
  std::set<std::string> instruments_used;
  // Session planning; without it no session is planned or reminded.
  std::optional<SessionSchedule> sessions;
  std::string source_file;
  SourcePos id_pos;  // where `id` is written (duplicate id@version reports)
  std::string source_yaml;
  std::string source_sha256;

  // Lookups; nullptr or -1 when absent.
  const StageTemplate* FindStage(absl::string_view id) const;
  int StageIndex(absl::string_view id) const;
  // FindTask looks a task up in one stage (task ids are unique per stage;
  // the same id in several stages, such as a daily diary, is allowed).
  const TaskTemplate* FindTask(absl::string_view stage,
                               absl::string_view id) const;
  // HasTask is true when any stage has a task `id`.
  bool HasTask(absl::string_view id) const;

  // BuildIndex makes the lookups above logarithmic (the parser calls it; a
  // template assembled by hand without it is searched linearly).
  void BuildIndex();
  std::map<std::string, int, std::less<>> stage_index;
  std::set<std::string, std::less<>> task_ids;  // of every stage
};

// Limits a template is held to (workflows/README.md, "Limits"), checked
// before or while it is read, so an oversized input is refused quickly.
struct WorkflowLimits {
  // A template file is at most 1 MiB (one at the stage limit is about
  // 200 KB), so a larger one is refused before it is parsed; the other YAML
  // limits are those of every input.
  YamlLimits yaml{.max_bytes = 1024 * 1024};
  int max_stages = 1000;
  int max_tasks = 10000;  // over all stages
  int max_condition_chars = 4096;
};

// ParseWorkflowTemplate reads one template. INVALID_ARGUMENT lists every
// problem as file:line:col: error: path: message, one a line.
absl::StatusOr<WorkflowTemplate> ParseWorkflowTemplate(
    absl::string_view yaml, absl::string_view file_name,
    const ModelContext& context = BuiltInModelContext(),
    const WorkflowLimits& limits = WorkflowLimits());

// DiagnoseWorkflowTemplate is ParseWorkflowTemplate returning the
// diagnostics themselves (empty when the template is valid).
std::vector<YamlDiagnostic> DiagnoseWorkflowTemplate(
    absl::string_view yaml, absl::string_view file_name,
    const ModelContext& context = BuiltInModelContext(),
    const WorkflowLimits& limits = WorkflowLimits());

// IsIsoDuration accepts positive ISO-8601 durations ("P1W", "P2W", "P1M",
// "PT4H").
bool IsIsoDuration(absl::string_view text);

// WorkflowCatalog is an immutable set of loaded templates; reloading makes
// a new catalog. Thread-safe (immutable).
class WorkflowCatalog {
 public:
  // LoadDirectories reads every *.yaml file of `directories` (sorted by
  // name). Any error in any file fails the whole load with every diagnostic,
  // so a catalog never holds part of a template set. A duplicate id@version
  // is an error.
  static absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> LoadDirectories(
      const std::vector<std::string>& directories,
      const ModelContext& context = BuiltInModelContext());

  // LoadDirectoriesDiagnosed is LoadDirectories returning the diagnostics
  // themselves: `catalog` is null whenever `diagnostics` is not empty.
  struct Loaded {
    std::shared_ptr<const WorkflowCatalog> catalog;
    std::vector<YamlDiagnostic> diagnostics;
  };
  static Loaded LoadDirectoriesDiagnosed(
      const std::vector<std::string>& directories,
      const ModelContext& context = BuiltInModelContext());

  // LoadFilesDiagnosed is the load itself, over a list of files: every file
  // is parsed, then the set is checked together (a duplicate id@version is
  // reported at both files' ids). `ipsrt validate` and ipsrtd share it, so
  // validate accepts exactly what the server would load.
  static Loaded LoadFilesDiagnosed(
      const std::vector<std::string>& files,
      const ModelContext& context = BuiltInModelContext());

  // TemplateFiles lists the *.yaml files of `paths` as a load reads them: a
  // directory gives its *.yaml files, a file is itself; sorted by path.
  // NOT_FOUND names a path that cannot be read.
  static absl::StatusOr<std::vector<std::string>> TemplateFiles(
      const std::vector<std::string>& paths);

  // WithRetained returns this catalog plus every template of `older` whose
  // id@version this one lacks, so a reload never takes away a version that
  // running enrollments may be on. A template whose id@version is in both
  // with different content is an error (change the version number instead).
  Loaded WithRetained(const WorkflowCatalog& older) const;

  // FromTemplates builds a catalog from parsed templates.
  static absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> FromTemplates(
      std::vector<WorkflowTemplate> templates);

  // Find returns the template, or nullptr. `version` 0 means the newest.
  const WorkflowTemplate* Find(absl::string_view id, int version) const;

  // All returns every template, ordered by id then version descending.
  std::vector<const WorkflowTemplate*> All() const;

 private:
  std::map<std::pair<std::string, int>, WorkflowTemplate> templates_;
};

}  // namespace ipsrt

#endif  // IPSRT_MODEL_WORKFLOW_H_
