// ipsrt_footprint: writes a known number of enrollments and events through
// a running ipsrtd, so that bench/footprint.sh can divide the database's
// growth by them (bytes per enrollment, bytes per event; see
// bench/README.md).
//
//   ipsrt_footprint --server=127.0.0.1:PORT --phase=create --count=20000
//       --names_file=names.txt
//   ipsrt_footprint --server=127.0.0.1:PORT --phase=event --count=20000
//       --names_file=names.txt
//
// --phase=create makes --count enrollments (names written to --names_file);
// --phase=event submits --count events to those enrollments in turn, every
// second one an SRM-5 diary day (today's date in the patient's zone, then
// the days before for later rounds) and the others a session held. Prints
// one JSON line: calls that succeeded, failures, and the bytes of what was
// stored (the created enrollment as answered; each recorded event's
// serialized ipsrt.v1.Event, the `payload` column of the events table).
// Exits non-zero when any call failed: a footprint divided by a wrong count
// means nothing.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "ipsrtd address.");
ABSL_FLAG(std::string, phase, "create", "create or event.");
ABSL_FLAG(int, count, 20000, "Calls to make.");
ABSL_FLAG(int, threads, 8, "Concurrent blocking callers.");
ABSL_FLAG(std::string, names_file, "",
          "Enrollment names: written by --phase=create, read by "
          "--phase=event.");
ABSL_FLAG(std::string, parent, "tenants/bench", "Tenant of the enrollments.");
ABSL_FLAG(std::string, workflow_id, "ipsrt-standard", "Workflow to enrol in.");
ABSL_FLAG(std::string, run_id, "", "Request id prefix (default: the time).");

namespace {

namespace v1 = ipsrt::v1;
constexpr char kZone[] = "Europe/London";

struct Totals {
  absl::Mutex mu;
  int64_t ok = 0;
  int64_t failed = 0;
  int64_t diary = 0, session = 0;
  int64_t stored_bytes = 0;  // created enrollments, or recorded events
  int64_t diary_bytes = 0, session_bytes = 0;
  std::string first_error;
};

v1::EventPayload DiaryDay(absl::CivilDay date) {
  v1::EventPayload p;
  v1::SrmDiaryDay* d = p.mutable_srm_diary_day();
  d->set_local_date(absl::FormatCivilTime(date));
  d->set_instrument("srm5");
  d->set_mood(1);
  const char* const kActivities[][2] = {{"out_of_bed", "07:10"},
                                        {"first_contact", "07:45"},
                                        {"start_work", "09:00"},
                                        {"dinner", "18:30"},
                                        {"to_bed", "22:45"}};
  for (const auto& [activity, time] : kActivities) {
    v1::SrmActivity* a = d->add_activities();
    a->set_activity(activity);
    a->set_local_time(time);
    a->set_people_code(1);
  }
  return p;
}

v1::EventPayload SessionHeld(absl::Time now) {
  v1::EventPayload p;
  v1::SessionHeld* s = p.mutable_session_held();
  s->mutable_start_time()->set_seconds(absl::ToUnixSeconds(now) - 3600);
  s->set_duration_minutes(50);
  s->set_note("Reviewed the week's rhythm; agreed a fixed bedtime.");
  return p;
}

// Call is one call's result: its status and the bytes of what was
// stored; `diary` for an SRM diary day event.
struct Call {
  grpc::Status status;
  int64_t bytes = 0;
  bool diary = false;
};

// CreateOne creates enrollment `i` and, on success, puts its name in
// `*name`.
Call CreateOne(v1::EnrollmentService::Stub& stub, const std::string& run_id,
               int i, std::string* name) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  Call call;
  v1::CreateEnrollmentRequest req;
  req.set_parent(absl::GetFlag(FLAGS_parent));
  req.set_request_id(absl::StrCat("fp-", run_id, "-", i));
  req.set_patient_ref(absl::StrCat("Patient/fp-", i));
  req.set_workflow_id(absl::GetFlag(FLAGS_workflow_id));
  req.set_time_zone(kZone);
  req.set_clinician_ref("Practitioner/fp");
  v1::Enrollment resp;
  call.status = stub.CreateEnrollment(&ctx, req, &resp);
  if (call.status.ok()) {
    call.bytes = static_cast<int64_t>(resp.ByteSizeLong());
    *name = resp.name();
  }
  return call;
}

