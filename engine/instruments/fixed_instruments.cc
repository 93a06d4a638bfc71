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
        {20, 27, "severe"}}},
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
      {"asrm", 5, 0, 4, {}},
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
  if (std::string(in->id) == "phq9" && response.answers().at("9") > 0) {
    out.flags.push_back("phq9.item9_positive");
  }
  if (std::string(in->id) == "asrm" && total >= 6) {
    out.flags.push_back("asrm.at_or_above_6");
  }
  return out;
}

}  // namespace ipsrt
