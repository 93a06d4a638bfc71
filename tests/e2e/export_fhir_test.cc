// End to end with the real exporter plugins: ipsrtd loads fhir-r4 (in
// process) and fhir-push (out of process, through ipsrt-plugin-runner) from
// its configuration; a course is recorded over gRPC; `ipsrt export` renders
// it, an independent FHIR R4 validator (tests/fhir/validate.mjs, FHIR.js)
// checks every resource and reference, and `ipsrt export push` delivers it
// twice to the FHIR test server (tests/fhir_server/server.mjs, which
// enforces transaction semantics and conditional creates): every resource
// exists there exactly once afterwards. Bulk export of the tenant in the
// NDJSON form validates too.
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fhir_server/fhir_test_server.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "e2e-ehr-token-1";

class ExportFhirE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto fhir = StartFhirTestServer(
        IPSRT_NODE_BIN,
        std::string(IPSRT_SOURCE_DIR) + "/tests/fhir_server/server.mjs",
        {"--token", kToken}, dir_.File("fhir-server.log"));
    ASSERT_TRUE(fhir.ok()) << fhir.status();
    fhir_server_ = std::move(fhir->process);
    fhir_port_ = fhir->port;
    ASSERT_TRUE(
        WriteFile(dir_.File("ehr.token"), absl::StrCat(kToken, "\n")).ok());
    const std::string config = WriteConfig(dir_);
    absl::StatusOr<std::string> yaml = ReadFile(config);
    ASSERT_TRUE(yaml.ok());
    ASSERT_TRUE(
        WriteFile(config,
                  absl::StrCat(
                      *yaml,
                      "  - path: libipsrt_fhir_r4.so\n"
                      "    config:\n"
                      "      canonical_base: https://fhir.example.org/ipsrt\n"
                      "  - path: libipsrt_fhir_push.so\n"
                      "    transport: out_of_process\n"
                      "    config:\n"
                      "      targets:\n"
                      "        ehr:\n"
                      "          base_url: http://127.0.0.1:",
                      fhir_port_,
                      "/fhir\n"
                      "          bearer_token_file: ",
                      dir_.File("ehr.token"),
                      "\n"
                      "export:\n"
                      "  root: exports\n"
                      "  targets:\n"
                      "    ehr:\n"
                      "      deliverer: fhir-push\n"
                      "      deliverer_target: ehr\n"))
            .ok());
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Records a short but complete course: intake responses (one with a
  // positive PHQ-9 item 9, which raises an alert), a week of SRM diary
  // days, sessions held and a goal.
  std::string RecordCourse(const std::string& patient) {
    auto stub = v1::EnrollmentService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
    v1::CreateEnrollmentRequest create;
    create.set_parent("tenants/default");
    create.set_request_id("create-" + patient);
    create.set_patient_ref("Patient/" + patient);
    create.set_workflow_id("ipsrt-standard");
    create.set_time_zone("America/New_York");
    create.set_clinician_ref("Practitioner/7");
    v1::Enrollment e;
    {
      grpc::ClientContext ctx;
      grpc::Status s = stub->CreateEnrollment(&ctx, create, &e);
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    int n = 0;
    auto submit = [&](v1::EventPayload payload) {
      v1::SubmitEventRequest r;
      r.set_name(e.name());
      r.set_request_id(absl::StrCat(patient, "-", ++n));
      *r.mutable_event() = std::move(payload);
      grpc::ClientContext ctx;
      v1::SubmitEventResponse resp;
      grpc::Status s = stub->SubmitEvent(&ctx, r, &resp);
      EXPECT_TRUE(s.ok()) << n << ": " << s.error_message();
    };
    auto respond = [&](const std::string& id, std::vector<int> answers) {
      v1::EventPayload p;
      v1::QuestionnaireResponse* q = p.mutable_questionnaire_response();
      q->set_questionnaire_id(id);
      for (size_t i = 0; i < answers.size(); ++i) {
        (*q->mutable_answers())[absl::StrCat(i + 1)] = answers[i];
      }
      submit(std::move(p));
    };
    respond("phq9", {2, 2, 1, 1, 2, 1, 1, 0, 1});
    respond("gad7", {1, 2, 1, 0, 1, 2, 0});
    respond("asrm", {0, 1, 0, 0, 1});
    {
      v1::EventPayload p;
      v1::SessionHeld* s = p.mutable_session_held();
      s->mutable_start_time()->set_seconds(absl::ToUnixSeconds(absl::Now()) -
                                           3600);
      s->set_duration_minutes(50);
      submit(std::move(p));
    }
    const absl::CivilDay today =
        absl::ToCivilDay(absl::Now(), absl::FixedTimeZone(-5 * 3600));
    for (int d = 7; d >= 1; --d) {
      v1::EventPayload p;
      v1::SrmDiaryDay* day = p.mutable_srm_diary_day();
      day->set_local_date(absl::FormatCivilTime(today - d));
      day->set_instrument("srm5");
      day->set_mood(1);
      const char* times[] = {"07:00", "07:30", "09:00", "18:30", "23:00"};
      const char* activities[] = {"out_of_bed", "first_contact", "start_work",
                                  "dinner", "to_bed"};
      for (int a = 0; a < 5; ++a) {
        v1::SrmActivity* act = day->add_activities();
        act->set_activity(activities[a]);
        act->set_local_time(times[a]);
        act->set_people_code(1);
      }
      submit(std::move(p));
    }
    {
      v1::EventPayload p;
      v1::GoalSet* g = p.mutable_goal_set();
      g->set_problem_area("role_transition");
      g->set_description("bed by 23:00 on work nights");
      g->set_target("SRM >= 4");
      submit(std::move(p));
    }
    respond("phq9", {1, 1, 1, 0, 1, 0, 0, 0, 0});
    return e.name();
  }

  // Runs the independent validator; the patients' and the clinician's
  // references point into the EHR, outside the export.
  ProcessResult Validate(const std::vector<std::string>& files,
                         const std::vector<std::string>& patients) {
    std::vector<std::string> argv = {
        IPSRT_NODE_BIN,
        std::string(IPSRT_SOURCE_DIR) + "/tests/fhir/validate.mjs",
        "--external", "Practitioner/7"};
    for (const std::string& p : patients) {
      argv.push_back("--external");
      argv.push_back("Patient/" + p);
    }
    argv.insert(argv.end(), files.begin(), files.end());
    absl::StatusOr<ProcessResult> r = RunProcess(argv, absl::Seconds(60));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }

  TempDir dir_;
  std::unique_ptr<ChildProcess> fhir_server_;
  int fhir_port_ = 0;
  std::unique_ptr<Ipsrtd> server_;
};

TEST_F(ExportFhirE2eTest, ExportValidatesAndTwoPushesCreateEachResourceOnce) {
  const std::string name = RecordCourse("e2e-1");
  ASSERT_FALSE(HasFailure());

  // Collection and transaction renderings: valid, and byte-identical when
  // rendered again from the same events.
  const std::string collection = dir_.File("collection.json");
  const std::string transaction = dir_.File("transaction.json");
  ProcessResult r =
      RunCli(server_->address(),
             {"export", name, "--format=fhir-r4-collection", "-o", collection});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCli(
      server_->address(),
      {"export", name, "--format=fhir-r4-transaction", "-o", transaction});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCli(server_->address(),
             {"export", name, "--format=fhir-r4-collection"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  absl::StatusOr<std::string> first = ReadFile(collection);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(r.out, *first + "\n");
  for (const char* type :
       {"\"CarePlan\"", "\"QuestionnaireResponse\"", "\"Observation\"",
        "\"Flag\"", "\"Goal\"", "\"Encounter\"", "\"Provenance\""}) {
    EXPECT_THAT(*first, HasSubstr(absl::StrCat("\"resourceType\":", type)));
  }
  absl::StatusOr<std::string> transaction_text = ReadFile(transaction);
  ASSERT_TRUE(transaction_text.ok());
  ProcessResult v = Validate({collection, transaction}, {"e2e-1"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_THAT(v.out, HasSubstr("\n0 problems\n"));

  // The EHR knows the patient and the clinician the export refers to (the
  // server checks referential integrity, as production servers do).
  absl::StatusOr<ProcessResult> seed = RunProcess(
      {IPSRT_NODE_BIN, "-e",
       absl::StrCat(
           "const e = (t, id) => ({resource: {resourceType: t, id},"
           " request: {method: 'PUT', url: t + '/' + id}});"
           "fetch('http://127.0.0.1:",
           fhir_port_,
           "/fhir', {method: 'POST', headers: {'Content-Type':"
           " 'application/fhir+json', Authorization: 'Bearer ",
           kToken,
           "'}, body: JSON.stringify({resourceType: 'Bundle', type:"
           " 'transaction', entry: [e('Patient', 'e2e-1'),"
           " e('Practitioner', '7')]})}).then(r => process.exit(r.ok ? 0 :"
           " 1));")},
      absl::Seconds(30));
  ASSERT_TRUE(seed.ok()) << seed.status();
  ASSERT_EQ(seed->exit_code, 0) << seed->out << seed->err;

  // Two pushes: the first creates every entry, the second none.
  const std::string stats =
      absl::StrCat("http://127.0.0.1:", fhir_port_, "/admin/stats");
  r = RunCli(server_->address(),
             {"export", "push", name, "--request_id=push-1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int entries = 0;
  for (size_t at = transaction_text->find("\"fullUrl\"");
       at != std::string::npos;
       at = transaction_text->find("\"fullUrl\"", at + 1)) {
    ++entries;
  }
  ASSERT_GT(entries, 20);
  EXPECT_EQ(r.out,
            absl::StrCat("{\"created\":", entries, ",\"unchanged\":0}\n"));
  r = RunCli(server_->address(),
             {"export", "push", name, "--request_id=push-2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            absl::StrCat("{\"created\":0,\"unchanged\":", entries, "}\n"));
  absl::StatusOr<ProcessResult> check =
      RunProcess({IPSRT_NODE_BIN,
                  std::string(IPSRT_SOURCE_DIR) + "/tests/fhir/check_push.mjs",
                  transaction, stats, "Patient=1", "Practitioner=1"},
                 absl::Seconds(30));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->exit_code, 0) << check->out << check->err;
  EXPECT_THAT(check->out, HasSubstr("Observation: expected "));

  // The target down: UNAVAILABLE after the bounded retries, nothing
  // recorded as pushed (the same request id pushes again afterwards).
  fhir_server_->Signal(SIGKILL);
  ASSERT_TRUE(fhir_server_->WaitForExit(absl::Seconds(10)).has_value());
  r = RunCli(server_->address(),
             {"export", "push", name, "--request_id=push-3", "--timeout=60s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE: "));
  EXPECT_THAT(r.err, HasSubstr("target \"ehr\" is unavailable after 3 "
                               "attempts"));
  EXPECT_THAT(r.err, Not(HasSubstr("cannot reach ipsrtd")));
}

TEST_F(ExportFhirE2eTest, BulkNdjsonValidates) {
  for (const char* p : {"bulk-1", "bulk-2", "bulk-3"}) RecordCourse(p);
  ASSERT_FALSE(HasFailure());
  ProcessResult r = RunCli(
      server_->address(),
      {"export", "bulk", "--output_dir=all", "--format=fhir-r4-resources"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("progress: 3/3 enrollments (100%), finished"));
  // One file per resource type; together they must hold every resource
  // the references point at, so they are validated as one NDJSON stream.
  std::vector<std::string> files;
  for (const auto& f :
       std::filesystem::directory_iterator(dir_.File("exports/all"))) {
    if (f.path().extension() == ".ndjson") files.push_back(f.path());
  }
  std::sort(files.begin(), files.end());
  EXPECT_GE(files.size(), 6u);
  std::string all;
  for (const std::string& f : files) {
    absl::StatusOr<std::string> text = ReadFile(f);
    ASSERT_TRUE(text.ok()) << text.status();
    all += *text;
  }
  const std::string joined = dir_.File("bulk-all.ndjson");
  ASSERT_TRUE(WriteFile(joined, all).ok());
  ProcessResult v = Validate({joined}, {"bulk-1", "bulk-2", "bulk-3"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

}  // namespace
}  // namespace ipsrt::e2e
