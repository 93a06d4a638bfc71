#include "model/workflow.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/hash.h"
#include "ipsrt/status_macros.h"

namespace ipsrt {
namespace {

struct KindName {
  TaskKind kind;
  absl::string_view name;
};
constexpr KindName kTaskKinds[] = {
    {TaskKind::kQuestionnaire, "questionnaire"},
    {TaskKind::kSession, "session"},
    {TaskKind::kGoal, "goal"},
    {TaskKind::kRelapsePlan, "relapse_plan"},
    {TaskKind::kDisruptionPlan, "disruption_plan"},
    {TaskKind::kClinicianForm, "clinician_form"},
    {TaskKind::kNote, "note"},
};

// Event kinds a rule's `on` may name, besides "questionnaire:<id>".
const std::set<std::string>& RuleEventKinds() {
  static const auto* kinds = new std::set<std::string>{
      "session_held",    "srm_diary",    "goal_set",           "relapse_plan",
      "disruption_plan", "stage_change", "alert_acknowledged", "time",
      "task_completed"};
  return *kinds;
}

// ApproximateDuration orders ISO durations (a month as 30 days, a year as
// 365): only used to compare acknowledgement deadlines.
absl::Duration ApproximateDuration(const IsoDuration& d) {
  return absl::Hours(24) *
             (d.years * 365 + d.months * 30 + d.weeks * 7 + d.days) +
         absl::Hours(d.hours) + absl::Minutes(d.minutes) +
         absl::Seconds(d.seconds);
}

bool IsIdentifier(absl::string_view id) {
  if (id.empty() || id.size() > 63 || !absl::ascii_islower(id[0])) {
    return false;
  }
  for (char c : id) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' ||
          c == '_')) {
      return false;
    }
  }
  return true;
}

