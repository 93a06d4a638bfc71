// Bulk export at scale: N enrollments with a simulated course each, written
// through the engine (Enrollments::Create / Submit: scoring by the real
// core-instruments plugin, Step, durable group commits), then exported by
// ExportService.BulkExport over loopback gRPC through a real exporter
// plugin loaded by the plugin host.
//
// Reported, all measured in this run:
//   - setup rate (events/s), for context only;
//   - baseline: the raw read of every enrollment and its events from the
//     store, as the export reads them, without rendering or writing;
//   - bulk export: enrollments/s and resources/s, and its ratio to the
//     baseline (how much rendering, plugin calls and file writes cost on
//     top of reading);
//   - peak RSS during the export (VmHWM, reset before it starts).
//
// Examples (the FHIR R4 exporter by default; the small test exporter shows
// the engine's own share):
//   export_bench --enrollments=10000
//   export_bench --plugin=PATH/libipsrt_test_exporter.so
//   --format=test-resources
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "core/exports.h"
#include "grpcpp/grpcpp.h"
#include "ipsrt/clock.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/export.grpc.pb.h"
#include "service/server.h"

ABSL_FLAG(int, enrollments, 10000, "Enrollments to create and export.");
ABSL_FLAG(std::string, dir, "/tmp/ipsrt-export-bench",
          "Scratch directory (replaced): database and export root.");
ABSL_FLAG(std::string, plugin, "libipsrt_fhir_r4.so",
          "Exporter plugin: a path, or a bare name in the engine's plugin "
          "directory (e.g. libipsrt_fhir_r4.so).");
ABSL_FLAG(std::string, plugin_config, "{}",
          "The exporter plugin's config block, as JSON.");
ABSL_FLAG(std::string, format, "fhir-r4-resources",
          "Resource-wise export format, e.g. fhir-r4-resources.");
ABSL_FLAG(int, threads, 64,
          "Setup threads writing courses at once (their commits are grouped).");

namespace ipsrt {
namespace {

namespace fs = std::filesystem;

// One simulated course: baseline and follow-up PHQ-9 and GAD-7, sessions,
// a goal; 12 events after enrollment.created.
std::vector<v1::EventPayload> Course(int seed) {
  std::vector<v1::EventPayload> out;
  auto questionnaire = [&](const char* id, int items, int level) {
    v1::EventPayload p;
    auto* r = p.mutable_questionnaire_response();
    r->set_questionnaire_id(id);
    for (int i = 1; i <= items; ++i) {
      // Item 9 of the PHQ-9 stays 0: no safety escalations in the bench.
      int v =
          (std::string(id) == "phq9" && i == 9) ? 0 : (level + i + seed) % 4;
      (*r->mutable_answers())[absl::StrCat(i)] = v;
    }
    out.push_back(std::move(p));
  };
  auto session = [&] {
    v1::EventPayload p;
    p.mutable_session_held()->set_duration_minutes(50);
    out.push_back(std::move(p));
  };
  questionnaire("phq9", 9, 2);
  questionnaire("gad7", 7, 2);
  {
    v1::EventPayload p;
    p.mutable_goal_set()->set_problem_area("role_transition");
    p.mutable_goal_set()->set_description("Regular bedtime");
    out.push_back(std::move(p));
  }
  for (int week = 0; week < 6; ++week) {
    session();
    if (week % 2 == 1) questionnaire("phq9", 9, 2 - week / 2);
  }
  questionnaire("gad7", 7, 0);
  return out;
}

// Setup drives `n` courses through the engine on `threads` threads, each
// waiting for its own commits, so that the store groups them.
class Setup {
 public:
  Setup(Enrollments* enrollments, int n, int threads)
      : enrollments_(enrollments), n_(n), threads_(threads) {}

  absl::Status Run() {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads_; ++t) {
      workers.emplace_back([this] {
        for (int i = next_++; i < n_ && Ok(); i = next_++) {
          absl::Status s = One(i);
          if (!s.ok()) Fail(s);
        }
      });
    }
    for (std::thread& w : workers) w.join();
    absl::MutexLock lock(&mu_);
    return error_;
  }
  int64_t events() const { return events_.load(); }

