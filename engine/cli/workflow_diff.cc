#include "cli/workflow_diff.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "instruments/srm.h"
#include "report/workflow_graph.h"

namespace ipsrt::cli {
namespace {

// Words collapses white space, so a re-wrapped condition is unchanged.
std::string Words(const std::string& text) {
  return absl::StrJoin(
      absl::StrSplit(text, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty()), " ");
}

std::string TaskText(const TaskTemplate& t) {
  std::string out = absl::StrCat(t.title.empty() ? t.id : t.title, ", ",
                                 TaskKindName(t.kind));
  if (!t.questionnaire.empty()) absl::StrAppend(&out, " ", t.questionnaire);
  if (t.assignee == Assignee::kPatient) {
    absl::StrAppend(&out, ", for the patient");
  }
  if (t.due.has_value()) absl::StrAppend(&out, ", due ", t.due->ToString());
  if (t.repeat.has_value()) {
    absl::StrAppend(&out, ", every ", t.repeat->ToString());
  }
  if (t.remind_at_minutes.has_value()) {
    absl::StrAppend(&out, ", reminder at ",
                    FormatMinutes(*t.remind_at_minutes));
  }
  return out;
}

std::string Actions(const std::vector<Action>& actions) {
  std::vector<std::string> parts;
  for (const Action& a : actions)
    parts.push_back(report::DescribeAction(a, /*detailed=*/true));
  return parts.empty() ? "nothing" : absl::StrJoin(parts, "; ");
}

void Changed(std::vector<std::string>& out, const std::string& what,
             const std::string& before, const std::string& after) {
  if (before == after) return;
  if (before.size() + after.size() < 60) {
    out.push_back(absl::StrCat(what, ": ", before, " -> ", after));
  } else {
    out.push_back(
        absl::StrCat(what, "\n    was: ", before, "\n    now: ", after));
  }
}

void DiffRules(std::vector<std::string>& out, const std::string& where,
               const std::vector<RuleTemplate>& before,
               const std::vector<RuleTemplate>& after) {
  std::map<std::string, const RuleTemplate*> old_rules;
  for (const RuleTemplate& r : before) old_rules[r.id] = &r;
  std::map<std::string, const RuleTemplate*> new_rules;
  for (const RuleTemplate& r : after) new_rules[r.id] = &r;
  for (const RuleTemplate& r : before) {
    if (!new_rules.count(r.id)) {
      out.push_back(absl::StrCat("rule ", r.id, " (", where, ") removed: when ",
                                 Words(r.when.text), " -> ", Actions(r.then)));
    }
  }
  for (const RuleTemplate& r : after) {
    const std::string label = absl::StrCat("rule ", r.id, " (", where, ")");
    auto it = old_rules.find(r.id);
    if (it == old_rules.end()) {
      out.push_back(absl::StrCat(
          label, " added: when ", Words(r.when.text), " -> ", Actions(r.then),
          r.otherwise.empty()
              ? ""
              : absl::StrCat("; otherwise ", Actions(r.otherwise))));
      continue;
    }
    const RuleTemplate& o = *it->second;
    Changed(out, absl::StrCat(label, ": checked on"),
            o.on.empty() ? "every event" : o.on,
            r.on.empty() ? "every event" : r.on);
    Changed(out, absl::StrCat(label, ": condition"), Words(o.when.text),
            Words(r.when.text));
    Changed(out, absl::StrCat(label, ": then"), Actions(o.then),
            Actions(r.then));
    Changed(out, absl::StrCat(label, ": otherwise"), Actions(o.otherwise),
            Actions(r.otherwise));
  }
}

void DiffStage(std::vector<std::string>& out, const StageTemplate& o,
               const StageTemplate& n) {
  const std::string label = absl::StrCat("stage ", n.id);
  Changed(out, absl::StrCat(label, ": title"), o.title, n.title);
  Changed(out, absl::StrCat(label, ": sessions every"), o.cadence.ToString(),
          n.cadence.ToString());
  std::map<std::string, const TaskTemplate*> old_tasks;
  for (const TaskTemplate& t : o.tasks) old_tasks[t.id] = &t;
  std::map<std::string, const TaskTemplate*> new_tasks;
  for (const TaskTemplate& t : n.tasks) new_tasks[t.id] = &t;
  for (const TaskTemplate& t : o.tasks) {
    if (!new_tasks.count(t.id)) {
      out.push_back(
          absl::StrCat(label, ": task ", t.id, " removed (", TaskText(t), ")"));
    }
  }
  for (const TaskTemplate& t : n.tasks) {
    auto it = old_tasks.find(t.id);
    if (it == old_tasks.end()) {
      out.push_back(
          absl::StrCat(label, ": task ", t.id, " added (", TaskText(t), ")"));
    } else {
      Changed(out, absl::StrCat(label, ": task ", t.id), TaskText(*it->second),
              TaskText(t));
    }
  }
  std::map<std::string, std::string> old_exits;
  for (const ExitTemplate& e : o.exits) old_exits[e.to] = Words(e.when.text);
  std::map<std::string, std::string> new_exits;
  for (const ExitTemplate& e : n.exits) new_exits[e.to] = Words(e.when.text);
  for (const auto& [to, when] : old_exits) {
    if (!new_exits.count(to)) {
      out.push_back(
          absl::StrCat(label, ": exit to ", to, " removed (when ", when, ")"));
    }
  }
  for (const auto& [to, when] : new_exits) {
    auto it = old_exits.find(to);
    if (it == old_exits.end()) {
      out.push_back(
          absl::StrCat(label, ": exit to ", to, " added (when ", when, ")"));
    } else {
      Changed(out, absl::StrCat(label, ": exit to ", to, " when"), it->second,
              when);
    }
  }
  DiffRules(out, absl::StrCat("stage ", n.id), o.rules, n.rules);
}

std::string Sessions(const std::optional<SessionSchedule>& s) {
  if (!s.has_value()) return "not planned";
  return absl::StrCat("at ", FormatMinutes(s->at_minutes), ", reminded ",
                      s->remind_before.ToString(), " before");
}

}  // namespace

std::vector<std::string> DiffWorkflows(const WorkflowTemplate& o,
                                       const WorkflowTemplate& n) {
  std::vector<std::string> out;
  Changed(out, "id", o.id, n.id);
  Changed(out, "title", o.title, n.title);
  Changed(out, "sessions", Sessions(o.sessions), Sessions(n.sessions));
  std::vector<std::string> old_order, new_order;
  for (const StageTemplate& s : o.stages) old_order.push_back(s.id);
  for (const StageTemplate& s : n.stages) new_order.push_back(s.id);
  for (const StageTemplate& s : o.stages) {
    if (n.FindStage(s.id) == nullptr) {
      out.push_back(absl::StrCat("stage ", s.id, " removed (",
                                 s.title.empty() ? s.id : s.title, ")"));
    }
  }
  for (const StageTemplate& s : n.stages) {
    const StageTemplate* before = o.FindStage(s.id);
    if (before == nullptr) {
      out.push_back(absl::StrCat("stage ", s.id, " added (",
                                 s.title.empty() ? s.id : s.title,
                                 ", sessions every ", s.cadence.ToString(),
                                 ", ", s.tasks.size(), " tasks)"));
    } else {
      DiffStage(out, *before, s);
    }
  }
  Changed(out, "stage order", absl::StrJoin(old_order, " -> "),
          absl::StrJoin(new_order, " -> "));
  DiffRules(out, "every stage", o.rules, n.rules);
  return out;
}

}  // namespace ipsrt::cli
