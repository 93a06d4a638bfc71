// ExportService over real loopback gRPC: the real SQLite store, the real
// plugin host loading the built-in instruments and tests/plugins'
// test-exporter (a deterministic exporter built with the SDK), and real
// files under a temporary export root.
#include <fcntl.h>
#include <stdio.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ipsrt/internal/export.pb.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "ipsrt/v1/export.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "service/server.h"
#include "store/blob_codec.h"
#include "tests/testing/sqlite_db.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::StartsWith;

const absl::Time kNow = absl::FromUnixSeconds(1790000000);

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// Entries of `dir` (names only), sorted.
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class ExportTest : public ::testing::Test {
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

    control_ = dir_.File("control.txt");
    deliveries_ = dir_.File("deliveries.txt");
    std::ofstream(control_) << "";
    PluginConfig core;
    core.path = "libipsrt_core_instruments.so";
    core.location = "ipsrtd.yaml:1:1";
    PluginConfig exporter;
    exporter.path = IPSRT_TEST_EXPORTER;
    exporter.location = "ipsrtd.yaml:2:1";
    exporter.config_json =
        absl::StrCat("{\"control_file\":\"", control_,
                     "\",\"deliveries_file\":\"", deliveries_, "\"}");
    PluginHostOptions host;
    host.plugin_dir = IPSRT_PLUGIN_DIR;
    absl::StatusOr<std::unique_ptr<PluginRegistry>> plugins =
        PluginRegistry::Load({core, exporter}, host);
    ASSERT_TRUE(plugins.ok()) << plugins.status();
    plugins_ = *std::move(plugins);
    questionnaires_ = *QuestionnaireCatalog::Build(*plugins_);

    root_ = dir_.File("exports");
    exports_.root = root_;
    exports_.default_target = "ehr";
    exports_.targets.push_back({.name = "ehr",
                                .format = "test-transaction",
                                .deliverer = "test-exporter",
                                .deliverer_target = "main",
                                .location = "ipsrtd.yaml:9:5"});
    exports_.targets.push_back({.name = "backup",
                                .format = "test-collection",
                                .deliverer = "test-exporter",
                                .location = "ipsrtd.yaml:14:5"});
    ServerDeps deps{store_.get(), &clock_, &ids_, workflows_.get(), {}};
    deps.plugins = plugins_.get();
    deps.questionnaires = questionnaires_.get();
    deps.exports = &exports_;
    absl::StatusOr<std::unique_ptr<IpsrtServer>> server =
        IpsrtServer::Start(ServerOptions{"127.0.0.1:0", 1 << 20}, deps);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    enrollments_ = v1::EnrollmentService::NewStub(channel_);
    export_ = v1::ExportService::NewStub(channel_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
    if (store_) store_->Close();
  }

  void Control(const std::string& text) { std::ofstream(control_) << text; }

  v1::Enrollment Enroll(const std::string& tenant) {
    v1::CreateEnrollmentRequest r;
    r.set_parent("tenants/" + tenant);
    r.set_request_id(absl::StrCat("create-", ++counter_));
    r.set_patient_ref(absl::StrCat("Patient/", counter_));
    r.set_workflow_id("ipsrt-standard");
    r.set_time_zone("Europe/London");
    r.set_clinician_ref("Practitioner/1");
    grpc::ClientContext ctx;
    v1::Enrollment e;
    grpc::Status s = enrollments_->CreateEnrollment(&ctx, r, &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return e;
  }

  // Submit records one event and returns the enrollment's new revision.
  int64_t Submit(const std::string& name, v1::EventPayload payload) {
    v1::SubmitEventRequest r;
    r.set_name(name);
    r.set_request_id(absl::StrCat("event-", ++counter_));
    *r.mutable_event() = std::move(payload);
    grpc::ClientContext ctx;
    v1::SubmitEventResponse out;
    grpc::Status s = enrollments_->SubmitEvent(&ctx, r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out.enrollment().revision();
  }
  static v1::EventPayload Phq9(int answer) {
    v1::EventPayload p;
    auto* r = p.mutable_questionnaire_response();
    r->set_questionnaire_id("phq9");
    for (int i = 1; i <= 9; ++i) (*r->mutable_answers())[absl::StrCat(i)] = 0;
    (*r->mutable_answers())["1"] = answer;
    return p;
  }
  static v1::EventPayload Session() {
    v1::EventPayload p;
    p.mutable_session_held()->set_duration_minutes(50);
    return p;
  }
  // A short course: two PHQ-9 responses and a session. Returns the
  // revision.
  int64_t Course(const std::string& name) {
    Submit(name, Phq9(1));
    Submit(name, Session());
    return Submit(name, Phq9(2));
  }

  grpc::Status Export(const std::string& name, const std::string& format,
                      v1::ExportEnrollmentResponse* out) {
    v1::ExportEnrollmentRequest r;
    r.set_name(name);
    r.set_format(format);
    grpc::ClientContext ctx;
    return export_->ExportEnrollment(&ctx, r, out);
  }
  grpc::Status Push(const std::string& name, const std::string& request_id,
                    const std::string& target,
                    v1::PushEnrollmentResponse* out) {
    v1::PushEnrollmentRequest r;
    r.set_name(name);
    r.set_request_id(request_id);
    r.set_target(target);
    grpc::ClientContext ctx;
    return export_->PushEnrollment(&ctx, r, out);
  }
  struct BulkRun {
    grpc::Status status;
    std::vector<v1::BulkExportProgress> progress;
  };
  BulkRun Bulk(const std::string& parent, const std::string& output_dir,
               const std::string& format) {
    v1::BulkExportRequest r;
    r.set_parent(parent);
    r.set_output_dir(output_dir);
    r.set_format(format);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    BulkRun run;
    auto reader = export_->BulkExport(&ctx, r);
    v1::BulkExportProgress p;
    while (reader->Read(&p)) run.progress.push_back(p);
    run.status = reader->Finish();
    return run;
  }

  std::vector<AuditRecord> Audit(const std::string& rpc) {
    AuditFilter f;
    f.rpc = rpc;
    absl::StatusOr<std::vector<AuditRecord>> r = store_->ListAudit(f, 0, 1000);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<AuditRecord>{};
  }

  testing::TempDir dir_;
  FakeClock clock_{kNow};
  RandomIdGenerator ids_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<WorkflowRegistry> workflows_;
  std::unique_ptr<PluginRegistry> plugins_;
  std::unique_ptr<QuestionnaireCatalog> questionnaires_;
  ExportConfig exports_;
  std::unique_ptr<IpsrtServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollments_;
  std::unique_ptr<v1::ExportService::Stub> export_;
  std::string control_, deliveries_, root_;
  int counter_ = 0;
};

TEST_F(ExportTest, UnknownOrEmptyFormatNamesTheFormatsAvailable) {
  v1::Enrollment e = Enroll("t1");
  v1::ExportEnrollmentResponse out;
  grpc::Status s = Export(e.name(), "fhir-r5", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "format: no loaded exporter plugin renders \"fhir-r5\" "
            "(available: test-collection, test-resources, test-transaction)");
  s = Export(e.name(), "", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "format: must not be empty (available: test-collection, "
            "test-resources, test-transaction)");
}

TEST_F(ExportTest, MissingEnrollmentIsNotFound) {
  v1::ExportEnrollmentResponse out;
  grpc::Status s =
      Export("tenants/t1/enrollments/nope", "test-collection", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(),
            "enrollment tenants/t1/enrollments/nope not found");
  // Another tenant's id answers like a missing one.
  v1::Enrollment e = Enroll("t1");
  const std::string elsewhere = absl::StrCat(
      "tenants/t2/enrollments/", e.name().substr(e.name().rfind('/') + 1));
  s = Export(elsewhere, "test-collection", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(),
            absl::StrCat("enrollment ", elsewhere, " not found"));
}

TEST_F(ExportTest, SameEventsGiveByteIdenticalExports) {
  v1::Enrollment e = Enroll("t1");
  const int64_t revision = Course(e.name());
  v1::ExportEnrollmentResponse first, second;
  ASSERT_TRUE(Export(e.name(), "test-collection", &first).ok());
  clock_.Set(kNow + absl::Hours(5));  // Export time is the last event's.
  ASSERT_TRUE(Export(e.name(), "test-collection", &second).ok());
  EXPECT_EQ(first.content_type(), "application/fhir+json");
  EXPECT_EQ(first.content(), second.content());
  nlohmann::json bundle = nlohmann::json::parse(first.content());
  ASSERT_EQ(bundle["entry"].size(), static_cast<size_t>(revision + 1));
  EXPECT_EQ(bundle["entry"][0]["resourceType"], "Enrollment");
  EXPECT_EQ(bundle["entry"][0]["events"], revision);
  // Both responses refer to PHQ-9: the instrument is sent once.
  EXPECT_EQ(bundle["entry"][0]["instruments"], 1);
  EXPECT_EQ(bundle["timestamp"], absl::ToUnixSeconds(kNow));

  // One more event: a different rendering, one entry longer.
  Submit(e.name(), Session());
  v1::ExportEnrollmentResponse third;
  ASSERT_TRUE(Export(e.name(), "test-collection", &third).ok());
  EXPECT_NE(third.content(), first.content());
  EXPECT_EQ(nlohmann::json::parse(third.content())["entry"].size(),
            static_cast<size_t>(revision + 2));

  // A resource-wise format is answered as NDJSON.
  v1::ExportEnrollmentResponse ndjson;
  ASSERT_TRUE(Export(e.name(), "test-resources", &ndjson).ok());
  EXPECT_EQ(ndjson.content_type(), "application/fhir+ndjson");
  EXPECT_EQ(Lines(ndjson.content()).size(), static_cast<size_t>(revision + 2));
}

TEST_F(ExportTest, PushIsRecordedOnlyAfterDeliveryAndRetriesDeliverNothing) {
  v1::Enrollment e = Enroll("t1");
  const int64_t revision = Course(e.name());
  v1::PushEnrollmentResponse pushed;
  grpc::Status s = Push(e.name(), "push-1", "", &pushed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(pushed.created(), revision + 1);
  EXPECT_EQ(pushed.unchanged(), 0);

  absl::StatusOr<std::optional<RequestRecord>> record =
      store_->LookupRequest("t1", "push-1");
  ASSERT_TRUE(record.ok() && record->has_value());
  EXPECT_EQ((*record)->method, "PushEnrollment");
  internal::ExportPushed details;
  ASSERT_TRUE(details.ParseFromString((*record)->response));
  EXPECT_EQ(details.target(), "ehr");
  EXPECT_EQ(details.format(), "test-transaction");
  EXPECT_EQ(details.revision(), revision);
  EXPECT_EQ(details.receipt(), "receipt-1");
  EXPECT_EQ(details.response().created(), revision + 1);
  EXPECT_THAT(details.idempotency_key(), StartsWith("ipsrt-push-"));
  EXPECT_THAT(
      Lines(ReadAll(deliveries_)),
      ElementsAre(absl::StrCat(details.idempotency_key(),
                               " main test-transaction ", revision + 1)));

  // The same request again: the first answer, nothing delivered again.
  v1::PushEnrollmentResponse again;
  ASSERT_TRUE(Push(e.name(), "push-1", "", &again).ok());
  EXPECT_EQ(again.created(), revision + 1);
  EXPECT_EQ(Lines(ReadAll(deliveries_)).size(), 1u);

  // A new request for the same revision carries the same key: the target
  // has it all already.
  v1::PushEnrollmentResponse repeat;
  ASSERT_TRUE(Push(e.name(), "push-2", "ehr", &repeat).ok());
  EXPECT_EQ(repeat.created(), 0);
  EXPECT_EQ(repeat.unchanged(), revision + 1);
  std::vector<std::string> lines = Lines(ReadAll(deliveries_));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], lines[1]);

  std::vector<AuditRecord> audit =
      Audit("/ipsrt.v1.ExportService/PushEnrollment");
  ASSERT_EQ(audit.size(), 3u);
  EXPECT_EQ(audit[0].outcome, "OK");
  EXPECT_EQ(audit[0].resource, e.name());
  EXPECT_EQ(audit[0].request_id, "push-1");
  EXPECT_EQ(audit[1].outcome, "OK (replayed)");
  EXPECT_EQ(audit[2].request_id, "push-2");
}

TEST_F(ExportTest, FailedPushIsNotRecordedAndKeepsThePluginsCode) {
  v1::Enrollment e = Enroll("t1");
  Course(e.name());
  v1::PushEnrollmentResponse out;
  for (const char* code : {"UNAVAILABLE", "RESOURCE_EXHAUSTED",
                           "FAILED_PRECONDITION", "INVALID_ARGUMENT"}) {
    SCOPED_TRACE(code);
    Control(absl::StrCat("deliver=", code, "\n"));
    grpc::Status s = Push(e.name(), "push-x", "", &out);
    const std::string want =
        std::string(code) == "INVALID_ARGUMENT" ? "FAILED_PRECONDITION" : code;
    EXPECT_EQ(
        absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())),
        want);
    EXPECT_EQ(s.error_message(),
              absl::StrCat("export target \"ehr\" (plugin test-exporter) "
                           "refused ",
                           e.name(), ": delivery refused by the control file"));
    absl::StatusOr<std::optional<RequestRecord>> record =
        store_->LookupRequest("t1", "push-x");
    ASSERT_TRUE(record.ok());
    EXPECT_FALSE(record->has_value());
  }
  EXPECT_EQ(ReadAll(deliveries_), "");
  std::vector<AuditRecord> audit =
      Audit("/ipsrt.v1.ExportService/PushEnrollment");
  ASSERT_EQ(audit.size(), 4u);
  EXPECT_EQ(audit[0].outcome, "UNAVAILABLE");

  // Once the target is back, the same request id delivers and is recorded.
  Control("");
  ASSERT_TRUE(Push(e.name(), "push-x", "", &out).ok());
  EXPECT_GT(out.created(), 0);
  absl::StatusOr<std::optional<RequestRecord>> record =
      store_->LookupRequest("t1", "push-x");
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->has_value());
}

