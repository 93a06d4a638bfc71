// `ipsrt export` against the built ipsrtd, with tests/plugins'
// test-exporter loaded from the configuration like any exporter plugin.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ipsrtd with test-exporter loaded (`entry` follows its `path:` line in the
// plugins list) and `enrollments` enrollments created through the CLI.
class TestExporterFixture : public ::testing::Test {
 protected:
  void Start(const std::string& entry, int enrollments) {
    const std::string config = WriteConfig(dir_);
    absl::StatusOr<std::string> yaml = ReadFile(config);
    ASSERT_TRUE(yaml.ok());
    ASSERT_TRUE(
        WriteFile(
            config,
            absl::StrCat(*yaml, "  - path: ", IPSRT_BUILD_DIR,
                         "/tests/plugins/libipsrt_test_exporter.so\n", entry))
            .ok());
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    for (int i = 0; i < enrollments; ++i) {
      ProcessResult r =
          RunCli(server_->address(),
                 {"enroll", absl::StrCat("--patient=Patient/", i),
                  "--workflow=ipsrt-standard", "--time_zone=Europe/London",
                  "--clinician=Practitioner/1",
                  absl::StrCat("--request_id=e-", i), "--json"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      size_t at = r.out.find("tenants/default/enrollments/");
      ASSERT_NE(at, std::string::npos) << r.out;
      names_.push_back(r.out.substr(at, r.out.find('"', at) - at));
    }
  }

  TempDir dir_;
  std::unique_ptr<Ipsrtd> server_;
  std::vector<std::string> names_;
};

class ExportCliTest : public TestExporterFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(
        Start("export:\n"
              "  root: exports\n"
              "  targets:\n"
              "    ehr:\n"
              "      deliverer: test-exporter\n"
              "      format: test-transaction\n",
              3));
  }
};

