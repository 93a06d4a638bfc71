// Reminder delivery on PostgreSQL, with the real ipsrtd.
//
// One replica: a due reminder is posted through the reminder-webhook plugin
// to a receiver started by the test (which checks the signature), and the
// reminder of a task done before it falls due is never sent.
//
// Three replicas on one database, every dispatcher on, each replica writing
// its deliveries to a JSON Lines file of its own (the witness: idempotency
// key, attempt, delivery time on that replica's clock, and, by the file,
// the replica). One replica is SIGKILLed between claiming a batch and
// recording it; the survivors deliver the rest and, after its lease, its
// batch.
//
// What "exactly once" means. Delivery is at least once: a dispatcher that
// dies after delivering and before recording leaves its claims leased, and
// once the lease expires another replica delivers them again with the same
// idempotency key. A receiver that drops repeats by key therefore acts on
// each reminder exactly once when
//   (a) every reminder due in the test's window ends with one recorded
//       outcome, SENT, after one claim (two for the killed replica's batch);
//   (b) every key is delivered by exactly one replica, once, except the
//       killed replica's unrecorded batch: delivered by it (attempt 1) and
//       again by exactly one survivor (attempt 2, same key), not before the
//       lease the killed replica took had expired.
// The test asserts (a) from the store and (b) from the witness files, and
// that both survivors claimed part of the load (SKIP LOCKED: one replica's
// claims in flight do not hold up the other's).
//
// Test hooks (see reminders_test.cc): IPSRT_TEST_CLOCK_OFFSET puts 20:00 in
// New York, when the diary reminders fall due, a few seconds ahead;
// IPSRT_TEST_REMINDER_PAUSE makes a dispatcher sleep between delivering a
// batch and recording it.
#include <signal.h>
#include <stdlib.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ipsrt/v1/reminder.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "postgres_e2e.h"
#include "testing/webhook_receiver.h"
#include "tests/testing/postgres_server.h"

namespace ipsrt::e2e {
namespace {

// An outbox row's whole idempotency key: the row keeps the part after its
// enrollment's name (store/blob_codec.h).
constexpr char kWholeKey[] =
    "'tenants/' || tenant || '/enrollments/' || enrollment_id || '/' || "
    "idempotency_key";

using ::ipsrt::testing::PostgresServer;
using ::ipsrt::testing::WebhookReceiver;
using ::testing::HasSubstr;
using ::testing::Not;
namespace v1 = ::ipsrt::v1;

constexpr char kZone[] = "America/New_York";
constexpr char kDiaryReminder[] = "/reminder/initial.srm-diary#1";

// Evening is 20:00 today in New York (when the diary reminders of
// enrollments created before it fall due) and the clock offset that makes
// ipsrtd read `lead` before it now.
struct Evening {
  absl::Time due;
  absl::Duration offset;
};

Evening EveningIn(absl::Duration lead) {
  absl::TimeZone ny;
  if (!absl::LoadTimeZone(kZone, &ny)) std::abort();
  const absl::Time now = absl::Now();
  const absl::CivilDay today = absl::ToCivilDay(now, ny);
  const absl::Time due = absl::FromCivil(
      absl::CivilSecond(today.year(), today.month(), today.day(), 20, 0, 0),
      ny);
  return {due, (due - lead) - now};
}

// Appends `yaml` to the config file at `path`.
void Append(const std::string& path, const std::string& yaml) {
  absl::StatusOr<std::string> text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  ASSERT_TRUE(WriteFile(path, *text + yaml).ok());
}

// Sql runs `sql` in `database`; rows are lines, columns '|'.
std::string Sql(const PostgresServer& pg, const std::string& database,
                const std::string& sql) {
  absl::StatusOr<std::string> out = pg.Psql(database, sql);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

std::vector<std::vector<std::string>> Rows(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    rows.push_back(absl::StrSplit(line, '|'));
  }
  return rows;
}

// One line of a replica's JSON Lines witness.
struct Delivery {
  int replica = -1;
  std::string key;
  int attempt = 0;
  absl::Time delivered;  // on the delivering replica's clock
};

std::vector<Delivery> ReadWitness(const std::string& path, int replica) {
  std::vector<Delivery> out;
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return out;  // nothing delivered yet
  for (absl::string_view line :
       absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    nlohmann::json j = nlohmann::json::parse(std::string(line));
    Delivery d;
    d.replica = replica;
    d.key = j.at("idempotency_key").get<std::string>();
    d.attempt = j.at("attempt").get<int>();
    std::string err;
    EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full,
                                j.at("delivered_time").get<std::string>(),
                                &d.delivered, &err))
        << err << ": " << line;
    out.push_back(std::move(d));
  }
  return out;
}

