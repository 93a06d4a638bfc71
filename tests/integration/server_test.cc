#include "service/server.h"

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/workflow.grpc.pb.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

const absl::Time kNow = absl::FromUnixSeconds(1790000000);

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStore::Options o;
    o.path = dir_.File("ipsrt.db");
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
        WorkflowCatalog::LoadDirectories(
            {std::string(IPSRT_SOURCE_DIR) + "/workflows"});
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    workflows_ = std::make_unique<WorkflowRegistry>(*catalog);
    absl::StatusOr<std::unique_ptr<IpsrtServer>> server = IpsrtServer::Start(
        ServerOptions{"127.0.0.1:0", 64 * 1024},
        ServerDeps{store_.get(), &clock_, &ids_, workflows_.get(), {{"crisis line"}}});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    enrollments_ = v1::EnrollmentService::NewStub(channel_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
    if (store_) store_->Close();
  }

  static v1::CreateEnrollmentRequest ValidCreate(const std::string& request_id) {
    v1::CreateEnrollmentRequest r;
    r.set_parent("tenants/t1");
    r.set_request_id(request_id);
    r.set_patient_ref("Patient/p-" + request_id);
    r.set_workflow_id("ipsrt-standard");
    r.set_time_zone("America/New_York");
    r.set_clinician_ref("Practitioner/7");
    return r;
  }

  grpc::Status Create(const v1::CreateEnrollmentRequest& r, v1::Enrollment* e) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return enrollments_->CreateEnrollment(&ctx, r, e);
  }
  grpc::Status Get(const std::string& name, v1::Enrollment* e) {
    grpc::ClientContext ctx;
    v1::GetEnrollmentRequest r;
    r.set_name(name);
    return enrollments_->GetEnrollment(&ctx, r, e);
  }
  grpc::Status List(const v1::ListEnrollmentsRequest& r,
                    v1::ListEnrollmentsResponse* out) {
    grpc::ClientContext ctx;
    return enrollments_->ListEnrollments(&ctx, r, out);
  }

  testing::TempDir dir_;
  FakeClock clock_{kNow};
  RandomIdGenerator ids_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<WorkflowRegistry> workflows_;
  std::unique_ptr<IpsrtServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollments_;
};

TEST_F(ServerTest, CreateGetListAndTimeline) {
  v1::CreateEnrollmentRequest req = ValidCreate("r-1");
  (*req.mutable_labels())["site"] = "north";
  v1::Enrollment e;
  grpc::Status s = Create(req, &e);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(e.name(), MatchesRegex("tenants/t1/enrollments/[0-9a-z]{26}"));
  EXPECT_EQ(e.patient_ref(), "Patient/p-r-1");
  EXPECT_EQ(e.workflow_id(), "ipsrt-standard");
  EXPECT_EQ(e.workflow_version(), 1);
  EXPECT_EQ(e.time_zone(), "America/New_York");
  EXPECT_EQ(e.clinician_ref(), "Practitioner/7");
  EXPECT_EQ(e.stage(), "initial");
  EXPECT_EQ(e.state(), v1::Enrollment::ACTIVE);
  EXPECT_EQ(e.revision(), 1);
  EXPECT_EQ(e.session_cadence(), "P1W");
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(e.create_time()),
            absl::ToUnixMicros(kNow));
  EXPECT_EQ(e.labels().at("site"), "north");

  v1::Enrollment got;
  ASSERT_TRUE(Get(e.name(), &got).ok());
  EXPECT_EQ(got.SerializeAsString(), e.SerializeAsString());

  v1::ListEnrollmentsRequest list;
  list.set_parent("tenants/t1");
  v1::ListEnrollmentsResponse listed;
  ASSERT_TRUE(List(list, &listed).ok());
  ASSERT_EQ(listed.enrollments_size(), 1);
  EXPECT_EQ(listed.enrollments(0).name(), e.name());
  EXPECT_EQ(listed.next_page_token(), "");

  grpc::ClientContext ctx;
  v1::GetTimelineRequest tl;
  tl.set_name(e.name());
  v1::GetTimelineResponse timeline;
  ASSERT_TRUE(enrollments_->GetTimeline(&ctx, tl, &timeline).ok());
  ASSERT_EQ(timeline.events_size(), 1);
  const v1::Event& ev = timeline.events(0);
  EXPECT_EQ(ev.sequence(), 1);
  EXPECT_EQ(ev.type(), "enrollment.created");
  EXPECT_EQ(ev.request_id(), "r-1");
  EXPECT_EQ(ev.actor().subject(), "anonymous");
  EXPECT_EQ(ev.summary(),
            "Enrolled in ipsrt-standard@1 at stage initial");
  EXPECT_EQ(ev.hash(), EventHash("", ev));
}

