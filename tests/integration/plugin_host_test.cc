// The plugin host with real plugin libraries: dlopen in process, and child
// processes under ipsrt-plugin-runner out of process. One tiny C plugin per
// failure mode (tests/plugins/faulty.c) and the SDK example
// (plugins/sdk/example) as the well-behaved plugin.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/hash.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/config.h"
#include "ipsrt/plugin/contract.h"
#include "ipsrt_plugin.h"
#include "plugin_host/out_of_process.h"
#include "plugin_host/registry.h"
#include "tests/testing/scoped_env.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;

namespace pv1 = ::ipsrt::plugin::v1;

std::string Faulty(const std::string& fault) {
  return absl::StrCat(IPSRT_TEST_PLUGIN_DIR, "/libfaulty-", fault, ".so");
}

const std::string kExample =
    absl::StrCat(IPSRT_PLUGIN_DIR, "/libipsrt_bedtime_check.so");

PluginHostOptions Options() {
  PluginHostOptions o;
  o.plugin_dir = IPSRT_PLUGIN_DIR;
  o.runner_path = IPSRT_RUNNER_BIN;
  o.health_interval = absl::Milliseconds(100);
  o.restart_backoff_initial = absl::Milliseconds(100);
  o.restart_backoff_max = absl::Seconds(1);
  return o;
}

PluginConfig Entry(const std::string& path,
                   const std::string& transport = "in_process") {
  PluginConfig c;
  c.path = path;
  c.transport = *ParsePluginTransport(transport);
  c.location = "ipsrtd.yaml:7:5";
  return c;
}

absl::Status LoadError(const PluginConfig& config) {
  auto registry = PluginRegistry::Load({config}, Options());
  return registry.status();
}

pv1::ScoreResponseRequest BedtimeAnswers(int bedtime, int rested) {
  pv1::ScoreResponseRequest request;
  request.mutable_response()->set_questionnaire_id("bedtime-check");
  (*request.mutable_response()->mutable_answers())["bedtime"] = bedtime;
  (*request.mutable_response()->mutable_answers())["rested"] = rested;
  return request;
}

// Waits until `ok()` holds or `limit` passes.
template <typename F>
bool Eventually(F ok, absl::Duration limit = absl::Seconds(10)) {
  absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    if (ok()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return ok();
}

// --- refusals at load, each with its exact message ---

// Socket directories of an ipsrtd that is gone (killed -9, it could not
// remove them) are removed by the next one; a live process's, another
// name's, an unnamed older one's and a symbolic link are left alone (the
// link's target too).
TEST(PluginSocketDirsTest, OnlyDirectoriesOfProcessesThatAreGoneAreSwept) {
  testing::TempDir dir;
  // A process id that names no running process: a child that has exited
  // and been reaped.
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  ASSERT_GT(gone, 0);
  ASSERT_EQ(waitpid(gone, nullptr, 0), gone);
  namespace fs = std::filesystem;
  const fs::path root(dir.path());
  const fs::path stale = root / absl::StrCat("ipsrt-plugin-", gone, "-Ab12Cd");
  fs::create_directory(stale);
  std::ofstream(stale / "plugin.sock") << "x";
  const fs::path live =
      root / absl::StrCat("ipsrt-plugin-", getppid(), "-Ef34Gh");
  fs::create_directory(live);
  const fs::path mine =
      root / absl::StrCat("ipsrt-plugin-", getpid(), "-Ij56Kl");
  fs::create_directory(mine);
  const fs::path older = root / "ipsrt-plugin-Mn78Op";  // no pid
  fs::create_directory(older);
  const fs::path other = root / absl::StrCat("other-plugin-", gone, "-Qr90St");
  fs::create_directory(other);
  const fs::path target = root / "target";
  fs::create_directory(target);
  std::ofstream(target / "keep") << "x";
  const fs::path link = root / absl::StrCat("ipsrt-plugin-", gone, "-Uv12Wx");
  fs::create_directory_symlink(target, link);

  EXPECT_EQ(SweepStalePluginSocketDirs(dir.path()), 1);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_TRUE(fs::exists(older));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_TRUE(fs::exists(target / "keep"));
  // A parent that cannot be read sweeps nothing.
  EXPECT_EQ(SweepStalePluginSocketDirs((root / "missing").string()), 0);
}

TEST(PluginLoadTest, AbiMajorMismatchNamesBothVersions) {
  absl::Status s = LoadError(Entry(Faulty("abi-major")));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      s.message(),
      absl::StrCat("ipsrtd.yaml:7:5: plugin library ", Faulty("abi-major"),
                   " was built for plugin ABI 2.1 but this engine "
                   "speaks ABI 1.1: rebuild it against plugin SDK 1.x"));
}

