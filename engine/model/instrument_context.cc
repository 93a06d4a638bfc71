#include "model/instrument_context.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "instruments/fixed_instruments.h"
#include "model/workflow.h"

namespace ipsrt {

ModelContext ModelContextFromInstruments(
    const std::vector<const v1::Questionnaire*>& instruments) {
  ModelContext context;
  for (const v1::Questionnaire* q : instruments) {
    context.instruments.insert(q->id());
    std::vector<std::string>& names = context.scores[q->id()];
    if (q->score_definitions_size() > 0) {
      for (const v1::ScoreDefinition& d : q->score_definitions()) {
        names.push_back(d.name());
      }
    } else {
      names.push_back(absl::StrCat(q->id(), ".total"));
      for (const v1::QuestionnaireItem& item : q->items()) {
        if (!item.scored()) continue;
        bool numeric = !item.id().empty() &&
                       std::all_of(item.id().begin(), item.id().end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
        names.push_back(numeric ? absl::StrCat(q->id(), ".item", item.id())
                                : absl::StrCat(q->id(), ".", item.id()));
      }
    }
    for (const v1::FlagDefinition& f : q->flag_definitions()) {
      if (!f.safety_critical()) continue;
      SafetyFloor floor;
      floor.flag = f.name();
      floor.instrument = q->id();
      floor.title = f.title().empty()
                        ? absl::StrCat("Safety flag ", f.name(),
                                       ": prompt clinician follow-up")
                        : f.title();
      floor.scores.assign(f.scores().begin(), f.scores().end());
      context.safety_floors.push_back(std::move(floor));
    }
  }
  return context;
}

const ModelContext& BuiltInModelContext() {
  static const ModelContext* const context = [] {
    std::vector<const v1::Questionnaire*> instruments;
    for (const v1::Questionnaire& q : BuiltInInstrumentOutputs()) {
      instruments.push_back(&q);
    }
    return new ModelContext(ModelContextFromInstruments(instruments));
  }();
  return *context;
}

std::vector<std::string> MissingInstruments(
    const std::vector<const WorkflowTemplate*>& templates,
    const ModelContext& context) {
  std::vector<std::string> out;
  for (const WorkflowTemplate* t : templates) {
    std::set<std::string> missing;
    for (const std::string& id : t->instruments_used) {
      if (!context.instruments.count(id)) missing.insert(id);
    }
    if (!missing.empty()) {
      out.push_back(absl::StrCat(t->id, "@", t->version, ": ",
                                 absl::StrJoin(missing, ", ")));
    }
  }
  return out;
}

}  // namespace ipsrt