TEST_F(ExportCliTest, BulkShowsProgressThenFilesAndCounts) {
  ProcessResult r = RunCli(
      server_->address(),
      {"export", "bulk", "--output-dir=runs/one", "--format=test-resources"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Not a terminal: plain progress lines on stderr.
  EXPECT_THAT(r.err, HasSubstr("progress: 0/3 enrollments (0%)\n"));
  EXPECT_THAT(r.err, HasSubstr("progress: 3/3 enrollments (100%), finished\n"));
  EXPECT_THAT(r.err, Not(HasSubstr("\r")));
  EXPECT_THAT(r.out, HasSubstr("Enrollment                            3  "
                               "runs/one/Enrollment.ndjson\n"));
  EXPECT_THAT(r.out, HasSubstr("EnrollmentCreated                     3  "
                               "runs/one/EnrollmentCreated.ndjson\n"));
  EXPECT_THAT(r.out, HasSubstr("exported 3 enrollment(s), 6 resource(s) in 2 "
                               "file(s) to runs/one (with manifest.json)\n"));
  const std::string out = dir_.File("exports/runs/one");
  absl::StatusOr<std::string> lines = ReadFile(out + "/Enrollment.ndjson");
  ASSERT_TRUE(lines.ok());
  EXPECT_EQ(
      std::vector<std::string>(absl::StrSplit(*lines, '\n', absl::SkipEmpty()))
          .size(),
      3u);
  EXPECT_TRUE(std::filesystem::exists(out + "/manifest.json"));

  // The same directory again, and one outside the root: refused.
  r = RunCli(server_->address(), {"export", "bulk", "--output_dir=runs/one",
                                  "--format=test-resources"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: ALREADY_EXISTS: output_dir: "
                               "\"runs/one\" already exists"));
  r = RunCli(server_->address(), {"export", "bulk", "--output_dir=../escape",
                                  "--format=test-resources"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: output_dir: must "
                               "stay under the export root"));
  EXPECT_FALSE(std::filesystem::exists(dir_.File("escape")));
}

TEST_F(ExportCliTest, BulkDrawsAProgressBarOnATerminal) {
  // script(1) runs the client on a pseudo-terminal.
  const std::string command =
      absl::StrCat(IPSRT_BIN, " --server=", server_->address(),
                   " export bulk --output_dir=tty --format=test-resources");
  absl::StatusOr<ProcessResult> r =
      RunProcess({"/usr/bin/script", "-qec", command, "/dev/null"});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->out << r->err;
  EXPECT_THAT(r->out, HasSubstr("\r["));
  EXPECT_THAT(r->out, HasSubstr("] 100%  3/3 enrollments  2 file(s)"));
  EXPECT_THAT(r->out, Not(HasSubstr("progress: ")));
}

TEST_F(ExportCliTest, OneEnrollmentToAFileAndAPush) {
  const std::string file = dir_.File("one.json");
  ProcessResult r =
      RunCli(server_->address(),
             {"export", names_[0], "--format=test-collection", "-o", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(application/fhir+json) to " + file));
  absl::StatusOr<std::string> first = ReadFile(file);
  ASSERT_TRUE(first.ok());
  // Printed on stdout, the same bytes (plus a final newline).
  r = RunCli(server_->address(),
             {"export", names_[0], "--format=test-collection"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, *first + "\n");

  r = RunCli(server_->address(), {"export", names_[0]});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--format is required"));
  r = RunCli(server_->address(), {"export", names_[0], "--format=nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: format: no loaded "
                               "exporter plugin renders \"nope\""));

  r = RunCli(server_->address(),
             {"export", "push", names_[1], "--request_id=push-1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("pushed ", names_[1],
                                " to the default target: 2 created, 0 "
                                "unchanged\n"));
  r = RunCli(server_->address(), {"export", "push", names_[1], "--target=ehr",
                                  "--request_id=push-2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("pushed ", names_[1],
                                " to ehr: 0 created, 2 unchanged\n"));
}

// An exporter out of process that crashes or hangs mid-call: ipsrtd
// answers, so the CLI prints ipsrtd's answer naming the plugin and never
// blames ipsrtd's reachability ("cannot reach ipsrtd ...; is it running?")
// or its own --timeout ("no answer from ipsrtd").
class MisbehavingExporterCliTest : public TestExporterFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(Start(absl::StrCat("    transport: out_of_process\n"
                                               "    call_timeout: 500ms\n"
                                               "    config:\n"
                                               "      control_file: ",
                                               dir_.File("control"), "\n"),
                                  1));
    name_ = names_[0];
    id_ = name_.substr(name_.rfind('/') + 1);
  }

  void Control(const std::string& line) {
    ASSERT_TRUE(WriteFile(dir_.File("control"), line + "\n").ok());
  }

  std::string name_;
  std::string id_;
};

TEST_F(MisbehavingExporterCliTest, PluginCrashIsNotBlamedOnIpsrtd) {
  ASSERT_NO_FATAL_FAILURE(Control("render_crash=" + id_));
  ProcessResult r =
      RunCli(server_->address(), {"export", name_, "--format=test-collection"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE: "));
  EXPECT_THAT(r.err, HasSubstr("plugin test-exporter is unavailable "
                               "(RenderExport)"));
  EXPECT_THAT(r.err, Not(HasSubstr("cannot reach ipsrtd")));
  EXPECT_THAT(r.err, Not(HasSubstr("is it running")));
  EXPECT_EQ(r.out, "");
}

TEST_F(MisbehavingExporterCliTest, PluginCallTimeoutIsNotBlamedOnIpsrtd) {
  ASSERT_NO_FATAL_FAILURE(Control("render_delay_ms=5000"));
  ProcessResult r =
      RunCli(server_->address(),
             {"export", name_, "--format=test-collection", "--timeout=60s"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("error: DEADLINE_EXCEEDED: "));
  EXPECT_THAT(r.err, HasSubstr("plugin test-exporter did not answer "
                               "RenderExport within 500ms"));
  EXPECT_THAT(r.err, Not(HasSubstr("no answer from ipsrtd")));
  EXPECT_THAT(r.err, Not(HasSubstr("--timeout")));
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace ipsrt::e2e
