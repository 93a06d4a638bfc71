// `ipsrt score --answers FILE`: the answers JSON reader, then scoring by
// the built-in instruments plugin as ipsrtd routes it (PHQ-9, GAD-7, ASRM,
// and the SRM diaries).
#include <cstddef>
#include <cstdint>
#include <string>

#include "cli/score_file.h"
#include "core/questionnaires.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ipsrt::PluginRegistry* plugins =
      ipsrt::fuzz::LoadPlugins(
          {ipsrt::fuzz::Library("libipsrt_core_instruments.so")})
          .release();
  static ipsrt::QuestionnaireCatalog* catalog =
      ipsrt::QuestionnaireCatalog::Build(*plugins)->release();
  static const char* kIds[] = {"phq9", "gad7", "asrm", "srm5", "srm17"};
  std::string json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ipsrt::v1::ScoreResponseRequest> request =
      ipsrt::cli::ParseAnswersFile("answers.json", json, kIds[size % 5], 0);
  if (!request.ok()) return 0;
  (void)catalog->Score(*request, "response");
  return 0;
}