TEST_F(ExportTest, PushTargetMustBeConfigured) {
  v1::Enrollment e = Enroll("t1");
  v1::PushEnrollmentResponse out;
  grpc::Status s = Push(e.name(), "push-t", "nope", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "target: no export target \"nope\" (configured: ehr, backup)");
  s = Push(e.name(), "", "", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), StartsWith("request_id: "));
  // The second target renders its own format.
  ASSERT_TRUE(Push(e.name(), "push-b", "backup", &out).ok());
  EXPECT_THAT(Lines(ReadAll(deliveries_)),
              ElementsAre(::testing::EndsWith(" test-collection 1")));
}

TEST_F(ExportTest, BulkExportWritesNdjsonPerTypeWithManifestAndProgress) {
  int64_t resources = 0;
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) {
    v1::Enrollment e = Enroll("t1");
    resources += (i == 2 ? 1 : Course(e.name())) + 1;
    names.push_back(e.name());
  }
  Enroll("t2");  // Not exported: another tenant.
  BulkRun run = Bulk("tenants/t1", "runs/first", "test-resources");
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_GE(run.progress.size(), 2u);
  int64_t previous = -1;
  for (size_t i = 0; i < run.progress.size(); ++i) {
    const v1::BulkExportProgress& p = run.progress[i];
    EXPECT_EQ(p.enrollments_total(), 3);
    EXPECT_GE(p.enrollments_done(), previous);
    previous = p.enrollments_done();
    EXPECT_EQ(p.finished(), i + 1 == run.progress.size());
  }
  const v1::BulkExportProgress& last = run.progress.back();
  EXPECT_EQ(last.enrollments_done(), 3);
  EXPECT_EQ(last.files().at("Enrollment"), "runs/first/Enrollment.ndjson");

  const std::string out = root_ + "/runs/first";
  std::vector<std::string> files = Entries(out);
  EXPECT_THAT(files,
              ElementsAre("Enrollment.ndjson", "EnrollmentCreated.ndjson",
                          "QuestionnaireResponded.ndjson", "SessionHeld.ndjson",
                          "manifest.json"));
  int64_t lines = 0;
  for (const std::string& f : files) {
    if (f == "manifest.json") continue;
    lines += static_cast<int64_t>(Lines(ReadAll(out + "/" + f)).size());
    EXPECT_EQ(last.files().at(f.substr(0, f.find('.'))), "runs/first/" + f);
  }
  EXPECT_EQ(lines, resources);
  EXPECT_EQ(Lines(ReadAll(out + "/Enrollment.ndjson")).size(), 3u);
  nlohmann::json manifest =
      nlohmann::json::parse(ReadAll(out + "/manifest.json"));
  EXPECT_EQ(manifest["enrollments"], 3);
  EXPECT_EQ(manifest["format"], "test-resources");
  int64_t counted = 0;
  for (const auto& o : manifest["output"]) counted += o["count"].get<int64_t>();
  EXPECT_EQ(counted, resources);
  // Nothing else was left beside it.
  EXPECT_THAT(Entries(root_ + "/runs"), ElementsAre("first"));

  std::vector<AuditRecord> audit = Audit("/ipsrt.v1.ExportService/BulkExport");
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].outcome, "OK");
  EXPECT_EQ(audit[0].resource, "tenants/t1");

  // The same directory again is refused; nothing is overwritten.
  BulkRun again = Bulk("tenants/t1", "runs/first", "test-resources");
  EXPECT_EQ(again.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(again.status.error_message(),
            "output_dir: \"runs/first\" already exists under the export root; "
            "bulk exports never overwrite, choose a new directory");
  // The default format is fhir-r4-resources, not loaded here.
  BulkRun fhir = Bulk("tenants/t1", "runs/second", "");
  EXPECT_EQ(fhir.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(fhir.status.error_message(),
            "format: no loaded exporter plugin renders \"fhir-r4-resources\" "
            "(available: test-collection, test-resources, test-transaction)");
  // A whole-document format cannot be split into files.
  BulkRun bundle = Bulk("tenants/t1", "runs/third", "test-collection");
  EXPECT_EQ(bundle.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(Entries(root_ + "/runs"), ElementsAre("first"));
}

TEST_F(ExportTest, BulkOutputDirMustStayUnderTheRoot) {
  Enroll("t1");
  struct Case {
    std::string dir;
    std::string message;
  } cases[] = {
      {"",
       "output_dir: must not be empty (a directory under the server's "
       "export root)"},
      {"../escape",
       "output_dir: must stay under the export root (\"..\" in "
       "\"../escape\")"},
      {"a/../../escape",
       "output_dir: must stay under the export root (\"..\" "
       "in \"a/../../escape\")"},
      {"/tmp/escape",
       "output_dir: must be relative to the server's export "
       "root, not absolute: \"/tmp/escape\""},
      {"a/.hidden",
       "output_dir: \".hidden\" is not a directory name of "
       "[A-Za-z0-9._-] that does not start with \".\""},
      {".",
       "output_dir: must name a directory under the export root, not "
       "the root itself"},
  };
  for (const Case& c : cases) {
    BulkRun run = Bulk("tenants/t1", c.dir, "test-resources");
    EXPECT_EQ(run.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.dir;
    EXPECT_EQ(run.status.error_message(), c.message);
    EXPECT_TRUE(run.progress.empty());
  }
  // A symbolic link inside the root that points out of it.
  testing::TempDir outside;
  fs::create_directories(root_);
  fs::create_symlink(outside.path(), root_ + "/link");
  BulkRun run = Bulk("tenants/t1", "link/escape", "test-resources");
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(run.status.error_message(),
            "output_dir: \"link/escape\" leaves the export root through a "
            "symbolic link");
  EXPECT_TRUE(Entries(outside.path()).empty());
}

TEST_F(ExportTest, AFailingEnrollmentFailsTheExportAndPublishesNothing) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    std::string name = Enroll("t1").name();
    ids.push_back(name.substr(name.rfind('/') + 1));
  }
  Control(absl::StrCat("render_fail=", ids[1], "\n"));
  BulkRun run = Bulk("tenants/t1", "failed", "test-resources");
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(run.status.error_message(),
            absl::StrCat("exporter plugin \"test-exporter\" could not render "
                         "tenants/t1/enrollments/",
                         ids[1], ": render refused by the control file"));
  for (const v1::BulkExportProgress& p : run.progress) {
    EXPECT_FALSE(p.finished());
  }
  EXPECT_TRUE(Entries(root_).empty());
  std::vector<AuditRecord> audit = Audit("/ipsrt.v1.ExportService/BulkExport");
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].outcome, "UNAVAILABLE");
}