// Create creates an enrollment through `stub` and returns its name.
std::string Create(v1::EnrollmentService::Stub& stub,
                   const std::string& request_id) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  v1::Enrollment e;
  grpc::Status s = stub.CreateEnrollment(
      &ctx, NewEnrollment(request_id, absl::StrCat("Patient/", request_id)),
      &e);
  EXPECT_TRUE(s.ok()) << request_id << ": " << s.error_message();
  return e.name();
}

// One PostgreSQL server for the suite (starting one takes a while); each
// test has a database of its own.
class PostgresRemindersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<PostgresServer>> started =
        PostgresServer::Start();
    if (started.ok()) {
      server_ = started->release();
    } else {
      start_error_ = new absl::Status(started.status());
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr) << *start_error_;
    ASSERT_TRUE(server_->CreateDatabase(kDatabase).ok());
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_
          ->Psql("postgres", absl::StrCat("DROP DATABASE IF EXISTS ", kDatabase,
                                          " WITH (FORCE)"))
          .IgnoreError();
    }
  }

  static constexpr char kDatabase[] = "ipsrt";
  static PostgresServer* server_;
  static absl::Status* start_error_;
};

PostgresServer* PostgresRemindersTest::server_ = nullptr;
absl::Status* PostgresRemindersTest::start_error_ = nullptr;

