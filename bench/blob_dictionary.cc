// Writes engine/store/blob_dictionary2.inc, the zstd dictionary the stores
// compress values with from schema 9 on (store/blob_codec.h). It was run
// once and its output committed, frozen: stored values need exactly those
// bytes, so the tool is kept to show how they were made, not to be run
// again over the committed file (a test pins the file's digest).
//
// The dictionary's content is dictionary 1's (blob_dictionary.inc), as it
// is; zstd's ZDICT_finalizeDictionary adds a header with entropy tables
// (literal, match length, offset statistics) computed from samples, which
// a value of a few hundred bytes would otherwise pay for in its own frame.
// The samples are what the store packs for one simulated course
// (`ipsrt simulate`'s code): every event as stored (its deterministic
// bytes without the hash field) and the snapshot after every event.
//
//   ipsrt_blob_dictionary --template_file=workflows/ipsrt-standard.yaml
//       --scenario=tests/scenarios/year-long.yaml
//       --out=engine/store/blob_dictionary2.inc
#include <zdict.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/scenario.h"
#include "common/files.h"
#include "common/hash.h"
#include "core/enrollments.h"
#include "model/workflow.h"
#include "runtime/step.h"
#include "store/blob_codec.h"

ABSL_FLAG(std::string, template_file, "workflows/ipsrt-standard.yaml",
          "workflow template");
ABSL_FLAG(std::string, scenario, "tests/scenarios/year-long.yaml",
          "the course whose records are the samples");
ABSL_FLAG(std::string, out, "", "the .inc file to write");

namespace {

// The dictionary's id (zstd's dictID field): 2, after dictionary 1.
constexpr unsigned kDictionaryId = 2;
// The level the store compresses at (store/blob_codec.cc, kZstdLevel).
constexpr int kLevel = 5;

int Fail(const std::string& message) {
  std::fprintf(stderr, "ipsrt_blob_dictionary: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace ipsrt;
  absl::StatusOr<std::string> yaml =
      ReadFileToString(absl::GetFlag(FLAGS_template_file));
  if (!yaml.ok()) return Fail(std::string(yaml.status().message()));
  absl::StatusOr<WorkflowTemplate> workflow =
      ParseWorkflowTemplate(*yaml, absl::GetFlag(FLAGS_template_file));
  if (!workflow.ok()) return Fail(std::string(workflow.status().message()));
  absl::StatusOr<std::string> text =
      ReadFileToString(absl::GetFlag(FLAGS_scenario));
  if (!text.ok()) return Fail(std::string(text.status().message()));
  absl::StatusOr<cli::Scenario> scenario = cli::ParseScenario(
      *text, absl::GetFlag(FLAGS_scenario), &Enrollments::LoadZone);
  if (!scenario.ok()) return Fail(std::string(scenario.status().message()));
  cli::Simulation simulation;
  absl::Status simulated =
      cli::Simulate(*workflow, *scenario, &Enrollments::LoadZone, &simulation);
  if (!simulated.ok()) return Fail(std::string(simulated.message()));

  // The samples, concatenated, and their sizes.
  std::string samples;
  std::vector<size_t> sizes;
  auto add = [&](const std::string& sample) {
    samples += sample;
    sizes.push_back(sample.size());
  };
  internal::EnrollmentState state;
  state.mutable_enrollment()->set_name(simulation.state.enrollment().name());
  for (const cli::SimulatedEvent& e : simulation.events) {
    absl::StatusOr<runtime::StepChanges> changes =
        runtime::StepInPlace(*workflow, &Enrollments::LoadZone, state, e.event);
    if (!changes.ok()) return Fail(std::string(changes.status().message()));
    state.set_last_event_hash(e.event.hash());
    v1::Event stored = e.event;
    stored.clear_hash();
    add(DeterministicBytes(stored));
    add(DeterministicBytes(state));
  }
  if (DeterministicBytes(state) != DeterministicBytes(simulation.state)) {
    return Fail("replaying the course did not give the simulated state");
  }

  const absl::string_view content = BlobDictionary();
  std::string dictionary(content.size() + 4096, '\0');
  ZDICT_params_t params{};
  params.compressionLevel = kLevel;
  params.dictID = kDictionaryId;
  const size_t n = ZDICT_finalizeDictionary(
      dictionary.data(), dictionary.size(), content.data(), content.size(),
      samples.data(), sizes.data(), static_cast<unsigned>(sizes.size()),
      params);
  if (ZDICT_isError(n)) return Fail(ZDICT_getErrorName(n));
  dictionary.resize(n);

  std::string inc = absl::StrFormat(
      "// Dictionary 2 of store/blob_codec.cc (zstd, schema 9): %d bytes,\n"
      "// zstd dictionary id %u, SHA-256 %s.\n"
      "// FROZEN: every value compressed from schema 9 on needs exactly these\n"
      "// bytes; blob_codec's tests pin the digest.\n"
      "//\n"
      "// Written once (2026-12-07) by bench/blob_dictionary.cc: dictionary "
      "1's\n"
      "// %d bytes as its content, with the entropy tables zstd's\n"
      "// ZDICT_finalizeDictionary (level %d) computed from the %d records "
      "the\n"
      "// store would pack for %s\n"
      "// on workflows/ipsrt-standard.yaml (every event as stored and the\n"
      "// snapshot after it).\n",
      dictionary.size(), kDictionaryId, Sha256Hex(dictionary), content.size(),
      kLevel, sizes.size(), absl::GetFlag(FLAGS_scenario));
  for (size_t i = 0; i < dictionary.size(); i += 16) {
    inc += "    \"";
    for (size_t j = i; j < i + 16 && j < dictionary.size(); ++j) {
      absl::StrAppendFormat(&inc, "\\x%02x",
                            static_cast<unsigned char>(dictionary[j]));
    }
    inc += "\"\n";
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fwrite(inc.data(), 1, inc.size(), stdout);
    return 0;
  }
  std::ofstream file(out, std::ios::binary | std::ios::trunc);
  file << inc;
  file.close();
  if (!file) return Fail(absl::StrCat("cannot write ", out));
  std::fprintf(stderr, "wrote %s: %zu bytes, %zu samples\n", out.c_str(),
               dictionary.size(), sizes.size());
  return 0;
}
