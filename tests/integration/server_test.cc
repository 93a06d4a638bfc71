#include "service/server.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "common/ids.h"
#include "common/validation.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/export.grpc.pb.h"
#include "ipsrt/v1/questionnaire.grpc.pb.h"
#include "ipsrt/v1/workflow.grpc.pb.h"
#include "runtime/step.h"
#include "sqlite3.h"
#include "tests/testing/sqlite_db.h"
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
    // A copy of the shipped templates, so tests can change the directory
    // and reload.
    workflow_dir_ = dir_.File("workflows");
    std::filesystem::create_directories(workflow_dir_);
    for (const char* f :
         {"ipsrt-standard.yaml", "ipsrt-preventive-first.yaml"}) {
      std::filesystem::copy_file(
          std::string(IPSRT_SOURCE_DIR) + "/workflows/" + f,
          workflow_dir_ + "/" + f);
    }
    absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
        WorkflowCatalog::LoadDirectories({workflow_dir_});
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    workflows_ = std::make_unique<WorkflowRegistry>(
        *catalog, std::vector<std::string>{workflow_dir_});
    // The built-in instruments, loaded as ipsrtd loads them (by bare name
    // from the engine's plugin directory).
    PluginConfig core;
    core.path = "libipsrt_core_instruments.so";
    core.transport = PluginTransportKind::kInProcess;
    core.location = "ipsrtd.yaml:1:1";
    PluginHostOptions host;
    host.plugin_dir = IPSRT_PLUGIN_DIR;
    absl::StatusOr<std::unique_ptr<PluginRegistry>> plugins =
        PluginRegistry::Load({core}, host);
    ASSERT_TRUE(plugins.ok()) << plugins.status();
    plugins_ = *std::move(plugins);
    absl::StatusOr<std::unique_ptr<QuestionnaireCatalog>> questionnaires =
        QuestionnaireCatalog::Build(*plugins_);
    ASSERT_TRUE(questionnaires.ok()) << questionnaires.status();
    questionnaires_ = *std::move(questionnaires);
    absl::StatusOr<std::unique_ptr<IpsrtServer>> server =
        IpsrtServer::Start(ServerOptions{"127.0.0.1:0", 64 * 1024},
                           ServerDeps{store_.get(),
                                      &clock_,
                                      &ids_,
                                      workflows_.get(),
                                      {{"crisis line"}},
                                      plugins_.get(),
                                      questionnaires_.get()});
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

  static v1::CreateEnrollmentRequest ValidCreate(
      const std::string& request_id) {
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
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
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
  std::string workflow_dir_;
  FakeClock clock_{kNow};
  RandomIdGenerator ids_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<WorkflowRegistry> workflows_;
  // Declared before the server, so they outlive it.
  std::unique_ptr<PluginRegistry> plugins_;
  std::unique_ptr<QuestionnaireCatalog> questionnaires_;
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
  // auth.mode none: every caller is the local admin.
  EXPECT_EQ(ev.actor().subject(), "local");
  EXPECT_EQ(ev.actor().role(), "admin");
  EXPECT_EQ(ev.summary(), "Enrolled in ipsrt-standard@1 at stage initial");
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
  EXPECT_EQ(
      s.error_message(),
      absl::StrCat("enrollment tenants/t2/enrollments/", id, " not found"));
  v1::ListEnrollmentsRequest list;
  list.set_parent("tenants/t2");
  v1::ListEnrollmentsResponse listed;
  ASSERT_TRUE(List(list, &listed).ok());
  EXPECT_EQ(listed.enrollments_size(), 0);
}