TEST_F(ExportTest, CancelledBulkExportLeavesNoDirectory) {
  for (int i = 0; i < 6; ++i) Enroll("t1");
  Control("render_delay_ms=100\n");
  v1::BulkExportRequest r;
  r.set_parent("tenants/t1");
  r.set_output_dir("cancelled");
  r.set_format("test-resources");
  grpc::ClientContext ctx;
  auto reader = export_->BulkExport(&ctx, r);
  v1::BulkExportProgress p;
  ASSERT_TRUE(reader->Read(&p));
  EXPECT_EQ(p.enrollments_total(), 6);
  ctx.TryCancel();
  while (reader->Read(&p)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The export stops at its next enrollment and removes its staging
  // directory; wait for that (bounded), then nothing may remain.
  for (int i = 0;
       i < 100 && (!Entries(root_).empty() ||
                   Audit("/ipsrt.v1.ExportService/BulkExport").empty());
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(Entries(root_).empty());
  std::vector<AuditRecord> audit = Audit("/ipsrt.v1.ExportService/BulkExport");
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].outcome, "CANCELLED");
}

// Edits one byte of a stored event (PHQ-9 item 1: 1 -> 0) with SQLite,
// behind the engine's back: exports refuse the enrollment with DATA_LOSS
// naming it and the event, and publish nothing.
TEST_F(ExportTest, EditedEventFailsExportsWithDataLoss) {
  const std::string name = Enroll("t1").name();
  Course(name);  // event 2 is Phq9(1)
  const std::string id = name.substr(name.rfind('/') + 1);
  {
    testing::SqliteDb db(dir_.File("ipsrt.db"));
    // The stored form (store/blob_codec.h): 0x00 0x02, then the packed event
    // without its hash field.
    const std::string column = db.EventPayload(id, 2);
    ASSERT_EQ(column.substr(0, 2), std::string("\0\2", 2));
    absl::StatusOr<std::string> stored =
        UnpackBlob(column.substr(2), "the payload");
    ASSERT_TRUE(stored.ok()) << stored.status();
    std::string payload = *stored;
    const std::string entry("\x0a\x01\x31\x10\x01", 5);  // {"1": 1}
    size_t at = payload.find(entry);
    ASSERT_NE(at, std::string::npos);
    payload[at + 4] = '\0';
    // Stored again the way the store keeps payloads: a coherent edit.
    db.SetEventPayload(id, 2,
                       absl::StrCat(column.substr(0, 2), PackBlob(payload)));
  }

  const std::string why = absl::StrCat(
      "store: ", name,
      ": event chain broken at sequence 2: event 2 does not match its hash "
      "(its payload was modified)");
  v1::ExportEnrollmentResponse out;
  grpc::Status s = Export(name, "test-collection", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(s.error_message(), why);
  BulkRun run = Bulk("tenants/t1", "tampered", "test-resources");
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(run.status.error_message(), why);
  EXPECT_TRUE(Entries(root_).empty());
}

// A thread swaps a directory inside the export root with a symbolic link
// pointing outside it (renameat2 RENAME_EXCHANGE, as fast as it can) for
// three seconds while bulk exports write below that directory. Each export
// either publishes inside the root or is refused; nothing appears outside
// and no staging directory is left behind.
TEST_F(ExportTest, SymlinkSwapRaceNeverWritesOutsideTheRoot) {
  for (int i = 0; i < 3; ++i) Course(Enroll("t1").name());
  testing::TempDir outside;
  const std::string dir = root_ + "/swap", link = root_ + "/swaplink";
  fs::create_directories(dir);
  fs::create_symlink(outside.path(), link);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> swaps{0};
  std::thread swapper([&] {
    while (!stop.load()) {
      if (::renameat2(AT_FDCWD, dir.c_str(), AT_FDCWD, link.c_str(),
                      RENAME_EXCHANGE) == 0) {
        ++swaps;
      }
    }
  });
  int published = 0, refused = 0;
  const absl::Time end = absl::Now() + absl::Seconds(3);
  for (int run = 0; absl::Now() < end; ++run) {
    BulkRun r =
        Bulk("tenants/t1", absl::StrCat("swap/run-", run), "test-resources");
    if (r.status.ok()) {
      ++published;
    } else {
      ++refused;
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << r.status.error_message();
    }
  }
  stop = true;
  swapper.join();
  EXPECT_GT(swaps.load(), 0);
  EXPECT_GT(published + refused, 0);
  EXPECT_TRUE(Entries(outside.path()).empty())
      << Entries(outside.path()).front();
  // Every published export is complete, inside the root; no staging left.
  int manifests = 0;
  for (const auto& e : fs::recursive_directory_iterator(root_)) {
    const std::string file = e.path().filename().string();
    EXPECT_FALSE(absl::StrContains(file, ".partial-")) << e.path();
    if (file == "manifest.json") ++manifests;
  }
  EXPECT_EQ(manifests, published);
  std::printf("%d exports published, %d refused, %lld swaps\n", published,
              refused, static_cast<long long>(swaps.load()));
}

}  // namespace
}  // namespace ipsrt
