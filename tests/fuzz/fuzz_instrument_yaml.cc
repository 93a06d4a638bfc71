// Clinician-defined instruments: the yaml-instruments plugin, loaded in
// process as ipsrtd loads it, reads the input as one instrument file; when
// it loads, every instrument it lists is scored once.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/questionnaires.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One directory per process, removed when the process exits (a replay
  // run in the test suite leaves nothing in the temp directory).
  static const std::string dir = [] {
    static const std::string d =
        (std::filesystem::temp_directory_path() /
         absl::StrCat("ipsrt-fuzz-instruments-", getpid()))
            .string();
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(d, ignored);
    });
    return d;
  }();
  {
    std::ofstream out(dir + "/fuzz.yaml", std::ios::trunc | std::ios::binary);
    out.write(reinterpret_cast<const char*>(data),
              static_cast<std::streamsize>(size));
  }
  ipsrt::PluginConfig config =
      ipsrt::fuzz::Library("libipsrt_yaml_instruments.so",
                           absl::StrCat("{\"directories\": [\"", dir, "\"]}"));
  ipsrt::PluginHostOptions options;
  options.plugin_dir = IPSRT_PLUGIN_DIR;
  config.location = "fuzz.yaml:1:1";
  absl::StatusOr<std::unique_ptr<ipsrt::PluginRegistry>> plugins =
      ipsrt::PluginRegistry::Load({config}, options);
  if (!plugins.ok()) return 0;  // refused with diagnostics: fine
  absl::StatusOr<std::unique_ptr<ipsrt::QuestionnaireCatalog>> catalog =
      ipsrt::QuestionnaireCatalog::Build(**plugins);
  if (!catalog.ok()) return 0;
  for (const ipsrt::v1::Questionnaire* q : (*catalog)->List()) {
    ipsrt::v1::ScoreResponseRequest request;
    request.mutable_response()->set_questionnaire_id(q->id());
    int value = 0;
    for (const ipsrt::v1::QuestionnaireItem& item : q->items()) {
      (*request.mutable_response()->mutable_answers())[item.id()] = value++ % 4;
    }
    (void)(*catalog)->Score(request, "response");
  }
  return 0;
}
