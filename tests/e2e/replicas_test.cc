// Several ipsrtd replicas on one PostgreSQL database: clients spread creates
// and events over them, one replica is killed with SIGKILL mid-load, and
// clients retry what it left unanswered on another replica with the same
// request id. Afterwards every acknowledged create and event is stored
// exactly once, and a stale writer on one replica is refused ABORTED after
// another replica moved the enrollment on: correctness rests on the
// database (request-id primary key, revision check, event sequence key),
// not on any replica's memory. Finally PostgreSQL restarts under the
// surviving replicas: calls fail UNAVAILABLE meanwhile and succeed after.
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "postgres_e2e.h"
#include "store/blob_codec.h"
#include "tests/testing/postgres_server.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kReplicas = 3;
constexpr int kClients = 6;
constexpr char kPasswordEnv[] = "IPSRT_E2E_PG_PASSWORD";
constexpr char kPassword[] = "replica-pw-4711";

// A create or event a replica acknowledged.
struct Ack {
  std::string request_id;
  std::string enrollment;  // name
  int64_t sequence = 0;    // of the recorded event (1 for a create)
};

TEST(ReplicasTest, KilledReplicaLosesNoAcknowledgedWrite) {
  absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
      testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)
                  ->Psql("postgres",
                         absl::StrCat("CREATE ROLE ", testing::kPasswordUser,
                                      " LOGIN PASSWORD '", kPassword,
                                      "'; CREATE DATABASE ipsrt OWNER ",
                                      testing::kPasswordUser))
                  .ok());
  ScopedEnv password(kPasswordEnv, kPassword);
  const std::string conninfo =
      absl::StrCat("host=127.0.0.1 port=", (*pg)->port(),
                   " dbname=ipsrt user=", testing::kPasswordUser);

  // The replicas start together on the empty database; the migration lock
  // lets exactly one of them create the schema.
  std::vector<std::unique_ptr<TempDir>> dirs;
  std::vector<std::string> configs;
  for (int i = 0; i < kReplicas; ++i) {
    dirs.push_back(std::make_unique<TempDir>());
    configs.push_back(
        WritePostgresConfig(*dirs.back(), conninfo, kPasswordEnv));
  }
  std::vector<absl::StatusOr<std::unique_ptr<Ipsrtd>>> started(kReplicas);
  {
    std::vector<std::thread> starters;
    for (int i = 0; i < kReplicas; ++i) {
      starters.emplace_back([&, i] { started[i] = Ipsrtd::Start(configs[i]); });
    }
    for (std::thread& t : starters) t.join();
  }
  std::vector<std::string> addresses;
  for (int i = 0; i < kReplicas; ++i) {
    ASSERT_TRUE(started[i].ok())
        << "replica " << i << ": " << started[i].status();
    addresses.push_back((*started[i])->address());
  }
  EXPECT_EQ(*(*pg)->Psql("ipsrt", "SELECT COUNT(*) FROM schema_migrations"),
            "10");

  absl::Mutex mu;
  std::vector<Ack> acks;               // by mu
  std::map<std::string, int> retried;  // status code -> count; by mu
  std::atomic<bool> stop{false};
  std::atomic<bool> killed{false};

  // Each client creates an enrollment and appends events to it, starting on
  // replica (client % kReplicas). A call that fails UNAVAILABLE (or
  // unanswered) is repeated with the same request id on the next replica.
  auto client = [&](int c) {
    int replica = c % kReplicas;
    std::vector<std::unique_ptr<v1::EnrollmentService::Stub>> stubs;
    for (const std::string& a : addresses) stubs.push_back(EnrollmentStub(a));
    auto with_retry = [&](auto call) {
      for (int attempt = 0; attempt < 20; ++attempt) {
        grpc::Status s = call(*stubs[replica]);
        if (s.ok()) return s;
        if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
            s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
          return s;
        }
        {
          absl::MutexLock lock(&mu);
          ++retried[absl::StrCat(s.error_code())];
        }
        replica = (replica + 1) % kReplicas;
      }
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "gave up");
    };
    for (int i = 0; !stop; ++i) {
      const std::string create_id = absl::StrCat("c", c, "-", i);
      v1::Enrollment created;
      grpc::Status s = with_retry([&](v1::EnrollmentService::Stub& stub) {
        grpc::ClientContext ctx;
        SetDeadline(ctx, absl::Seconds(5));
        return stub.CreateEnrollment(
            &ctx, NewEnrollment(create_id, absl::StrCat("Patient/", c, "-", i)),
            &created);
      });
      ASSERT_TRUE(s.ok()) << create_id << ": " << s.error_message();
      {
        absl::MutexLock lock(&mu);
        acks.push_back({create_id, created.name(), 1});
      }
      for (int e = 0; e < 3; ++e) {
        const std::string event_id = absl::StrCat(create_id, "-e", e);
        v1::SubmitEventResponse response;
        s = with_retry([&](v1::EnrollmentService::Stub& stub) {
          grpc::ClientContext ctx;
          SetDeadline(ctx, absl::Seconds(5));
          return stub.SubmitEvent(
              &ctx, SessionHeld(created.name(), event_id, 0), &response);
        });
        ASSERT_TRUE(s.ok()) << event_id << ": " << s.error_message();
        absl::MutexLock lock(&mu);
        acks.push_back({event_id, created.name(), response.event().sequence()});
      }
    }
  };
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) clients.emplace_back(client, c);

  absl::SleepFor(absl::Milliseconds(1500));
  size_t acked_before_kill = 0;
  {
    absl::MutexLock lock(&mu);
    acked_before_kill = acks.size();
  }
  (*started[0])->process().Signal(SIGKILL);
  ASSERT_TRUE((*started[0])->process().WaitForExit(absl::Seconds(10)));
  killed = true;
  absl::SleepFor(absl::Milliseconds(1500));
  stop = true;
  for (std::thread& t : clients) t.join();

  absl::MutexLock lock(&mu);
  ASSERT_GT(acked_before_kill, 0u) << "no load ran before the kill";
  ASSERT_GT(acks.size(), acked_before_kill) << "no load ran after the kill";
  RecordProperty("acknowledged", static_cast<int>(acks.size()));
  std::string retry_summary;
  for (const auto& [code, n] : retried) {
    absl::StrAppend(&retry_summary, " code ", code, " x", n);
  }
  SCOPED_TRACE(absl::StrCat(acks.size(), " acknowledged (", acked_before_kill,
                            " before the kill); retried:", retry_summary));

  // Every acknowledged write is in the database exactly once, under its
  // request id, at the sequence the client was told; and nothing else is.
  std::set<std::string> request_ids;
  int creates = 0;
  for (const Ack& a : acks) {
    EXPECT_TRUE(request_ids.insert(a.request_id).second) << a.request_id;
    if (a.sequence == 1) ++creates;
  }
  EXPECT_EQ(*(*pg)->Psql("ipsrt", "SELECT COUNT(*) FROM enrollments"),
            absl::StrCat(creates));
  EXPECT_EQ(*(*pg)->Psql("ipsrt", "SELECT COUNT(*) FROM events"),
            absl::StrCat(acks.size()));
  EXPECT_EQ(*(*pg)->Psql("ipsrt", "SELECT COUNT(*) FROM requests"),
            absl::StrCat(acks.size()));
  // Each event's request id is in its payload, which the rows keep packed
  // (store/blob_codec.h): read them as the store does.
  std::string listed =
      *(*pg)->Psql("ipsrt",
                   "SELECT sequence || '|' || encode(payload, 'hex') || '|' || "
                   "encode(hash, 'hex') FROM events");
  std::set<std::string> stored;
  for (absl::string_view line :
       absl::StrSplit(listed, '\n', absl::SkipWhitespace())) {
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    ASSERT_EQ(cells.size(), 3u) << line;
    absl::StatusOr<std::string> payload =
        EventPayloadFromStored(absl::HexStringToBytes(cells[1]), cells[2]);
    v1::Event event;
    ASSERT_TRUE(payload.ok() && event.ParseFromString(*payload)) << line;
    EXPECT_EQ(absl::StrCat(event.sequence()), cells[0]);
    EXPECT_TRUE(
        stored.insert(absl::StrCat(event.request_id(), "@", cells[0])).second)
        << event.request_id();
  }
  EXPECT_EQ(stored.size(), acks.size());
  for (const Ack& a : acks) {
    EXPECT_TRUE(stored.count(absl::StrCat(a.request_id, "@", a.sequence)))
        << a.request_id << " acknowledged at sequence " << a.sequence
        << " is not stored there";
  }
  // Event logs are dense: each enrollment's last sequence equals its count.
  EXPECT_EQ(*(*pg)->Psql("ipsrt",
                         "SELECT COUNT(*) FROM (SELECT enrollment_key FROM "
                         "events GROUP BY enrollment_key HAVING MAX(sequence) "
                         "<> COUNT(*)) gaps"),
            "0");

  // A stale writer: replica 1 and replica 2 both read revision r; replica 2
  // appends at r, then replica 1's append at r is refused.
  const std::string name = acks.front().enrollment;
  auto stub1 = EnrollmentStub(addresses[1]);
  auto stub2 = EnrollmentStub(addresses[2]);
  v1::Enrollment read1, read2;
  {
    grpc::ClientContext c1, c2;
    v1::GetEnrollmentRequest get;
    get.set_name(name);
    ASSERT_TRUE(stub1->GetEnrollment(&c1, get, &read1).ok());
    ASSERT_TRUE(stub2->GetEnrollment(&c2, get, &read2).ok());
    ASSERT_EQ(read1.revision(), read2.revision());
  }
  {
    grpc::ClientContext ctx;
    v1::SubmitEventResponse r;
    grpc::Status s = stub2->SubmitEvent(
        &ctx, SessionHeld(name, "fresh-writer", read2.revision()), &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    v1::SubmitEventResponse r;
    grpc::Status s = stub1->SubmitEvent(
        &ctx, SessionHeld(name, "stale-writer", read1.revision()), &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED) << s.error_message();
    EXPECT_THAT(s.error_message(),
                HasSubstr(absl::StrCat("is at revision ", read1.revision() + 1,
                                       ", not ", read1.revision())));
  }

  // PostgreSQL restarts under the surviving replicas: calls fail
  // UNAVAILABLE while it is down, the replicas keep running, and the same
  // request succeeds once it is back, stored once.
  ASSERT_TRUE((*pg)->Stop().ok());
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(20));
    v1::Enrollment e;
    grpc::Status s = stub1->CreateEnrollment(
        &ctx, NewEnrollment("during-restart", "Patient/r"), &e);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
        << s.error_message();
    grpc::ClientContext get_ctx;
    SetDeadline(get_ctx, absl::Seconds(20));
    v1::GetEnrollmentRequest get;
    get.set_name(name);
    s = stub2->GetEnrollment(&get_ctx, get, &e);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
        << s.error_message();
  }
  ASSERT_TRUE((*pg)->StartAgain().ok());
  for (int i = 1; i < kReplicas; ++i) {
    EXPECT_FALSE((*started[i])->process().Exited()) << "replica " << i;
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(20));
    v1::Enrollment e;
    grpc::Status s = stub2->CreateEnrollment(
        &ctx, NewEnrollment("during-restart", "Patient/r"), &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(*(*pg)->Psql("ipsrt",
                         "SELECT COUNT(*) FROM requests WHERE request_id = "
                         "'during-restart'"),
            "1");

  // Idle client connections would hold up the replicas' drain.
  stub1.reset();
  stub2.reset();

  // The password reached PostgreSQL but no log line.
  for (int i = 0; i < kReplicas; ++i) {
    EXPECT_THAT((*started[i])->process().Log(), Not(HasSubstr(kPassword)));
  }
  EXPECT_THAT((*started[1])->process().Log(),
              HasSubstr("store postgres (schema version 10, pool_size=4"));
  // No reminder channel configured: said at start-up, not silently.
  EXPECT_THAT((*started[1])->process().Log(),
              HasSubstr("reminders: this replica delivers none: store.kind "
                        "postgres has no default reminder file; set "
                        "reminders.channel"));
  for (int i = 1; i < kReplicas; ++i) {
    absl::StatusOr<int> exit_status = (*started[i])->Terminate();
    ASSERT_TRUE(exit_status.ok()) << exit_status.status();
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
        << DescribeWaitStatus(*exit_status);
  }
}

}  // namespace
}  // namespace ipsrt::e2e
