// Graceful shutdown under load: every CreateEnrollment that ipsrtd
// acknowledged before or during a SIGTERM drain must survive a restart.
#include <sys/wait.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

// Concurrent clients, each with one call in flight at a time.
constexpr int kClients = 8;

struct Acknowledged {
  std::string request_id;
  std::string patient_ref;
  v1::Enrollment enrollment;
};

std::unique_ptr<v1::EnrollmentService::Stub> NewStub(
    const std::string& address) {
  return v1::EnrollmentService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

v1::CreateEnrollmentRequest CreateRequest(const std::string& request_id,
                                          const std::string& patient_ref) {
  v1::CreateEnrollmentRequest request;
  request.set_parent("tenants/default");
  request.set_request_id(request_id);
  request.set_patient_ref(patient_ref);
  request.set_workflow_id("ipsrt-standard");
  request.set_time_zone("America/New_York");
  request.set_clinician_ref("Practitioner/1");
  return request;
}

TEST(DrainTest, SigtermLosesNoAcknowledgedCreate) {
  TempDir dir;
  const std::string config = WriteConfig(dir);
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();

  absl::Mutex mu;
  std::vector<Acknowledged> acknowledged;  // Guarded by mu.
  std::map<std::string, int> failures;     // Code name -> count; by mu.
  std::atomic<bool> stop{false};

  // Each client creates until a call fails (the server stopped accepting)
  // or the test says stop.
  auto client = [&](int client_id) {
    auto stub = NewStub(address);
    for (int i = 0; !stop.load(); ++i) {
      const std::string request_id = absl::StrCat("drain-", client_id, "-", i);
      const std::string patient = absl::StrCat("Patient/d", client_id, "-", i);
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + kServerDeadline));
      v1::Enrollment enrollment;
      grpc::Status status = stub->CreateEnrollment(
          &context, CreateRequest(request_id, patient), &enrollment);
      absl::MutexLock lock(&mu);
      if (status.ok()) {
        acknowledged.push_back({request_id, patient, enrollment});
      } else {
        ++failures[absl::StrCat(status.error_code())];
        return;
      }
    }
  };
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) clients.emplace_back(client, c);

  absl::SleepFor(absl::Milliseconds(500));
  absl::StatusOr<int> exit_status = (*server)->Terminate();
  // Clients still calling would otherwise wait for their deadline.
  stop.store(true);
  for (std::thread& t : clients) t.join();

  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << DescribeWaitStatus(*exit_status) << "\n"
      << (*server)->process().Log();
  server->reset();

  absl::MutexLock lock(&mu);
  // Not vacuous: the load really ran before the signal.
  ASSERT_GE(acknowledged.size(), 1u)
      << "no create succeeded within 0.5 s; log:\n"
      << *ReadFile(dir.File("ipsrtd.log"));
  std::string failure_summary;
  for (const auto& [code, count] : failures) {
    absl::StrAppend(&failure_summary, " code ", code, " x", count);
  }
  RecordProperty("acknowledged", static_cast<int>(acknowledged.size()));
  SCOPED_TRACE(absl::StrCat(acknowledged.size(),
                            " acknowledged; failures:", failure_summary));

  absl::StatusOr<std::unique_ptr<Ipsrtd>> restarted = Ipsrtd::Start(config);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  {
    // Scoped: an idle connection left open would slow ipsrtd's drain below.
    auto stub = NewStub((*restarted)->address());
    int missing = 0;
    for (const Acknowledged& ack : acknowledged) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + kServerDeadline));
      v1::GetEnrollmentRequest request;
      request.set_name(ack.enrollment.name());
      v1::Enrollment got;
      grpc::Status status = stub->GetEnrollment(&context, request, &got);
      if (!status.ok()) {
        ++missing;
        ADD_FAILURE() << ack.enrollment.name() << " (" << ack.request_id
                      << ") was acknowledged but is gone: "
                      << status.error_message();
        continue;
      }
      EXPECT_EQ(got.patient_ref(), ack.patient_ref);
      EXPECT_EQ(got.revision(), ack.enrollment.revision());
    }
    EXPECT_EQ(missing, 0);

    // The idempotency record survived too: a retry returns the first result.
    const Acknowledged& first = acknowledged.front();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kServerDeadline));
    v1::Enrollment retried;
    grpc::Status status = stub->CreateEnrollment(
        &context, CreateRequest(first.request_id, first.patient_ref), &retried);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(retried.name(), first.enrollment.name());
  }

  absl::StatusOr<int> second_exit = (*restarted)->Terminate();
  ASSERT_TRUE(second_exit.ok()) << second_exit.status();
  EXPECT_TRUE(WIFEXITED(*second_exit) && WEXITSTATUS(*second_exit) == 0)
      << DescribeWaitStatus(*second_exit);
}

}  // namespace
}  // namespace ipsrt::e2e