// SubmitOne submits event `i` to the names in turn, every second one a
// diary day. Round r of the names: diary days go back one day per round (a
// day is recorded once, within 7 days).
Call SubmitOne(v1::EnrollmentService::Stub& stub, const std::string& run_id,
               int i, const std::vector<std::string>& names,
               absl::CivilDay today) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  Call call;
  int round = i / static_cast<int>(names.size());
  call.diary = i % 2 == 0;
  v1::SubmitEventRequest req;
  req.set_name(names[i % names.size()]);
  req.set_request_id(absl::StrCat("fp-", run_id, "-ev-", i));
  *req.mutable_event() =
      call.diary ? DiaryDay(today - (round % 7)) : SessionHeld(absl::Now());
  v1::SubmitEventResponse resp;
  call.status = stub.SubmitEvent(&ctx, req, &resp);
  if (call.status.ok()) {
    call.bytes = static_cast<int64_t>(resp.event().ByteSizeLong());
  }
  return call;
}

// Count adds one call to the totals (events also by kind).
void Count(const Call& call, bool events, Totals& totals) {
  absl::MutexLock lock(&totals.mu);
  if (!call.status.ok()) {
    ++totals.failed;
    if (totals.first_error.empty()) {
      totals.first_error = absl::StrCat(call.status.error_code(), ": ",
                                        call.status.error_message());
    }
    return;
  }
  ++totals.ok;
  totals.stored_bytes += call.bytes;
  if (events) {
    (call.diary ? totals.diary : totals.session) += 1;
    (call.diary ? totals.diary_bytes : totals.session_bytes) += call.bytes;
  }
}

// ReadNames reads the enrollment names --phase=create wrote, one a line.
std::vector<std::string> ReadNames(const std::string& names_file) {
  std::vector<std::string> names;
  std::ifstream in(names_file);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string phase = absl::GetFlag(FLAGS_phase);
  const int count = absl::GetFlag(FLAGS_count);
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  const std::string names_file = absl::GetFlag(FLAGS_names_file);
  std::string run_id = absl::GetFlag(FLAGS_run_id);
  if (run_id.empty()) run_id = absl::StrCat(absl::ToUnixMicros(absl::Now()));
  if (phase != "create" && phase != "event") {
    std::fprintf(stderr, "footprint: --phase must be create or event\n");
    return 2;
  }
  if (names_file.empty()) {
    std::fprintf(stderr, "footprint: --names_file is required\n");
    return 2;
  }
  std::vector<std::string> names;
  if (phase == "event") {
    names = ReadNames(names_file);
    if (names.empty()) {
      std::fprintf(stderr, "footprint: no names in %s\n", names_file.c_str());
      return 2;
    }
  }
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_server),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::EnrollmentService::NewStub(channel);
  absl::TimeZone zone;
  absl::LoadTimeZone(kZone, &zone);
  const absl::CivilDay today = absl::ToCivilDay(absl::Now(), zone);

  Totals totals;
  std::vector<std::string> created(phase == "create" ? count : 0);
  std::atomic<int> next{0};
  auto worker = [&] {
    for (int i; (i = next.fetch_add(1)) < count;) {
      Count(phase == "create" ? CreateOne(*stub, run_id, i, &created[i])
                              : SubmitOne(*stub, run_id, i, names, today),
            phase == "event", totals);
    }
  };
  absl::Time start = absl::Now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (std::thread& t : pool) t.join();
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);

  if (phase == "create") {
    std::ofstream out(names_file, std::ios::trunc);
    for (const std::string& n : created) {
      if (!n.empty()) out << n << "\n";
    }
  }
  std::printf(
      "{\"phase\":\"%s\",\"ok\":%lld,\"failed\":%lld,\"seconds\":%.1f,"
      "\"stored_bytes\":%lld,\"diary\":%lld,\"diary_bytes\":%lld,"
      "\"session\":%lld,\"session_bytes\":%lld}\n",
      phase.c_str(), static_cast<long long>(totals.ok),
      static_cast<long long>(totals.failed), seconds,
      static_cast<long long>(totals.stored_bytes),
      static_cast<long long>(totals.diary),
      static_cast<long long>(totals.diary_bytes),
      static_cast<long long>(totals.session),
      static_cast<long long>(totals.session_bytes));
  if (totals.failed > 0) {
    std::fprintf(stderr, "footprint: %lld call(s) failed, the first: %s\n",
                 static_cast<long long>(totals.failed),
                 totals.first_error.c_str());
    return 1;
  }
  return 0;
}