 private:
  absl::Status One(int i) {
    v1::CreateEnrollmentRequest r;
    r.set_parent("tenants/bench");
    r.set_request_id(absl::StrCat("bench-create-", i));
    r.set_patient_ref(absl::StrCat("Patient/", i));
    r.set_workflow_id("ipsrt-standard");
    r.set_time_zone("Europe/London");
    r.set_clinician_ref("Practitioner/1");
    absl::StatusOr<v1::Enrollment> created;
    {
      absl::Notification done;
      enrollments_->Create(r, Actor(), [&](absl::StatusOr<v1::Enrollment> e) {
        created = std::move(e);
        done.Notify();
      });
      done.WaitForNotification();
    }
    if (!created.ok()) return created.status();
    ++events_;
    std::vector<v1::EventPayload> course = Course(i);
    for (size_t k = 0; k < course.size(); ++k) {
      v1::SubmitEventRequest e;
      e.set_name(created->name());
      e.set_request_id(absl::StrCat("bench-", i, "-", k));
      *e.mutable_event() = std::move(course[k]);
      absl::Status result;
      absl::Notification done;
      enrollments_->Submit(e, Actor(),
                           [&](absl::StatusOr<v1::SubmitEventResponse> s) {
                             result = s.status();
                             done.Notify();
                           });
      done.WaitForNotification();
      if (!result.ok()) return result;
      ++events_;
    }
    return absl::OkStatus();
  }
  bool Ok() {
    absl::MutexLock lock(&mu_);
    return error_.ok();
  }
  void Fail(absl::Status s) {
    absl::MutexLock lock(&mu_);
    if (error_.ok()) error_ = s;
  }
  static v1::Actor Actor() {
    v1::Actor a;
    a.set_subject("bench");
    a.set_role("clinician");
    return a;
  }

  Enrollments* enrollments_;
  const int n_;
  const int threads_;
  std::atomic<int> next_{0};
  std::atomic<int64_t> events_{0};
  absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

int64_t PeakRssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

// LoadPlugins loads the core instruments and the exporter under test
// (--plugin with --plugin_config).
absl::StatusOr<std::unique_ptr<PluginRegistry>> LoadPlugins() {
  PluginConfig core;
  core.path = "libipsrt_core_instruments.so";
  core.location = "bench:1:1";
  PluginConfig exporter;
  exporter.path = absl::GetFlag(FLAGS_plugin);
  exporter.config_json = absl::GetFlag(FLAGS_plugin_config);
  exporter.location = "bench:2:1";
  PluginHostOptions host;
  host.plugin_dir = IPSRT_PLUGIN_DIR;
  return PluginRegistry::Load({core, exporter}, host);
}

// ReadCounts is what the baseline read: enrollments and their events.
struct ReadCounts {
  int64_t enrollments = 0;
  int64_t events = 0;
};

// ReadEverything reads what a bulk export reads (every enrollment of
// tenant "bench", its row and its events, parsed) and renders nothing;
// false on a store error or an event that does not parse.
bool ReadEverything(Store& store, ReadCounts& counts) {
  int64_t& read_enrollments = counts.enrollments;
  int64_t& read_events = counts.events;
  std::optional<EnrollmentCursor> cursor;
  while (true) {
    EnrollmentFilter f;
    f.tenant = "bench";
    absl::StatusOr<std::vector<EnrollmentRow>> rows =
        store.ListEnrollments(f, cursor, 500);
    if (!rows.ok()) return false;
    for (const EnrollmentRow& r : *rows) {
      absl::StatusOr<EnrollmentRow> row = store.GetEnrollment("bench", r.id);
      absl::StatusOr<std::vector<EventRow>> events =
          store.ListEvents("bench", r.id, 0, 1000);
      if (!row.ok() || !events.ok()) return false;
      for (const EventRow& e : *events) {
        v1::Event parsed;
        if (!parsed.ParseFromString(e.payload)) return false;
        ++read_events;
      }
      ++read_enrollments;
    }
    if (rows->size() < 500) break;
    cursor = EnrollmentCursor{rows->back().create_time, rows->back().id};
  }
  return true;
}

// BulkRun is one BulkExport call as the client saw it: the last progress
// message, how many came, the wall time and the process's peak RSS.
struct BulkRun {
  v1::BulkExportProgress last;
  int messages = 0;
  double seconds = 0;
  int64_t peak_kb = 0;
};

// CallBulkExport runs `request` on the server at 127.0.0.1:`port` and
// reads its progress stream to the end.
absl::StatusOr<BulkRun> CallBulkExport(int port,
                                       const v1::BulkExportRequest& request) {
  auto stub = v1::ExportService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  BulkRun run;
  ResetPeakRss();
  absl::Time t0 = absl::Now();
  grpc::ClientContext ctx;
  auto reader = stub->BulkExport(&ctx, request);
  v1::BulkExportProgress p;
  while (reader->Read(&p)) {
    run.last = p;
    ++run.messages;
  }
  grpc::Status status = reader->Finish();
  run.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  run.peak_kb = PeakRssKb();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  return run;
}

int Run() {
  const int n = absl::GetFlag(FLAGS_enrollments);
  const fs::path dir = absl::GetFlag(FLAGS_dir);
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);

