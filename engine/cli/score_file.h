// The JSON files of `ipsrt score ID --answers FILE`.
//
// In, for an instrument with items:
//   {"answers": {"1": 0, "2": 3, ...}}            (item ids as keys)
// and for a diary instrument (srm5, srm17), one week:
//   {"days": [{"date": "2026-03-02",
//              "activities": {"out_of_bed": "07:00", "to_bed": "23:00"}},
//             ...]}                                  (an activity not done
//                                                    is absent)
// Out, one compact JSON object (spacing here for reading):
//   {"instrument": "phq9", "scores": {...}, "band": "...", "flags": [...]}
// and for a diary, beside those: "score" (null when no activity
// qualifies), "qualifying_activities", "hits", "ali", and "activities":
// {"to_bed": {"days": 7, "hits": 5, "habitual_time": "23:29"}, ...}
// (habitual_time only for a qualifying activity).
#ifndef IPSRT_CLI_SCORE_FILE_H_
#define IPSRT_CLI_SCORE_FILE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ipsrt/v1/questionnaire.pb.h"

namespace ipsrt::cli {

// Bounds on an answers file, checked before it is parsed.
inline constexpr size_t kMaxAnswersFileBytes = 1 << 20;
inline constexpr int kMaxAnswersJsonDepth = 32;

// ParseAnswersFile reads `json` (the contents of `file`) into a request for
// instrument `id`. INVALID_ARGUMENT names the file and the JSON path, e.g.
// `a.json: answers["3"]: must be a whole number`, or the bound exceeded
// (size over kMaxAnswersFileBytes, nesting over kMaxAnswersJsonDepth).
absl::StatusOr<v1::ScoreResponseRequest> ParseAnswersFile(
    absl::string_view file, absl::string_view json, absl::string_view id,
    int version);

// ScoreResultJson renders a scoring result as described above; keys in a
// fixed order, so equal results give equal text.
std::string ScoreResultJson(absl::string_view instrument,
                            const v1::ScoreResponseResponse& scored);

}  // namespace ipsrt::cli

#endif  // IPSRT_CLI_SCORE_FILE_H_