TEST(PluginLoadTest, NewerMinorIsRefused) {
  absl::Status s = LoadError(Entry(Faulty("newer-minor")));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      s.message(),
      absl::StrCat("ipsrtd.yaml:7:5: plugin library ", Faulty("newer-minor"),
                   " needs plugin ABI 1.8 but this engine speaks ABI "
                   "1.1 (older minor): upgrade ipsrtd or rebuild the "
                   "plugin against SDK 1.1"));
}

TEST(PluginLoadTest, WrongDescriptorSizeIsRefused) {
  absl::Status s = LoadError(Entry(Faulty("wrong-size")));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            absl::StrCat(
                "ipsrtd.yaml:7:5: plugin library ", Faulty("wrong-size"),
                ": its descriptor is ", sizeof(ipsrt_plugin_descriptor) - 8,
                " bytes but ABI 1.1 defines ", sizeof(ipsrt_plugin_descriptor),
                " bytes (built with a modified ipsrt_plugin.h?)"));
}

TEST(PluginLoadTest, OtherSdksGeneratedCodeIsRefusedNamingBothContracts) {
  // In process before any call, and out of process (the runner refuses it
  // before its handshake).
  absl::Status s = LoadError(Entry(Faulty("contract")));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            absl::StrCat("ipsrtd.yaml:7:5: plugin faulty-contract (",
                         Faulty("contract"),
                         ") was built with plugin SDK contract "
                         "0.0.9+00000000deadbeef but this engine's is ",
                         IPSRT_PLUGIN_CONTRACT,
                         ": its generated message code would not match the "
                         "engine's; rebuild it against this engine's SDK (",
                         IPSRT_PLUGIN_SDK_VERSION, ")"));
  // Out of process the runner refuses to load it and exits before its
  // handshake; its stderr (ipsrtd's) names both contracts.
  ::testing::internal::CaptureStderr();
  absl::Status out = LoadError(Entry(Faulty("contract"), "out_of_process"));
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.code(), absl::StatusCode::kUnavailable) << out;
  EXPECT_THAT(out.message(),
              HasSubstr("exited with status 3 before its handshake line"));
  EXPECT_THAT(err, HasSubstr(absl::StrCat(
                       "ipsrt-plugin-runner: plugin faulty-contract (",
                       Faulty("contract"),
                       ") was built with plugin SDK contract "
                       "0.0.9+00000000deadbeef but this engine's is ",
                       IPSRT_PLUGIN_CONTRACT)));
}

TEST(PluginLoadTest, MissingEntryPointFunction) {
  absl::Status s = LoadError(Entry(Faulty("no-entry")));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            absl::StrCat("ipsrtd.yaml:7:5: plugin library ", Faulty("no-entry"),
                         " is missing entry point ipsrt_plugin_entry (is it "
                         "an ipsrt plugin?)"));
}

TEST(PluginLoadTest, MissingEntryPointOfDeclaredKind) {
  absl::Status s = LoadError(Entry(Faulty("missing-score")));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            absl::StrCat("ipsrtd.yaml:7:5: plugin faulty-missing-score (",
                         Faulty("missing-score"),
                         ") is missing entry point score_response"));
}

TEST(PluginLoadTest, InitFailureCarriesThePluginsReason) {
  absl::Status s = LoadError(Entry(Faulty("init-fails")));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "ipsrtd.yaml:7:5: plugin faulty-init-fails failed to initialize: "
            "cannot open /nonexistent/instruments.db");
}

