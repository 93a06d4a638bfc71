#include "instruments/fixed_instruments.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ipsrt {
namespace {

using Instrument = FixedInstrumentSpec;
using Band = FixedInstrumentSpec::Band;

const std::vector<Instrument>& Instruments() {
  static const auto* instruments = new std::vector<Instrument>{
      // PHQ-9: 0-27; item 10 (difficulty) is recorded, not scored.
      {"phq9",
       9,
       10,
       3,
       {{0, 4, "minimal"},
        {5, 9, "mild"},
        {10, 14, "moderate"},
        {15, 19, "moderately_severe"},
        {20, 27, "severe"}},
       {{"phq9.item9_positive", 9, 1, true,
         "PHQ-9 item 9 positive (thoughts of being better off dead or of "
         "self-harm): prompt clinician follow-up and risk assessment"}}},
      // GAD-7: 0-21.
      {"gad7",
       7,
       0,
       3,
       {{0, 4, "minimal"},
        {5, 9, "mild"},
        {10, 14, "moderate"},
        {15, 21, "severe"}}},
      // ASRM: 0-20, no bands; >= 6 suggests hypomania or mania (a flag).
      {"asrm",
       5,
       0,
       4,
       {},
       {{"asrm.at_or_above_6", 0, 6, false,
         "ASRM total 6 or more: possible hypomania or mania"}}},
  };
  return *instruments;
}

// Path joins the caller's field prefix and a field of the response.
std::string Path(absl::string_view field, absl::string_view rest) {
  return field.empty() ? std::string(rest) : absl::StrCat(field, ".", rest);
}

}  // namespace

const FixedInstrumentSpec* FindFixedInstrument(absl::string_view id) {
  for (const Instrument& i : Instruments()) {
    if (id == i.id) return &i;
  }
  return nullptr;
}

bool IsFixedInstrument(absl::string_view id) {
  return FindFixedInstrument(id) != nullptr;
}

absl::StatusOr<ScoredResponse> ScoreFixedInstrument(
    const v1::QuestionnaireResponse& response, absl::string_view field) {
  const Instrument* in = FindFixedInstrument(response.questionnaire_id());
  if (in == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(Path(field, "questionnaire_id"), ": unknown instrument \"",
                     response.questionnaire_id(), "\""));
  }
  if (response.questionnaire_version() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(Path(field, "questionnaire_version"), ": ", in->id,
                     " has version 1, not ", response.questionnaire_version()));
  }
  for (const auto& [item, value] : response.answers()) {
    int n = 0;
    bool known = absl::SimpleAtoi(item, &n) && absl::StrCat(n) == item &&
                 ((n >= 1 && n <= in->scored_items) ||
                  (in->optional_item != 0 && n == in->optional_item));
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat(Path(field, "answers"), "[\"", item, "\"]: ", in->id,
                       " has no item \"", item, "\""));
    }
    if (value < 0 || value > in->max_value) {
      return absl::InvalidArgumentError(
          absl::StrCat(Path(field, "answers"), "[\"", item, "\"]: ", value,
                       " is out of range 0-", in->max_value));
    }
  }
  ScoredResponse out;
  int total = 0;
  for (int n = 1; n <= in->scored_items; ++n) {
    auto it = response.answers().find(absl::StrCat(n));
    if (it == response.answers().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Path(field, "answers"), "[\"", n,
                       "\"]: required item of ", in->id, " is missing"));
    }
    total += it->second;
    out.scores[absl::StrCat(in->id, ".item", n)] = it->second;
  }
  out.scores[absl::StrCat(in->id, ".total")] = total;
  for (const Band& b : in->bands) {
    if (total >= b.min && total <= b.max) out.band = b.name;
  }
  for (const Instrument::Flag& f : in->flags) {
    int value =
        f.item == 0 ? total : response.answers().at(absl::StrCat(f.item));
    if (value >= f.at_least) out.flags.push_back(f.name);
  }
  return out;
}

void DeclareFixedInstrumentOutputs(const FixedInstrumentSpec& spec,
                                   v1::Questionnaire* q) {
  v1::ScoreDefinition* total = q->add_score_definitions();
  total->set_name(absl::StrCat(spec.id, ".total"));
  total->set_title("total");
  for (int n = 1; n <= spec.scored_items; ++n) {
    v1::ScoreDefinition* item = q->add_score_definitions();
    item->set_name(absl::StrCat(spec.id, ".item", n));
    item->set_title(absl::StrCat("item ", n));
  }
  for (const Instrument::Flag& f : spec.flags) {
    v1::FlagDefinition* flag = q->add_flag_definitions();
    flag->set_name(f.name);
    flag->set_title(f.title);
    flag->set_safety_critical(f.safety_critical);
    flag->add_scores(f.item == 0 ? absl::StrCat(spec.id, ".total")
                                 : absl::StrCat(spec.id, ".item", f.item));
  }
}

const std::vector<v1::Questionnaire>& BuiltInInstrumentOutputs() {
  static const auto* built_in = [] {
    auto* out = new std::vector<v1::Questionnaire>();
    for (const Instrument& spec : Instruments()) {
      v1::Questionnaire& q = out->emplace_back();
      q.set_id(spec.id);
      q.set_version(1);
      DeclareFixedInstrumentOutputs(spec, &q);
    }
    // The diary instruments: their weekly score is the engine's (srm.*,
    // computed from the recorded days), not a response's.
    for (const char* id : {"srm5", "srm17"}) {
      v1::Questionnaire& q = out->emplace_back();
      q.set_id(id);
      q.set_version(1);
      q.add_score_definitions()->set_name("srm.score");
      q.add_score_definitions()->set_name("srm.ali");
    }
    return out;
  }();
  return *built_in;
}

}  // namespace ipsrt
