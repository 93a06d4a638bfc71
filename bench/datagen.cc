// ipsrt_datagen: builds a large SQLite store for the scale benchmarks
// (bench/README.md, "Scale with data") without going through gRPC.
//
// Every enrollment is created by the engine itself (Enrollments::Create:
// validation, Step over the real template, sealed first event, outbox rows,
// request and audit records) and committed through the Store interface, so
// the rows are exactly the server's; many creates are kept in flight so
// the store's writer commits them in large groups (one fsync per group).
//
// The set is reused: PATH.complete records how many enrollments a finished
// run wrote, and a later run asking for the same number (or fewer) only
// reports the set. The marker is written, and fsynced, after the store is
// closed, so an interrupted or failed run never leaves a set marked
// complete; a rerun removes the remains and starts again. On SIGINT or
// SIGTERM the generator stops, closes the store and removes its partial
// files. `--clean` removes the set (database, WAL, marker) and exits.
//
// Examples:
//   ipsrt_datagen --enrollments=1000000            # /tmp/ipsrt-bench-data
//   ipsrt_datagen --store=sqlite:/big/disk/scale.db --enrollments=10000
//   ipsrt_datagen --enrollments=1000000 --clean
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/ids.h"
#include "common/validation.h"
#include "core/enrollments.h"
#include "ipsrt/clock.h"
#include "ipsrt/sqlite_store.h"

ABSL_FLAG(std::string, store, "",
          "sqlite:PATH of the data set (default: "
          "sqlite:$BENCH_TMPDIR/ipsrt-bench-data/enrollments-N.db, "
          "$BENCH_TMPDIR defaulting to $TMPDIR or /tmp). Must lie outside "
          "any source checkout you care about.");
ABSL_FLAG(int, enrollments, 1000000, "Enrollments in the set.");
ABSL_FLAG(std::string, parent, "tenants/bench",
          "Tenant of the enrollments (ipsrt_loadgen's default, so the load "
          "runs against the same indexes).");
ABSL_FLAG(std::string, workflows, IPSRT_WORKFLOWS_DIR,
          "Workflow template directory.");
ABSL_FLAG(std::string, workflow_id, "ipsrt-standard", "Template to enroll in.");
ABSL_FLAG(int, in_flight, 8192,
          "Creates queued at once (the store commits up to --max_batch of "
          "them per transaction).");
ABSL_FLAG(int, max_batch, 4096,
          "The store's group-commit limit while building.");
ABSL_FLAG(int, threads, 0,
          "Producer threads running Enrollments::Create (0: one per CPU); "
          "the store's writer thread commits what they queue.");
ABSL_FLAG(bool, clean, false,
          "Remove the data set (database, WAL, shared memory, marker) and "
          "exit.");
ABSL_FLAG(bool, print_path, false,
          "Print the database path and exit (for scripts).");
ABSL_FLAG(absl::Duration, reuse_horizon, absl::Hours(1),
          "A complete set is reused only while none of its reminders falls "
          "due within this long from now (or already has); otherwise it is "
          "built anew.");

namespace ipsrt::bench {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_stop{false};
extern "C" void OnSignal(int) { g_stop.store(true); }

std::string DefaultPath(int n) {
  const char* dir = std::getenv("BENCH_TMPDIR");
  if (dir == nullptr || *dir == '\0') dir = std::getenv("TMPDIR");
  if (dir == nullptr || *dir == '\0') dir = "/tmp";
  return (fs::path(dir) / "ipsrt-bench-data" /
          absl::StrCat("enrollments-", n, ".db"))
      .string();
}

std::string MarkerOf(const std::string& db) { return db + ".complete"; }

// RemoveSet deletes the database and its companions; true if any existed.
bool RemoveSet(const std::string& db) {
  bool any = false;
  std::error_code ec;
  // .identity and .lock: what an ipsrtd serving the set keeps beside it.
  for (const char* suffix : {".complete", "", "-wal", "-shm", "-journal",
                             ".complete.tmp", ".identity", ".lock"}) {
    any = fs::remove(db + suffix, ec) || any;
  }
  return any;
}

// CompleteCount is the enrollment count a finished run recorded, or -1.
int64_t CompleteCount(const std::string& db) {
  std::ifstream in(MarkerOf(db));
  std::string text;
  if (!std::getline(in, text)) return -1;
  int64_t n = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &n)) return -1;
  std::error_code ec;
  return fs::exists(db, ec) ? n : -1;
}

// WriteMarker records `n` durably: temp file, fsync, rename, fsync dir.
bool WriteMarker(const std::string& db, int64_t n) {
  std::string tmp = MarkerOf(db) + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::string text = absl::StrCat(n, "\n");
  bool ok = ::write(fd, text.data(), text.size()) ==
                static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), MarkerOf(db).c_str()) != 0) return false;
  int dir = ::open(fs::path(db).parent_path().c_str(), O_RDONLY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return true;
}