TEST_F(ServerTest, RetryReturnsFirstResultAndCreatesNothing) {
  v1::Enrollment first, second;
  ASSERT_TRUE(Create(ValidCreate("r-1"), &first).ok());
  clock_.Advance(absl::Minutes(5));
  ASSERT_TRUE(Create(ValidCreate("r-1"), &second).ok());
  EXPECT_EQ(second.SerializeAsString(), first.SerializeAsString());

  v1::CreateEnrollmentRequest other = ValidCreate("r-1");
  other.set_patient_ref("Patient/someone-else");
  v1::Enrollment ignored;
  grpc::Status s = Create(other, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(),
            "request_id: \"r-1\" was already used for a different "
            "CreateEnrollment request; use a new request id for a new "
            "request");

  v1::ListEnrollmentsRequest list;
  list.set_parent("tenants/t1");
  v1::ListEnrollmentsResponse listed;
  ASSERT_TRUE(List(list, &listed).ok());
  EXPECT_EQ(listed.enrollments_size(), 1);
}

struct BadCreate {
  std::string label;
  std::function<void(v1::CreateEnrollmentRequest&)> mutate;
  grpc::StatusCode code;
  std::string message;
};

TEST_F(ServerTest, BadInputNamesTheFieldAndWritesNothing) {
  const std::vector<BadCreate> cases = {
      {"parent", [](auto& r) { r.set_parent("tenant/t1"); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "parent: expected \"tenants/{tenant}\""},
      {"request id", [](auto& r) { r.clear_request_id(); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "request_id: must not be empty; choose a unique id per request so "
       "that a retry is recognised"},
      {"patient", [](auto& r) { r.clear_patient_ref(); },
       grpc::StatusCode::INVALID_ARGUMENT, "patient_ref: must not be empty"},
      {"long patient",
       [](auto& r) { r.set_patient_ref(std::string(300, 'p')); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "patient_ref: is over 256 bytes (300)"},
      {"clinician", [](auto& r) { r.clear_clinician_ref(); },
       grpc::StatusCode::INVALID_ARGUMENT, "clinician_ref: must not be empty"},
      {"zone", [](auto& r) { r.set_time_zone("Mars/Olympus"); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "time_zone: unknown IANA time zone \"Mars/Olympus\"; e.g. "
       "\"Europe/London\""},
      {"localtime", [](auto& r) { r.set_time_zone("localtime"); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "time_zone: unknown IANA time zone \"localtime\"; e.g. "
       "\"Europe/London\""},
      {"workflow", [](auto& r) { r.set_workflow_id("nope"); },
       grpc::StatusCode::NOT_FOUND,
       "workflow_id: no workflow \"nope\" is loaded"},
      {"version", [](auto& r) { r.set_workflow_version(9); },
       grpc::StatusCode::NOT_FOUND,
       "workflow_version: version 9 of workflow \"ipsrt-standard\" is not "
       "loaded"},
      {"label", [](auto& r) { (*r.mutable_labels())["Bad"] = "x"; },
       grpc::StatusCode::INVALID_ARGUMENT,
       "labels[\"Bad\"]: key must be 1-63 characters starting with a-z"},
      {"oversized",
       [](auto& r) { (*r.mutable_labels())["big"] = std::string(70000, 'x'); },
       grpc::StatusCode::RESOURCE_EXHAUSTED,
       "Received message larger than max"},
  };
  int i = 0;
  for (const BadCreate& c : cases) {
    SCOPED_TRACE(c.label);
    v1::CreateEnrollmentRequest r = ValidCreate(absl::StrCat("bad-", i++));
    c.mutate(r);
    v1::Enrollment e;
    grpc::Status s = Create(r, &e);
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message));
  }
  v1::ListEnrollmentsRequest list;
  list.set_parent("tenants/t1");
  v1::ListEnrollmentsResponse listed;
  ASSERT_TRUE(List(list, &listed).ok());
  EXPECT_EQ(listed.enrollments_size(), 0);
  // A rejected request does not consume its request id.
  v1::Enrollment e;
  EXPECT_TRUE(Create(ValidCreate("bad-0"), &e).ok());
}

TEST_F(ServerTest, PagingAndFilters) {
  std::set<std::string> created;
  for (int i = 0; i < 7; ++i) {
    v1::CreateEnrollmentRequest r = ValidCreate(absl::StrCat("p-", i));
    if (i < 2) r.set_clinician_ref("Practitioner/other");
    v1::Enrollment e;
    ASSERT_TRUE(Create(r, &e).ok());
    created.insert(e.name());
    clock_.Advance(absl::Seconds(i % 2));  // some share a create time
  }
  v1::ListEnrollmentsRequest req;
  req.set_parent("tenants/t1");
  req.set_page_size(3);
  std::vector<int> sizes;
  std::set<std::string> seen;
  std::string first_token;
  do {
    v1::ListEnrollmentsResponse page;
    ASSERT_TRUE(List(req, &page).ok());
    sizes.push_back(page.enrollments_size());
    for (const auto& e : page.enrollments()) {
      EXPECT_TRUE(seen.insert(e.name()).second) << "repeated " << e.name();
    }
    if (first_token.empty()) first_token = page.next_page_token();
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  EXPECT_THAT(sizes, ElementsAre(3, 3, 1));
  EXPECT_EQ(seen, created);

  v1::ListEnrollmentsRequest other;
  other.set_parent("tenants/t1");
  other.set_clinician_ref("Practitioner/other");
  v1::ListEnrollmentsResponse filtered;
  ASSERT_TRUE(List(other, &filtered).ok());
  EXPECT_EQ(filtered.enrollments_size(), 2);

  other.set_page_token(first_token);
  grpc::Status s = List(other, &filtered);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "page_token: was made for a listing with other filters; start "
            "again without a page token");
}

TEST_F(ServerTest, TenantsAreIsolated) {
  v1::Enrollment e;
  ASSERT_TRUE(Create(ValidCreate("r-1"), &e).ok());
  std::string id = e.name().substr(e.name().rfind('/') + 1);
  v1::Enrollment got;
  grpc::Status s = Get("tenants/t2/enrollments/" + id, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(),
            absl::StrCat("enrollment tenants/t2/enrollments/", id,
                         " not found"));
  v1::ListEnrollmentsRequest list;
  list.set_parent("tenants/t2");
  v1::ListEnrollmentsResponse listed;
  ASSERT_TRUE(List(list, &listed).ok());
  EXPECT_EQ(listed.enrollments_size(), 0);
}

TEST_F(ServerTest, ConcurrentCreatesAllLandAndShareCommits) {
  constexpr int kThreads = 16, kPerThread = 20;
  const int64_t groups_before = store_->GroupCommits();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        v1::Enrollment e;
        if (!Create(ValidCreate(absl::StrCat("c-", t, "-", i)), &e).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  v1::ListEnrollmentsRequest list;
  list.set_parent("tenants/t1");
  list.set_page_size(500);
  v1::ListEnrollmentsResponse listed;
  ASSERT_TRUE(List(list, &listed).ok());
  EXPECT_EQ(listed.enrollments_size(), kThreads * kPerThread);
  EXPECT_LT(store_->GroupCommits() - groups_before, kThreads * kPerThread);
}

TEST_F(ServerTest, NotYetImplementedRpcsSayWhatIsMissing) {
  auto workflows = v1::WorkflowService::NewStub(channel_);
  grpc::ClientContext ctx;
  v1::ValidateWorkflowResponse resp;
  grpc::Status s =
      workflows->ValidateWorkflow(&ctx, v1::ValidateWorkflowRequest(), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("is not implemented yet: it needs"));
}

TEST_F(ServerTest, DiagnosticsAndWorkflows) {
  auto diagnostics = v1::DiagnosticsService::NewStub(channel_);
  {
    grpc::ClientContext ctx;
    v1::PingRequest req;
    req.set_payload("abc");
    v1::PingResponse resp;
    ASSERT_TRUE(diagnostics->Ping(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.payload(), "abc");
  }
  {
    grpc::ClientContext ctx;
    v1::ServerInfo info;
    ASSERT_TRUE(
        diagnostics->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info)
            .ok());
    EXPECT_EQ(info.store_kind(), "sqlite");
    EXPECT_EQ(info.schema_version(), 1);
    EXPECT_THAT(info.version(), MatchesRegex("[0-9]+\\.[0-9]+\\.[0-9]+"));
  }
  auto workflows = v1::WorkflowService::NewStub(channel_);
  {
    grpc::ClientContext ctx;
    v1::ListWorkflowsResponse resp;
    ASSERT_TRUE(
        workflows->ListWorkflows(&ctx, v1::ListWorkflowsRequest(), &resp).ok());
    ASSERT_EQ(resp.workflows_size(), 2);
    EXPECT_EQ(resp.workflows(0).id(), "ipsrt-preventive-first");
    EXPECT_EQ(resp.workflows(1).id(), "ipsrt-standard");
    EXPECT_EQ(resp.workflows(1).stages_size(), 4);
  }
  {
    grpc::ClientContext ctx;
    v1::GetWorkflowRequest req;
    req.set_id("ipsrt-standard");
    req.set_version(2);
    v1::Workflow w;
    grpc::Status s = workflows->GetWorkflow(&ctx, req, &w);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(s.error_message(), "workflow ipsrt-standard@2 is not loaded");
  }
}

}  // namespace
}  // namespace ipsrt