TEST(PluginLoadTest, RejectedConfigInBothTransports) {
  for (const std::string transport : {"in_process", "out_of_process"}) {
    PluginConfig c = Entry(Faulty("config-rejected"), transport);
    c.config_json = R"({"threshold": 12})";
    absl::Status s = LoadError(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << transport;
    std::string who = transport == "in_process" ? "faulty-config-rejected"
                                                : Faulty("config-rejected");
    EXPECT_EQ(s.message(),
              absl::StrCat("ipsrtd.yaml:7:5: plugin ", who,
                           " refused its configuration: config.threshold: "
                           "must be at most 10"))
        << transport;
  }
}

TEST(PluginLoadTest, ExampleRejectsBadSettingByName) {
  PluginConfig c = Entry("libipsrt_bedtime_check.so");  // bare name
  c.config_json = R"({"flag_at_or_below": 9})";
  absl::Status s = LoadError(c);
  EXPECT_EQ(s.message(),
            "ipsrtd.yaml:7:5: plugin bedtime-check refused its configuration: "
            "config.flag_at_or_below: must be a whole number from 0 to 3");
}

TEST(PluginLoadTest, Sha256IsCheckedWhenGiven) {
  absl::StatusOr<std::string> bytes = ReadFileToString(kExample);
  ASSERT_TRUE(bytes.ok());
  std::string actual = Sha256Hex(*bytes);

  PluginConfig good = Entry(kExample);
  good.sha256 = actual;
  EXPECT_TRUE(PluginRegistry::Load({good}, Options()).ok());

  PluginConfig bad = Entry(kExample);
  bad.sha256 = std::string(64, '0');
  absl::Status s = LoadError(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            absl::StrCat("ipsrtd.yaml:7:5: plugin file ", kExample,
                         " has sha256 ", actual, " but the config expects ",
                         std::string(64, '0'), "; refusing to load it"));
}

TEST(PluginLoadTest, MissingFileAndDuplicateName) {
  absl::Status missing = LoadError(Entry("/nonexistent/libx.so"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(),
            "ipsrtd.yaml:7:5: plugin file /nonexistent/libx.so does not exist");

  PluginConfig second = Entry(kExample, "out_of_process");
  second.location = "ipsrtd.yaml:9:5";
  auto registry = PluginRegistry::Load({Entry(kExample), second}, Options());
  EXPECT_EQ(registry.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(registry.status().message(),
            absl::StrCat("ipsrtd.yaml:9:5: a plugin named bedtime-check is "
                         "already loaded (from ",
                         kExample, "); plugin names must be unique"));
}

TEST(PluginLoadTest, ConfigFileEntriesParse) {
  absl::StatusOr<Config> c = ParseConfig(R"(
store:
  sqlite:
    path: db.sqlite
plugins:
  - path: libipsrt_bedtime_check.so
    config:
      flag_at_or_below: 2
      note: "text"
  - path: ./bin/plugin
    transport: out_of_process
    args: [--verbose]
    call_timeout: 2s
    handshake_timeout: 3s
    memory_limit_mb: 256
    cpu_limit_seconds: 60
)",
                                         "ipsrtd.yaml", "/etc/ipsrt");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->plugins.size(), 2u);
  EXPECT_EQ(c->plugins[0].path, "libipsrt_bedtime_check.so");
  EXPECT_EQ(c->plugins[0].config_json,
            R"({"flag_at_or_below":2,"note":"text"})");
  EXPECT_EQ(c->plugins[0].location, "ipsrtd.yaml:6:5");
  EXPECT_EQ(c->plugins[1].path, "/etc/ipsrt/bin/plugin");
  EXPECT_EQ(c->plugins[1].args, std::vector<std::string>{"--verbose"});
  EXPECT_EQ(c->plugins[1].call_timeout, absl::Seconds(2));
  EXPECT_EQ(c->plugins[1].handshake_timeout, absl::Seconds(3));
  EXPECT_EQ(c->plugins[1].memory_limit_mb, 256);
  EXPECT_EQ(c->plugins[1].cpu_limit_seconds, 60);
  EXPECT_EQ(c->plugins[0].max_concurrent_calls, 4);

  absl::StatusOr<Config> bad = ParseConfig(R"(
store:
  sqlite:
    path: db.sqlite
plugins:
  - path: libx.so
    transport: sideways
    sha256: abc
  - path: liby.so
    memory_limit_mb: 64
)",
                                           "ipsrtd.yaml", "/etc/ipsrt");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      bad.status().message(),
      HasSubstr("ipsrtd.yaml:7:16: error: plugins[0].transport: must be "
                "in_process or out_of_process"));
  EXPECT_THAT(
      bad.status().message(),
      HasSubstr("ipsrtd.yaml:8:13: error: plugins[0].sha256: must be 64 "
                "hexadecimal digits"));
  EXPECT_THAT(bad.status().message(),
              HasSubstr("error: plugins[1]: memory_limit_mb and "
                        "cpu_limit_seconds need transport out_of_process"));
}

