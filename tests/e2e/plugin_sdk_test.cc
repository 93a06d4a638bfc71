// A plugin author's path, end to end: install the SDK with cmake --install,
// build the example plugin out of tree against it (CMake package and
// pkg-config), load it into the real ipsrtd in process and out of process,
// and use it through the real ipsrt CLI. Then kill the out-of-process plugin
// in the middle of a call and check that ipsrtd keeps serving and the
// plugin comes back.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;

// Under ctest every test is its own process, so the (slow) install and
// out-of-tree build happen in the one test that needs them; the kill test
// uses the same example as built in the tree.
class PluginSdkTest : public ::testing::Test {
 protected:
  static void InstallSdkAndBuildExample() {
    dir_ = new TempDir();
    prefix_ = dir_->File("prefix");
    ProcessResult install = MustRun(
        {"/usr/bin/cmake", "--install", IPSRT_BUILD_DIR, "--prefix", prefix_},
        "cmake --install");
    // Out of tree: a copy of the example, nothing else of the repository.
    std::filesystem::copy(IPSRT_EXAMPLE_DIR, dir_->File("example"),
                          std::filesystem::copy_options::recursive);
    MustRun(
        {"/usr/bin/cmake", "-S", dir_->File("example"), "-B",
         dir_->File("build"), "-G", "Ninja",
         "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DCMAKE_PREFIX_PATH=" + prefix_},
        "configure the example");
    MustRun({"/usr/bin/cmake", "--build", dir_->File("build")},
            "build the example");
    library_ = dir_->File("build/libipsrt_bedtime_check.so");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string InTreeExample() {
    return absl::StrCat(IPSRT_BUILD_DIR,
                        "/lib/ipsrt/plugins/libipsrt_bedtime_check.so");
  }

  static ProcessResult MustRun(const std::vector<std::string>& argv,
                               const std::string& what) {
    absl::StatusOr<ProcessResult> r = RunProcess(argv, absl::Minutes(3));
    if (!r.ok() || r->exit_code != 0) {
      ADD_FAILURE() << what << " failed: "
                    << (r.ok() ? r->out + r->err : r.status().ToString());
      return ProcessResult();
    }
    return *r;
  }

  // A config beside a fresh database that loads `plugins_yaml`.
  static std::string ConfigWith(const TempDir& dir,
                                const std::string& plugins_yaml) {
    std::string path = WriteConfig(dir);
    // WriteConfig ends with the plugins list (core-instruments): the
    // entries given join it.
    std::string entries = plugins_yaml;
    if (absl::StartsWith(entries, "plugins:\n")) {
      entries = entries.substr(std::string("plugins:\n").size());
    }
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_TRUE(WriteFile(path, text.str() + entries).ok());
    return path;
  }

  static void ExpectServesInProcess();
  static void ExpectServesOutOfProcess();
  static void ExpectBadConfigStopsStart();

  static TempDir* dir_;
  static std::string prefix_;
  static std::string library_;
};

TempDir* PluginSdkTest::dir_ = nullptr;
std::string PluginSdkTest::prefix_;
std::string PluginSdkTest::library_;

// The children ipsrtd started (its plugin processes).
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream in(task.path() / "children");
    pid_t child;
    while (in >> child) out.push_back(child);
  }
  return out;
}

