// Logs never carry patient data: every patient-data field of every kind of
// request (references, answers, notes, plans, goals), accepted and refused,
// carries a unique marker, and the server's whole log is searched for it.
#include <openssl/sha.h>
#include <signal.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/audit.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace v1 = ::ipsrt::v1;

constexpr char kMarker[] = "ZQXMARKER7731";

// RunCourseWithMarkers drives every kind of request carrying the marker
// through an ipsrtd whose config's `logging:` section is `logging`, and
// returns the server's whole log after a clean stop.
std::string RunCourseWithMarkers(const std::string& logging) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
  absl::StatusOr<std::string> yaml = ReadFile(config);
  EXPECT_TRUE(yaml.ok());
  std::string text = *yaml;
  const std::string harness_logging = "logging:\n  level: info\n";
  EXPECT_NE(text.find(harness_logging), std::string::npos);
  text.replace(text.find(harness_logging), harness_logging.size(), logging);
  EXPECT_TRUE(WriteFile(config, text).ok());
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  if (!server.ok()) {
    ADD_FAILURE() << server.status();
    return "";
  }
  auto stub = v1::EnrollmentService::NewStub(grpc::CreateChannel(
      (*server)->address(), grpc::InsecureChannelCredentials()));
  auto marked = [](const char* what) { return absl::StrCat(what, kMarker); };

  v1::CreateEnrollmentRequest create;
  create.set_parent("tenants/t1");
  create.set_request_id("hyg-1");
  create.set_patient_ref(marked("Patient/"));
  create.set_workflow_id("ipsrt-standard");
  create.set_time_zone("Europe/London");
  create.set_clinician_ref(marked("Practitioner/"));
  (*create.mutable_labels())["note"] = marked("");
  v1::Enrollment e;
  {
    grpc::ClientContext ctx;
    if (!stub->CreateEnrollment(&ctx, create, &e).ok()) {
      ADD_FAILURE() << "CreateEnrollment failed";
      return "";
    }
  }
  // Refused requests carrying the marker.
  {
    v1::CreateEnrollmentRequest bad = create;
    bad.set_request_id("hyg-2");
    bad.set_time_zone(marked("Mars/"));
    grpc::ClientContext ctx;
    v1::Enrollment ignored;
    EXPECT_FALSE(stub->CreateEnrollment(&ctx, bad, &ignored).ok());
  }
  auto submit = [&](const std::string& id, v1::EventPayload p) {
    v1::SubmitEventRequest r;
    r.set_name(e.name());
    r.set_request_id(id);
    *r.mutable_event() = std::move(p);
    grpc::ClientContext ctx;
    v1::SubmitEventResponse resp;
    return stub->SubmitEvent(&ctx, r, &resp);
  };
  v1::EventPayload p;
  p.mutable_session_held()->set_note(marked("note "));
  EXPECT_TRUE(submit("s1", p).ok());
  p.Clear();
  p.mutable_task_completed()->set_task_id("history");
  p.mutable_task_completed()->set_note(marked("history "));
  EXPECT_TRUE(submit("s2", p).ok());
  p.Clear();
  p.mutable_goal_set()->set_problem_area("role_dispute");
  p.mutable_goal_set()->set_description(marked("goal "));
  EXPECT_TRUE(submit("s3", p).ok());
  p.Clear();
  p.mutable_relapse_plan()->add_early_warning_signs(marked("sign "));
  p.mutable_relapse_plan()->add_supports(marked("sister "));
  EXPECT_TRUE(submit("s4", p).ok());
  p.Clear();
  auto* q = p.mutable_questionnaire_response();
  q->set_questionnaire_id("phq9");
  for (int i = 1; i <= 9; ++i) (*q->mutable_answers())[absl::StrCat(i)] = 1;
  EXPECT_TRUE(submit("s5", p).ok());
  (*q->mutable_answers())[marked("")] = 1;  // refused: unknown item
  EXPECT_FALSE(submit("s6", p).ok());
  p.Clear();
  p.mutable_stage_change()->set_to_stage(marked(""));
  p.mutable_stage_change()->set_reason(marked("reason "));
  EXPECT_FALSE(submit("s7", p).ok());
  p.mutable_stage_change()->set_to_stage("maintenance");
  EXPECT_TRUE(submit("s8", p).ok());
  p.Clear();
  p.mutable_disruption_plan()->set_kind("travel");
  p.mutable_disruption_plan()->set_plan(marked("plan "));
  EXPECT_TRUE(submit("s9", p).ok());
  {
    v1::ListEnrollmentsRequest list;
    list.set_parent("tenants/t1");
    list.set_patient_ref(marked("Patient/"));
    grpc::ClientContext ctx;
    v1::ListEnrollmentsResponse resp;
    EXPECT_TRUE(stub->ListEnrollments(&ctx, list, &resp).ok());
    EXPECT_EQ(resp.enrollments_size(), 1);
  }
  (*server)->process().Signal(SIGHUP);
  absl::StatusOr<int> exit = (*server)->Terminate();
  EXPECT_TRUE(exit.ok());
  EXPECT_EQ(exit.value_or(-1), 0);
  return (*server)->process().Log();
}