SourcePos PosOf(const YAML::Node& n) {
  if (!n.IsDefined()) return {};
  YAML::Mark m = n.Mark();
  if (m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

// IdPos is where a map's "id" key is written (the map's start without one),
// so a duplicate id is reported at the id even in a flow map.
SourcePos IdPos(const YAML::Node& map) {
  if (map.IsMap()) {
    for (const auto& kv : map) {
      if (kv.first.Scalar() == "id") return PosOf(kv.first);
    }
  }
  return PosOf(map);
}

// Parser reads one template, collecting every problem in `r`.
// StageEdges is the stage graph: for each stage (by index), the stages an
// exit or a move_to of its rules or of the workflow's rules leads to.
using StageEdges = std::vector<std::set<int>>;

// StageGraph builds the stage graph of `t`, whose references all resolve
// (StageIndex finds each).
StageEdges StageGraph(const WorkflowTemplate& t) {
  const int n = static_cast<int>(t.stages.size());
  StageEdges edges(n);
  auto add_moves = [&](int from, const std::vector<RuleTemplate>& rules) {
    for (const RuleTemplate& rule : rules) {
      for (const auto* actions : {&rule.then, &rule.otherwise}) {
        for (const Action& a : *actions) {
          if (a.kind == Action::Kind::kMoveTo) {
            edges[from].insert(t.StageIndex(a.stage));
          }
        }
      }
    }
  };
  for (int i = 0; i < n; ++i) {
    for (const ExitTemplate& e : t.stages[i].exits) {
      edges[i].insert(t.StageIndex(e.to));
    }
    add_moves(i, t.stages[i].rules);
    add_moves(i, t.rules);
  }
  return edges;
}

// ReachedFromFirst marks the stages a path from stage 0 reaches (stage 0
// included); `edges` is not empty.
std::vector<bool> ReachedFromFirst(const StageEdges& edges) {
  std::vector<bool> reached(edges.size(), false);
  std::vector<int> todo = {0};
  reached[0] = true;
  while (!todo.empty()) {
    int s = todo.back();
    todo.pop_back();
    for (int next : edges[s]) {
      if (!reached[next]) {
        reached[next] = true;
        todo.push_back(next);
      }
    }
  }
  return reached;
}

// StronglyConnected numbers the strongly connected components of the
// stage graph (Tarjan's algorithm, iterative so that a long chain of
// stages cannot exhaust the stack; linear in stages and edges): returns
// each stage's component, and the number of components in `components`.
std::vector<int> StronglyConnected(const StageEdges& edges, int* components) {
  const int n = static_cast<int>(edges.size());
  std::vector<int> index(n, -1), low(n, 0), comp(n, -1);
  std::vector<bool> on_stack(n, false);
  std::vector<int> stack;
  int counter = 0;
  *components = 0;
  struct Visit {
    int v;
    std::set<int>::const_iterator next;
  };
  for (int root = 0; root < n; ++root) {
    if (index[root] >= 0) continue;
    std::vector<Visit> calls;
    auto enter = [&](int v) {
      index[v] = low[v] = counter++;
      stack.push_back(v);
      on_stack[v] = true;
      calls.push_back(Visit{v, edges[v].begin()});
    };
    enter(root);
    while (!calls.empty()) {
      Visit& call = calls.back();
      const int v = call.v;
      if (call.next != edges[v].end()) {
        const int w = *call.next++;
        if (index[w] < 0) {
          enter(w);
        } else if (on_stack[w]) {
          low[v] = std::min(low[v], index[w]);
        }
        continue;
      }
      if (low[v] == index[v]) {
        int w;
        do {
          w = stack.back();
          stack.pop_back();
          on_stack[w] = false;
          comp[w] = *components;
        } while (w != v);
        ++*components;
      }
      calls.pop_back();
      if (!calls.empty()) {
        low[calls.back().v] = std::min(low[calls.back().v], low[v]);
      }
    }
  }
  return comp;
}

class Parser {
 public:
  Parser(YamlReader& r, absl::string_view source, const ModelContext& context,
         const WorkflowLimits& limits)
      : r_(r),
        lines_(absl::StrSplit(source, '\n')),
        context_(context),
        limits_(limits) {}

  WorkflowTemplate Parse(const YAML::Node& root);

 private:
  std::string Id(const YAML::Node& map, const std::string& path,
                 absl::string_view what);
  std::optional<IsoDuration> Duration(const YAML::Node& map,
                                      const std::string& path, const char* key,
                                      bool required);
  Condition ReadCondition(const YAML::Node& map, const std::string& path);
  // TextStart maps a position inside a scalar's text to the file.
  SourcePos TextPos(const YAML::Node& node, int line, int column) const;
  TaskTemplate ReadTask(const YAML::Node& n, const std::string& path);
  RuleTemplate ReadRule(const YAML::Node& n, const std::string& path);
  std::vector<Action> ReadActions(const YAML::Node& map,
                                  const std::string& path, const char* key);
  std::optional<SessionSchedule> ReadSessions(const YAML::Node& root);
  // WholeDays reports a cadence with hours, minutes or seconds when the
  // template plans sessions at a local time of day.
  void WholeDays(const YAML::Node& map, const std::string& path,
                 const char* key, const IsoDuration& cadence);
  void CheckReferences(const WorkflowTemplate& t, const YAML::Node& root);
  void CheckGraph(const WorkflowTemplate& t, const YAML::Node& root);
  // ReadStage reads the stage map `s` (`p`: stages[i]) into `st`. False
  // when reading must stop: the template has more tasks than the limit.
  bool ReadStage(const YAML::Node& s, const std::string& p, StageTemplate& st);
  // ReadExits reads a stage's `exit` list, {to, when} each, into `st`.
  void ReadExits(const YAML::Node& s, const std::string& p, StageTemplate& st);
  void ReadNamedConditions(const YAML::Node& root, WorkflowTemplate& t);
  void ReadProblemAreas(const YAML::Node& root, WorkflowTemplate& t);
  void ApplySafetyFloors(WorkflowTemplate& t);

  YamlReader& r_;
  std::vector<absl::string_view> lines_;
  const ModelContext& context_;
  const WorkflowLimits& limits_;
  // References to check once the whole template is read.
  struct Ref {
    std::string id;
    SourcePos pos;
    std::string path;
    int stage = -1;  // the stage whose condition it is in; -1 template-wide
  };
  // The stage being read (-1 outside stages) and tasks read so far.
  int stage_ = -1;
  int tasks_read_ = 0;
  std::vector<Ref> task_refs_;
  std::vector<Ref> stage_refs_;
  // True when the template has a `sessions` block (read first).
  bool plans_sessions_ = false;
  // Names of the template's named conditions read so far.
  std::set<std::string> named_;
  // Instrument ids named by tasks, actions and rules.
  std::set<std::string> instruments_used_;
};

std::string Parser::Id(const YAML::Node& map, const std::string& path,
                       absl::string_view what) {
  std::string id = r_.String(map, path, "id", "", true);
  if (map.IsMap() && map["id"].IsDefined() && !id.empty() &&
      !IsIdentifier(id)) {
    r_.Error(map["id"], YamlReader::Join(path, "id"),
             absl::StrCat(what,
                          " id must be 1-63 characters of a-z, 0-9, '-' and "
                          "'_', starting with a letter"));
  }
  return id;
}

std::optional<IsoDuration> Parser::Duration(const YAML::Node& map,
                                            const std::string& path,
                                            const char* key, bool required) {
  std::string text = r_.String(map, path, key, "", required);
  if (text.empty()) return std::nullopt;
  std::optional<IsoDuration> d = ParseIsoDuration(text);
  if (!d.has_value() || d->IsZero()) {
    r_.Error(map[key], YamlReader::Join(path, key),
             absl::StrCat("\"", text,
                          "\" is not a positive ISO-8601 duration such as "
                          "P1W, P2W, P1M or PT4H"));
    return std::nullopt;
  }
  return d;
}

std::optional<SessionSchedule> Parser::ReadSessions(const YAML::Node& root) {
  YAML::Node n = root["sessions"];
  if (!n.IsDefined()) return std::nullopt;
  const std::string path = "sessions";
  if (!r_.ExpectMap(n, path, false)) return std::nullopt;
  r_.ExpectKeys(n, path, {"at", "remind_before"});
  plans_sessions_ = true;
  SessionSchedule schedule;
  bool ok = true;
  std::string at = r_.String(n, path, "at", "", true);
  if (at.empty()) {
    ok = false;
  } else if (std::optional<int> minutes = ParseLocalTimeOfDay(at);
             minutes.has_value()) {
    schedule.at_minutes = *minutes;
  } else {
    r_.Error(n["at"], YamlReader::Join(path, "at"),
             absl::StrCat("\"", at,
                          "\" is not a local time HH:MM between 00:00 and "
                          "23:59"));
    ok = false;
  }
  std::optional<IsoDuration> before = Duration(n, path, "remind_before", true);
  if (before.has_value()) {
    schedule.remind_before = *before;
  } else {
    ok = false;
  }
  if (!ok) return std::nullopt;
  return schedule;
}

void Parser::WholeDays(const YAML::Node& map, const std::string& path,
                       const char* key, const IsoDuration& cadence) {
  if (!plans_sessions_ ||
      (cadence.hours == 0 && cadence.minutes == 0 && cadence.seconds == 0)) {
    return;
  }
  r_.Error(map[key], YamlReader::Join(path, key),
           absl::StrCat("with sessions.at, ", key,
                        " must be whole days (P1D, P1W, P1M)"));
}

SourcePos Parser::TextPos(const YAML::Node& node, int line, int column) const {
  SourcePos start = PosOf(node);
  const int nlines = static_cast<int>(lines_.size());
  if (start.line == 0 || start.line > nlines) return start;
  absl::string_view first = lines_[start.line - 1];
  char lead = start.column - 1 < static_cast<int>(first.size())
                  ? first[start.column - 1]
                  : ' ';
  // Segments: where each piece of the scalar's text sits in the file.
  struct Segment {
    int line;
    int column;  // of the piece's first character
    int length;
  };
  std::vector<Segment> segments;
  auto indent_of = [](absl::string_view l) {
    size_t i = l.find_first_not_of(' ');
    return i == absl::string_view::npos ? -1 : static_cast<int>(i);
  };
  if (lead == '|' || lead == '>') {
    // Block scalar: content starts on the next line at the indentation of
    // its first non-empty line and ends before a less indented line.
    int block_indent = -1;
    for (int l = start.line + 1; l <= nlines; ++l) {
      absl::string_view text = lines_[l - 1];
      int indent = indent_of(text);
      if (indent < 0) continue;
      if (block_indent < 0) block_indent = indent;
      if (indent < block_indent) break;
      segments.push_back(
          {l, block_indent + 1, static_cast<int>(text.size()) - block_indent});
    }
    if (segments.empty()) return start;
    if (lead == '|') {
      // Literal: lines are kept, so line L of the text is segment L.
      if (line > static_cast<int>(segments.size())) return start;
      return {segments[line - 1].line, segments[line - 1].column + column - 1};
    }
  } else {
    // Plain or quoted scalar, possibly folded over several lines.
    int quote = (lead == '"' || lead == '\'') ? 1 : 0;
    segments.push_back(
        {start.line, start.column + quote,
         static_cast<int>(first.size()) - start.column + 1 - quote});
    for (int l = start.line + 1; l <= nlines; ++l) {
      absl::string_view text = lines_[l - 1];
      int indent = indent_of(text);
      if (indent < 0 || indent < start.column - 1 ||
          text.substr(indent).find(": ") != absl::string_view::npos ||
          text[indent] == '-' || text[indent] == '#') {
        break;
      }
      segments.push_back(
          {l, indent + 1, static_cast<int>(text.size()) - indent});
    }
    if (line != 1) return start;
  }
  // Folded text: the pieces are joined by single spaces.
  int c = column;
  for (const Segment& seg : segments) {
    if (c <= seg.length) return {seg.line, seg.column + c - 1};
    c -= seg.length + 1;
  }
  return start;
}

Condition Parser::ReadCondition(const YAML::Node& map,
                                const std::string& path) {
  Condition c;
  c.path = YamlReader::Join(path, "when");
  c.text = r_.String(map, path, "when", "", true);
  YAML::Node node = map.IsMap() ? map["when"] : YAML::Node();
  c.pos = PosOf(node);
  if (c.text.empty()) return c;
  if (static_cast<int>(c.text.size()) > limits_.max_condition_chars) {
    r_.Error(node, c.path,
             absl::StrCat("the condition is ", c.text.size(),
                          " characters; the limit is ",
                          limits_.max_condition_chars));
    return c;
  }
  std::vector<ConditionError> errors;
  std::vector<CompiledCondition::TaskRef> refs;
  c.program =
      CompiledCondition::Compile(c.text, context_, named_, &errors, &refs);
  for (const ConditionError& e : errors) {
    SourcePos p = TextPos(node, e.line, e.column);
    r_.ErrorAt(p.line, p.column, c.path, e.message);
  }
  for (const CompiledCondition::TaskRef& ref : refs) {
    task_refs_.push_back(
        Ref{ref.task_id, TextPos(node, ref.line, ref.column), c.path, stage_});
  }
  return c;
}

TaskTemplate Parser::ReadTask(const YAML::Node& n, const std::string& path) {
  TaskTemplate t;
  t.pos = IdPos(n);
  if (!r_.ExpectMap(n, path, false)) return t;
  r_.ExpectKeys(n, path,
                {"id", "kind", "title", "description", "assignee",
                 "questionnaire", "due", "repeat", "remind_at"});
  t.id = Id(n, path, "task");
  t.title = r_.String(n, path, "title", "", true);
  t.description = r_.String(n, path, "description", "");
  std::string kind = r_.String(n, path, "kind", "", true);
  bool known_kind = false;
  for (const KindName& k : kTaskKinds) {
    if (k.name == kind) {
      t.kind = k.kind;
      known_kind = true;
    }
  }
  if (!kind.empty() && !known_kind) {
    std::vector<absl::string_view> names;
    for (const KindName& k : kTaskKinds) names.push_back(k.name);
    r_.Error(n["kind"], YamlReader::Join(path, "kind"),
             absl::StrCat("unknown task kind \"", kind,
                          "\" (allowed: ", absl::StrJoin(names, ", "), ")"));
  }
  t.assignee = t.kind == TaskKind::kQuestionnaire ? Assignee::kPatient
                                                  : Assignee::kClinician;
  std::string assignee = r_.String(n, path, "assignee", "");
  if (assignee == "patient") {
    t.assignee = Assignee::kPatient;
  } else if (assignee == "clinician") {
    t.assignee = Assignee::kClinician;
  } else if (!assignee.empty()) {
    r_.Error(n["assignee"], YamlReader::Join(path, "assignee"),
             "must be patient or clinician");
  }
  t.questionnaire = r_.String(n, path, "questionnaire", "",
                              known_kind && t.kind == TaskKind::kQuestionnaire);
  if (!t.questionnaire.empty()) {
    if (t.kind != TaskKind::kQuestionnaire) {
      r_.Error(n["questionnaire"], YamlReader::Join(path, "questionnaire"),
               "only questionnaire tasks name a questionnaire");
    } else if (instruments_used_.insert(t.questionnaire),
               !context_.instruments.count(t.questionnaire)) {
      r_.Error(n["questionnaire"], YamlReader::Join(path, "questionnaire"),
               absl::StrCat("unknown questionnaire \"", t.questionnaire,
                            "\" (known: ",
                            absl::StrJoin(context_.instruments, ", "), ")"));
    }
  }
  t.due = Duration(n, path, "due", false);
  t.repeat = Duration(n, path, "repeat", false);
  if (t.repeat.has_value() && n["remind_at"].IsDefined() &&
      (t.repeat->hours || t.repeat->minutes || t.repeat->seconds)) {
    r_.Error(n["repeat"], YamlReader::Join(path, "repeat"),
             "with remind_at, repeat must be whole days (P1D, P1W, P1M)");
  }
  std::string at = r_.String(n, path, "remind_at", "");
  if (!at.empty()) {
    t.remind_at_minutes = ParseLocalTimeOfDay(at);
    if (!t.remind_at_minutes.has_value()) {
      r_.Error(n["remind_at"], YamlReader::Join(path, "remind_at"),
               absl::StrCat("\"", at,
                            "\" is not a local time HH:MM between 00:00 and "
                            "23:59"));
    }
  }
  return t;
}

std::vector<Action> Parser::ReadActions(const YAML::Node& map,
                                        const std::string& path,
                                        const char* key) {
  std::vector<Action> actions;
  if (!map.IsMap()) return actions;
  YAML::Node list = map[key];
  std::string lpath = YamlReader::Join(path, key);
  if (!list.IsDefined() || list.IsNull()) return actions;
  if (!list.IsSequence()) {
    r_.Error(list, lpath, "must be a list of actions");
    return actions;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    std::string p = YamlReader::Join(lpath, i);
    YAML::Node a = list[i];
    if (!r_.ExpectMap(a, p, false)) continue;
    if (a.size() != 1) {
      r_.Error(a, p,
               "an action is a map with one key: set_cadence, "
               "restore_cadence, move_to, raise_alert or "
               "schedule_questionnaire");
      continue;
    }
    r_.ExpectKeys(a, p,
                  {"set_cadence", "restore_cadence", "move_to", "raise_alert",
                   "schedule_questionnaire"});
    Action action;
    action.pos = PosOf(a);
    action.path = p;
    std::string verb = a.begin()->first.Scalar();
    if (verb == "set_cadence") {
      action.kind = Action::Kind::kSetCadence;
      std::optional<IsoDuration> d = Duration(a, p, "set_cadence", true);
      if (!d.has_value()) continue;
      WholeDays(a, p, "set_cadence", *d);
      action.cadence = *d;
    } else if (verb == "restore_cadence") {
      action.kind = Action::Kind::kRestoreCadence;
      if (!r_.Bool(a, p, "restore_cadence", false)) {
        r_.Error(a["restore_cadence"], YamlReader::Join(p, "restore_cadence"),
                 "write restore_cadence: true");
      }
    } else if (verb == "move_to") {
      action.kind = Action::Kind::kMoveTo;
      action.stage = r_.String(a, p, "move_to", "", true);
      stage_refs_.push_back(Ref{action.stage, PosOf(a["move_to"]),
                                YamlReader::Join(p, "move_to")});
    } else if (verb == "raise_alert") {
      action.kind = Action::Kind::kRaiseAlert;
      std::string ap = YamlReader::Join(p, "raise_alert");
      YAML::Node spec = a["raise_alert"];
      if (!r_.ExpectMap(spec, ap, false)) continue;
      r_.ExpectKeys(spec, ap,
                    {"id", "title", "priority", "acknowledge_within"});
      action.alert.id = Id(spec, ap, "alert");
      action.alert.title = r_.String(spec, ap, "title", "", true);
      std::string priority = r_.String(spec, ap, "priority", "routine");
      if (priority != "routine" && priority != "urgent") {
        r_.Error(spec["priority"], YamlReader::Join(ap, "priority"),
                 "must be routine or urgent");
      }
      action.alert.urgent = priority == "urgent";
      action.alert.acknowledge_within =
          Duration(spec, ap, "acknowledge_within", action.alert.urgent);
    } else if (verb == "schedule_questionnaire") {
      action.kind = Action::Kind::kScheduleQuestionnaire;
      std::string sp = YamlReader::Join(p, "schedule_questionnaire");
      YAML::Node spec = a["schedule_questionnaire"];
      if (!r_.ExpectMap(spec, sp, false)) continue;
      r_.ExpectKeys(spec, sp, {"questionnaire", "within"});
      action.questionnaire = r_.String(spec, sp, "questionnaire", "", true);
      if (!action.questionnaire.empty()) {
        instruments_used_.insert(action.questionnaire);
      }
      if (!action.questionnaire.empty() &&
          !context_.instruments.count(action.questionnaire)) {
        r_.Error(spec["questionnaire"], YamlReader::Join(sp, "questionnaire"),
                 absl::StrCat("unknown questionnaire \"", action.questionnaire,
                              "\""));
      }
      std::optional<IsoDuration> within = Duration(spec, sp, "within", true);
      if (within.has_value()) action.within = *within;
    } else {
      continue;  // reported by ExpectKeys
    }
    actions.push_back(std::move(action));
  }
  return actions;
}

RuleTemplate Parser::ReadRule(const YAML::Node& n, const std::string& path) {
  RuleTemplate rule;
  rule.pos = IdPos(n);
  if (!r_.ExpectMap(n, path, false)) return rule;
  r_.ExpectKeys(n, path, {"id", "on", "when", "then", "otherwise"});
  rule.id = Id(n, path, "rule");
  rule.on = r_.String(n, path, "on", "");
  if (!rule.on.empty()) {
    bool ok = RuleEventKinds().count(rule.on) > 0;
    if (absl::StartsWith(rule.on, "questionnaire:")) {
      instruments_used_.insert(rule.on.substr(14));
      ok = context_.instruments.count(rule.on.substr(14)) > 0;
    }
    if (!ok) {
      r_.Error(n["on"], YamlReader::Join(path, "on"),
               absl::StrCat("unknown event kind \"", rule.on, "\" (use ",
                            absl::StrJoin(RuleEventKinds(), ", "),
                            " or questionnaire:<instrument>)"));
    }
  }
  rule.when = ReadCondition(n, path);
  rule.then = ReadActions(n, path, "then");
  rule.otherwise = ReadActions(n, path, "otherwise");
  if (n["then"].IsDefined() == false) {
    r_.Error(n, YamlReader::Join(path, "then"), "is required");
  }
  if (!rule.on.empty() && !rule.otherwise.empty()) {
    r_.Error(n["otherwise"], YamlReader::Join(path, "otherwise"),
             "a rule with `on` fires per event and has no `otherwise`");
  }
  return rule;
}

WorkflowTemplate Parser::Parse(const YAML::Node& document) {
  WorkflowTemplate t;
  YAML::Node root = document;
  if (!document.IsMap()) {
    // Not a map: say so, then name what is missing as for an empty file.
    r_.Error(document, "",
             "a template is a map with id, version, title and stages");
    root = YAML::Node(YAML::NodeType::Map);
  }
  t.id_pos = IdPos(root);
  r_.ExpectKeys(root, "",
                {"id", "version", "title", "description", "sessions", "stages",
                 "rules", "conditions", "problem_areas"});
  t.id = Id(root, "", "workflow");
  if (!root["version"].IsDefined()) r_.Error(root, "version", "is required");
  t.version = static_cast<int>(r_.Int(root, "", "version", 0, 1, 1000000));
  t.title = r_.String(root, "", "title", "", true);
  t.description = r_.String(root, "", "description", "");
  // Before the stages: their cadences are checked against it.
  t.sessions = ReadSessions(root);
  // Before the rules and exits, which may read them by name.
  ReadNamedConditions(root, t);
  ReadProblemAreas(root, t);

  YAML::Node stages = root["stages"];
  if (!stages.IsDefined() || !stages.IsSequence() || stages.size() == 0) {
    r_.Error(stages.IsDefined() ? stages : root, "stages",
             "must be a non-empty list of stages");
  } else if (static_cast<int64_t>(stages.size()) > limits_.max_stages) {
    r_.Error(stages, "stages",
             absl::StrCat(stages.size(), " stages; the limit is ",
                          limits_.max_stages));
    return t;
  } else {
    for (size_t i = 0; i < stages.size(); ++i) {
      // The index this stage gets in t.stages (a stage that is not a map
      // is skipped).
      stage_ = static_cast<int>(t.stages.size());
      std::string p = YamlReader::Join("stages", i);
      YAML::Node s = stages[i];
      StageTemplate st;
      st.pos = IdPos(s);
      if (!r_.ExpectMap(s, p, false)) continue;
      if (!ReadStage(s, p, st)) return t;
      t.stages.push_back(std::move(st));
    }
    stage_ = -1;
  }
  YAML::Node rules = root["rules"];
  if (rules.IsDefined() && !rules.IsSequence()) {
    r_.Error(rules, "rules", "must be a list");
  } else if (rules.IsDefined()) {
    for (size_t j = 0; j < rules.size(); ++j) {
      t.rules.push_back(ReadRule(rules[j], YamlReader::Join("rules", j)));
    }
  }
  t.BuildIndex();
  CheckReferences(t, root);
  CheckGraph(t, root);
  ApplySafetyFloors(t);
  t.instruments_used = instruments_used_;
  return t;
}

bool Parser::ReadStage(const YAML::Node& s, const std::string& p,
                       StageTemplate& st) {
  r_.ExpectKeys(s, p,
                {"id", "title", "description", "cadence", "tasks", "exit",
                 "rules", "open_ended"});
  st.id = Id(s, p, "stage");
  st.title = r_.String(s, p, "title", "", true);
  st.description = r_.String(s, p, "description", "");
  st.open_ended = r_.Bool(s, p, "open_ended", false);
  st.session_cadence = r_.String(s, p, "cadence", "");
  std::optional<IsoDuration> cadence = Duration(s, p, "cadence", true);
  if (cadence.has_value()) {
    WholeDays(s, p, "cadence", *cadence);
    st.cadence = *cadence;
  }
  YAML::Node tasks = s["tasks"];
  if (tasks.IsDefined() && !tasks.IsSequence()) {
    r_.Error(tasks, YamlReader::Join(p, "tasks"), "must be a list");
  } else if (tasks.IsDefined()) {
    for (size_t j = 0; j < tasks.size(); ++j) {
      if (++tasks_read_ > limits_.max_tasks) {
        r_.Error(tasks[j], YamlReader::Join(YamlReader::Join(p, "tasks"), j),
                 absl::StrCat("more than ", limits_.max_tasks,
                              " tasks in the template (the limit)"));
        return false;
      }
      st.tasks.push_back(ReadTask(
          tasks[j], YamlReader::Join(YamlReader::Join(p, "tasks"), j)));
    }
  }
  ReadExits(s, p, st);
  YAML::Node rules = s["rules"];
  if (rules.IsDefined() && !rules.IsSequence()) {
    r_.Error(rules, YamlReader::Join(p, "rules"), "must be a list");
  } else if (rules.IsDefined()) {
    for (size_t j = 0; j < rules.size(); ++j) {
      st.rules.push_back(ReadRule(
          rules[j], YamlReader::Join(YamlReader::Join(p, "rules"), j)));
    }
  }
  return true;
}

void Parser::ReadExits(const YAML::Node& s, const std::string& p,
                       StageTemplate& st) {
  YAML::Node exits = s["exit"];
  if (exits.IsDefined() && !exits.IsSequence()) {
    r_.Error(exits, YamlReader::Join(p, "exit"),
             "must be a list of {to, when}");
  } else if (exits.IsDefined()) {
    for (size_t j = 0; j < exits.size(); ++j) {
      std::string ep = YamlReader::Join(YamlReader::Join(p, "exit"), j);
      YAML::Node e = exits[j];
      ExitTemplate ex;
      ex.pos = PosOf(e);
      if (!r_.ExpectMap(e, ep, false)) continue;
      r_.ExpectKeys(e, ep, {"to", "when"});
      ex.to = r_.String(e, ep, "to", "", true);
      if (!ex.to.empty()) {
        stage_refs_.push_back(
            Ref{ex.to, PosOf(e["to"]), YamlReader::Join(ep, "to")});
      }
      ex.when = ReadCondition(e, ep);
      st.exits.push_back(std::move(ex));
    }
  }
}

void Parser::ReadNamedConditions(const YAML::Node& root, WorkflowTemplate& t) {
  YAML::Node n = root["conditions"];
  if (!n.IsDefined() || n.IsNull()) return;
  if (!n.IsMap()) {
    r_.Error(n, "conditions", "must be a map of name: condition");
    return;
  }
  for (const auto& kv : n) {
    const std::string name = kv.first.Scalar();
    const std::string path = YamlReader::Join("conditions", name);
    bool valid =
        !name.empty() && name.size() <= 63 && absl::ascii_islower(name[0]) &&
        std::all_of(name.begin(), name.end(), [](char c) {
          return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
        });
    if (!valid) {
      r_.Error(kv.first, path,
               "a condition name is 1-63 characters of a-z, 0-9 and '_', "
               "starting with a letter");
      continue;
    }
    if (CompiledCondition::IsReservedName(name, context_) ||
        named_.count(name)) {
      r_.Error(kv.first, path,
               absl::StrCat("\"", name,
                            "\" is already a name conditions know; choose "
                            "another"));
      continue;
    }
    NamedCondition c;
    c.name = name;
    c.when.path = path;
    c.when.text = kv.second.IsScalar() ? kv.second.Scalar() : "";
    c.when.pos = PosOf(kv.second);
    if (!kv.second.IsScalar() || c.when.text.empty()) {
      r_.Error(kv.second, path, "must be a condition (a non-empty string)");
      continue;
    }
    std::vector<ConditionError> errors;
    std::vector<CompiledCondition::TaskRef> refs;
    c.when.program = CompiledCondition::Compile(c.when.text, context_, named_,
                                                &errors, &refs);
    for (const ConditionError& e : errors) {
      SourcePos p = TextPos(kv.second, e.line, e.column);
      r_.ErrorAt(p.line, p.column, path, e.message);
    }
    for (const CompiledCondition::TaskRef& ref : refs) {
      task_refs_.push_back(
          Ref{ref.task_id, TextPos(kv.second, ref.line, ref.column), path});
    }
    named_.insert(name);
    t.conditions.push_back(std::move(c));
  }
}

void Parser::ReadProblemAreas(const YAML::Node& root, WorkflowTemplate& t) {
  t.problem_areas = DefaultProblemAreas();
  YAML::Node n = root["problem_areas"];
  if (!n.IsDefined() || n.IsNull()) return;
  if (!n.IsSequence()) {
    r_.Error(n, "problem_areas", "must be a list of problem area names");
    return;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    std::string path = YamlReader::Join("problem_areas", i);
    std::string area = n[i].IsScalar() ? n[i].Scalar() : "";
    bool valid =
        !area.empty() && area.size() <= 63 && absl::ascii_islower(area[0]) &&
        std::all_of(area.begin(), area.end(), [](char c) {
          return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
        });
    if (!valid) {
      r_.Error(n[i], path,
               "a problem area is 1-63 characters of a-z, 0-9 and '_', "
               "starting with a letter");
    } else if (std::find(t.problem_areas.begin(), t.problem_areas.end(),
                         area) != t.problem_areas.end()) {
      r_.Error(n[i], path,
               absl::StrCat("\"", area, "\" is already a problem area"));
    } else {
      t.problem_areas.push_back(area);
    }
  }
}

// ApplySafetyFloors records, for each safety floor of the context, the
// rules that refine it, and refuses a refinement that is laxer than the
// floor (an acknowledgement deadline longer than the default's).
void Parser::ApplySafetyFloors(WorkflowTemplate& t) {
  std::vector<const RuleTemplate*> rules;
  for (const RuleTemplate& r : t.rules) rules.push_back(&r);
  for (const StageTemplate& st : t.stages) {
    for (const RuleTemplate& r : st.rules) rules.push_back(&r);
  }
  for (const SafetyFloor& floor : context_.safety_floors) {
    AppliedSafetyFloor applied;
    applied.floor = floor;
    std::optional<IsoDuration> deadline =
        ParseIsoDuration(floor.acknowledge_within);
    applied.acknowledge_within = deadline.value_or(IsoDuration{.hours = 4});
    for (const RuleTemplate* r : rules) {
      if (r->on != absl::StrCat("questionnaire:", floor.instrument) ||
          r->when.program == nullptr) {
        continue;
      }
      bool reads = false;
      for (const std::string& id : r->when.program->identifiers()) {
        reads = reads || std::find(floor.scores.begin(), floor.scores.end(),
                                   id) != floor.scores.end();
      }
      if (!reads) continue;
      for (const Action& a : r->then) {
        if (a.kind != Action::Kind::kRaiseAlert || !a.alert.urgent) continue;
        if (a.alert.acknowledge_within.has_value() &&
            ApproximateDuration(*a.alert.acknowledge_within) >
                ApproximateDuration(applied.acknowledge_within)) {
          r_.ErrorAt(
              a.pos.line, a.pos.column,
              YamlReader::Join(a.path, "raise_alert.acknowledge_within"),
              absl::StrCat("this rule refines the safety floor of ", floor.flag,
                           ", whose alert is acknowledged "
                           "within ",
                           applied.acknowledge_within.ToString(),
                           "; a refinement may shorten the deadline, "
                           "never lengthen it"));
        }
        if (std::find(applied.refined_by.begin(), applied.refined_by.end(),
                      r->id) == applied.refined_by.end()) {
          applied.refined_by.push_back(r->id);
        }
      }
    }
    t.safety_floors.push_back(std::move(applied));
  }
}

void Parser::CheckReferences(const WorkflowTemplate& t,
                             const YAML::Node& root) {
  std::map<std::string, std::string> stage_ids, all_task_ids, rule_ids;
  auto unique = [&](std::map<std::string, std::string>& seen,
                    const std::string& id, const std::string& path,
                    SourcePos pos, absl::string_view what) {
    if (id.empty()) return;
    auto [it, inserted] = seen.emplace(id, path);
    if (!inserted) {
      r_.ErrorAt(pos.line, pos.column, path,
                 absl::StrCat("duplicate ", what, " id \"", id, "\" (first at ",
                              it->second, ")"));
    }
  };
  for (size_t i = 0; i < t.stages.size(); ++i) {
    const StageTemplate& s = t.stages[i];
    std::string sp = YamlReader::Join("stages", i);
    unique(stage_ids, s.id, YamlReader::Join(sp, "id"), s.pos, "stage");
    std::map<std::string, std::string> task_ids;  // unique per stage
    for (size_t j = 0; j < s.tasks.size(); ++j) {
      all_task_ids.emplace(s.tasks[j].id, "");
      unique(task_ids, s.tasks[j].id,
             YamlReader::Join(
                 YamlReader::Join(YamlReader::Join(sp, "tasks"), j), "id"),
             s.tasks[j].pos, "task");
    }
    for (size_t j = 0; j < s.rules.size(); ++j) {
      unique(rule_ids, s.rules[j].id,
             YamlReader::Join(
                 YamlReader::Join(YamlReader::Join(sp, "rules"), j), "id"),
             s.rules[j].pos, "rule");
    }
  }
  for (size_t j = 0; j < t.rules.size(); ++j) {
    unique(rule_ids, t.rules[j].id,
           YamlReader::Join(YamlReader::Join("rules", j), "id"), t.rules[j].pos,
           "rule");
  }
  for (const Ref& ref : stage_refs_) {
    if (!ref.id.empty() && !stage_ids.count(ref.id)) {
      r_.ErrorAt(ref.pos.line, ref.pos.column, ref.path,
                 absl::StrCat("unknown stage \"", ref.id, "\""));
    }
  }
  for (const Ref& ref : task_refs_) {
    if (!all_task_ids.count(ref.id)) {
      r_.ErrorAt(ref.pos.line, ref.pos.column, ref.path,
                 absl::StrCat("tasks.done(\"", ref.id, "\"): unknown task \"",
                              ref.id, "\""));
    } else if (ref.stage >= 0 &&
               ref.stage < static_cast<int>(t.stages.size()) &&
               !t.stages[ref.stage].task_index.count(ref.id)) {
      // A stage's exits and rules see the stage's own tasks; a task of
      // another stage is a mistake (it may be done from an earlier stage,
      // or never).
      std::string owner;
      for (const StageTemplate& s : t.stages) {
        if (s.task_index.count(ref.id)) {
          owner = s.id;
          break;
        }
      }
      r_.ErrorAt(ref.pos.line, ref.pos.column, ref.path,
                 absl::StrCat("tasks.done(\"", ref.id, "\"): task \"", ref.id,
                              "\" belongs to stage \"", owner,
                              "\", not to this stage \"",
                              t.stages[ref.stage].id, "\""));
    }
  }
}

// CheckGraph reports stages no path from the first stage reaches, and
// cycles of stages that nothing leads out of (an enrollment entering one
// would circle forever).
void Parser::CheckGraph(const WorkflowTemplate& t, const YAML::Node& root) {
  const int n = static_cast<int>(t.stages.size());
  if (n == 0 || !r_.ok()) return;  // references must resolve first
  const StageEdges edges = StageGraph(t);
  const std::vector<bool> reached = ReachedFromFirst(edges);
  for (int i = 1; i < n; ++i) {
    if (!reached[i]) {
      SourcePos p = t.stages[i].pos;
      r_.ErrorAt(p.line, p.column, YamlReader::Join("stages", i),
                 absl::StrCat("stage \"", t.stages[i].id,
                              "\" is unreachable: no exit or move_to leads "
                              "to it from \"",
                              t.stages[0].id, "\""));
    }
  }
  int components = 0;
  const std::vector<int> comp = StronglyConnected(edges, &components);
  std::vector<std::vector<int>> by_component(components);
  for (int v = 0; v < n; ++v) by_component[comp[v]].push_back(v);
  for (int c = 0; c < components; ++c) {
    // Members in stage order, as the report lists them.
    const std::vector<int>& members = by_component[c];
    bool cyclic = false, leaves = false;
    for (int v : members) {
      for (int w : edges[v]) {
        if (comp[w] != c) leaves = true;
        if (w == v) cyclic = true;
      }
    }
    if (members.size() > 1) cyclic = true;
    bool open_ended = false;
    for (int v : members) open_ended = open_ended || t.stages[v].open_ended;
    if (!cyclic || leaves || open_ended) continue;
    std::vector<std::string> ids;
    for (int v : members) ids.push_back(t.stages[v].id);
    SourcePos p = t.stages[members.front()].pos;
    r_.ErrorAt(p.line, p.column, YamlReader::Join("stages", members.front()),
               absl::StrCat("stages ", absl::StrJoin(ids, ", "),
                            " form a cycle with no exit: an enrollment that "
                            "enters it can never leave"));
  }
}

}  // namespace

const std::vector<std::string>& DefaultProblemAreas() {
  static const auto* areas = new std::vector<std::string>{
      "grief", "role_dispute", "role_transition", "interpersonal_deficits",
      "grief_for_lost_healthy_self"};
  return *areas;
}

absl::string_view TaskKindName(TaskKind kind) {
  for (const KindName& k : kTaskKinds) {
    if (k.kind == kind) return k.name;
  }
  return "unknown";
}

const StageTemplate* WorkflowTemplate::FindStage(absl::string_view id) const {
  int i = StageIndex(id);
  return i < 0 ? nullptr : &stages[i];
}

int WorkflowTemplate::StageIndex(absl::string_view id) const {
  if (!stage_index.empty()) {
    auto it = stage_index.find(id);
    return it == stage_index.end() ? -1 : it->second;
  }
  for (size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].id == id) return static_cast<int>(i);
  }
  return -1;
}