TEST(OutOfProcessTest, MemoryLimitStopsALeakingPlugin) {
  // A plugin that allocates more than its RLIMIT_AS fails to grow: the
  // runner (a sizable gRPC server) cannot even start under 16 MiB.
  PluginConfig c = Entry(kExample, "out_of_process");
  c.memory_limit_mb = 16;
  absl::Status s = LoadError(c);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  // And a generous limit changes nothing.
  c.memory_limit_mb = 4096;
  auto registry = PluginRegistry::Load({c}, Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_TRUE((*registry)->Find("bedtime-check")->ListInstruments().ok());
}

// --- the example plugin answers the same through both transports ---

TEST(PluginCallTest, ExampleAnswersTheSameThroughBothTransports) {
  PluginConfig in = Entry(kExample);
  in.config_json = R"({"flag_at_or_below": 2})";
  auto a = PluginRegistry::Load({in}, Options());
  ASSERT_TRUE(a.ok()) << a.status();
  PluginConfig out = in;
  out.transport = PluginTransportKind::kOutOfProcess;
  auto b = PluginRegistry::Load({out}, Options());
  ASSERT_TRUE(b.ok()) << b.status();

  for (PluginRegistry* registry : {a->get(), b->get()}) {
    LoadedPlugin* plugin = registry->Find("bedtime-check");
    ASSERT_NE(plugin, nullptr);
    v1::PluginInfo info = plugin->Info();
    EXPECT_EQ(info.version(), "1.0.0");
    EXPECT_EQ(info.kinds(0), "questionnaire");
    EXPECT_EQ(info.health(), v1::PluginInfo::SERVING);

    auto instruments = plugin->ListInstruments();
    ASSERT_TRUE(instruments.ok()) << instruments.status();
    ASSERT_EQ(instruments->instruments_size(), 1);
    EXPECT_EQ(instruments->instruments(0).items_size(), 2);

    auto scored = plugin->ScoreResponse(BedtimeAnswers(2, 3));
    ASSERT_TRUE(scored.ok()) << scored.status();
    EXPECT_EQ(scored->scores().at("bedtime-check.total"), 5);
    EXPECT_EQ(scored->band(), "regular");
    // flag_at_or_below: 2 from the config reached the plugin.
    ASSERT_EQ(scored->flags_size(), 1);
    EXPECT_EQ(scored->flags(0), "bedtime-check.irregular");

    auto refused = plugin->ScoreResponse(BedtimeAnswers(7, 0));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(refused.status().message(),
              "answers[\"bedtime\"]: 7 is not one of the answer values 0, 1, "
              "2, 3");
  }
  EXPECT_EQ(a->get()->List()[0].transport(), v1::PluginInfo::IN_PROCESS);
  EXPECT_EQ(b->get()->List()[0].transport(), v1::PluginInfo::OUT_OF_PROCESS);
}

TEST(PluginCallTest, GarbageResponseIsInternalInBothTransports) {
  for (const std::string transport : {"in_process", "out_of_process"}) {
    auto registry =
        PluginRegistry::Load({Entry(Faulty("garbage"), transport)}, Options());
    ASSERT_TRUE(registry.ok()) << registry.status();
    auto scored = (*registry)->Find("faulty-garbage")->ScoreResponse({});
    EXPECT_EQ(scored.status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(scored.status().message(),
              "plugin faulty-garbage answered ScoreResponse with bytes that "
              "are not a valid ipsrt.plugin.v1.ScoreResponseResponse")
        << transport;
  }
}

// --- out of process: crash, hang, restart ---

TEST(OutOfProcessTest, CrashMidCallFailsUnavailableAndThePluginComesBack) {
  auto registry = PluginRegistry::Load(
      {Entry(Faulty("crash"), "out_of_process")}, Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("faulty-crash");
  int first_pid = OutOfProcessPid(plugin->transport());
  ASSERT_GT(first_pid, 0);

  auto scored = plugin->ScoreResponse({});  // the plugin aborts
  EXPECT_EQ(scored.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(scored.status().message(),
              HasSubstr("plugin faulty-crash is unavailable (ScoreResponse)"));

  // Reported down, then restarted by the supervisor as a new process.
  EXPECT_TRUE(Eventually([&] {
    return OutOfProcessPid(plugin->transport()) != first_pid &&
           OutOfProcessPid(plugin->transport()) > 0 &&
           plugin->Info().health() == v1::PluginInfo::SERVING;
  }));
  auto instruments = plugin->ListInstruments();
  EXPECT_TRUE(instruments.ok()) << instruments.status();
}

TEST(OutOfProcessTest, KilledPluginIsReportedNotServingThenRestarted) {
  PluginConfig c = Entry(kExample, "out_of_process");
  PluginHostOptions slow_restart = Options();
  slow_restart.restart_backoff_initial = absl::Milliseconds(500);
  auto registry = PluginRegistry::Load({c}, slow_restart);
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("bedtime-check");
  int pid = OutOfProcessPid(plugin->transport());
  ASSERT_EQ(kill(pid, SIGKILL), 0);

  EXPECT_TRUE(Eventually(
      [&] { return plugin->Info().health() == v1::PluginInfo::NOT_SERVING; }));
  auto refused = plugin->ScoreResponse(BedtimeAnswers(1, 1));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("is not serving: the plugin process was killed by "
                        "signal 9"));
  EXPECT_TRUE(Eventually(
      [&] { return plugin->Info().health() == v1::PluginInfo::SERVING; }));
  auto scored = plugin->ScoreResponse(BedtimeAnswers(1, 1));
  ASSERT_TRUE(scored.ok()) << scored.status();
  EXPECT_EQ(scored->scores().at("bedtime-check.total"), 2);
}

TEST(OutOfProcessTest, HungCallMissesItsDeadlineAndTheHungPluginIsReplaced) {
  PluginConfig c = Entry(Faulty("hang"), "out_of_process");
  c.call_timeout = absl::Milliseconds(300);
  auto registry = PluginRegistry::Load({c}, Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("faulty-hang");
  int first_pid = OutOfProcessPid(plugin->transport());

  for (int i = 0; i < 3; ++i) {
    absl::Time start = absl::Now();
    auto scored = plugin->ScoreResponse({});
    EXPECT_EQ(scored.status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_EQ(scored.status().message(),
              "plugin faulty-hang did not answer ScoreResponse within 300ms");
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  }
  // Three missed deadlines in a row: killed and restarted.
  EXPECT_TRUE(Eventually([&] {
    int pid = OutOfProcessPid(plugin->transport());
    return pid > 0 && pid != first_pid &&
           plugin->Info().health() == v1::PluginInfo::SERVING;
  }));
}

TEST(OutOfProcessTest, StoppedProcessFailsHealthChecksAndIsReplaced) {
  auto registry =
      PluginRegistry::Load({Entry(kExample, "out_of_process")}, Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("bedtime-check");
  int pid = OutOfProcessPid(plugin->transport());
  ASSERT_EQ(kill(pid, SIGSTOP), 0);  // alive but answering nothing
  EXPECT_TRUE(Eventually([&] {
    int now = OutOfProcessPid(plugin->transport());
    return now > 0 && now != pid &&
           plugin->Info().health() == v1::PluginInfo::SERVING;
  }));
  EXPECT_TRUE(plugin->ListInstruments().ok());
}

TEST(OutOfProcessTest, ExecutableThatDiesBeforeHandshake) {
  PluginConfig c = Entry("/bin/false", "out_of_process");
  absl::Status s = LoadError(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(),
            "ipsrtd.yaml:7:5: plugin /bin/false exited with status 1 before "
            "its handshake line");
}

// --- in process: call watchdog, concurrency cap, fatal signals ---

TEST(InProcessWatchdogTest, OverdueCallsAnswerDeadlineExceededOthersServe) {
  PluginConfig slow = Entry(Faulty("sleep"));
  slow.call_timeout = absl::Milliseconds(300);
  slow.max_concurrent_calls = 2;
  auto registry = PluginRegistry::Load({slow, Entry(Faulty("ok"))}, Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* sleeper = (*registry)->Find("faulty-sleep");
  LoadedPlugin* other = (*registry)->Find("faulty-ok");

  // Three concurrent calls into a 1.5 s sleep with a 300 ms deadline and
  // two call slots: each caller is answered at its deadline (an answer
  // after the sleep would be OK, not DEADLINE_EXCEEDED).
  std::vector<absl::Status> results(3);
  std::vector<std::thread> callers;
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back(
        [&, i] { results[i] = sleeper->ScoreResponse({}).status(); });
  }
  // Meanwhile another plugin keeps answering.
  EXPECT_TRUE(other->ListInstruments().ok());
  for (auto& t : callers) t.join();
  int slots_busy = 0;
  for (const absl::Status& s : results) {
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_THAT(s.message(), HasSubstr("plugin faulty-sleep did not answer "
                                       "ScoreResponse within 300ms"));
    if (absl::StrContains(s.message(), "call slots stayed busy")) {
      ++slots_busy;
    }
  }
  EXPECT_EQ(slots_busy, 1);  // the third caller never got a slot

  // While an overdue call runs the plugin is NOT_SERVING and refuses fast.
  EXPECT_EQ(sleeper->Info().health(), v1::PluginInfo::NOT_SERVING);
  auto refused = sleeper->ScoreResponse({});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("is not serving: a ScoreResponse call overran its "
                        "300ms deadline and is still running"));
  EXPECT_TRUE(other->ListInstruments().ok());
  // Once the overdue calls return, it serves again.
  EXPECT_TRUE(Eventually(
      [&] { return sleeper->Info().health() == v1::PluginInfo::SERVING; }));
}

TEST(InProcessWatchdogDeathTest, FatalSignalInAPluginCallNamesPluginAndCall) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto registry =
            PluginRegistry::Load({Entry(Faulty("crash"))}, Options());
        if (registry.ok()) {
          (*registry)->Find("faulty-crash")->ScoreResponse({}).IgnoreError();
        }
      },
      "fatal signal 6 \\(ABRT\\) in in-process plugin faulty-crash during "
      "ScoreResponse");
}

// --- an executable plugin in another language ---

TEST(ExecutablePluginTest, NodeExampleServesThroughTheHost) {
  // plugins/examples/node/sleep_check.cjs with the interop tests' grpc-js
  // (make test installs it) and the repository's .proto files, as the
  // installed share/ipsrt/proto would provide them.
  const std::string modules =
      std::string(IPSRT_SOURCE_DIR) + "/tests/interop/node_modules";
  ASSERT_TRUE(std::filesystem::exists(modules + "/@grpc/grpc-js"))
      << "run scripts/install-interop-deps.sh";
  PluginConfig c = Entry(IPSRT_NODE_BIN, "out_of_process");
  c.args = {std::string(IPSRT_SOURCE_DIR) +
            "/plugins/examples/node/sleep_check.cjs"};
  auto registry = [&] {
    testing::ScopedEnv node_path("NODE_PATH", modules);
    testing::ScopedEnv proto_dir("IPSRT_PROTO_DIR",
                                 std::string(IPSRT_SOURCE_DIR) + "/proto");
    return PluginRegistry::Load({c}, Options());
  }();
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("node-sleep-check");
  ASSERT_NE(plugin, nullptr);
  EXPECT_EQ(plugin->Info().health(), v1::PluginInfo::SERVING);

  auto listed = plugin->ListInstruments();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->instruments_size(), 1);
  EXPECT_EQ(listed->instruments(0).id(), "node-sleep-check");

  pv1::ScoreResponseRequest request;
  request.mutable_response()->set_questionnaire_id("node-sleep-check");
  (*request.mutable_response()->mutable_answers())["hours"] = 5;
  (*request.mutable_response()->mutable_answers())["rested"] = 1;
  auto scored = plugin->ScoreResponse(request);
  ASSERT_TRUE(scored.ok()) << scored.status();
  EXPECT_EQ(scored->scores().at("node-sleep-check.total"), 6);
  EXPECT_EQ(scored->band(), "short");

  request.mutable_response()->mutable_answers()->erase("rested");
  auto refused = plugin->ScoreResponse(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(), "answers[\"rested\"]: is required");
}

// --- out of process: process trees (a wrapper script without exec) ---

// True while `pid` runs (a zombie counts as gone).
bool Alive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() &&
         line[paren + 2] != 'Z';
}

