// Every plugin shipped under plugins/ builds from the installed plugin SDK
// alone, as a third-party plugin would: `cmake --install --component sdk`
// to a prefix, a copy of plugins/ configured as its own CMake project
// against that prefix (nothing else of the repository is reachable), and
// then the real ipsrtd loads every library so built.
//
// The out-of-tree tree lives in the build directory (sdk_consumer/), at a
// fixed path so ccache serves repeated runs.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;

// The libraries plugins/ builds and the name each plugin gives itself.
struct Shipped {
  const char* library;
  const char* name;
};
constexpr Shipped kShipped[] = {
    {"libipsrt_bedtime_check.so", "bedtime-check"},
    {"libipsrt_core_instruments.so", "core-instruments"},
    {"libipsrt_yaml_instruments.so", "yaml-instruments"},
    {"libipsrt_reminder_log.so", "reminder-log"},
    {"libipsrt_reminder_jsonl.so", "reminder-jsonl"},
    {"libipsrt_reminder_webhook.so", "reminder-webhook"},
    {"libipsrt_fhir_r4.so", "fhir-r4"},
    {"libipsrt_fhir_push.so", "fhir-push"},
    {"libipsrt_hl7v2_oru.so", "hl7v2-oru"},
};

void MustRun(const std::vector<std::string>& argv, const std::string& what) {
  absl::StatusOr<ProcessResult> r = RunProcess(argv, absl::Minutes(20));
  ASSERT_TRUE(r.ok()) << what << ": " << r.status();
  ASSERT_EQ(r->exit_code, 0) << what << " failed:\n" << r->out << r->err;
}

TEST(SdkPluginsTest, EveryShippedPluginBuildsFromTheInstalledSdkAlone) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(IPSRT_BUILD_DIR) / "sdk_consumer";
  const std::string prefix = (root / "prefix").string();
  const std::string source = (root / "plugins").string();
  const std::string build = (root / "build").string();
  fs::remove_all(root / "prefix");
  fs::remove_all(root / "plugins");
  fs::create_directories(root);

  // The SDK component only: no engine binaries, no engine sources.
  MustRun({"/usr/bin/cmake", "--install", IPSRT_BUILD_DIR, "--component", "sdk",
           "--prefix", prefix},
          "cmake --install --component sdk");
  EXPECT_FALSE(fs::exists(root / "prefix/bin"));
  fs::copy(fs::path(IPSRT_SOURCE_DIR) / "plugins", source,
           fs::copy_options::recursive);
  MustRun(
      {"/usr/bin/cmake", "-S", source, "-B", build, "-G", "Ninja",
       "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DCMAKE_PREFIX_PATH=" + prefix},
      "configure plugins/ against the installed SDK");
  MustRun({"/usr/bin/cmake", "--build", build}, "build plugins/");

  const fs::path out = fs::path(build) / "lib/ipsrt/plugins";
  for (const Shipped& p : kShipped) {
    ASSERT_TRUE(fs::exists(out / p.library)) << p.library;
  }

  // ipsrtd loads every one of them (each with the config it requires).
  TempDir run;
  std::string config = WriteConfig(run);
  ASSERT_TRUE(WriteFile(run.File("webhook.secret"),
                        "0123456789abcdef0123456789abcdef\n")
                  .ok());
  const std::string text = absl::StrCat(
      "  - path: ", (out / "libipsrt_bedtime_check.so").string(), "\n",
      "  - path: ", (out / "libipsrt_yaml_instruments.so").string(), "\n",
      "    config:\n      directories: [", IPSRT_WORKFLOWS_DIR,
      "/instruments]\n",
      "  - path: ", (out / "libipsrt_reminder_log.so").string(), "\n",
      "  - path: ", (out / "libipsrt_reminder_jsonl.so").string(), "\n",
      "    config:\n      path: reminders.jsonl\n",
      "  - path: ", (out / "libipsrt_reminder_webhook.so").string(), "\n",
      "    config:\n      url: http://127.0.0.1:9/hook\n",
      "      secret_file: webhook.secret\n",
      "  - path: ", (out / "libipsrt_fhir_r4.so").string(), "\n",
      "  - path: ", (out / "libipsrt_fhir_push.so").string(), "\n",
      "    config:\n      targets:\n        ehr:\n",
      "          base_url: http://127.0.0.1:9/fhir\n",
      "  - path: ", (out / "libipsrt_hl7v2_oru.so").string(), "\n",
      "    config:\n      sending_facility: Test\n",
      "      assigning_authority: TEST\n",
      // Reminders through one of them (not the default JSON Lines file,
      // whose reminder-jsonl would be loaded twice).
      "reminders:\n  channel: reminder-log\n");
  // The in-tree core-instruments of WriteConfig is swapped for the one
  // built here.
  absl::StatusOr<std::string> base = ReadFile(config);
  ASSERT_TRUE(base.ok()) << base.status();
  const std::string yaml = absl::StrReplaceAll(
      *base, {{"path: libipsrt_core_instruments.so",
               "path: " + (out / "libipsrt_core_instruments.so").string()}});
  ASSERT_TRUE(WriteFile(config, yaml + text).ok());

  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  ProcessResult plugins = RunCli((*server)->address(), {"plugins"});
  ASSERT_EQ(plugins.exit_code, 0) << plugins.err;
  for (const Shipped& p : kShipped) {
    EXPECT_THAT(plugins.out, HasSubstr(p.name));
  }
  ProcessResult score =
      RunCli((*server)->address(), {"score", "phq9", "1=1", "2=1", "3=1", "4=1",
                                    "5=1", "6=1", "7=1", "8=1", "9=0"});
  EXPECT_EQ(score.exit_code, 0) << score.err;
  EXPECT_THAT(score.out, HasSubstr("phq9.total = 8\n"));
}

}  // namespace
}  // namespace ipsrt::e2e