// CleanSet removes the set at `db`, and its directory with the reminder
// log an ipsrtd serving a set writes there when no other set is left.
void CleanSet(const std::string& db) {
  bool removed = RemoveSet(db);
  std::fprintf(stderr, "ipsrt_datagen: %s %s\n", db.c_str(),
               removed ? "removed" : "was not there");
  // The directory goes with its last set, with the reminder log an
  // ipsrtd serving a set writes there.
  std::error_code ec;
  fs::path dir = fs::path(db).parent_path();
  bool other_sets = false;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    other_sets = other_sets || entry.path().extension() == ".db";
  }
  if (!other_sets) {
    fs::remove(dir / "reminders.jsonl", ec);
    fs::remove(dir, ec);  // only when empty
  }
}

// FallsDueSoon tells whether the complete set at `db` holds reminders or
// other outbox rows that fall due within --reuse_horizon (an hour) from now
// (or already have), or cannot be read. A set is built with every enrollment
// created at about the same instant, so its first reminders all fall due
// together about a day later: an ipsrtd serving it from then on would spend the
// benchmark delivering a million reminders at once, which is not the load
// the scale section measures. Such a set is built anew.
bool FallsDueSoon(const std::string& db) {
  absl::StatusOr<std::string> tenant =
      ParseParent("parent", absl::GetFlag(FLAGS_parent));
  if (!tenant.ok()) return true;
  SqliteStore::Options options;
  options.path = db;
  options.create = SqliteStore::Options::Create::kNever;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store =
      SqliteStore::Open(options);
  if (!store.ok()) return true;
  OutboxQuery q;
  q.tenant = *tenant;
  const absl::Duration horizon = absl::GetFlag(FLAGS_reuse_horizon);
  q.due_before = absl::Now() + horizon;
  q.statuses = {OutboxStatus::kScheduled, OutboxStatus::kRetryWait};
  q.limit = 1;
  absl::StatusOr<std::vector<OutboxEntry>> due = (*store)->ListOutbox(q);
  (*store)->Close();
  if (due.ok() && due->empty()) return false;
  std::fprintf(stderr, "ipsrt_datagen: the set at %s %s; building it anew\n",
               db.c_str(),
               due.ok() ? absl::StrCat("has reminders falling due within ",
                                       absl::FormatDuration(horizon))
                              .c_str()
                        : "cannot be read");
  return true;
}

// Created is how a run of creates ended: how many completed, and the
// first failure.
struct Created {
  int64_t done_count = 0;
  absl::Status failure;
};

// CreateEnrollments creates `n` enrollments through `enrollments` from
// `threads` producer threads (each runs Enrollments::Create: validation,
// Step, sealing and packing the rows, the CPU work of a create), keeping a
// bounded window (--in_flight) of creates queued for the store's single
// writer, which commits them in groups of up to --max_batch. The first
// failure or a signal stops the run. Returns once every create in flight
// has completed.
Created CreateEnrollments(Enrollments& enrollments, int n, int threads) {
  v1::Actor actor;
  actor.set_subject("ipsrt_datagen");
  actor.set_role("admin");
  absl::Mutex mu;
  int in_flight = 0;
  Created c;
  const int window = std::max(1, absl::GetFlag(FLAGS_in_flight));
  const std::string run = absl::StrCat(absl::ToUnixMicros(absl::Now()));
  const std::string parent = absl::GetFlag(FLAGS_parent);
  const std::string workflow_id = absl::GetFlag(FLAGS_workflow_id);
  const absl::Time start = absl::Now();
  std::atomic<int> next{0};
  auto on_done = [&](absl::StatusOr<v1::Enrollment> created) {
    absl::MutexLock lock(&mu);
    --in_flight;
    ++c.done_count;
    if (!created.ok() && c.failure.ok()) c.failure = created.status();
  };
  auto produce = [&] {
    v1::CreateEnrollmentRequest request;
    request.set_parent(parent);
    request.set_workflow_id(workflow_id);
    request.set_time_zone("Europe/London");
    while (!g_stop.load()) {
      {
        absl::MutexLock lock(&mu);
        auto room = [&] { return in_flight < window || !c.failure.ok(); };
        mu.Await(absl::Condition(&room));
        if (!c.failure.ok()) return;
        ++in_flight;
      }
      const int i = next.fetch_add(1);
      if (i >= n) {
        absl::MutexLock lock(&mu);
        --in_flight;
        return;
      }
      // Zero-padded numbers keep every key close to insertion order (ids
      // are time-ordered too), so the B-trees grow at their right edge and
      // a group commit dirties few pages.
      request.set_request_id(absl::StrFormat("datagen-%s-%09d", run, i));
      request.set_patient_ref(absl::StrFormat("Patient/scale-%09d", i));
      request.set_clinician_ref(absl::StrCat("Practitioner/scale-", i % 500));
      enrollments.Create(request, actor, on_done);
      if ((i + 1) % 100000 == 0) {
        double s = absl::ToDoubleSeconds(absl::Now() - start);
        std::fprintf(stderr,
                     "ipsrt_datagen: %d enrollments queued, %.0f s (%.0f/s)\n",
                     i + 1, s, (i + 1) / s);
      }
    }
  };
  std::vector<std::thread> producers;
  for (int t = 0; t < threads; ++t) producers.emplace_back(produce);
  for (std::thread& t : producers) t.join();
  {
    absl::MutexLock lock(&mu);
    auto drained = [&] { return in_flight == 0; };
    mu.Await(absl::Condition(&drained));
  }
  return c;
}

