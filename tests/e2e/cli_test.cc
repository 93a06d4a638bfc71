// End-to-end tests of the ipsrt CLI against a real ipsrtd: exit statuses,
// error codes and messages as a user sees them.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "process.h"
#include "sqlite3.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Describe renders a ProcessResult for failure messages.
std::string Describe(const ProcessResult& r) {
  return absl::StrCat("exit_code=", r.exit_code, " signal=", r.term_signal,
                      " timed_out=", r.timed_out, "\nstdout:\n", r.out,
                      "\nstderr:\n", r.err);
}

template <typename Message>
Message ParseJson(const std::string& json) {
  Message message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return message;
}

// EnrollArgs is a valid `ipsrt enroll` command line plus `extra`.
std::vector<std::string> EnrollArgs(const std::string& patient,
                                    const std::vector<std::string>& extra) {
  std::vector<std::string> args = {
      "enroll", absl::StrCat("--patient=", patient),
      "--workflow=ipsrt-standard", "--time_zone=Europe/London",
      "--clinician=Practitioner/42"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = WriteConfig(dir_);
    ASSERT_NO_FATAL_FAILURE(StartServer());
  }

  void StartServer() {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  ProcessResult Cli(const std::vector<std::string>& args) {
    return RunCli(server_->address(), args);
  }

  TempDir dir_;
  std::string config_;
  // Destroyed before dir_: the process is reaped before its files go.
  std::unique_ptr<Ipsrtd> server_;
};

TEST_F(CliTest, HealthReportsServingAndServerInfo) {
  ProcessResult r = Cli({"health"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("status: SERVING\n"));
  EXPECT_THAT(r.out, HasSubstr("version: 0."));
  EXPECT_THAT(r.out, HasSubstr("store: sqlite (schema version "));

  r = Cli({"health", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("\"health\":{\"status\":\"SERVING\"}"));
  EXPECT_THAT(r.out, HasSubstr("\"store_kind\":\"sqlite\""));
}

TEST(CliWithoutServerTest, HealthFailsWhenNothingListens) {
  UnusedPort port;
  const std::string address = absl::StrCat("127.0.0.1:", port.port());
  ProcessResult r = RunCli(address, {"health", "--timeout=5s"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE: "));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("cannot reach ipsrtd at ", address,
                                            "; is it running?")));
  EXPECT_EQ(r.out, "");
}

// A listener that takes the connection and never speaks HTTP/2: the call
// runs into the CLI's own --timeout, and the hint says so (a plugin's call
// timeout inside ipsrtd does not: export_test.cc).
TEST(CliWithoutServerTest, SilentListenerRunsIntoTheTimeoutHint) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  ProcessResult r = RunCli(address, {"health", "--timeout=1s"});
  close(fd);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("error: DEADLINE_EXCEEDED: "));
  EXPECT_THAT(
      r.err, HasSubstr(absl::StrCat("ipsrt: no answer from ipsrtd at ", address,
                                    " within 1s (see --timeout)")));
  EXPECT_THAT(r.err, Not(HasSubstr("is it running")));
}