// One enrollment whose stored snapshot is damaged in the SQLite file: it
// answers DATA_LOSS for itself only; the listing returns the others and
// names it; FindUnreadableEnrollments finds it.
TEST_F(ServerTest, OneUnreadableEnrollmentNeverBreaksTheOthers) {
  std::vector<v1::Enrollment> created(3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Create(ValidCreate(absl::StrCat("r-", i)), &created[i]).ok());
  }
  const std::string bad_name = created[1].name();
  const std::string bad_id = bad_name.substr(bad_name.rfind('/') + 1);
  // A second connection to the same file, as a damaged disk or a bad
  // manual edit would leave it: bytes that are not an EnrollmentState.
  testing::SqliteDb(dir_.File("ipsrt.db"))
      .SetSnapshot(bad_id, std::string("\xff\xff\xff\xff\xff\x0a", 6));
  v1::Enrollment got;
  grpc::Status s = Get(bad_name, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_TRUE(Get(created[0].name(), &got).ok());
  EXPECT_TRUE(Get(created[2].name(), &got).ok());

  v1::ListEnrollmentsRequest list;
  list.set_parent("tenants/t1");
  v1::ListEnrollmentsResponse listed;
  s = List(list, &listed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::set<std::string> names;
  for (const v1::Enrollment& e : listed.enrollments()) names.insert(e.name());
  EXPECT_EQ(names,
            (std::set<std::string>{created[0].name(), created[2].name()}));
  ASSERT_EQ(listed.unreadable_size(), 1);
  EXPECT_EQ(listed.unreadable(0).name(), bad_name);
  EXPECT_EQ(listed.unreadable(0).reason(),
            "the stored snapshot cannot be parsed");

  absl::StatusOr<std::vector<v1::UnreadableRecord>> found =
      FindUnreadableEnrollments(*store_, "t1");
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].name(), bad_name);
  found = FindUnreadableEnrollments(*store_, "t2");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_TRUE(found->empty());
}

// GetEnrollment reads only the public view from the stored snapshot. Its
// answer is the view a full parse gives, also when the view is stored in
// two pieces around the state's other fields (protobuf merges them); a
// snapshot cut off after the view, or one whose other fields are not a
// message, is DATA_LOSS.
TEST_F(ServerTest, GetReadsTheViewAsAFullParseDoes) {
  v1::Enrollment e;
  ASSERT_TRUE(Create(ValidCreate("r-view"), &e).ok());
  const std::string id = e.name().substr(e.name().rfind('/') + 1);
  // Field 1 (the view) as its own serialized message.
  auto view_field = [](const v1::Enrollment& view) {
    internal::EnrollmentState only;
    *only.mutable_enrollment() = view;
    return only.SerializeAsString();
  };
  v1::Enrollment first;
  first.set_name(e.name());
  first.set_stage("a stage the second piece replaces");
  first.set_revision(41);
  v1::Enrollment second = e;
  second.clear_name();
  second.set_revision(0);  // proto3: an unset field leaves 41 in place
  internal::EnrollmentState rest;
  (*rest.mutable_scores())["phq9.total"] = 7;
  rest.add_tasks()->set_task_id("initial.baseline-phq9");
  rest.set_last_event_hash(std::string(64, 'a'));
  const std::string snapshot = absl::StrCat(
      view_field(first), rest.SerializeAsString(), view_field(second));
  internal::EnrollmentState parsed;
  ASSERT_TRUE(parsed.ParseFromString(snapshot));
  ASSERT_EQ(parsed.enrollment().revision(), 41);
  ASSERT_EQ(parsed.enrollment().stage(), e.stage());

  auto store_snapshot = [&](const std::string& bytes) {
    testing::SqliteDb(dir_.File("ipsrt.db")).SetSnapshot(id, bytes);
  };
  ASSERT_NO_FATAL_FAILURE(store_snapshot(snapshot));
  v1::Enrollment got;
  grpc::Status s = Get(e.name(), &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      got, parsed.enrollment()))
      << got.DebugString() << " against " << parsed.enrollment().DebugString();

  // Cut off inside the other fields, and a field that is not a message.
  for (const std::string& damaged :
       {snapshot.substr(0, view_field(first).size() + 5),
        absl::StrCat(view_field(e), std::string("\x4a\x7f\x01", 3))}) {
    ASSERT_NO_FATAL_FAILURE(store_snapshot(damaged));
    s = Get(e.name(), &got);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  }
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

