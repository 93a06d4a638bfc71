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

namespace ipsrt {

struct ScoredResponse {
  // "<instrument>.total" and "<instrument>.item<N>" for every scored item.
  std::map<std::string, double> scores;
  // Severity band name, e.g. "moderately_severe"; empty if none defined.
  std::string band;
  // e.g. "phq9.item9_positive", "asrm.at_or_above_6".
  std::vector<std::string> flags;
};

// IsFixedInstrument is true for "phq9", "gad7" and "asrm".
bool IsFixedInstrument(absl::string_view id);

// ScoreFixedInstrument validates and scores a response. `field` prefixes
// error messages (e.g. "event.questionnaire_response").
absl::StatusOr<ScoredResponse> ScoreFixedInstrument(
    const v1::QuestionnaireResponse& response, absl::string_view field);

}  // namespace ipsrt

#endif  // IPSRT_INSTRUMENTS_FIXED_INSTRUMENTS_H_
