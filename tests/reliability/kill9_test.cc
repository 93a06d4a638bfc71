// kill -9 under write load, in cycles: clients create enrollments and
// submit events to the real ipsrtd; after `events` acknowledgements in a
// cycle the server is killed with SIGKILL and started again on the same
// database. Calls that were in flight are retried with the same request id
// in the next cycle. At the end every acknowledged request must be in the
// store exactly once.
//
// Parameters (environment): IPSRT_RELIABILITY_CYCLES (default 3; `make
// reliability` runs 20) and IPSRT_RELIABILITY_EVENTS (acknowledgements per
// cycle before the kill, default 60). Prints the table: cycles,
// acknowledged, present, lost, duplicated.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "postgres_e2e.h"

namespace ipsrt::e2e {
namespace {

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  int64_t n = 0;
  return v != nullptr && absl::SimpleAtoi(v, &n) && n > 0 ? n : fallback;
}

constexpr int kClients = 4;

// A change a client sent: a create (enrollment empty) or an event.
struct Request {
  std::string request_id;
  std::string enrollment;  // name; empty for a create
};

struct Ledger {
  absl::Mutex mu;
  std::set<std::string> acknowledged ABSL_GUARDED_BY(mu);  // request ids
  std::set<std::string> enrollments ABSL_GUARDED_BY(mu);   // names
  std::vector<Request> in_flight ABSL_GUARDED_BY(mu);      // to retry
  int64_t cycle_acks ABSL_GUARDED_BY(mu) = 0;
  int64_t cycle_target = 0;  // set before the clients start
  bool Reached() const ABSL_SHARED_LOCKS_REQUIRED(mu) {
    return cycle_acks >= cycle_target;
  }
};

// Send runs one change; true when acknowledged (recorded in the ledger,
// and the enrollment's name in *name when given).
bool Send(v1::EnrollmentService::Stub& stub, const Request& r, Ledger& ledger,
          std::string* enrollment = nullptr) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(5));
  grpc::Status s;
  std::string name = r.enrollment;
  if (r.enrollment.empty()) {
    v1::Enrollment created;
    s = stub.CreateEnrollment(&ctx, NewEnrollment(r.request_id, "Patient/k"),
                              &created);
    name = created.name();
  } else {
    v1::SubmitEventResponse response;
    s = stub.SubmitEvent(&ctx, SessionHeld(r.enrollment, r.request_id, 0),
                         &response);
  }
  absl::MutexLock lock(&ledger.mu);
  if (!s.ok()) {
    ledger.in_flight.push_back(r);
    return false;
  }
  ledger.acknowledged.insert(r.request_id);
  ledger.enrollments.insert(name);
  if (enrollment != nullptr) *enrollment = name;
  ++ledger.cycle_acks;
  return true;
}

TEST(ReliabilityTest, KillNineCyclesUnderWriteLoadLoseAndDuplicateNothing) {
  const int64_t cycles = EnvInt("IPSRT_RELIABILITY_CYCLES", 3);
  const int64_t events = EnvInt("IPSRT_RELIABILITY_EVENTS", 60);
  TempDir dir;
  const std::string config = WriteConfig(dir);
  Ledger ledger;
  int64_t sent = 0;
  for (int64_t cycle = 0; cycle < cycles; ++cycle) {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << "cycle " << cycle << ": " << server.status();
    std::vector<Request> retry;
    {
      absl::MutexLock lock(&ledger.mu);
      retry.swap(ledger.in_flight);
      ledger.cycle_acks = 0;
      ledger.cycle_target = events;
    }
    auto stub = EnrollmentStub((*server)->address());
    for (const Request& r : retry) {
      ASSERT_TRUE(Send(*stub, r, ledger)) << "retry of " << r.request_id;
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        auto own = EnrollmentStub((*server)->address());
        std::string enrollment;
        for (int i = 0; !stop; ++i) {
          Request r{absl::StrCat("k", cycle, "-", c, "-", i), ""};
          if (i % 4 != 0 && !enrollment.empty()) r.enrollment = enrollment;
          if (!Send(*own, r, ledger, &enrollment)) return;  // server gone
        }
      });
    }
    {
      absl::MutexLock lock(&ledger.mu);
      ledger.mu.AwaitWithTimeout(absl::Condition(&ledger, &Ledger::Reached),
                                 absl::Seconds(60));
    }
    (*server)->process().Signal(SIGKILL);
    ASSERT_TRUE((*server)->process().WaitForExit(absl::Seconds(10)));
    stop = true;
    for (std::thread& t : clients) t.join();
    absl::MutexLock lock(&ledger.mu);
    sent += ledger.cycle_acks;
  }

  // Count what the store holds, on a last, clean start.
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = EnrollmentStub((*server)->address());
  {
    std::vector<Request> retry;
    {
      absl::MutexLock lock(&ledger.mu);
      retry.swap(ledger.in_flight);
    }
    for (const Request& r : retry) ASSERT_TRUE(Send(*stub, r, ledger));
  }
  absl::MutexLock lock(&ledger.mu);
  std::map<std::string, int> seen;  // "request_id/type" -> count
  for (const std::string& name : ledger.enrollments) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(10));
    v1::GetTimelineRequest timeline;
    timeline.set_name(name);
    timeline.set_page_size(1000);
    v1::GetTimelineResponse response;
    grpc::Status s = stub->GetTimeline(&ctx, timeline, &response);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
    for (const v1::Event& e : response.events()) {
      ++seen[absl::StrCat(e.request_id(), "/", e.type())];
    }
  }
  std::set<std::string> present_ids;
  int64_t duplicated = 0;
  for (const auto& [key, count] : seen) {
    present_ids.insert(key.substr(0, key.find('/')));
    if (count > 1) duplicated += count - 1;
  }
  int64_t acknowledged = static_cast<int64_t>(ledger.acknowledged.size());
  int64_t present = 0;
  for (const std::string& id : ledger.acknowledged) {
    present += present_ids.count(id);
  }
  int64_t lost = acknowledged - present;
  std::printf(
      "\nkill -9 under write load (%lld acknowledgements per cycle, %d "
      "clients)\n"
      "| cycles | acknowledged | present | lost | duplicated |\n"
      "|-------:|-------------:|--------:|-----:|-----------:|\n"
      "| %6lld | %12lld | %7lld | %4lld | %10lld |\n\n",
      static_cast<long long>(events), kClients, static_cast<long long>(cycles),
      static_cast<long long>(acknowledged), static_cast<long long>(present),
      static_cast<long long>(lost), static_cast<long long>(duplicated));
  RecordProperty("cycles", static_cast<int>(cycles));
  RecordProperty("acknowledged", static_cast<int>(acknowledged));
  RecordProperty("lost", static_cast<int>(lost));
  RecordProperty("duplicated", static_cast<int>(duplicated));
  EXPECT_GE(sent, cycles * events) << "the load did not reach its target";
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(duplicated, 0);
}

}  // namespace
}  // namespace ipsrt::e2e