// The pid a script wrote to `file` (0 until it has).
int PidFrom(const std::string& file) {
  std::ifstream in(file);
  int pid = 0;
  in >> pid;
  return pid;
}

// A plugin entry that runs `body` with /bin/sh from a script in `dir`;
// $RUNNER and $PLUGIN name the plugin runner and `plugin`.
PluginConfig Script(const testing::TempDir& dir, const std::string& body,
                    const std::string& plugin) {
  std::string path = dir.File("run.sh");
  std::ofstream(path) << "RUNNER='" << IPSRT_RUNNER_BIN << "'\nPLUGIN='"
                      << plugin << "'\ncd '" << dir.path() << "'\n"
                      << body << "\n";
  PluginConfig c = Entry("/bin/sh", "out_of_process");
  c.args = {path};
  c.handshake_timeout = absl::Seconds(5);
  return c;
}

TEST(ProcessTreeTest, HungGrandchildIsKilledWithItsGroupAndCallsStayBounded) {
  testing::TempDir dir;
  PluginConfig c = Script(dir,
                          "\"$RUNNER\" \"$PLUGIN\" &\n"
                          "echo $! > runner.pid\nwait",
                          Faulty("hang"));
  c.call_timeout = absl::Milliseconds(300);
  auto registry = PluginRegistry::Load({c}, Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("faulty-hang");
  const int shell = OutOfProcessPid(plugin->transport());
  const int runner = PidFrom(dir.File("runner.pid"));
  ASSERT_GT(runner, 0);
  ASSERT_NE(runner, shell);

  // Calls and health answers while the plugin hangs and is replaced.
  std::atomic<bool> stop{false};
  std::atomic<int> health_reads{0};
  std::thread watcher([&] {
    while (!stop) {
      plugin->Info();
      ++health_reads;
      absl::SleepFor(absl::Milliseconds(10));
    }
  });
  for (int i = 0; i < 4; ++i) {
    absl::Time start = absl::Now();
    auto scored = plugin->ScoreResponse({});
    EXPECT_FALSE(scored.ok());
    EXPECT_LT(absl::Now() - start, absl::Seconds(20)) << "call " << i;
  }
  // Three missed deadlines: the whole group went, the runner with it.
  EXPECT_TRUE(Eventually([&] { return !Alive(runner); }));
  EXPECT_TRUE(Eventually([&] {
    int pid = OutOfProcessPid(plugin->transport());
    return pid > 0 && pid != shell &&
           plugin->Info().health() == v1::PluginInfo::SERVING;
  }));
  stop = true;
  watcher.join();
  EXPECT_GT(health_reads.load(), 0);
  const int second_runner = PidFrom(dir.File("runner.pid"));
  (*registry)->Shutdown();
  EXPECT_TRUE(Eventually([&] { return !Alive(second_runner); }));
}

TEST(ProcessTreeTest, CrashingGrandchildIsRestarted) {
  testing::TempDir dir;
  auto registry = PluginRegistry::Load(
      {Script(dir, "\"$RUNNER\" \"$PLUGIN\"", Faulty("crash"))}, Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("faulty-crash");
  const int shell = OutOfProcessPid(plugin->transport());
  auto scored = plugin->ScoreResponse({});  // the runner aborts; sh exits
  EXPECT_EQ(scored.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Eventually([&] {
    int pid = OutOfProcessPid(plugin->transport());
    return pid > 0 && pid != shell &&
           plugin->Info().health() == v1::PluginInfo::SERVING;
  }));
  EXPECT_TRUE(plugin->ListInstruments().ok());
}

TEST(ProcessTreeTest, SilentWrapperFailsTheHandshakePromptlyAndIsKilled) {
  testing::TempDir dir;
  PluginConfig c =
      Script(dir, "sleep 300 &\necho $! > sleep.pid\nwait", Faulty("ok"));
  c.handshake_timeout = absl::Milliseconds(500);
  absl::Time start = absl::Now();
  absl::Status s = LoadError(c);
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(),
            "ipsrtd.yaml:7:5: plugin /bin/sh printed no handshake line within "
            "500ms");
  const int sleeper = PidFrom(dir.File("sleep.pid"));
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(Eventually([&] { return !Alive(sleeper); }));
}

TEST(ProcessTreeTest, BadHandshakeWithAGrandchildHoldingStdoutFailsPromptly) {
  testing::TempDir dir;
  PluginConfig c = Script(
      dir, "sleep 300 &\necho $! > sleep.pid\necho 'HELLO|1|tcp:x'\nwait",
      Faulty("ok"));
  absl::Time start = absl::Now();
  absl::Status s = LoadError(c);
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("printed a malformed handshake line"));
  EXPECT_TRUE(
      Eventually([&] { return !Alive(PidFrom(dir.File("sleep.pid"))); }));
}

