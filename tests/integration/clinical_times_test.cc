// Plausible clinical times through SubmitEvent over loopback gRPC: authored
// and session times in the future beyond events.future_leeway or more than
// a week before the enrollment, diary dates before that week and
// implausible session durations are INVALID_ARGUMENT naming the field, and
// nothing is written; late entries the domain allows still work.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "plugin_host/registry.h"
#include "service/server.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const absl::Time kEnrolled = absl::FromUnixSeconds(1790000000);

google::protobuf::Timestamp At(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

class ClinicalTimesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(absl::LoadTimeZone("Europe/London", &london_));
    SqliteStore::Options o;
    o.path = dir_.File("ipsrt.db");
    store_ = *SqliteStore::Open(o);
    auto catalog = WorkflowCatalog::LoadDirectories(
        {std::string(IPSRT_SOURCE_DIR) + "/workflows"});
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    workflows_ = std::make_unique<WorkflowRegistry>(*catalog);
    PluginConfig core;
    core.path = "libipsrt_core_instruments.so";
    core.location = "ipsrtd.yaml:1:1";
    PluginHostOptions host;
    host.plugin_dir = IPSRT_PLUGIN_DIR;
    plugins_ = *PluginRegistry::Load({core}, host);
    questionnaires_ = *QuestionnaireCatalog::Build(*plugins_);
    ServerDeps deps{store_.get(), &clock_, &ids_, workflows_.get(), {}};
    deps.plugins = plugins_.get();
    deps.questionnaires = questionnaires_.get();
    server_ = *IpsrtServer::Start(ServerOptions{}, deps);
    stub_ = v1::EnrollmentService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                            grpc::InsecureChannelCredentials()));
    v1::CreateEnrollmentRequest r;
    r.set_parent("tenants/a");
    r.set_request_id("enroll-1");
    r.set_patient_ref("Patient/1");
    r.set_workflow_id("ipsrt-standard");
    r.set_time_zone("Europe/London");
    r.set_clinician_ref("Practitioner/1");
    grpc::ClientContext ctx;
    v1::Enrollment e;
    ASSERT_TRUE(stub_->CreateEnrollment(&ctx, r, &e).ok());
    name_ = e.name();
    // Two days into the course.
    clock_.Advance(absl::Hours(48));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
    if (store_) store_->Close();
  }

  grpc::Status Submit(const v1::EventPayload& event) {
    v1::SubmitEventRequest r;
    r.set_name(name_);
    r.set_request_id(absl::StrCat("ev-", ++counter_));
    *r.mutable_event() = event;
    grpc::ClientContext ctx;
    v1::SubmitEventResponse response;
    return stub_->SubmitEvent(&ctx, r, &response);
  }
  int64_t Revision() {
    v1::GetEnrollmentRequest r;
    r.set_name(name_);
    grpc::ClientContext ctx;
    v1::Enrollment e;
    EXPECT_TRUE(stub_->GetEnrollment(&ctx, r, &e).ok());
    return e.revision();
  }
  // Refused with INVALID_ARGUMENT naming `field`, and nothing written.
  void ExpectRefused(const v1::EventPayload& event, const std::string& field) {
    const int64_t before = Revision();
    grpc::Status s = Submit(event);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << field << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), StartsWith(field + ": "));
    EXPECT_EQ(Revision(), before) << field;
  }

  static v1::EventPayload Phq9(absl::Time authored) {
    v1::EventPayload p;
    auto* q = p.mutable_questionnaire_response();
    q->set_questionnaire_id("phq9");
    for (int i = 1; i <= 9; ++i) (*q->mutable_answers())[absl::StrCat(i)] = 1;
    *q->mutable_authored_time() = At(authored);
    return p;
  }
  static v1::EventPayload Session(absl::Time start, int minutes) {
    v1::EventPayload p;
    *p.mutable_session_held()->mutable_start_time() = At(start);
    p.mutable_session_held()->set_duration_minutes(minutes);
    return p;
  }
  static v1::EventPayload Diary(absl::CivilDay day) {
    v1::EventPayload p;
    auto* d = p.mutable_srm_diary_day();
    d->set_local_date(absl::FormatCivilTime(day));
    d->set_instrument("srm5");
    auto* a = d->add_activities();
    a->set_activity("out_of_bed");
    a->set_local_time("07:30");
    a->set_people_code(0);
    return p;
  }
  absl::CivilDay Today() { return absl::ToCivilDay(clock_.Now(), london_); }

  testing::TempDir dir_;
  FakeClock clock_{kEnrolled};
  RandomIdGenerator ids_;
  absl::TimeZone london_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<WorkflowRegistry> workflows_;
  std::unique_ptr<PluginRegistry> plugins_;
  std::unique_ptr<QuestionnaireCatalog> questionnaires_;
  std::unique_ptr<IpsrtServer> server_;
  std::unique_ptr<v1::EnrollmentService::Stub> stub_;
  std::string name_;
  int counter_ = 0;
};

