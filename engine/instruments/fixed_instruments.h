// Scoring of the fixed-item instruments PHQ-9, GAD-7 and ASRM, exactly as
// the project's domain reference states: sums of item values, severity
// bands, and flags. Nothing is prorated: a missing required item, an
// unknown item or a value out of range rejects the response, naming the
// item.
#ifndef IPSRT_INSTRUMENTS_FIXED_INSTRUMENTS_H_
#define IPSRT_INSTRUMENTS_FIXED_INSTRUMENTS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "ipsrt/v1/questionnaire.pb.h"

namespace ipsrt {

struct ScoredResponse {
  // "<instrument>.total" and "<instrument>.item<N>" for every scored item.
  std::map<std::string, double> scores;
  // Severity band name, e.g. "moderately_severe"; empty if none defined.
  std::string band;
  // e.g. "phq9.item9_positive", "asrm.at_or_above_6".
  std::vector<std::string> flags;
};

// The scoring definition of one fixed instrument: the single source of the
// item count, value range and bands, read by the scorer below and by the
// core-instruments plugin that describes the instrument to clients.
struct FixedInstrumentSpec {
  struct Band {
    int min;
    int max;
    const char* name;
  };
  // A flag raised when item `item` (0: the total) is at least `at_least`.
  struct Flag {
    const char* name;
    int item;
    int at_least;
    bool safety_critical;
    const char* title;
  };
  const char* id;
  int scored_items;   // items "1".."N", required
  int optional_item;  // an extra unscored item number, 0 if none
  int max_value;      // each item 0..max_value
  std::vector<Band> bands;
  std::vector<Flag> flags;
};

// DeclareFixedInstrumentOutputs adds to `q` (whose id is the spec's) the
// score and flag definitions of the spec, as ListInstruments declares them.
void DeclareFixedInstrumentOutputs(const FixedInstrumentSpec& spec,
                                   v1::Questionnaire* q);

// BuiltInInstrumentOutputs describes the scores and flags of the built-in
// instruments phq9, gad7, asrm, srm5 and srm17 (ids, versions and the
// definitions only; the core-instruments plugin adds texts and codes).
const std::vector<v1::Questionnaire>& BuiltInInstrumentOutputs();

// FindFixedInstrument returns the spec of "phq9", "gad7" or "asrm", else
// null.
const FixedInstrumentSpec* FindFixedInstrument(absl::string_view id);

// IsFixedInstrument is true for "phq9", "gad7" and "asrm".
bool IsFixedInstrument(absl::string_view id);

// ScoreFixedInstrument validates and scores a response. `field` prefixes
// error messages (e.g. "event.questionnaire_response"); when empty, the
// messages start at the response's own fields (`answers["9"]: ...`).
absl::StatusOr<ScoredResponse> ScoreFixedInstrument(
    const v1::QuestionnaireResponse& response, absl::string_view field);

}  // namespace ipsrt

#endif  // IPSRT_INSTRUMENTS_FIXED_INSTRUMENTS_H_
