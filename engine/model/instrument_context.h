// The instruments workflow templates are checked against, from the
// instrument descriptions questionnaire plugins give (ListInstruments).
//
// ipsrtd loads its plugins first and checks every template against the
// instruments they serve; `ipsrt validate --config FILE` does the same with
// the plugins FILE configures, and without --config uses the built-in
// instruments (BuiltInModelContext in model/condition.h).
//
// Example:
//   IPSRT_ASSIGN_OR_RETURN(ModelContext context,
//                          ModelContextFromInstruments(catalog.List()));
//   WorkflowCatalog::LoadDirectories(dirs, context);
#ifndef IPSRT_MODEL_INSTRUMENT_CONTEXT_H_
#define IPSRT_MODEL_INSTRUMENT_CONTEXT_H_

#include <string>
#include <vector>

#include "ipsrt/v1/questionnaire.pb.h"
#include "model/condition.h"

namespace ipsrt {

// ModelContextFromInstruments derives the instrument ids, score names and
// safety floors from instrument descriptions. An instrument that declares
// no score_definitions yields "<id>.total" and one score per scored item
// ("<id>.item<N>" for a numeric item id, "<id>.<item id>" otherwise), the
// names every shipped questionnaire plugin produces. Each safety-critical
// flag definition becomes a SafetyFloor.
ModelContext ModelContextFromInstruments(
    const std::vector<const v1::Questionnaire*>& instruments);

// InstrumentsUsedBy lists the instrument ids `context` lacks that a
// template of `catalog_templates` names (questionnaire tasks,
// schedule_questionnaire, `on: questionnaire:<id>`), as "id@version:
// instrument, ..." lines; empty when none is missing.
struct WorkflowTemplate;
std::vector<std::string> MissingInstruments(
    const std::vector<const WorkflowTemplate*>& templates,
    const ModelContext& context);

}  // namespace ipsrt

#endif  // IPSRT_MODEL_INSTRUMENT_CONTEXT_H_