TEST_F(ClinicalTimesTest, ImplausibleTimesAreRefusedNamingTheField) {
  const absl::Time now = clock_.Now();
  const std::string authored = "event.questionnaire_response.authored_time";
  ExpectRefused(Phq9(now + absl::Hours(24 * 365)), authored);
  ExpectRefused(Phq9(absl::UnixEpoch()), authored);
  ExpectRefused(Phq9(now + kDefaultFutureLeeway + absl::Minutes(1)), authored);
  ExpectRefused(Phq9(kEnrolled - kBackfillWindow - absl::Seconds(1)), authored);
  const std::string start = "event.session_held.start_time";
  ExpectRefused(Session(now + absl::Hours(24 * 365), 50), start);
  ExpectRefused(Session(kEnrolled - absl::Hours(24 * 30), 50), start);
  const std::string duration = "event.session_held.duration_minutes";
  ExpectRefused(Session(now - absl::Hours(1), -5), duration);
  ExpectRefused(Session(now - absl::Hours(1), 100000), duration);
  ExpectRefused(Session(now - absl::Hours(1), kMaxSessionMinutes + 1),
                duration);
  ExpectRefused(Diary(absl::ToCivilDay(kEnrolled, london_) - 8),
                "event.srm_diary_day.local_date");
  grpc::Status s = Submit(Phq9(now + absl::Hours(24 * 365)));
  EXPECT_THAT(s.error_message(), HasSubstr("is in the future"));
  EXPECT_THAT(s.error_message(), HasSubstr("leeway 10m"));
}

TEST_F(ClinicalTimesTest, LateAndSlightlyEarlyEntriesStillWork) {
  const absl::Time now = clock_.Now();
  const int64_t before = Revision();
  // A diary day for yesterday, a questionnaire answered yesterday and
  // submitted now, a session held this morning, a device clock a few
  // minutes ahead, the bounds of a session's duration.
  EXPECT_TRUE(Submit(Diary(Today() - 1)).ok());
  EXPECT_TRUE(Submit(Phq9(now - absl::Hours(24))).ok());
  // The intake week, recorded when the enrollment is made.
  EXPECT_TRUE(Submit(Phq9(kEnrolled - absl::Hours(24 * 6))).ok());
  EXPECT_TRUE(Submit(Diary(absl::ToCivilDay(kEnrolled, london_) - 5)).ok());
  EXPECT_TRUE(Submit(Phq9(now + kDefaultFutureLeeway - absl::Seconds(1))).ok());
  EXPECT_TRUE(Submit(Session(now - absl::Hours(3), 50)).ok());
  EXPECT_TRUE(Submit(Session(now - absl::Hours(2), kMinSessionMinutes)).ok());
  EXPECT_TRUE(Submit(Session(now - absl::Hours(1), kMaxSessionMinutes)).ok());
  // Without times: "now", without a duration: not recorded.
  v1::EventPayload plain;
  plain.mutable_session_held();
  EXPECT_TRUE(Submit(plain).ok());
  EXPECT_EQ(Revision(), before + 9);
}

}  // namespace
}  // namespace ipsrt