TEST_F(CliTest, EnrollGetListAndIdempotentRetry) {
  ProcessResult r = Cli(EnrollArgs(
      "Patient/123", {"--request_id=req-1", "--label=site=north", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  // A given request id is not echoed on stderr.
  EXPECT_THAT(r.err, Not(HasSubstr("request_id")));
  const v1::Enrollment created = ParseJson<v1::Enrollment>(r.out);
  EXPECT_THAT(created.name(), HasSubstr("tenants/default/enrollments/"));
  EXPECT_EQ(created.patient_ref(), "Patient/123");
  EXPECT_EQ(created.workflow_id(), "ipsrt-standard");
  EXPECT_EQ(created.stage(), "initial");
  EXPECT_EQ(created.state(), v1::Enrollment::ACTIVE);
  EXPECT_EQ(created.revision(), 1);
  EXPECT_EQ(created.labels().at("site"), "north");

  // get, by full name and by bare id, as JSON and as text.
  r = Cli({"get", created.name(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const v1::Enrollment got = ParseJson<v1::Enrollment>(r.out);
  EXPECT_EQ(got.name(), created.name());
  EXPECT_EQ(got.revision(), created.revision());
  const std::string id = created.name().substr(created.name().rfind('/') + 1);
  r = Cli({"get", id});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("name: ", created.name(), "\n")));
  EXPECT_THAT(r.out, HasSubstr("stage: initial\n"));
  EXPECT_THAT(r.out, HasSubstr("state: ACTIVE\n"));
  EXPECT_THAT(r.out, HasSubstr("label: site=north\n"));

  // The retry returns the first result and creates nothing.
  r = Cli(
      EnrollArgs("Patient/123", {"--request_id=req-1", "--label=site=north"}));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, absl::StrCat("name: ", created.name(),
                                "\nstage: initial\nrevision: 1\n"));

  r = Cli({"list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const auto list = ParseJson<v1::ListEnrollmentsResponse>(r.out);
  ASSERT_EQ(list.enrollments_size(), 1) << r.out;
  EXPECT_EQ(list.enrollments(0).name(), created.name());
  EXPECT_EQ(list.next_page_token(), "");
  EXPECT_THAT(r.out, HasSubstr("\"next_page_token\":\"\""));

  r = Cli({"list"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, absl::StrCat(created.name(),
                                "\tipsrt-standard@1\tinitial\tACTIVE\n"));

  // Another tenant sees nothing.
  r = Cli({"list", "--tenant=other", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson<v1::ListEnrollmentsResponse>(r.out).enrollments_size(),
            0);
}

// A stored enrollment damaged in the SQLite file (issue #14): get answers
// DATA_LOSS for it alone, and `ipsrt list` prints the others and names it.
TEST_F(CliTest, ListPrintsTheReadableAndNamesTheUnreadable) {
  std::vector<v1::Enrollment> created;
  for (const char* patient : {"Patient/1", "Patient/2"}) {
    ProcessResult r = Cli(EnrollArgs(patient, {"--json"}));
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    created.push_back(ParseJson<v1::Enrollment>(r.out));
  }
  const std::string bad = created[0].name();
  // The damage is done while no server runs: a running ipsrtd answers from
  // the enrollment rows it cached, which only it writes.
  server_.reset();
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.File("ipsrt.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    const std::string sql = absl::StrCat(
        "UPDATE enrollments SET snapshot = x'ffffffffff0a' WHERE id = '",
        bad.substr(bad.rfind('/') + 1), "'");
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr),
              SQLITE_OK);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ProcessResult r = Cli({"get", bad});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("error: DATA_LOSS: "));
  r = Cli({"get", created[1].name()});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);

  r = Cli({"list"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, absl::StrCat(created[1].name(),
                                "\tipsrt-standard@1\tinitial\tACTIVE\n"));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(
                         "unreadable: ", bad,
                         ": the stored snapshot cannot be parsed\n")));
  r = Cli({"list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const auto list = ParseJson<v1::ListEnrollmentsResponse>(r.out);
  ASSERT_EQ(list.enrollments_size(), 1) << r.out;
  ASSERT_EQ(list.unreadable_size(), 1) << r.out;
  EXPECT_EQ(list.unreadable(0).name(), bad);
}

TEST_F(CliTest, EnrollWithoutRequestIdPrintsTheGeneratedOne) {
  ProcessResult r = Cli(EnrollArgs("Patient/7", {}));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ASSERT_THAT(r.err, HasSubstr("request_id: cli-"));
  // The printed id really is the one used: retrying with it is a no-op.
  const std::string request_id =
      r.err.substr(r.err.find("cli-"), std::string("cli-").size() + 32);
  const std::string first_out = r.out;
  r = Cli(EnrollArgs("Patient/7", {"--request_id=" + request_id}));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, first_out);
}

TEST_F(CliTest, PagingWithAllFollowsEveryPage) {
  for (int i = 0; i < 5; ++i) {
    ProcessResult r = Cli(EnrollArgs(absl::StrCat("Patient/p", i),
                                     {absl::StrCat("--request_id=page-", i)}));
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  ProcessResult r = Cli({"list", "--page_size=2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const auto first = ParseJson<v1::ListEnrollmentsResponse>(r.out);
  EXPECT_EQ(first.enrollments_size(), 2);
  EXPECT_NE(first.next_page_token(), "");

  r = Cli({"list", "--page_size=2", "--all", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const auto all = ParseJson<v1::ListEnrollmentsResponse>(r.out);
  EXPECT_EQ(all.enrollments_size(), 5);
  EXPECT_EQ(all.next_page_token(), "");

  r = Cli({"list", "--patient=Patient/p3"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

TEST_F(CliTest, ReusedRequestIdWithOtherPatientIsFailedPrecondition) {
  ProcessResult r = Cli(EnrollArgs("Patient/1", {"--request_id=dup-1"}));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);

  r = Cli(EnrollArgs("Patient/2", {"--request_id=dup-1"}));
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("error: FAILED_PRECONDITION: request_id: "));
  EXPECT_EQ(r.out, "");

  r = Cli({"list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson<v1::ListEnrollmentsResponse>(r.out).enrollments_size(),
            1);
}

TEST_F(CliTest, BadInputIsReportedWithCodeAndField) {
  ProcessResult r =
      Cli({"enroll", "--patient=Patient/1", "--workflow=ipsrt-standard",
           "--time_zone=Mars/Olympus", "--clinician=Practitioner/42"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: time_zone: "));

  r = Cli({"enroll", "--patient=", "--workflow=ipsrt-standard",
           "--time_zone=Europe/London", "--clinician=Practitioner/42"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: patient_ref: "));

  r = Cli({"enroll", "--patient=Patient/1", "--workflow=no-such-workflow",
           "--time_zone=Europe/London", "--clinician=Practitioner/42"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: workflow_id: "));
  EXPECT_THAT(r.err, HasSubstr("no-such-workflow"));

  r = Cli({"get", "tenants/default/enrollments/nonexistent"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: "));

  // Nothing was created by any of the refused calls.
  r = Cli({"list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson<v1::ListEnrollmentsResponse>(r.out).enrollments_size(),
            0);
}

// Usage errors are found before any call: the server address points at a
// port where nothing listens, so an attempted call would exit 1, not 2.
class UsageTest : public ::testing::Test {
 protected:
  ProcessResult Cli(const std::vector<std::string>& args) {
    return RunCli(absl::StrCat("127.0.0.1:", port_.port()), args);
  }
  UnusedPort port_;
};

TEST_F(UsageTest, UnknownSubcommandExitsTwo) {
  ProcessResult r = Cli({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("unknown command \"frobnicate\""));
  EXPECT_EQ(r.out, "");
}

TEST_F(UsageTest, UnknownFlagExitsTwo) {
  ProcessResult r = Cli({"list", "--bogus=1"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(r.err, HasSubstr("ipsrt list --help"));
}

TEST_F(UsageTest, FlagOfAnotherSubcommandExitsTwo) {
  ProcessResult r = Cli({"health", "--patient=Patient/1"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err,
              HasSubstr("flag --patient is not accepted by 'ipsrt health'"));
}

TEST_F(UsageTest, MissingRequiredFlagExitsTwo) {
  ProcessResult r = Cli({"enroll", "--workflow=ipsrt-standard",
                         "--time_zone=UTC", "--clinician=Practitioner/1"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("missing required flag --patient"));
}

TEST_F(UsageTest, BadFlagValuesAndArgumentsExitTwo) {
  EXPECT_EQ(Cli({"list", "--page_size=many"}).exit_code, 2);
  EXPECT_EQ(Cli({"list", "--timeout=soon"}).exit_code, 2);
  EXPECT_EQ(Cli({"list", "--timeout=0s"}).exit_code, 2);
  EXPECT_EQ(Cli({"list", "--state=SLEEPING"}).exit_code, 2);
  EXPECT_EQ(Cli({"get"}).exit_code, 2);
  EXPECT_EQ(Cli({"get", "a", "b"}).exit_code, 2);
  EXPECT_EQ(Cli({"health", "extra"}).exit_code, 2);
  EXPECT_EQ(Cli(EnrollArgs("Patient/1", {"--label=novalue"})).exit_code, 2);
  EXPECT_EQ(RunCliNoServer({}).exit_code, 2);
}

TEST_F(UsageTest, SubcommandHelpListsOnlyItsFlags) {
  ProcessResult r = Cli({"enroll", "--help"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("Usage: ipsrt enroll "));
  EXPECT_THAT(r.out, HasSubstr("--patient=REF  (required)"));
  EXPECT_THAT(r.out, HasSubstr("Reference to the patient in your own system"));
  EXPECT_THAT(r.out, HasSubstr("--timeout=DURATION"));
  EXPECT_THAT(r.out, HasSubstr("default: 10s"));
  EXPECT_THAT(r.out, Not(HasSubstr("--all")));
  EXPECT_THAT(r.out, Not(HasSubstr("--page_size")));

  r = Cli({"help", "list"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("--all"));
  EXPECT_THAT(r.out, Not(HasSubstr("--time_zone")));
}

TEST_F(UsageTest, TopLevelHelpListsCommands) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--help"}, {"help"}}) {
    ProcessResult r = RunCliNoServer(args);
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    for (const char* command : {"health", "enroll", "get", "list"}) {
      EXPECT_THAT(r.out, HasSubstr(absl::StrCat("  ", command, " ")));
    }
    EXPECT_THAT(r.out, HasSubstr("--server=HOST:PORT"));
  }
}

TEST_F(CliTest, SigtermExitsZeroAndRestartKeepsEnrollment) {
  ProcessResult r =
      Cli(EnrollArgs("Patient/9", {"--request_id=keep-1", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const v1::Enrollment created = ParseJson<v1::Enrollment>(r.out);

  absl::StatusOr<int> status = server_->Terminate();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << DescribeWaitStatus(*status) << "\n"
      << server_->process().Log();
  EXPECT_THAT(server_->process().Log(), HasSubstr("stopped cleanly"));

  // The log never carries patient references.
  EXPECT_THAT(server_->process().Log(), Not(HasSubstr("Patient/9")));

  ASSERT_NO_FATAL_FAILURE(StartServer());
  r = Cli({"get", created.name(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const v1::Enrollment got = ParseJson<v1::Enrollment>(r.out);
  EXPECT_EQ(got.name(), created.name());
  EXPECT_EQ(got.revision(), created.revision());
  EXPECT_EQ(got.patient_ref(), "Patient/9");
}

TEST(IpsrtdConfigTest, UnknownKeyNamesFileLineColumnAndPath) {
  TempDir dir;
  const std::string config = dir.File("bad.yaml");
  ASSERT_TRUE(WriteFile(config,
                        "server:\n"
                        "  lisen: 127.0.0.1:0\n")
                  .ok());
  absl::StatusOr<ProcessResult> r =
      RunProcess({IPSRTD_BIN, absl::StrCat("--config=", config)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << Describe(*r);
  EXPECT_THAT(r->err, HasSubstr(absl::StrCat(config, ":2:3: ")));
  EXPECT_THAT(r->err, HasSubstr("server.lisen"));
  EXPECT_THAT(r->err, HasSubstr("unknown key"));
}

}  // namespace
}  // namespace ipsrt::e2e