const TaskTemplate* WorkflowTemplate::FindTask(absl::string_view stage,
                                               absl::string_view id) const {
  const StageTemplate* s = FindStage(stage);
  if (s == nullptr) return nullptr;
  if (!s->task_index.empty()) {
    auto it = s->task_index.find(id);
    return it == s->task_index.end() ? nullptr : &s->tasks[it->second];
  }
  for (const TaskTemplate& t : s->tasks) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

bool WorkflowTemplate::HasTask(absl::string_view id) const {
  if (!stage_index.empty()) return task_ids.find(id) != task_ids.end();
  for (const StageTemplate& s : stages) {
    for (const TaskTemplate& t : s.tasks) {
      if (t.id == id) return true;
    }
  }
  return false;
}

void WorkflowTemplate::BuildIndex() {
  stage_index.clear();
  task_ids.clear();
  // The first of a duplicated id wins, as the linear search found it.
  for (size_t i = 0; i < stages.size(); ++i) {
    stage_index.emplace(stages[i].id, static_cast<int>(i));
    StageTemplate& s = stages[i];
    s.task_index.clear();
    for (size_t j = 0; j < s.tasks.size(); ++j) {
      s.task_index.emplace(s.tasks[j].id, static_cast<int>(j));
      task_ids.insert(s.tasks[j].id);
    }
  }
}

bool IsIsoDuration(absl::string_view text) {
  std::optional<IsoDuration> d = ParseIsoDuration(text);
  return d.has_value() && !d->IsZero();
}

std::vector<YamlDiagnostic> DiagnoseWorkflowTemplate(
    absl::string_view yaml, absl::string_view file_name,
    const ModelContext& context, const WorkflowLimits& limits) {
  YamlReader r{std::string(file_name), limits.yaml};
  YAML::Node root = r.Parse(yaml);
  if (r.ok()) Parser(r, yaml, context, limits).Parse(root);
  return r.SortedDiagnostics();
}

absl::StatusOr<WorkflowTemplate> ParseWorkflowTemplate(
    absl::string_view yaml, absl::string_view file_name,
    const ModelContext& context, const WorkflowLimits& limits) {
  YamlReader r{std::string(file_name), limits.yaml};
  YAML::Node root = r.Parse(yaml);
  if (!r.ok()) return r.ToStatus();
  WorkflowTemplate t = Parser(r, yaml, context, limits).Parse(root);
  if (!r.ok()) return r.ToStatus();
  t.source_file = std::string(file_name);
  t.source_yaml = std::string(yaml);
  t.source_sha256 = Sha256Hex(yaml);
  return t;
}

absl::StatusOr<std::shared_ptr<const WorkflowCatalog>>
WorkflowCatalog::FromTemplates(std::vector<WorkflowTemplate> templates) {
  auto catalog = std::make_shared<WorkflowCatalog>();
  for (WorkflowTemplate& t : templates) {
    auto key = std::make_pair(t.id, t.version);
    if (catalog->templates_.count(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(t.source_file, ":", std::max(t.id_pos.line, 1), ":",
                       std::max(t.id_pos.column, 1), ": error: id: workflow ",
                       t.id, "@", t.version, " is already defined in ",
                       catalog->templates_.at(key).source_file));
    }
    catalog->templates_.emplace(key, std::move(t));
  }
  return std::shared_ptr<const WorkflowCatalog>(std::move(catalog));
}

absl::StatusOr<std::vector<std::string>> WorkflowCatalog::TemplateFiles(
    const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) {
      files.push_back(path);
      continue;
    }
    std::filesystem::directory_iterator it(path, ec);
    if (ec) {
      return absl::NotFoundError(absl::StrCat(
          "workflows: cannot read directory ", path, ": ", ec.message()));
    }
    for (const auto& entry : it) {
      if (entry.is_regular_file() && entry.path().extension() == ".yaml") {
        files.push_back(entry.path().string());
      }
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

absl::StatusOr<std::shared_ptr<const WorkflowCatalog>>
WorkflowCatalog::LoadDirectories(const std::vector<std::string>& directories,
                                 const ModelContext& context) {
  IPSRT_RETURN_IF_ERROR(TemplateFiles(directories).status());
  Loaded loaded = LoadDirectoriesDiagnosed(directories, context);
  if (loaded.catalog != nullptr) return loaded.catalog;
  std::vector<std::string> lines;
  for (const YamlDiagnostic& d : loaded.diagnostics) {
    lines.push_back(d.line == 0 && d.path.empty() ? d.message : d.ToString());
  }
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

WorkflowCatalog::Loaded WorkflowCatalog::LoadDirectoriesDiagnosed(
    const std::vector<std::string>& directories, const ModelContext& context) {
  absl::StatusOr<std::vector<std::string>> files = TemplateFiles(directories);
  if (!files.ok()) {
    Loaded out;
    out.diagnostics.push_back(
        YamlDiagnostic{"", 0, 0, "", std::string(files.status().message())});
    return out;
  }
  return LoadFilesDiagnosed(*files, context);
}

WorkflowCatalog::Loaded WorkflowCatalog::LoadFilesDiagnosed(
    const std::vector<std::string>& files, const ModelContext& context) {
  Loaded out;
  std::vector<WorkflowTemplate> templates;
  for (const std::string& f : files) {
    absl::StatusOr<std::string> text = ReadFileToString(f);
    if (!text.ok()) {
      out.diagnostics.push_back(YamlDiagnostic{
          f, 0, 0, "",
          absl::StrCat(f, ": cannot read: ", text.status().message())});
      continue;
    }
    absl::StatusOr<WorkflowTemplate> t =
        ParseWorkflowTemplate(*text, f, context);
    if (!t.ok()) {
      std::vector<YamlDiagnostic> d =
          DiagnoseWorkflowTemplate(*text, f, context);
      out.diagnostics.insert(out.diagnostics.end(), d.begin(), d.end());
      continue;
    }
    templates.push_back(*std::move(t));
  }
  // The set together: each id@version once, reported at both ids.
  std::map<std::pair<std::string, int>, const WorkflowTemplate*> seen;
  for (const WorkflowTemplate& t : templates) {
    auto [it, inserted] = seen.emplace(std::make_pair(t.id, t.version), &t);
    if (inserted) continue;
    const WorkflowTemplate& first = *it->second;
    out.diagnostics.push_back(YamlDiagnostic{
        t.source_file, std::max(t.id_pos.line, 1), std::max(t.id_pos.column, 1),
        "id",
        absl::StrCat("workflow ", t.id, "@", t.version,
                     " is already defined in ", first.source_file, ":",
                     std::max(first.id_pos.line, 1), ":",
                     std::max(first.id_pos.column, 1),
                     " (each id@version once; give the new one another "
                     "version)")});
  }
  if (!out.diagnostics.empty()) return out;
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      FromTemplates(std::move(templates));
  if (!catalog.ok()) {
    out.diagnostics.push_back(
        YamlDiagnostic{"", 0, 0, "", std::string(catalog.status().message())});
    return out;
  }
  out.catalog = *std::move(catalog);
  return out;
}

WorkflowCatalog::Loaded WorkflowCatalog::WithRetained(
    const WorkflowCatalog& older) const {
  Loaded out;
  auto merged = std::make_shared<WorkflowCatalog>(*this);
  for (const auto& [key, t] : older.templates_) {
    auto it = merged->templates_.find(key);
    if (it == merged->templates_.end()) {
      merged->templates_.emplace(key, t);
    } else if (it->second.source_sha256 != t.source_sha256) {
      out.diagnostics.push_back(YamlDiagnostic{
          it->second.source_file, 1, 1, "version",
          absl::StrCat("workflow ", t.id, "@", t.version,
                       " changed but kept its version number; running "
                       "enrollments are on the loaded text, so give the "
                       "changed template a new version")});
    }
  }
  if (out.diagnostics.empty()) out.catalog = std::move(merged);
  return out;
}

const WorkflowTemplate* WorkflowCatalog::Find(absl::string_view id,
                                              int version) const {
  if (version > 0) {
    auto it = templates_.find(std::make_pair(std::string(id), version));
    return it == templates_.end() ? nullptr : &it->second;
  }
  const WorkflowTemplate* newest = nullptr;
  for (auto it = templates_.lower_bound(std::make_pair(std::string(id), 0));
       it != templates_.end() && it->first.first == id; ++it) {
    newest = &it->second;
  }
  return newest;
}

std::vector<const WorkflowTemplate*> WorkflowCatalog::All() const {
  std::vector<const WorkflowTemplate*> out;
  for (const auto& [key, t] : templates_) out.push_back(&t);
  std::stable_sort(out.begin(), out.end(), [](auto* a, auto* b) {
    return a->id != b->id ? a->id < b->id : a->version > b->version;
  });
  return out;
}

}  // namespace ipsrt