  SqliteStore::Options o;
  o.path = (dir / "bench.db").string();
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(o);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories({IPSRT_WORKFLOWS_DIR});
  if (!catalog.ok()) {
    std::fprintf(stderr, "%s\n", catalog.status().ToString().c_str());
    return 1;
  }
  WorkflowRegistry workflows(*catalog);
  absl::StatusOr<std::unique_ptr<PluginRegistry>> plugins = LoadPlugins();
  if (!plugins.ok()) {
    std::fprintf(stderr, "%s\n", plugins.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<QuestionnaireCatalog> questionnaires =
      *QuestionnaireCatalog::Build(**plugins);
  RandomIdGenerator ids;
  const Clock* clock = SystemClock::Get();

  // --- Setup through the engine.
  Enrollments enrollments(
      {store->get(), clock, &ids, &workflows, {}, questionnaires.get()});
  absl::Time t0 = absl::Now();
  Setup setup(&enrollments, n, absl::GetFlag(FLAGS_threads));
  if (absl::Status s = setup.Run(); !s.ok()) {
    std::fprintf(stderr, "setup: %s\n", s.ToString().c_str());
    return 1;
  }
  double setup_s = absl::ToDoubleSeconds(absl::Now() - t0);
  std::printf("setup: %d enrollments, %lld events in %.1f s (%.0f events/s)\n",
              n, static_cast<long long>(setup.events()), setup_s,
              setup.events() / setup_s);

  // --- Baseline: read everything the export reads, render nothing.
  t0 = absl::Now();
  ReadCounts read;
  if (!ReadEverything(**store, read)) return 1;
  const int64_t read_enrollments = read.enrollments, read_events = read.events;
  double read_s = absl::ToDoubleSeconds(absl::Now() - t0);
  std::printf(
      "baseline raw read: %lld enrollments, %lld events in %.2f s "
      "(%.0f enrollments/s)\n",
      static_cast<long long>(read_enrollments),
      static_cast<long long>(read_events), read_s, read_enrollments / read_s);

  // --- Bulk export through the service.
  ExportConfig export_config;
  export_config.root = (dir / "exports").string();
  ServerDeps deps{store->get(), clock, &ids, &workflows, {}};
  deps.plugins = plugins->get();
  deps.questionnaires = questionnaires.get();
  deps.exports = &export_config;
  absl::StatusOr<std::unique_ptr<IpsrtServer>> server =
      IpsrtServer::Start(ServerOptions{"127.0.0.1:0", 1 << 20}, deps);
  if (!server.ok()) return 1;
  v1::BulkExportRequest request;
  request.set_parent("tenants/bench");
  request.set_output_dir("bulk");
  request.set_format(absl::GetFlag(FLAGS_format));
  absl::StatusOr<BulkRun> bulk = CallBulkExport((*server)->port(), request);
  if (!bulk.ok()) {
    std::fprintf(stderr, "bulk export: %s\n",
                 std::string(bulk.status().message()).c_str());
    return 1;
  }
  const v1::BulkExportProgress& last = bulk->last;
  const int messages = bulk->messages;
  const double bulk_s = bulk->seconds;
  const int64_t peak_kb = bulk->peak_kb;
  int64_t resources = 0;
  for (const auto& [type, count] : last.resource_counts()) resources += count;
  const double rate = last.enrollments_done() / bulk_s;
  std::printf(
      "bulk export (%s via %s): %lld enrollments, %lld resources, %zu "
      "files in %.2f s; %d progress messages\n",
      request.format().c_str(), absl::GetFlag(FLAGS_plugin).c_str(),
      static_cast<long long>(last.enrollments_done()),
      static_cast<long long>(resources), last.files().size(), bulk_s, messages);
  std::printf("  %.0f enrollments/s, %.0f resources/s\n", rate,
              resources / bulk_s);
  std::printf(
      "  ratio to the raw read in this run: %.2f (export rate / "
      "read rate)\n",
      rate / (read_enrollments / read_s));
  std::printf("  peak RSS during the export: %.1f MB\n", peak_kb / 1024.0);
  (*server)->Shutdown(absl::Seconds(5));
  (*store)->Close();
  return 0;
}

}  // namespace
}  // namespace ipsrt

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ipsrt::Run();
}