TEST_F(ServerTest, ExportWithoutExporterPluginsSaysSo) {
  v1::Enrollment e;
  ASSERT_TRUE(Create(ValidCreate("r-export"), &e).ok());
  auto exports = v1::ExportService::NewStub(channel_);
  grpc::ClientContext ctx;
  v1::ExportEnrollmentRequest request;
  request.set_name(e.name());
  request.set_format("fhir-r4-collection");
  v1::ExportEnrollmentResponse resp;
  grpc::Status s = exports->ExportEnrollment(&ctx, request, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "format: no loaded exporter plugin renders \"fhir-r4-collection\" "
            "(no exporter plugin is loaded)");
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
    EXPECT_EQ(info.schema_version(), 10);
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

namespace ipsrt {
namespace {

// Events through gRPC: a course, idempotency, concurrency, safety routing,
// tasks, and the stored snapshot equal to the replayed log.
class EventsTest : public ServerTest {
 protected:
  v1::Enrollment Enroll() {
    v1::Enrollment e;
    grpc::Status s = Create(ValidCreate("enroll-1"), &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return e;
  }
  grpc::Status Submit(const std::string& name, const std::string& request_id,
                      int64_t expected, v1::EventPayload payload,
                      v1::SubmitEventResponse* out) {
    v1::SubmitEventRequest r;
    r.set_name(name);
    r.set_request_id(request_id);
    r.set_expected_revision(expected);
    *r.mutable_event() = std::move(payload);
    grpc::ClientContext ctx;
    return enrollments_->SubmitEvent(&ctx, r, out);
  }
  static v1::EventPayload Done(const std::string& task) {
    v1::EventPayload p;
    p.mutable_task_completed()->set_task_id(task);
    return p;
  }
  static v1::EventPayload Phq9(std::vector<int> answers) {
    v1::EventPayload p;
    auto* r = p.mutable_questionnaire_response();
    r->set_questionnaire_id("phq9");
    for (size_t i = 0; i < answers.size(); ++i) {
      (*r->mutable_answers())[absl::StrCat(i + 1)] = answers[i];
    }
    return p;
  }
  static v1::EventPayload Session() {
    v1::EventPayload p;
    p.mutable_session_held();
    return p;
  }
  // ReplayFromStore folds the stored events and compares with the snapshot.
  void ExpectReplayEqualsSnapshot(const std::string& name) {
    absl::StatusOr<EnrollmentName> n = ParseEnrollmentName("name", name);
    ASSERT_TRUE(n.ok());
    absl::StatusOr<EnrollmentRow> row = store_->GetEnrollment(n->tenant, n->id);
    ASSERT_TRUE(row.ok());
    absl::StatusOr<std::vector<EventRow>> rows =
        store_->ListEvents(n->tenant, n->id, 0, 100000);
    ASSERT_TRUE(rows.ok());
    std::vector<v1::Event> events;
    std::string prev;
    for (const EventRow& r : *rows) {
      v1::Event e;
      ASSERT_TRUE(e.ParseFromString(r.payload));
      EXPECT_EQ(r.prev_hash, prev) << "chain broken at " << r.sequence;
      EXPECT_EQ(EventHash(prev, e), e.hash()) << "event " << r.sequence;
      prev = e.hash();
      events.push_back(std::move(e));
    }
    auto catalog = workflows_->Get();
    absl::StatusOr<internal::EnrollmentState> replayed = runtime::Replay(
        [&](int version) {
          return catalog->Find(
              events[0].payload().enrollment_created().workflow_id(), version);
        },
        &Enrollments::LoadZone, name, events);
    ASSERT_TRUE(replayed.ok()) << replayed.status();
    EXPECT_EQ(DeterministicBytes(*replayed), row->snapshot);
  }
};

TEST_F(EventsTest, CourseThroughGrpcReplaysToTheStoredSnapshot) {
  v1::Enrollment e = Enroll();
  int64_t rev = e.revision();
  int n = 0;
  auto step = [&](v1::EventPayload p) {
    clock_.Advance(absl::Hours(24));
    v1::SubmitEventResponse r;
    grpc::Status s = Submit(e.name(), absl::StrCat("ev-", n++), rev, p, &r);
    EXPECT_TRUE(s.ok()) << s.error_message();
    rev = r.enrollment().revision();
    return r;
  };
  for (const char* t : {"history", "interpersonal-inventory", "life-chart",
                        "routines-review"}) {
    step(Done(t));
  }
  {
    // The snapshot keeps only open tasks; with include_closed, the tasks
    // closed in the current stage come from the event log.
    grpc::ClientContext ctx;
    v1::ListTasksRequest lt;
    lt.set_parent(e.name());
    lt.set_include_closed(true);
    v1::ListTasksResponse all;
    ASSERT_TRUE(enrollments_->ListTasks(&ctx, lt, &all).ok());
    std::set<std::string> done;
    for (const auto& t : all.tasks()) {
      if (t.status() == v1::Task::DONE) done.insert(t.task_id());
    }
    EXPECT_THAT(done, ::testing::IsSupersetOf({"history", "life-chart"}));
  }
  v1::SubmitEventResponse scored = step(Phq9({1, 2, 1, 1, 0, 1, 1, 0, 0}));
  EXPECT_EQ(scored.scores().at("phq9.total"), 7);
  EXPECT_EQ(scored.band(), "mild");
  EXPECT_TRUE(scored.crisis_resources().empty());
  v1::EventPayload asrm;
  asrm.mutable_questionnaire_response()->set_questionnaire_id("asrm");
  for (int i = 1; i <= 5; ++i) {
    (*asrm.mutable_questionnaire_response()
          ->mutable_answers())[absl::StrCat(i)] = 0;
  }
  step(asrm);
  step(Session());
  step(Session());
  v1::SubmitEventResponse moved = step(Session());
  EXPECT_EQ(moved.enrollment().stage(), "intermediate");

  grpc::ClientContext ctx;
  v1::ListTasksRequest lt;
  lt.set_parent(e.name());
  v1::ListTasksResponse tasks;
  ASSERT_TRUE(enrollments_->ListTasks(&ctx, lt, &tasks).ok());
  std::vector<std::string> ids;
  for (const auto& t : tasks.tasks()) ids.push_back(t.task_id());
  EXPECT_THAT(
      ids, ::testing::UnorderedElementsAre("goal", "weekly-phq9", "weekly-asrm",
                                           "srm-diary", "disruption-plan"));

  ExpectReplayEqualsSnapshot(e.name());
}

TEST_F(EventsTest, IdempotentRetryAndStaleRevision) {
  v1::Enrollment e = Enroll();
  v1::SubmitEventResponse first, again, stale;
  ASSERT_TRUE(Submit(e.name(), "s-1", 1, Session(), &first).ok());
  EXPECT_EQ(first.enrollment().revision(), 2);
  ASSERT_TRUE(Submit(e.name(), "s-1", 1, Session(), &again).ok());
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  grpc::Status s = Submit(e.name(), "s-2", 1, Session(), &stale);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(s.error_message(),
            absl::StrCat("expected_revision: enrollment ",
                         e.name().substr(e.name().rfind('/') + 1),
                         " is at revision 2, not 1; read it again and retry"));
  // expected_revision 0 appends to whatever is current.
  ASSERT_TRUE(Submit(e.name(), "s-3", 0, Session(), &stale).ok());
  EXPECT_EQ(stale.enrollment().revision(), 3);
  // Its retry is applied again and found committed inside the commit's
  // transaction: the first result, nothing appended.
  v1::SubmitEventResponse retried;
  ASSERT_TRUE(Submit(e.name(), "s-3", 0, Session(), &retried).ok());
  EXPECT_EQ(retried.SerializeAsString(), stale.SerializeAsString());
  v1::Enrollment now;
  ASSERT_TRUE(Get(e.name(), &now).ok());
  EXPECT_EQ(now.revision(), 3);
  s = Submit(e.name(), "s-1", 0, Done("history"), &stale);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(EventsTest, ConcurrentWritersWithoutRevisionAllLand) {
  v1::Enrollment e = Enroll();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        v1::SubmitEventResponse r;
        grpc::Status s =
            Submit(e.name(), absl::StrCat("c-", t, "-", i), 0, Session(), &r);
        if (!s.ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  v1::Enrollment got;
  ASSERT_TRUE(Get(e.name(), &got).ok());
  EXPECT_EQ(got.revision(), 41);
  ExpectReplayEqualsSnapshot(e.name());
}

TEST_F(EventsTest, Item9RoutesAnUrgentAlertWithCrisisResources) {
  v1::Enrollment e = Enroll();
  v1::SubmitEventResponse r;
  ASSERT_TRUE(
      Submit(e.name(), "p-1", 0, Phq9({0, 0, 0, 0, 0, 0, 0, 0, 1}), &r).ok());
  EXPECT_THAT(r.flags(), ElementsAre("phq9.item9_positive"));
  EXPECT_THAT(r.crisis_resources(), ElementsAre("crisis line"));
  std::string alert_id;
  for (const auto& o : r.event().outcomes()) {
    if (o.kind() == v1::Outcome::ALERT_RAISED) alert_id = o.subject();
  }
  EXPECT_EQ(alert_id, "phq9-item9-2");
  // A retry is answered from the idempotency record, which keeps the
  // enrollment and the crisis resources and takes the event, its scores
  // and flags from the event log: the same answer, field for field.
  v1::SubmitEventResponse again;
  ASSERT_TRUE(
      Submit(e.name(), "p-1", 0, Phq9({0, 0, 0, 0, 0, 0, 0, 0, 1}), &again)
          .ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(again, r))
      << again.DebugString();
  EXPECT_EQ(again.scores().at("phq9.total"), 1);
  EXPECT_THAT(again.crisis_resources(), ElementsAre("crisis line"));
  // The escalation is in the outbox, due at the deadline, in the same
  // commit as the event.
  grpc::ClientContext ctx;
  v1::ListTasksRequest lt;
  lt.set_parent(e.name());
  v1::ListTasksResponse tasks;
  ASSERT_TRUE(enrollments_->ListTasks(&ctx, lt, &tasks).ok());
  ASSERT_GT(tasks.tasks_size(), 0);
  EXPECT_EQ(tasks.tasks(0).priority(), v1::Task::URGENT);
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(tasks.tasks(0).acknowledge_by()),
            absl::ToUnixMicros(kNow + absl::Hours(4)));

  v1::EventPayload bad = Phq9({0, 0, 0, 0, 0, 0, 0, 0, 4});
  grpc::Status s = Submit(e.name(), "p-2", 0, bad, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "event.questionnaire_response.answers[\"9\"]: 4 is out of range "
            "0-3");
  bad = Phq9({0, 0, 0});
  s = Submit(e.name(), "p-3", 0, bad, &r);
  EXPECT_EQ(s.error_message(),
            "event.questionnaire_response.answers[\"4\"]: required item of "
            "phq9 is missing");
  // Scored by the core-instruments plugin: an instrument no loaded plugin
  // serves is named by its field.
  v1::EventPayload unknown;
  unknown.mutable_questionnaire_response()->set_questionnaire_id("phq8");
  s = Submit(e.name(), "p-4", 0, unknown, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(),
            "event.questionnaire_response.questionnaire_id: questionnaire "
            "\"phq8\" is not served by any loaded plugin");
  ExpectReplayEqualsSnapshot(e.name());
}

// A SubmitEvent's idempotency record keeps what its answer alone says and
// takes from the enrollment what never changes after creation (name,
// patient, workflow, labels, creation time): a retry after the enrollment
// moved on (another zone and clinician, a later revision) is still the
// first answer, field for field.
TEST_F(EventsTest, RetryAfterTheEnrollmentChangedIsTheFirstAnswer) {
  v1::CreateEnrollmentRequest create = ValidCreate("enroll-labels");
  (*create.mutable_labels())["site"] = "north";
  (*create.mutable_labels())["cohort"] = "2026";
  v1::Enrollment e;
  grpc::Status s = Create(create, &e);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::SubmitEventResponse first;
  ASSERT_TRUE(
      Submit(e.name(), "p-labels", 0, Phq9({1, 0, 0, 0, 0, 0, 0, 0, 0}), &first)
          .ok());
  v1::UpdateEnrollmentRequest u;
  u.set_name(e.name());
  u.set_request_id("u-labels");
  u.set_expected_revision(first.enrollment().revision());
  u.set_time_zone("Australia/Sydney");
  u.set_clinician_ref("Practitioner/99");
  u.set_reason("moved");
  v1::Enrollment moved;
  grpc::ClientContext ctx;
  s = enrollments_->UpdateEnrollment(&ctx, u, &moved);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(moved.clinician_ref(), "Practitioner/99");

  v1::SubmitEventResponse again;
  ASSERT_TRUE(
      Submit(e.name(), "p-labels", 0, Phq9({1, 0, 0, 0, 0, 0, 0, 0, 0}), &again)
          .ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(again, first))
      << again.DebugString() << "\nfirst:\n"
      << first.DebugString();
  EXPECT_EQ(again.enrollment().clinician_ref(),
            first.enrollment().clinician_ref());
  EXPECT_NE(again.enrollment().clinician_ref(), "Practitioner/99");
  EXPECT_EQ(again.enrollment().labels().at("site"), "north");
  EXPECT_EQ(again.enrollment().name(), e.name());
}

TEST_F(EventsTest, UpdateEnrollmentChangesZoneAndClinicianAsAnEvent) {
  v1::Enrollment e = Enroll();
  auto update = [&](const std::string& id, int64_t expected,
                    const std::string& zone, v1::Enrollment* out) {
    v1::UpdateEnrollmentRequest r;
    r.set_name(e.name());
    r.set_request_id(id);
    r.set_expected_revision(expected);
    r.set_time_zone(zone);
    r.set_reason("moved to Sydney");
    grpc::ClientContext ctx;
    return enrollments_->UpdateEnrollment(&ctx, r, out);
  };
  v1::Enrollment moved;
  grpc::Status s = update("u-1", 1, "Australia/Sydney", &moved);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(moved.time_zone(), "Australia/Sydney");
  EXPECT_EQ(moved.clinician_ref(), "Practitioner/7");
  EXPECT_EQ(moved.revision(), 2);
  v1::Enrollment ignored;
  s = update("u-2", 1, "Europe/Paris", &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  s = update("u-3", 2, "Mars/Olympus", &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "time_zone: unknown IANA time zone \"Mars/Olympus\"; e.g. "
            "\"Europe/London\"");
  s = update("u-4", 2, "", &ignored);
  EXPECT_EQ(s.error_message(),
            "time_zone: give a new time_zone or clinician_ref to change");
  grpc::ClientContext ctx;
  v1::GetTimelineRequest tl;
  tl.set_name(e.name());
  v1::GetTimelineResponse timeline;
  ASSERT_TRUE(enrollments_->GetTimeline(&ctx, tl, &timeline).ok());
  ASSERT_EQ(timeline.events_size(), 2);
  EXPECT_EQ(timeline.events(1).type(), "enrollment.updated");
  EXPECT_EQ(timeline.events(1).payload().enrollment_updated().reason(),
            "moved to Sydney");
  ExpectReplayEqualsSnapshot(e.name());
}

TEST_F(EventsTest, ValidateReloadAndMigrate) {
  auto workflows = v1::WorkflowService::NewStub(channel_);
  {
    grpc::ClientContext ctx;
    v1::ValidateWorkflowRequest req;
    req.set_file_name("x.yaml");
    req.set_yaml(
        "id: x\nversion: 1\ntitle: X\nstages:\n  - {id: a, title: A, "
        "cadence: P1W, exti: []}\n");
    v1::ValidateWorkflowResponse resp;
    ASSERT_TRUE(workflows->ValidateWorkflow(&ctx, req, &resp).ok());
    EXPECT_FALSE(resp.valid());
    ASSERT_EQ(resp.diagnostics_size(), 1);
    EXPECT_EQ(resp.diagnostics(0).line(), 5);
    EXPECT_EQ(resp.diagnostics(0).column(), 37);
    EXPECT_EQ(resp.diagnostics(0).path(), "stages[0].exti");
  }
  v1::Enrollment e = Enroll();
  // A broken file refuses the whole reload; the old set keeps serving.
  {
    std::ofstream(workflow_dir_ + "/broken.yaml") << "id: broken\nversion: x\n";
    grpc::ClientContext ctx;
    v1::ReloadWorkflowsResponse resp;
    ASSERT_TRUE(
        workflows->ReloadWorkflows(&ctx, v1::ReloadWorkflowsRequest(), &resp)
            .ok());
    EXPECT_FALSE(resp.reloaded());
    EXPECT_GE(resp.diagnostics_size(), 1);
    EXPECT_THAT(resp.serving(), ::testing::Contains("ipsrt-standard@1"));
    std::filesystem::remove(workflow_dir_ + "/broken.yaml");
  }
  // Version 2 replaces the file of version 1; version 1 stays loaded for
  // the enrollments on it.
  {
    std::ifstream in(workflow_dir_ + "/ipsrt-standard.yaml");
    std::stringstream text;
    text << in.rdbuf();
    std::string v2 = text.str();
    v2.replace(v2.find("version: 1"), 10, "version: 2");
    v2.replace(v2.find("id: initial"), 11, "id: intake");
    std::ofstream(workflow_dir_ + "/ipsrt-standard.yaml") << v2;
    grpc::ClientContext ctx;
    v1::ReloadWorkflowsResponse resp;
    ASSERT_TRUE(
        workflows->ReloadWorkflows(&ctx, v1::ReloadWorkflowsRequest(), &resp)
            .ok());
    EXPECT_TRUE(resp.reloaded()) << resp.DebugString();
    EXPECT_THAT(resp.serving(), ::testing::IsSupersetOf(
                                    {"ipsrt-standard@1", "ipsrt-standard@2"}));
  }
  v1::SubmitEventResponse r;
  ASSERT_TRUE(Submit(e.name(), "before", 0, Session(), &r).ok());
  EXPECT_EQ(r.enrollment().workflow_version(), 1);

  v1::MigrateEnrollmentsRequest m;
  m.set_parent("tenants/t1");
  m.set_workflow_id("ipsrt-standard");
  m.set_from_version(1);
  m.set_to_version(2);
  m.set_dry_run(true);
  {
    grpc::ClientContext ctx;
    v1::MigrateEnrollmentsResponse resp;
    grpc::Status s = workflows->MigrateEnrollments(&ctx, m, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(),
              "stage_mapping: no mapping for stage \"initial\" (1 enrollment "
              "is in it)");
  }
  (*m.mutable_stage_mapping())["initial"] = "intake";
  {
    grpc::ClientContext ctx;
    v1::MigrateEnrollmentsResponse resp;
    ASSERT_TRUE(workflows->MigrateEnrollments(&ctx, m, &resp).ok());
    EXPECT_TRUE(resp.dry_run());
    ASSERT_EQ(resp.enrollments_size(), 1);
    EXPECT_EQ(resp.enrollments(0).to_stage(), "intake");
    v1::Enrollment unchanged;
    ASSERT_TRUE(Get(e.name(), &unchanged).ok());
    EXPECT_EQ(unchanged.workflow_version(), 1);
  }
  m.set_dry_run(false);
  m.set_request_id("migrate-1");
  for (int attempt = 0; attempt < 2; ++attempt) {
    grpc::ClientContext ctx;
    v1::MigrateEnrollmentsResponse resp;
    ASSERT_TRUE(workflows->MigrateEnrollments(&ctx, m, &resp).ok());
    if (attempt == 0) {
      ASSERT_EQ(resp.enrollments_size(), 1);
      EXPECT_EQ(resp.enrollments(0).revision(), 3);
    } else {
      // Nothing left on version 1.
      EXPECT_EQ(resp.enrollments_size(), 0);
    }
  }
  v1::Enrollment moved;
  ASSERT_TRUE(Get(e.name(), &moved).ok());
  EXPECT_EQ(moved.workflow_version(), 2);
  EXPECT_EQ(moved.stage(), "intake");
  ExpectReplayEqualsSnapshot(e.name());
}

}  // namespace
}  // namespace ipsrt

namespace ipsrt {
namespace {

// Two engines on one database file, as two processes would be: writers of
// one enrollment in different engines meet the store's revision check, and
// events submitted without expected_revision are applied again on top of
// the other engine's event instead of failing.
TEST(TwoEnginesTest, WritersInDifferentEnginesRetryOnTopOfEachOther) {
  testing::TempDir dir;
  SqliteStore::Options o;
  o.path = dir.File("shared.db");
  auto a = SqliteStore::Open(o);
  auto b = SqliteStore::Open(o);
  ASSERT_TRUE(a.ok() && b.ok());
  auto catalog = WorkflowCatalog::LoadDirectories(
      {std::string(IPSRT_SOURCE_DIR) + "/workflows"});
  ASSERT_TRUE(catalog.ok());
  WorkflowRegistry workflows(*catalog);
  RandomIdGenerator ids;
  Enrollments first({a->get(), SystemClock::Get(), &ids, &workflows, {}});
  Enrollments second({b->get(), SystemClock::Get(), &ids, &workflows, {}});
  v1::Actor actor;
  actor.set_subject("test");

  v1::CreateEnrollmentRequest create;
  create.set_parent("tenants/t1");
  create.set_request_id("create");
  create.set_patient_ref("Patient/1");
  create.set_workflow_id("ipsrt-standard");
  create.set_time_zone("UTC");
  create.set_clinician_ref("Practitioner/1");
  absl::Notification created;
  std::string name;
  first.Create(create, actor, [&](absl::StatusOr<v1::Enrollment> e) {
    ASSERT_TRUE(e.ok()) << e.status();
    name = e->name();
    created.Notify();
  });
  created.WaitForNotification();

  constexpr int kPerEngine = 15;
  std::atomic<int> ok{0}, failed{0};
  absl::BlockingCounter pending(2 * kPerEngine);
  std::vector<std::thread> threads;
  for (Enrollments* engine : {&first, &second}) {
    threads.emplace_back([&, engine] {
      for (int i = 0; i < kPerEngine; ++i) {
        v1::SubmitEventRequest r;
        r.set_name(name);
        r.set_request_id(absl::StrCat(engine == &first ? "a-" : "b-", i));
        r.mutable_event()->mutable_session_held();
        engine->Submit(r, actor,
                       [&](absl::StatusOr<v1::SubmitEventResponse> resp) {
                         if (resp.ok()) {
                           ++ok;
                         } else {
                           ++failed;
                           ADD_FAILURE() << resp.status();
                         }
                         pending.DecrementCount();
                       });
      }
    });
  }
  for (auto& t : threads) t.join();
  pending.Wait();
  EXPECT_EQ(ok, 2 * kPerEngine);
  EXPECT_EQ(failed, 0);
  v1::GetEnrollmentRequest get;
  get.set_name(name);
  absl::StatusOr<v1::Enrollment> e = first.Get(get);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->revision(), 1 + 2 * kPerEngine);
}

}  // namespace
}  // namespace ipsrt
