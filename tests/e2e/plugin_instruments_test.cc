// End to end: workflow templates schedule and read the instruments of an
// out-of-tree questionnaire plugin. The real ipsrtd loads the
// yaml-instruments plugin serving the shipped `routine-disruption` example,
// checks a template that schedules it against the plugin's instruments, and
// a rule on its total raises an alert through gRPC. Without the plugin the
// same template refuses the start, naming the instrument; `ipsrt validate
// --config` checks against the configured plugins the same way.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kTemplate[] =
    "id: routine-check\n"
    "version: 1\n"
    "title: Weekly routine disruption check\n"
    "stages:\n"
    "  - id: weekly\n"
    "    title: Weekly\n"
    "    cadence: P1W\n"
    "    tasks:\n"
    "      - id: routine\n"
    "        kind: questionnaire\n"
    "        questionnaire: routine-disruption\n"
    "        title: Routine disruption this week\n"
    "        repeat: P1W\n"
    "    rules:\n"
    "      - id: routine-disrupted\n"
    "        on: questionnaire:routine-disruption\n"
    "        when: q(\"routine-disruption\").total >= 8\n"
    "        then:\n"
    "          - raise_alert:\n"
    "              id: routine-disrupted\n"
    "              title: Routine badly disrupted this week\n";

// Config writes an ipsrtd configuration reading the shipped templates and
// `extra_workflows`, with the yaml-instruments plugin serving the shipped
// example instruments when `with_plugin`.
std::string Config(const TempDir& dir, const std::string& extra_workflows,
                   bool with_plugin) {
  const std::string path = WriteConfig(dir);
  absl::StatusOr<std::string> text = ReadFile(path);
  EXPECT_TRUE(text.ok());
  std::string yaml = absl::StrReplaceAll(
      *text, {{absl::StrCat("    - ", IPSRT_WORKFLOWS_DIR, "\n"),
               absl::StrCat("    - ", IPSRT_WORKFLOWS_DIR, "\n    - ",
                            extra_workflows, "\n")}});
  if (with_plugin) {
    absl::StrAppend(&yaml,
                    "  - path: libipsrt_yaml_instruments.so\n"
                    "    config:\n"
                    "      directories: [",
                    IPSRT_WORKFLOWS_DIR, "/instruments]\n");
  }
  EXPECT_TRUE(WriteFile(path, yaml).ok());
  return path;
}

std::string TemplateDir(const TempDir& dir) {
  const std::string workflows = dir.File("more-workflows");
  EXPECT_EQ(std::system(absl::StrCat("mkdir -p ", workflows).c_str()), 0);
  EXPECT_TRUE(
      WriteFile(absl::StrCat(workflows, "/routine-check.yaml"), kTemplate)
          .ok());
  return workflows;
}

v1::EventPayload RoutineAnswers(int each) {
  v1::EventPayload p;
  v1::QuestionnaireResponse* r = p.mutable_questionnaire_response();
  r->set_questionnaire_id("routine-disruption");
  for (const char* item : {"1", "2", "3", "4"}) {
    (*r->mutable_answers())[item] = each;
  }
  return p;
}

TEST(PluginInstrumentsTest, RuleOnAPluginInstrumentsTotalRaisesAnAlert) {
  TempDir dir;
  auto server = Ipsrtd::Start(Config(dir, TemplateDir(dir), true));
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->address(),
                                     grpc::InsecureChannelCredentials());
  auto enrollments = v1::EnrollmentService::NewStub(channel);

  v1::CreateEnrollmentRequest create;
  create.set_parent("tenants/t1");
  create.set_request_id("create-1");
  create.set_patient_ref("Patient/1");
  create.set_workflow_id("routine-check");
  create.set_time_zone("Europe/Paris");
  create.set_clinician_ref("Practitioner/7");
  v1::Enrollment enrollment;
  {
    grpc::ClientContext ctx;
    grpc::Status s = enrollments->CreateEnrollment(&ctx, create, &enrollment);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  auto submit = [&](const std::string& id, v1::EventPayload payload) {
    v1::SubmitEventRequest r;
    r.set_name(enrollment.name());
    r.set_request_id(id);
    *r.mutable_event() = std::move(payload);
    grpc::ClientContext ctx;
    v1::SubmitEventResponse response;
    grpc::Status s = enrollments->SubmitEvent(&ctx, r, &response);
    EXPECT_TRUE(s.ok()) << id << ": " << s.error_message();
    std::vector<std::string> alerts;
    for (const v1::Outcome& o : response.event().outcomes()) {
      if (o.kind() == v1::Outcome::ALERT_RAISED) {
        alerts.push_back(absl::StrCat(o.subject(), " ", o.reason()));
      }
    }
    return std::make_pair(response, alerts);
  };

  // Total 4 (scored by the plugin): below the rule's threshold.
  auto [steady, none] = submit("answer-1", RoutineAnswers(1));
  EXPECT_EQ(steady.scores().at("routine-disruption.total"), 4);
  EXPECT_THAT(none, ElementsAre());
  // Total 8: the rule fires.
  auto [disrupted, raised] = submit("answer-2", RoutineAnswers(2));
  EXPECT_EQ(disrupted.scores().at("routine-disruption.total"), 8);
  EXPECT_EQ(disrupted.band(), "disrupted");
  EXPECT_THAT(raised,
              ElementsAre("routine-disrupted-3 rule routine-disrupted"));

  v1::ListTasksRequest list;
  list.set_parent(enrollment.name());
  v1::ListTasksResponse tasks;
  {
    grpc::ClientContext ctx;
    grpc::Status s = enrollments->ListTasks(&ctx, list, &tasks);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  std::vector<std::string> open;
  for (const v1::Task& t : tasks.tasks()) {
    open.push_back(absl::StrCat(t.task_id(), " ", t.title()));
  }
  EXPECT_THAT(open, ::testing::Contains(
                        "routine-disrupted-3 Routine badly disrupted this "
                        "week"));
  ASSERT_TRUE((*server)->Terminate().ok());
}

TEST(PluginInstrumentsTest, StartWithoutThePluginIsRefusedNamingTheInstrument) {
  TempDir dir;
  auto server = Ipsrtd::Start(Config(dir, TemplateDir(dir), false));
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("ipsrtd: the templates name questionnaires no loaded "
                        "plugin serves: routine-disruption (served: asrm, "
                        "gad7, phq9, srm17, srm5)"));
}

TEST(PluginInstrumentsTest, ValidateChecksAgainstTheConfiguredPlugins) {
  TempDir dir;
  const std::string workflows = TemplateDir(dir);
  const std::string file = absl::StrCat(workflows, "/routine-check.yaml");
  ProcessResult with =
      RunCliNoServer({"validate", file,
                      absl::StrCat("--config=", Config(dir, workflows, true))});
  EXPECT_EQ(with.exit_code, 0) << with.out << with.err;
  EXPECT_THAT(with.out,
              HasSubstr(absl::StrCat(file,
                                     ": ok (routine-check@1, 1 stages)\n"
                                     "  safety floor phq9.item9_positive "
                                     "(phq9): the engine's urgent alert, "
                                     "acknowledge within PT4H\n")));
  ProcessResult without = RunCliNoServer({"validate", file});
  EXPECT_EQ(without.exit_code, 1) << without.out << without.err;
  EXPECT_THAT(without.out,
              HasSubstr(absl::StrCat(
                  file,
                  ":11:24: error: stages[0].tasks[0].questionnaire: unknown "
                  "questionnaire \"routine-disruption\" (known: asrm, gad7, "
                  "phq9, srm17, srm5)")));
}

}  // namespace
}  // namespace ipsrt::e2e
