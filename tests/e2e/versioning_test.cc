// Template versioning with the real binaries: SIGHUP reload keeps the last
// good set on errors, a new version loads beside the old one, and
// `ipsrt migrate` moves enrollments with an explicit stage mapping.
#include <signal.h>

#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;

// WaitForLog polls the server's log for `text` (bounded).
bool WaitForLog(Ipsrtd& server, const std::string& text) {
  return WaitFor(
      [&] { return absl::StrContains(server.process().Log(), text); },
      absl::Seconds(10), absl::Milliseconds(20));
}

std::string Enroll(const std::string& server, const std::string& patient) {
  ProcessResult r = RunCli(
      server, {"enroll", "--patient=" + patient, "--workflow=ipsrt-standard",
               "--time_zone=Europe/London", "--clinician=Practitioner/1",
               "--request_id=enroll-" + patient.substr(8)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string name = r.out.substr(6, r.out.find('\n') - 6);  // "name: ..."
  return name;
}

TEST(VersioningTest, ReloadKeepsLastGoodSetAndMigrateMovesEnrollments) {
  TempDir dir;
  std::string workflows = dir.File("workflows");
  std::filesystem::create_directories(workflows);
  std::filesystem::copy_file(
      std::string(IPSRT_WORKFLOWS_DIR) + "/ipsrt-standard.yaml",
      workflows + "/ipsrt-standard.yaml");
  ASSERT_TRUE(
      WriteFile(
          dir.File("ipsrtd.yaml"),
          absl::StrCat("server:\n  listen: 127.0.0.1:0\n"
                       "store:\n  sqlite:\n    path: ipsrt.db\n"
                       "workflows:\n  directories: [",
                       workflows, "]\n",
                       "plugins:\n  - path: libipsrt_core_instruments.so\n"))
          .ok());
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
      Ipsrtd::Start(dir.File("ipsrtd.yaml"));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  std::string first = Enroll(address, "Patient/a");
  std::string second = Enroll(address, "Patient/b");

  // A broken template: the reload is refused whole, the server serves on.
  ASSERT_TRUE(
      WriteFile(workflows + "/broken.yaml", "id: broken\nversion: one\n").ok());
  (*server)->process().Signal(SIGHUP);
  ASSERT_TRUE(WaitForLog(**server, "workflow reload refused"));
  EXPECT_THAT((*server)->process().Log(), HasSubstr("broken.yaml:2:10: error: "
                                                    "version: must be an "
                                                    "integer"));
  EXPECT_EQ(RunCli(address, {"get", first}).exit_code, 0);
  // The same through the admin RPC.
  ProcessResult refused = RunCli(address, {"reload"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.out, HasSubstr("broken.yaml:2:10: error: version: must "
                                     "be an integer"));
  EXPECT_THAT(refused.out, HasSubstr("refused: the last good set keeps "
                                     "serving; serving: ipsrt-standard@1"));
  std::filesystem::remove(workflows + "/broken.yaml");

  // Version 2 renames the first stage; it loads beside version 1.
  absl::StatusOr<std::string> v1_text =
      ReadFile(workflows + "/ipsrt-standard.yaml");
  ASSERT_TRUE(v1_text.ok());
  std::string v2 = absl::StrReplaceAll(
      *v1_text, {{"version: 1", "version: 2"}, {"id: initial", "id: intake"}});
  ASSERT_TRUE(WriteFile(workflows + "/ipsrt-standard.yaml", v2).ok());
  (*server)->process().Signal(SIGHUP);
  ASSERT_TRUE(WaitForLog(**server, "SIGHUP: workflows reloaded"));
  ProcessResult reloaded = RunCli(address, {"reload"});
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.out;
  EXPECT_THAT(reloaded.out, HasSubstr("reloaded; serving: ipsrt-standard@2 "
                                      "ipsrt-standard@1"));

  // Enrollments keep their version; a mapping is required for every stage.
  ProcessResult got = RunCli(address, {"get", first, "--json"});
  EXPECT_THAT(got.out, HasSubstr("\"workflow_version\":1"));
  ProcessResult unmapped =
      RunCli(address, {"migrate", "--workflow=ipsrt-standard",
                       "--from_version=1", "--to_version=2", "--dry_run"});
  EXPECT_EQ(unmapped.exit_code, 1);
  EXPECT_THAT(unmapped.err,
              HasSubstr("INVALID_ARGUMENT: stage_mapping: no mapping for "
                        "stage \"initial\" (2 enrollments are in it)"));
  ProcessResult dry = RunCli(
      address, {"migrate", "--workflow=ipsrt-standard", "--from_version=1",
                "--to_version=2", "--map=initial=intake", "--dry_run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr(first + "  initial -> intake\n"));
  // Beside them, what changes for those patients (ipsrt diff's lines).
  EXPECT_THAT(dry.out, HasSubstr("changes from version 1 to 2 (3):\n"
                                 "  stage initial removed (Initial stage "
                                 "(intake))\n  stage intake added (Initial "
                                 "stage (intake), sessions every P1W, 8 "
                                 "tasks)\n"));
  EXPECT_THAT(dry.out, HasSubstr("enrollments that would move:\n"));
  EXPECT_THAT(dry.out, HasSubstr("dry run: would move 2 enrollment(s) from "
                                 "ipsrt-standard@1 to ipsrt-standard@2"));
  EXPECT_THAT(RunCli(address, {"get", first, "--json"}).out,
              HasSubstr("\"workflow_version\":1"));

  std::vector<std::string> migrate = {"migrate",
                                      "--workflow=ipsrt-standard",
                                      "--from_version=1",
                                      "--to_version=2",
                                      "--map=initial=intake",
                                      "--reason=renamed intake stage",
                                      "--request_id=mig-1"};
  ProcessResult moved = RunCli(address, migrate);
  EXPECT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_THAT(moved.out, HasSubstr("moved 2 enrollment(s)"));
  ProcessResult again = RunCli(address, migrate);
  EXPECT_THAT(again.out, HasSubstr("moved 0 enrollment(s)"));
  for (const std::string& name : {first, second}) {
    ProcessResult after = RunCli(address, {"get", name, "--json"});
    EXPECT_THAT(after.out, HasSubstr("\"workflow_version\":2"));
    EXPECT_THAT(after.out, HasSubstr("\"stage\":\"intake\""));
  }
  ProcessResult timeline = RunCli(address, {"timeline", first});
  EXPECT_EQ(timeline.exit_code, 0) << timeline.err;
  EXPECT_THAT(timeline.out, HasSubstr("#2  "));
  EXPECT_THAT(timeline.out, HasSubstr("workflow.migrated"));
  EXPECT_THAT(timeline.out,
              HasSubstr("STAGE_CHANGED        intake initial -> intake "
                        "(migrated from ipsrt-standard@1)"));
  ProcessResult tasks = RunCli(address, {"tasks", first});
  EXPECT_EQ(tasks.exit_code, 0) << tasks.err;
  EXPECT_THAT(tasks.out, HasSubstr("history  History of mood episodes"));
  EXPECT_THAT(tasks.out, HasSubstr("PATIENT"));
  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);
}

}  // namespace
}  // namespace ipsrt::e2e