TEST_F(PluginSdkTest, OutOfTreePluginBuiltAgainstInstalledSdk) {
  InstallSdkAndBuildExample();
  ASSERT_FALSE(HasFailure());
  for (const char* file :
       {"include/ipsrt_plugin.h", "include/ipsrt/plugin/plugin.h",
        "include/ipsrt/plugin/v1/plugin.pb.h", "lib/libipsrt_proto.so.1",
        "lib/cmake/ipsrt_plugin_sdk/ipsrt_plugin_sdkConfig.cmake",
        "lib/pkgconfig/ipsrt-plugin-sdk.pc", "bin/ipsrtd",
        "bin/ipsrt-plugin-runner",
        "lib/ipsrt/plugins/libipsrt_bedtime_check.so"}) {
    EXPECT_TRUE(std::filesystem::exists(prefix_ + "/" + file)) << file;
  }
  EXPECT_FALSE(std::filesystem::exists(
      prefix_ + "/include/ipsrt/v1/enrollment.grpc.pb.h"));
  // The contract as .proto files for plugins in other languages: the plugin
  // service, the messages it imports and grpc.health.v1 compile from the
  // installed directory alone (the well-known types come with protoc).
  const std::string proto_dir = prefix_ + "/share/ipsrt/proto";
  for (const char* file :
       {"ipsrt/plugin/v1/plugin.proto", "ipsrt/v1/enrollment.proto",
        "ipsrt/v1/questionnaire.proto", "grpc/health/v1/health.proto"}) {
    EXPECT_TRUE(std::filesystem::exists(proto_dir + "/" + file)) << file;
  }
  MustRun(
      {"/usr/bin/protoc", "-I" + proto_dir,
       "--descriptor_set_out=" + dir_->File("plugin.pb"), "--include_imports",
       "ipsrt/plugin/v1/plugin.proto", "grpc/health/v1/health.proto"},
      "protoc over the installed .proto files");
  // pkg-config route: one compiler call.
  std::string out = dir_->File("libpkgconfig_bedtime.so");
  ProcessResult cflags =
      MustRun({"/bin/sh", "-c",
               absl::StrCat("PKG_CONFIG_PATH=", prefix_,
                            "/lib/pkgconfig pkg-config --cflags --libs "
                            "ipsrt-plugin-sdk")},
              "pkg-config");
  std::vector<std::string> argv = {"/usr/bin/g++",
                                   "-std=c++20",
                                   "-shared",
                                   "-fPIC",
                                   "-fvisibility=hidden",
                                   "-Wl,--no-undefined",
                                   dir_->File("example/bedtime_check.cc"),
                                   "-o",
                                   out};
  for (absl::string_view flag :
       absl::StrSplit(cflags.out, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    argv.emplace_back(flag);
  }
  MustRun(argv, "g++ with pkg-config flags");
  EXPECT_TRUE(std::filesystem::exists(out));

  ExpectServesInProcess();
  ExpectServesOutOfProcess();
  ExpectBadConfigStopsStart();
}

void PluginSdkTest::ExpectServesInProcess() {
  SCOPED_TRACE("in process");
  TempDir run;
  std::string config = ConfigWith(
      run, absl::StrCat("plugins:\n  - path: ", library_,
                        "\n    config:\n      flag_at_or_below: 2\n"));
  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  std::string address = (*server)->address();

  ProcessResult plugins = RunCli(address, {"plugins"});
  EXPECT_EQ(plugins.exit_code, 0) << plugins.err;
  EXPECT_THAT(plugins.out, HasSubstr("bedtime-check"));
  EXPECT_THAT(plugins.out, HasSubstr("in_process     SERVING"));

  ProcessResult list = RunCli(address, {"questionnaire", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("bedtime-check  v1   2   items"));

  ProcessResult show =
      RunCli(address, {"questionnaire", "show", "bedtime-check"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("    3  6-7 nights"));

  ProcessResult score =
      RunCli(address, {"score", "bedtime-check", "bedtime=2", "rested=3"});
  EXPECT_EQ(score.exit_code, 0) << score.err;
  EXPECT_EQ(score.out,
            "bedtime-check.bedtime = 2\nbedtime-check.rested = 3\n"
            "bedtime-check.total = 5\nband: regular\n"
            "flag: bedtime-check.irregular\n");

  ProcessResult bad =
      RunCli(address, {"score", "bedtime-check", "bedtime=2", "naps=1"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err,
              HasSubstr("error: INVALID_ARGUMENT: response.answers[\"naps\"]: "
                        "not an item of bedtime-check"));
}

void PluginSdkTest::ExpectServesOutOfProcess() {
  SCOPED_TRACE("out of process");
  TempDir run;
  std::string config =
      ConfigWith(run, absl::StrCat("plugins:\n  - path: ", library_,
                                   "\n    transport: out_of_process\n"));
  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  std::string address = (*server)->address();
  EXPECT_THAT(RunCli(address, {"plugins"}).out,
              HasSubstr("out_of_process SERVING"));
  ProcessResult score =
      RunCli(address, {"score", "bedtime-check", "bedtime=2", "rested=3"});
  EXPECT_EQ(score.exit_code, 0) << score.err;
  EXPECT_EQ(score.out,
            "bedtime-check.bedtime = 2\nbedtime-check.rested = 3\n"
            "bedtime-check.total = 5\nband: regular\n");
}

void PluginSdkTest::ExpectBadConfigStopsStart() {
  SCOPED_TRACE("bad plugin config");
  TempDir run;
  std::string config = ConfigWith(
      run, absl::StrCat("plugins:\n  - path: ", library_,
                        "\n    config:\n      flag_at_or_below: 9\n"));
  auto server = Ipsrtd::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr(absl::StrCat(
                  "ipsrtd: plugin refused: ", config,
                  ":17:5: plugin bedtime-check refused its configuration: "
                  "config.flag_at_or_below: must be a whole number from 0 to "
                  "3")));
}

TEST_F(PluginSdkTest, OutOfProcessPluginKilledMidCallComesBack) {
  TempDir run;
  std::string config =
      ConfigWith(run, absl::StrCat("plugins:\n  - path: ", InTreeExample(),
                                   "\n    transport: out_of_process\n"
                                   "    call_timeout: 20s\n"));
  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  std::string address = (*server)->address();

  ProcessResult plugins = RunCli(address, {"plugins"});
  EXPECT_THAT(plugins.out, HasSubstr("out_of_process SERVING"));
  ProcessResult score =
      RunCli(address, {"score", "bedtime-check", "bedtime=3", "rested=3"});
  EXPECT_THAT(score.out, HasSubstr("bedtime-check.total = 6\nband: regular\n"));

  std::vector<pid_t> children = ChildrenOf((*server)->process().pid());
  ASSERT_EQ(children.size(), 1u);
  pid_t plugin = children[0];

  // Freeze the plugin so the next call is in flight, start the call, then
  // kill the plugin under it.
  ASSERT_EQ(kill(plugin, SIGSTOP), 0);
  auto in_flight =
      ChildProcess::Spawn({IPSRT_BIN, "--server=" + address, "--timeout=30s",
                           "score", "bedtime-check", "bedtime=1", "rested=1"},
                          run.File("in_flight.log"));
  ASSERT_TRUE(in_flight.ok());
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_EQ(kill(plugin, SIGKILL), 0);
  std::optional<int> status = (*in_flight)->WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_THAT((*in_flight)->Log(),
              HasSubstr("error: UNAVAILABLE: plugin bedtime-check is "
                        "unavailable (ScoreResponse)"));

  // ipsrtd serves everything else meanwhile.
  ProcessResult health = RunCli(address, {"health"});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  ProcessResult enroll =
      RunCli(address, {"enroll", "--patient=Patient/kill-test",
                       "--workflow=ipsrt-standard", "--time_zone=UTC",
                       "--clinician=Practitioner/1"});
  EXPECT_EQ(enroll.exit_code, 0) << enroll.err;

  // The plugin comes back as a new process and answers again.
  ProcessResult again;
  WaitFor(
      [&] {
        again = RunCli(address,
                       {"score", "bedtime-check", "bedtime=1", "rested=1"});
        return again.exit_code == 0;
      },
      absl::Seconds(15), absl::Milliseconds(200));
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("bedtime-check.total = 2\n"));
  children = ChildrenOf((*server)->process().pid());
  ASSERT_EQ(children.size(), 1u);
  EXPECT_NE(children[0], plugin);
  EXPECT_THAT(RunCli(address, {"plugins"}).out,
              HasSubstr("out_of_process SERVING"));
  EXPECT_THAT((*server)->process().Log(),
              HasSubstr("plugin bedtime-check is not serving: the plugin "
                        "process was killed by signal 9"));

  // SIGTERM stops ipsrtd and its plugin process.
  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(WEXITSTATUS(*exit), 0);
  EXPECT_NE(kill(children[0], 0), 0);
}

}  // namespace
}  // namespace ipsrt::e2e