int Main() {
  const int n = absl::GetFlag(FLAGS_enrollments);
  if (n < 1) {
    std::fprintf(stderr, "ipsrt_datagen: --enrollments must be >= 1\n");
    return 2;
  }
  const std::string store_flag = absl::GetFlag(FLAGS_store);
  absl::string_view spec = store_flag;
  std::string db;
  if (spec.empty()) {
    db = DefaultPath(n);
  } else if (absl::ConsumePrefix(&spec, "sqlite:") && !spec.empty()) {
    db = std::string(spec);
  } else {
    std::fprintf(stderr,
                 "ipsrt_datagen: --store must be sqlite:PATH (the data "
                 "generator builds SQLite sets)\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_print_path)) {
    std::printf("%s\n", db.c_str());
    return 0;
  }
  if (absl::GetFlag(FLAGS_clean)) {
    CleanSet(db);
    return 0;
  }
  if (int64_t have = CompleteCount(db); have >= n && !FallsDueSoon(db)) {
    std::fprintf(stderr,
                 "ipsrt_datagen: reusing %s (a complete set of %lld "
                 "enrollments)\n",
                 db.c_str(), static_cast<long long>(have));
    std::printf("%s\n", db.c_str());
    return 0;
  }
  if (RemoveSet(db)) {
    std::fprintf(stderr,
                 "ipsrt_datagen: removed an earlier (incomplete, smaller or "
                 "stale) set at %s\n",
                 db.c_str());
  }

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  // Every packed blob (store/blob_codec.h) allocates and frees zlib's
  // ~270 KB of deflate state. With glibc's defaults that free trims the
  // heap, so the next create grows it again and faults in fresh zeroed
  // pages: a profile of this generator showed brk, page faults and the
  // memset of new pages at about 12 % of its CPU. Keeping freed memory
  // (and serving such blocks from the heap, not mmap) removes that churn.
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);

  SqliteStore::Options options;
  options.path = db;
  options.max_batch = absl::GetFlag(FLAGS_max_batch);
  options.create = SqliteStore::Options::Create::kAlways;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store =
      SqliteStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "ipsrt_datagen: %s\n",
                 store.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> catalog =
      WorkflowCatalog::LoadDirectories({absl::GetFlag(FLAGS_workflows)});
  if (!catalog.ok()) {
    std::fprintf(stderr, "ipsrt_datagen: %s\n",
                 catalog.status().ToString().c_str());
    (*store)->Close();
    RemoveSet(db);
    return 1;
  }
  WorkflowRegistry workflows(*catalog);
  RandomIdGenerator ids;
  Enrollments enrollments(
      {store->get(), SystemClock::Get(), &ids, &workflows, {}, nullptr});
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads <= 0) {
    threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }
  absl::Time start = absl::Now();
  const Created c = CreateEnrollments(enrollments, n, threads);
  const int64_t done_count = c.done_count;
  const absl::Status& failure = c.failure;
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  (*store)->Close();
  store->reset();
  if (g_stop.load() || !failure.ok() || done_count != n) {
    RemoveSet(db);
    std::fprintf(stderr,
                 "ipsrt_datagen: %s after %lld of %d enrollments; the "
                 "partial set was removed\n",
                 g_stop.load() ? "interrupted" : failure.ToString().c_str(),
                 static_cast<long long>(done_count), n);
    return g_stop.load() ? 130 : 1;
  }
  if (!WriteMarker(db, n)) {
    std::fprintf(stderr, "ipsrt_datagen: cannot write %s\n",
                 MarkerOf(db).c_str());
    return 1;
  }
  std::error_code ec;
  uintmax_t bytes = fs::file_size(db, ec);
  std::fprintf(stderr,
               "ipsrt_datagen: %d enrollments in %.1f s (%.0f/s), %.0f MB at "
               "%s\n",
               n, seconds, n / seconds, ec ? 0.0 : bytes / 1e6, db.c_str());
  std::printf("%s\n", db.c_str());
  return 0;
}

}  // namespace
}  // namespace ipsrt::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ipsrt_datagen [--store=sqlite:PATH] --enrollments=N [--clean]: builds "
      "(or reuses) a SQLite store of N enrollments for the scale benchmarks");
  absl::ParseCommandLine(argc, argv);
  return ipsrt::bench::Main();
}