TEST(ProcessTreeTest, ShutdownTakesTheGroupAndNeverWaitsOnAnEscapedDaemon) {
  testing::TempDir dir;
  // One child stays in the group; the "daemon" leaves it (setsid) and keeps
  // the plugin's stdout open.
  PluginConfig c = Script(dir,
                          "sleep 300 &\necho $! > member.pid\n"
                          "setsid sleep 300 &\necho $! > daemon.pid\n"
                          "\"$RUNNER\" \"$PLUGIN\"",
                          Faulty("ok"));
  auto registry = PluginRegistry::Load({c}, Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  const int member = PidFrom(dir.File("member.pid"));
  const int daemon = PidFrom(dir.File("daemon.pid"));
  ASSERT_GT(member, 0);
  ASSERT_GT(daemon, 0);
  absl::Time start = absl::Now();
  registry->reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_TRUE(Eventually([&] { return !Alive(member); }));
  EXPECT_TRUE(Alive(daemon));  // outside the group: documented limit
  kill(daemon, SIGKILL);
}

TEST(ProcessTreeTest, KillAllPluginProcessGroupsTakesGrandchildren) {
  testing::TempDir dir;
  auto registry = PluginRegistry::Load(
      {Script(dir, "\"$RUNNER\" \"$PLUGIN\" &\necho $! > runner.pid\nwait",
              Faulty("ok"))},
      Options());
  ASSERT_TRUE(registry.ok()) << registry.status();
  const int runner = PidFrom(dir.File("runner.pid"));
  ASSERT_TRUE(Alive(runner));
  KillAllPluginProcessGroups();  // what a fatal signal in ipsrtd does
  EXPECT_TRUE(Eventually([&] { return !Alive(runner); }));
}

}  // namespace
}  // namespace ipsrt