TEST(LogHygieneTest, NoPatientDataInTheLog) {
  std::string log = RunCourseWithMarkers("logging:\n  level: info\n");
  EXPECT_THAT(log, HasSubstr("stopped cleanly"));  // the log was captured
  EXPECT_THAT(log, Not(HasSubstr(kMarker)));
}

// logging.format: json with access logs on: every line is one JSON object
// with time, level, message and source; each call's access line names its
// method, code, latency, request id, tenant and role; no line carries the
// marker.
TEST(LogHygieneTest, NoPatientDataInJsonLogsWithAccessLines) {
  std::string log = RunCourseWithMarkers(
      "logging:\n  level: debug\n  format: json\n  access_log: true\n");
  EXPECT_THAT(log, Not(HasSubstr(kMarker)));
  int lines = 0, access = 0;
  bool stopped = false, refused = false;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    ++lines;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    for (const char* key : {"time", "level", "message", "source"}) {
      EXPECT_TRUE(j.contains(key) && j[key].is_string()) << key << ": " << line;
    }
    if (j["message"] == "stopped cleanly") stopped = true;
    if (j["source"] != "access") continue;
    ++access;
    EXPECT_TRUE(j["latency_seconds"].is_number()) << line;
    EXPECT_EQ(j["tenant"], "t1") << line;
    EXPECT_EQ(j["actor_role"], "admin") << line;
    if (j["method"] == "/ipsrt.v1.EnrollmentService/CreateEnrollment" &&
        j["code"] == "INVALID_ARGUMENT") {
      refused = true;
      EXPECT_EQ(j["request_id"], "hyg-2");
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(refused) << log;
  // One access line per call: 2 creates, 9 submits, 1 list.
  EXPECT_EQ(access, 12) << log;
  EXPECT_GT(lines, access);
}

// With authentication on: tokens (valid, forged, and ones carrying the
// marker) never reach the log, and neither the log nor the audit trail
// carries the patient data seeded into accepted and refused requests.
TEST(LogHygieneTest, NoTokensOrPatientDataWithAuthentication) {
  TempDir dir;
  const std::string admin_token = absl::StrCat("tok-admin-", kMarker);
  const std::string forged = absl::StrCat("tok-forged-", kMarker);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(admin_token.data()),
         admin_token.size(), digest);
  std::string hex;
  for (unsigned char c : digest) absl::StrAppendFormat(&hex, "%02x", c);
  ASSERT_TRUE(
      WriteFile(
          dir.File("ipsrtd.yaml"),
          absl::StrCat("server:\n  listen: 127.0.0.1:0\n"
                       "auth:\n  api_tokens:\n    - sha256: ",
                       hex,
                       "\n      subject: ops\n      role: admin\n"
                       "logging:\n  level: debug\n"
                       "store:\n  sqlite:\n    path: ipsrt.db\n"
                       "workflows:\n  directories: [",
                       IPSRT_WORKFLOWS_DIR, "]\n",
                       "plugins:\n  - path: libipsrt_core_instruments.so\n"))
          .ok());
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
      Ipsrtd::Start(dir.File("ipsrtd.yaml"));
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->address(),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::EnrollmentService::NewStub(channel);
  auto call = [&](const std::string& token, const std::string& request_id,
                  const std::string& zone) {
    v1::CreateEnrollmentRequest create;
    create.set_parent("tenants/t1");
    create.set_request_id(request_id);
    create.set_patient_ref(absl::StrCat("Patient/", kMarker));
    create.set_workflow_id("ipsrt-standard");
    create.set_time_zone(zone);
    create.set_clinician_ref(absl::StrCat("Practitioner/", kMarker));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::Enrollment e;
    return stub->CreateEnrollment(&ctx, create, &e);
  };
  EXPECT_TRUE(call(admin_token, "h-1", "Europe/London").ok());
  EXPECT_EQ(
      call(admin_token, "h-2", absl::StrCat("Mars/", kMarker)).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status refused = call(forged, "h-3", "Europe/London");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused.error_message(), Not(HasSubstr(kMarker)));

  v1::ListAuditRecordsRequest list;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + admin_token);
  v1::ListAuditRecordsResponse records;
  ASSERT_TRUE(v1::AuditService::NewStub(channel)
                  ->ListAuditRecords(&ctx, list, &records)
                  .ok());
  EXPECT_EQ(records.records_size(), 3);
  EXPECT_THAT(records.DebugString(), Not(HasSubstr(kMarker)));

  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);
  std::string log = (*server)->process().Log();
  EXPECT_THAT(log, HasSubstr("authentication required"));
  EXPECT_THAT(log, Not(HasSubstr(kMarker)));
}

}  // namespace
}  // namespace ipsrt::e2e