TEST_F(PostgresRemindersTest, DueReminderIsPostedAndADoneTasksReminderNever) {
  constexpr char kSecret[] = "pg-e2e-webhook-secret-0123456789";
  auto receiver = WebhookReceiver::Start(kSecret);
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  PostgresServer* const pg = server_;

  TempDir dir;
  ASSERT_TRUE(WriteFile(dir.File("webhook.secret"), kSecret).ok());
  const std::string config =
      WritePostgresConfig(dir, pg->Conninfo(kDatabase), "");
  // WritePostgresConfig ends with the plugins list (core-instruments).
  Append(config, absl::StrCat("  - path: libipsrt_reminder_webhook.so\n"
                              "    transport: in_process\n"
                              "    config:\n"
                              "      url: ",
                              (*receiver)->url(),
                              "\n"
                              "      secret_file: webhook.secret\n"
                              "reminders:\n"
                              "  poll_interval: 100ms\n"
                              "  lease: 2s\n"
                              "  channel: reminder-webhook\n"));

  const Evening evening = EveningIn(absl::Seconds(4));
  ScopedEnv offset("IPSRT_TEST_CLOCK_OFFSET",
                   absl::FormatDuration(evening.offset));
  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = EnrollmentStub((*server)->address());
  const std::string a = Create(*stub, "create-a");
  const std::string done = Create(*stub, "create-done");
  // The patient of `done` fills in today's diary before 20:00.
  {
    absl::TimeZone ny;
    ASSERT_TRUE(absl::LoadTimeZone(kZone, &ny));
    v1::SubmitEventRequest r;
    r.set_name(done);
    r.set_request_id("diary-done");
    v1::SrmDiaryDay* d = r.mutable_event()->mutable_srm_diary_day();
    d->set_local_date(absl::FormatCivilTime(absl::ToCivilDay(evening.due, ny)));
    d->set_instrument("srm5");
    for (const char* activity :
         {"out_of_bed", "first_contact", "start_work", "dinner", "to_bed"}) {
      v1::SrmActivity* act = d->add_activities();
      act->set_activity(activity);
      act->set_local_time("08:00");
      act->set_people_code(1);
    }
    grpc::ClientContext ctx;
    v1::SubmitEventResponse response;
    grpc::Status s = stub->SubmitEvent(&ctx, r, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  auto reminders = v1::ReminderService::NewStub(grpc::CreateChannel(
      (*server)->address(), grpc::InsecureChannelCredentials()));
  auto list = [&](v1::Reminder::Status status) {
    v1::ListDueRemindersRequest r;
    r.set_parent("tenants/default");
    r.add_statuses(status);
    grpc::ClientContext ctx;
    v1::ListDueRemindersResponse response;
    grpc::Status s = reminders->ListDueReminders(&ctx, r, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  };
  ASSERT_TRUE(
      WaitFor([&] { return list(v1::Reminder::SENT).reminders_size() == 1; },
              absl::Seconds(30)))
      << (*server)->process().Log();

  const std::string key = a + kDiaryReminder;
  v1::ListDueRemindersResponse sent = list(v1::Reminder::SENT);
  ASSERT_EQ(sent.reminders_size(), 1);
  EXPECT_EQ(sent.reminders(0).idempotency_key(), key);
  EXPECT_EQ(sent.reminders(0).attempts(), 1);
  EXPECT_EQ(sent.reminders(0).time_zone(), kZone);
  EXPECT_THAT(sent.reminders(0).local_due_time(), HasSubstr("T20:00 ("));
  // The done task's reminder was cancelled by the commit that completed it,
  // and nothing is left due.
  v1::ListDueRemindersResponse cancelled = list(v1::Reminder::CANCELLED);
  ASSERT_EQ(cancelled.reminders_size(), 1);
  EXPECT_EQ(cancelled.reminders(0).idempotency_key(), done + kDiaryReminder);
  EXPECT_EQ(cancelled.reminders(0).attempts(), 0);
  EXPECT_EQ(list(v1::Reminder::SCHEDULED).reminders_size(), 0);

  // The receiver got one signed POST, for `a`'s key; none for `done`.
  std::vector<WebhookReceiver::Request> got = (*receiver)->Requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].signature_valid) << got[0].signature;
  EXPECT_EQ(got[0].status, 200);
  EXPECT_EQ(got[0].idempotency_key, key);
  EXPECT_THAT(got[0].body,
              HasSubstr(absl::StrCat("\"idempotency_key\":\"", key, "\"")));
  EXPECT_EQ((*receiver)->AcceptedByKey(),
            (std::map<std::string, int>{{key, 1}}));
  EXPECT_EQ(
      Sql(*pg, kDatabase,
          "SELECT status || '/' || attempts FROM outbox WHERE "
          "kind = 'reminder' AND due_time_us <= " +
              absl::StrCat(absl::ToUnixMicros(evening.due)) + " ORDER BY id"),
      "2/1\n3/0");

  stub.reset();
  reminders.reset();
  absl::StatusOr<int> exit_status = (*server)->Terminate();
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << DescribeWaitStatus(*exit_status);
}

TEST_F(PostgresRemindersTest,
       KilledReplicasClaimsAreDeliveredOnceMoreAfterLease) {
  constexpr int kReplicas = 3;
  constexpr int kEnrollments = 40;
  constexpr int kBatch = 4;
  constexpr int kCreators = 4;
  // Replica 0's clock runs this far ahead of the others', so that it alone
  // sees the reminders due first and claims the first batch: the kill then
  // always lands between its claim and its record.
  const absl::Duration kSkew = absl::Seconds(1);

  PostgresServer* const pg = server_;
  std::vector<std::unique_ptr<TempDir>> dirs;
  std::vector<std::string> configs;
  for (int i = 0; i < kReplicas; ++i) {
    dirs.push_back(std::make_unique<TempDir>());
    configs.push_back(
        WritePostgresConfig(*dirs.back(), pg->Conninfo(kDatabase), ""));
    Append(configs.back(), absl::StrCat("reminders:\n"
                                        "  poll_interval: 50ms\n"
                                        "  lease: 2s\n"
                                        "  batch_size: ",
                                        kBatch,
                                        "\n"
                                        "  jsonl:\n"
                                        "    path: delivered.jsonl\n"
                                        "    sync: true\n"));
  }

  // Replica 0 pauses for good after delivering its first batch (it is
  // killed there). The survivors pause briefly after each batch, as a slow
  // channel would, so that each holds claims in flight while the other
  // claims: both take part whatever the scheduling.
  const Evening evening = EveningIn(absl::Seconds(5));
  std::vector<std::unique_ptr<Ipsrtd>> replicas;
  std::vector<std::string> addresses;
  for (int i = 0; i < kReplicas; ++i) {
    ScopedEnv offset(
        "IPSRT_TEST_CLOCK_OFFSET",
        absl::FormatDuration(evening.offset +
                             (i == 0 ? kSkew : absl::ZeroDuration())));
    ScopedEnv pause("IPSRT_TEST_REMINDER_PAUSE", i == 0 ? "120s" : "150ms");
    absl::StatusOr<std::unique_ptr<Ipsrtd>> started = Ipsrtd::Start(configs[i]);
    ASSERT_TRUE(started.ok()) << "replica " << i << ": " << started.status();
    addresses.push_back((*started)->address());
    replicas.push_back(*std::move(started));
  }

  // Enrollments created through all replicas; each plans its first diary
  // reminder at 20:00 New York time.
  std::vector<std::string> names(kEnrollments);
  {
    std::vector<std::thread> creators;
    for (int t = 0; t < kCreators; ++t) {
      creators.emplace_back([&, t] {
        std::vector<std::unique_ptr<v1::EnrollmentService::Stub>> stubs;
        for (const std::string& a : addresses) {
          stubs.push_back(EnrollmentStub(a));
        }
        for (int k = t; k < kEnrollments; k += kCreators) {
          names[k] = Create(*stubs[k % kReplicas], absl::StrCat("create-", k));
        }
      });
    }
    for (std::thread& t : creators) t.join();
  }
  // Every create finished before 20:00 on replica 0's clock, which runs
  // ahead (a later one would plan its reminder for tomorrow): the lead
  // covered the set-up.
  const absl::Duration slack =
      evening.due - (absl::Now() + evening.offset + kSkew);
  RecordProperty("setup_slack_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(slack)));
  ASSERT_GT(slack, absl::ZeroDuration())
      << "starting the replicas and creating the enrollments took longer "
         "than the lead before 20:00";
  std::set<std::string> expected_keys;
  for (const std::string& name : names) {
    ASSERT_FALSE(name.empty());
    expected_keys.insert(name + kDiaryReminder);
  }

  // Replica 0 claims a batch at its 20:00, delivers it and pauses. Its
  // claims are in the store under its lease (owner "host/pid/suffix").
  ASSERT_TRUE(WaitFor(
      [&] {
        return replicas[0]->process().Log().find("test fault: pausing") !=
               std::string::npos;
      },
      absl::Seconds(30)))
      << replicas[0]->process().Log();
  const std::string pid0 = absl::StrCat(replicas[0]->process().pid());
  std::map<std::string, absl::Time> held;  // key -> lease expiry
  for (const std::vector<std::string>& row :
       Rows(Sql(*pg, kDatabase,
                absl::StrCat("SELECT " + std::string(kWholeKey) +
                                 ", lease_expiry_us, "
                                 "attempts FROM outbox WHERE status = 1 AND "
                                 "split_part(lease_owner, '/', 2) = '",
                             pid0, "' ORDER BY id")))) {
    ASSERT_EQ(row.size(), 3u);
    int64_t expiry_us = 0;
    ASSERT_TRUE(absl::SimpleAtoi(row[1], &expiry_us)) << row[1];
    EXPECT_EQ(row[2], "1") << row[0];
    held[row[0]] = absl::FromUnixMicros(expiry_us);
  }
  ASSERT_EQ(held.size(), static_cast<size_t>(kBatch));
  replicas[0]->process().Signal(SIGKILL);
  ASSERT_TRUE(replicas[0]->process().WaitForExit(absl::Seconds(10)));

  // Its witness holds exactly the batch it claimed, first attempts.
  {
    std::vector<Delivery> by_killed =
        ReadWitness(dirs[0]->File("delivered.jsonl"), 0);
    std::set<std::string> keys;
    for (const Delivery& d : by_killed) {
      keys.insert(d.key);
      EXPECT_EQ(d.attempt, 1) << d.key;
    }
    EXPECT_EQ(by_killed.size(), held.size());
    std::set<std::string> held_keys;
    for (const auto& entry : held) held_keys.insert(entry.first);
    EXPECT_EQ(keys, held_keys);
  }

  // The survivors settle everything due, the killed batch last (after its
  // lease).
  const std::string due_us = absl::StrCat(absl::ToUnixMicros(evening.due));
  ASSERT_TRUE(WaitFor(
      [&] {
        return Sql(*pg, kDatabase,
                   absl::StrCat("SELECT COUNT(*) FROM outbox WHERE "
                                "status NOT IN (2, 3, 4) AND "
                                "due_time_us <= ",
                                due_us)) == "0";
      },
      absl::Seconds(30)))
      << replicas[1]->process().Log() << replicas[2]->process().Log();

  // (a) The store: every reminder due by now (on the survivors' clock) is
  // SENT, claimed once, or twice if it was in the killed batch.
  const std::string window_end =
      absl::StrCat(absl::ToUnixMicros(absl::Now() + evening.offset));
  std::set<std::string> due_keys;
  for (const std::vector<std::string>& row : Rows(
           Sql(*pg, kDatabase,
               absl::StrCat("SELECT " + std::string(kWholeKey) +
                                ", status, attempts, "
                                "due_time_us FROM outbox WHERE due_time_us <= ",
                            window_end, " ORDER BY id")))) {
    ASSERT_EQ(row.size(), 4u);
    const std::string& key = row[0];
    due_keys.insert(key);
    EXPECT_EQ(row[1], "2") << key << " is not SENT";
    EXPECT_EQ(row[2], held.count(key) ? "2" : "1") << key << " claims";
    EXPECT_EQ(row[3], due_us) << key;
  }
  // Every enrollment's diary reminder was planned for 20:00 and is among
  // them (creating them took less than the lead before 20:00).
  for (const std::string& key : expected_keys) {
    EXPECT_TRUE(due_keys.count(key)) << key << " not due by 20:00";
  }

  // (b) The witnesses: each key delivered by one replica once, but the
  // killed batch: by replica 0 (attempt 1) and by one survivor (attempt 2,
  // no earlier than replica 0's lease expiry).
  std::map<std::string, std::vector<Delivery>> by_key;
  std::map<int, int> first_attempts;  // replica -> keys it delivered first
  for (int i = 0; i < kReplicas; ++i) {
    for (Delivery& d : ReadWitness(dirs[i]->File("delivered.jsonl"), i)) {
      if (d.attempt == 1) ++first_attempts[i];
      by_key[d.key].push_back(std::move(d));
    }
  }
  for (const auto& entry : by_key) {
    EXPECT_TRUE(due_keys.count(entry.first))
        << entry.first << " delivered but not due";
  }
  for (const std::string& key : due_keys) {
    const std::vector<Delivery>& got = by_key[key];
    auto held_it = held.find(key);
    if (held_it == held.end()) {
      ASSERT_EQ(got.size(), 1u) << key;
      EXPECT_NE(got[0].replica, 0) << key;
      EXPECT_EQ(got[0].attempt, 1) << key;
      continue;
    }
    ASSERT_EQ(got.size(), 2u) << key;
    const Delivery& first = got[0].replica == 0 ? got[0] : got[1];
    const Delivery& again = got[0].replica == 0 ? got[1] : got[0];
    EXPECT_EQ(first.replica, 0) << key;
    EXPECT_EQ(first.attempt, 1) << key;
    EXPECT_NE(again.replica, 0) << key;
    EXPECT_EQ(again.attempt, 2) << key;
    EXPECT_GE(again.delivered, held_it->second)
        << key << " redelivered at " << again.delivered
        << " before the lease expired at " << held_it->second;
  }
  // Both survivors claimed part of the load.
  EXPECT_GT(first_attempts[1], 0);
  EXPECT_GT(first_attempts[2], 0);
  EXPECT_EQ(first_attempts[0] + first_attempts[1] + first_attempts[2],
            static_cast<int>(due_keys.size()));
  RecordProperty("due", static_cast<int>(due_keys.size()));
  RecordProperty("first_by_replica_1", first_attempts[1]);
  RecordProperty("first_by_replica_2", first_attempts[2]);

  for (int i = 1; i < kReplicas; ++i) {
    const std::string log = replicas[i]->process().Log();
    // No survivor lost a lease of its own or failed a round.
    EXPECT_THAT(log, Not(HasSubstr("dropped: the lease expired"))) << i;
    EXPECT_THAT(log, Not(HasSubstr("reminder dispatch round failed"))) << i;
    absl::StatusOr<int> exit_status = replicas[i]->Terminate();
    ASSERT_TRUE(exit_status.ok()) << exit_status.status();
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
        << DescribeWaitStatus(*exit_status);
  }
}

}  // namespace
}  // namespace ipsrt::e2e
