// Reminder delivery at scale: 1M scheduled reminders in a real SQLite file
// (inserted through the Store), then the due ones claimed and fired by the
// real Dispatcher. Reports insert time, claim query plan, time to fire the
// due reminders with a counting sender and with the JSON Lines channel
// (the reminder-jsonl plugin, in process, fdatasync per line), and peak
// memory (getrusage).
//
//   ipsrt_reminders_bench --path=/tmp/reminders-bench.db --total=1000000
//       --due=10000
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_string.h"
#include "core/enrollments.h"
#include "ipsrt/clock.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/status_macros.h"
#include "plugin_host/registry.h"
#include "reminders/dispatcher.h"
#include "reminders/plugin_sender.h"

ABSL_FLAG(std::string, path, "/tmp/ipsrt-reminders-bench/bench.db",
          "SQLite database file (removed first).");
ABSL_FLAG(int, total, 1000000, "Scheduled reminders in the table.");
ABSL_FLAG(int, due, 10000, "Reminders due in each firing phase.");
ABSL_FLAG(int, batch_size, 500, "Dispatcher batch size.");

namespace ipsrt {
namespace {

constexpr int kTasksPerEnrollment = 10;

long PeakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;  // kilobytes on Linux
}

class CountingSender final : public reminders::ReminderSender {
 public:
  absl::Status Deliver(const reminders::ReminderDelivery&) override {
    ++count;
    return absl::OkStatus();
  }
  int count = 0;
};

// InsertOpenTaskReminders commits `enrollments` real enrollments, each
// with kTasksPerEnrollment open tasks (so the dispatcher's claim-time check
// passes) and one reminder per task: the first half due within the hour
// before t0 (phase A), the second within the hour after (phase B). Adds
// the reminders to `inserted`.
absl::Status InsertOpenTaskReminders(Store& store, absl::Time t0,
                                     int enrollments, absl::BitGen& gen,
                                     int& inserted) {
  for (int e = 0; e < enrollments; ++e) {
    std::string id = absl::StrFormat("e%07d", e);
    internal::EnrollmentState state;
    state.mutable_enrollment()->set_state(v1::Enrollment::ACTIVE);
    state.mutable_enrollment()->set_time_zone("America/New_York");
    WriteBatch b;
    b.request = {.tenant = "bench",
                 .request_id = "create-" + id,
                 .method = "CreateEnrollment",
                 .payload_hash = "h",
                 .create_time = t0};
    for (int k = 1; k <= kTasksPerEnrollment; ++k) {
      std::string key = absl::StrCat("initial.srm-diary#", k);
      internal::TaskState* task = state.add_tasks();
      task->set_key(key);
      task->set_status(v1::Task::OPEN);
      absl::Time at = e < enrollments / 2
                          ? t0 - absl::Seconds(absl::Uniform(gen, 1, 3600))
                          : t0 + absl::Seconds(absl::Uniform(gen, 0, 3600));
      b.outbox.push_back(OutboxRow{
          "bench", id, "reminder", at, key,
          absl::StrCat("tenants/bench/enrollments/", id, "/reminder/", key)});
    }
    EnrollmentRow row;
    row.tenant = "bench";
    row.id = id;
    row.workflow_id = "w";
    row.workflow_version = 1;
    row.stage = "initial";
    row.state = v1::Enrollment::ACTIVE;
    row.revision = 1;
    row.snapshot = state.SerializeAsString();
    row.create_time = row.update_time = t0;
    b.create = row;
    inserted += static_cast<int>(b.outbox.size());
    IPSRT_RETURN_IF_ERROR(store.Commit(std::move(b)).status());
  }
  return absl::OkStatus();
}

// InsertFutureReminders fills the outbox up to `total` reminders, for
// other enrollments, spread over the year after phase B, 10,000 a commit.
absl::Status InsertFutureReminders(Store& store, absl::Time t0, int total,
                                   absl::BitGen& gen, int& inserted) {
  int n = 0;
  while (inserted < total) {
    WriteBatch b;
    b.request = {.tenant = "bench",
                 .request_id = absl::StrCat("bulk-", n++),
                 .method = "Bench",
                 .payload_hash = "h",
                 .create_time = t0};
    for (int i = 0; i < 10000 && inserted < total; ++i, ++inserted) {
      std::string id = absl::StrFormat("f%07d", absl::Uniform(gen, 0, 100000));
      std::string key = absl::StrCat("initial.srm-diary#", inserted);
      absl::Time at = t0 + absl::Hours(1) +
                      absl::Seconds(absl::Uniform(gen, 1, 365 * 86400));
      b.outbox.push_back(OutboxRow{
          "bench", id, "reminder", at, key,
          absl::StrCat("tenants/bench/enrollments/", id, "/reminder/", key)});
    }
    IPSRT_RETURN_IF_ERROR(store.Commit(std::move(b)).status());
  }
  return absl::OkStatus();
}

// FireDue runs the dispatcher with `sender` until a round claims nothing
// and prints how many reminders it fired, how fast, and the peak RSS.
void FireDue(Store* store, FakeClock* clock,
             const reminders::DispatcherOptions& d,
             reminders::ReminderSender* sender, const char* label) {
  reminders::Dispatcher dispatcher(store, clock, sender, d);
  absl::Time begin = absl::Now();
  int sent = 0, rounds = 0, cancelled = 0;
  while (true) {
    auto round = dispatcher.RunOnce();
    if (!round.ok()) {
      std::fprintf(stderr, "%s\n", round.status().ToString().c_str());
      return;
    }
    if (round->claimed == 0) break;
    sent += round->sent;
    cancelled += round->cancelled;
    ++rounds;
  }
  double s = absl::ToDoubleSeconds(absl::Now() - begin);
  std::printf(
      "%s: fired %d due reminders (%d cancelled) in %d rounds, "
      "%.2f s (%.0f/s); peak RSS %ld MB\n",
      label, sent, cancelled, rounds, s, sent / s, PeakRssMb());
}

int Run() {
  const std::string path = absl::GetFlag(FLAGS_path);
  const int total = absl::GetFlag(FLAGS_total);
  const int due = absl::GetFlag(FLAGS_due);
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
  SqliteStore::Options options;
  options.path = path;
  auto store = SqliteStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  absl::BitGen gen;

  // Phase 1: 2 * due reminders of real enrollments whose tasks are open (so
  // the dispatcher's claim-time check passes), due within the hour before
  // t0 (phase A) and the hour after (phase B); the rest of `total` spread
  // over the next year, for other enrollments.
  absl::Time start = absl::Now();
  int inserted = 0;
  const int enrollments = 2 * due / kTasksPerEnrollment;
  absl::Status filled =
      InsertOpenTaskReminders(**store, t0, enrollments, gen, inserted);
  if (filled.ok()) {
    filled = InsertFutureReminders(**store, t0, total, gen, inserted);
  }
  if (!filled.ok()) {
    std::fprintf(stderr, "%s\n", filled.ToString().c_str());
    return 1;
  }
  const absl::Duration insert_time = absl::Now() - start;
  std::printf(
      "inserted %d scheduled reminders (%d enrollments with open "
      "tasks, the rest spread over a year) in %.1f s; db %.0f MB; "
      "peak RSS %ld MB\n",
      inserted, enrollments, absl::ToDoubleSeconds(insert_time),
      std::filesystem::file_size(path) / 1e6, PeakRssMb());

  auto plan = (*store)->ClaimQueryPlan();
  std::printf("claim query plan:\n%s\n",
              plan.ok() ? plan->c_str() : plan.status().ToString().c_str());

  // An empty claim (nothing due) at 1M rows: the range scans find nothing.
  start = absl::Now();
  auto none = (*store)->ClaimOutbox(t0 - absl::Hours(2), "probe",
                                    absl::Seconds(60), 500);
  std::printf("claim with nothing due: %zu rows in %.3f ms\n",
              none.ok() ? none->size() : 0,
              absl::ToDoubleMilliseconds(absl::Now() - start));

  FakeClock clock(t0);
  reminders::DispatcherOptions d;
  d.owner = "bench";
  d.batch_size = absl::GetFlag(FLAGS_batch_size);
  d.lease = absl::Minutes(10);

  auto fire = [&](reminders::ReminderSender* sender, const char* label) {
    FireDue(store->get(), &clock, d, sender, label);
  };
  CountingSender counting;
  fire(&counting, "phase A, counting sender");
  clock.Set(t0 + absl::Hours(1));
  // The JSON Lines file as ipsrtd writes it: the reminder-jsonl plugin.
  PluginConfig entry;
  entry.path = "libipsrt_reminder_jsonl.so";
  entry.config_json = JsonText(
      {{"sync", true},
       {"path", (std::filesystem::path(path).parent_path() / "reminders.jsonl")
                    .string()}});
  PluginHostOptions host_options = DefaultPluginHostOptions();
  host_options.plugin_dir = IPSRT_PLUGIN_DIR;
  host_options.clock = &clock;
  auto plugins = PluginRegistry::Load({entry}, host_options);
  if (!plugins.ok()) {
    std::fprintf(stderr, "%s\n", plugins.status().ToString().c_str());
    return 1;
  }
  auto jsonl = reminders::PluginSender::Create(**plugins, "reminder-jsonl", "");
  if (!jsonl.ok()) return 1;
  fire(jsonl->get(), "phase B, JSON Lines sender, fdatasync per line");
  return 0;
}

}  // namespace
}  // namespace ipsrt

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ipsrt::Run();
}
