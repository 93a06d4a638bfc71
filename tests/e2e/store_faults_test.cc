// The store's own faults, with the real ipsrtd: an emptied database, two
// servers on one port or one file, a zeroed leaf page of each table, and a
// disk that fills (a tmpfs mounted by the test). Each test asserts the
// code, the log line, and that nothing acknowledged is lost or silently
// missing (docs/durability.md).
#include <sys/mount.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "postgres_e2e.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/sqlite_pages.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// WriteStoreConfig writes dir/ipsrtd.yaml with the database at
// `database` (relative to dir) and `extra` lines under store.sqlite.
std::string WriteStoreConfig(const TempDir& dir, const std::string& database,
                             const std::string& extra = "") {
  const std::string path = dir.File("ipsrtd.yaml");
  std::string yaml = absl::StrCat(
      "server:\n  listen: 127.0.0.1:50051\n  shutdown_grace: 10s\n"
      "store:\n  kind: sqlite\n  sqlite:\n    path: ",
      database, "\n", extra, "workflows:\n  directories:\n    - ",
      IPSRT_WORKFLOWS_DIR,
      "\nlogging:\n  level: info\n"
      "plugins:\n  - path: libipsrt_core_instruments.so\n");
  EXPECT_TRUE(WriteFile(path, yaml).ok());
  return path;
}

// Refused runs ipsrtd expecting it to exit by itself; returns its log.
std::string Refused(const TempDir& dir, const std::string& config,
                    const std::string& listen = "127.0.0.1:0") {
  const std::string log = dir.File(absl::StrCat("refused-", rand(), ".log"));
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Spawn(
      {IPSRTD_BIN, "--config=" + config, "--listen=" + listen}, log);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return "";
  std::optional<int> status = (*child)->WaitForExit(kServerDeadline);
  EXPECT_TRUE(status.has_value()) << "ipsrtd kept running:\n"
                                  << (*child)->Log();
  if (status.has_value()) {
    EXPECT_EQ(DescribeWaitStatus(*status), "exit 1") << (*child)->Log();
  }
  return (*child)->Log();
}

struct Population {
  std::vector<std::string> enrollments;      // names
  int64_t events = 0;                        // acknowledged, creates included
  std::map<std::string, int64_t> events_of;  // by enrollment name
};

// Populate creates `n` enrollments with `events_each` more events each.
Population Populate(const std::string& address, int n, int events_each) {
  Population p;
  auto stub = EnrollmentStub(address);
  for (int i = 0; i < n; ++i) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(10));
    v1::Enrollment created;
    grpc::Status s = stub->CreateEnrollment(
        &ctx, NewEnrollment(absl::StrCat("create-", i), "Patient/p"), &created);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return p;
    p.enrollments.push_back(created.name());
    for (int e = 0; e < events_each; ++e) {
      grpc::ClientContext ectx;
      SetDeadline(ectx, absl::Seconds(10));
      v1::SubmitEventResponse response;
      s = stub->SubmitEvent(
          &ectx, SessionHeld(created.name(), absl::StrCat("ev-", i, "-", e), 0),
          &response);
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    // The events the engine recorded for these changes, all acknowledged.
    grpc::ClientContext tctx;
    SetDeadline(tctx, absl::Seconds(10));
    v1::GetTimelineRequest timeline;
    timeline.set_name(created.name());
    timeline.set_page_size(1000);
    v1::GetTimelineResponse events;
    s = stub->GetTimeline(&tctx, timeline, &events);
    EXPECT_TRUE(s.ok()) << s.error_message();
    p.events += events.events_size();
    p.events_of[created.name()] = events.events_size();
  }
  return p;
}

grpc::Status Get(v1::EnrollmentService::Stub& stub, const std::string& name) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  v1::GetEnrollmentRequest request;
  request.set_name(name);
  v1::Enrollment response;
  return stub.GetEnrollment(&ctx, request, &response);
}

grpc::Status Create(v1::EnrollmentService::Stub& stub,
                    const std::string& request_id,
                    std::string* name = nullptr) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  v1::Enrollment created;
  grpc::Status s = stub.CreateEnrollment(
      &ctx, NewEnrollment(request_id, "Patient/q"), &created);
  if (name != nullptr) *name = created.name();
  return s;
}

TEST(StoreFaultsTest, EmptiedDatabaseIsRefusedNotServedEmpty) {
  TempDir dir;
  const std::string config = WriteStoreConfig(dir, "ipsrt.db");
  {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    Population p = Populate((*server)->address(), 3, 0);
    ASSERT_EQ(p.enrollments.size(), 3u);
    ASSERT_TRUE((*server)->Terminate().ok());
  }
  std::filesystem::resize_file(dir.File("ipsrt.db"), 0);
  std::string log = Refused(dir, config);
  EXPECT_THAT(log, HasSubstr(absl::StrCat(
                       "cannot open store: FAILED_PRECONDITION: store: ",
                       dir.File("ipsrt.db"),
                       " is empty (0 bytes) but its "
                       "identity file ",
                       dir.File("ipsrt.db.identity"), " says store ")));
  EXPECT_THAT(log, HasSubstr(" commits. Restore the database from a backup "
                             "(with its identity file)"));
  // `ipsrt store init` does not paper over it either.
  ProcessResult init = RunCliNoServer({"store", "init", "--config=" + config});
  EXPECT_EQ(init.exit_code, 1);
  EXPECT_THAT(init.err, HasSubstr("is empty (0 bytes) but its identity file"));
  EXPECT_EQ(std::filesystem::file_size(dir.File("ipsrt.db")), 0u);
}

TEST(StoreFaultsTest, StoreInitCreatesWhatProductionRefusesToCreate) {
  TempDir dir;
  const std::string config =
      WriteStoreConfig(dir, "data/ipsrt.db", "    create: false\n");
  std::string log = Refused(dir, config);
  EXPECT_THAT(log, HasSubstr("does not exist and store.sqlite.create is "
                             "false; run `ipsrt store init`"));
  ProcessResult init = RunCliNoServer({"store", "init", "--config=" + config});
  EXPECT_EQ(init.exit_code, 0) << init.err;
  EXPECT_THAT(init.out, HasSubstr(absl::StrCat("initialised: store sqlite at ",
                                               dir.File("data/ipsrt.db"))));
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
}

TEST(StoreFaultsTest, SecondServerOnOnePortFailsToBind) {
  TempDir a_dir, b_dir;
  absl::StatusOr<std::unique_ptr<Ipsrtd>> a =
      Ipsrtd::Start(WriteStoreConfig(a_dir, "ipsrt.db"));
  ASSERT_TRUE(a.ok()) << a.status();
  std::string log =
      Refused(b_dir, WriteStoreConfig(b_dir, "ipsrt.db"), (*a)->address());
  EXPECT_THAT(log, HasSubstr(absl::StrCat(
                       "server: cannot listen on ", (*a)->address(),
                       ": the address is in use (another ipsrtd?)")));
  // The first server still answers every call.
  Population p = Populate((*a)->address(), 1, 0);
  ASSERT_EQ(p.enrollments.size(), 1u);
  auto stub = EnrollmentStub((*a)->address());
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(Get(*stub, p.enrollments[0]).ok());
}

TEST(StoreFaultsTest, SecondServerOnOneDatabaseIsRefused) {
  TempDir dir;
  const std::string config = WriteStoreConfig(dir, "ipsrt.db");
  absl::StatusOr<std::unique_ptr<Ipsrtd>> a = Ipsrtd::Start(config);
  ASSERT_TRUE(a.ok()) << a.status();
  std::string log = Refused(dir, config);
  EXPECT_THAT(log, HasSubstr(absl::StrCat(
                       "store: the database is in use by another ipsrtd (pid ",
                       (*a)->process().pid(), "): lock file ",
                       dir.File("ipsrt.db.lock"), " is held")));
}

// Counts the rows `ipsrt store check` read and named as damaged.
struct CheckCounts {
  int64_t enrollments_read = -1, events_read = -1;
  int64_t damaged_enrollments = 0, damaged_events = 0;
};
CheckCounts ParseCheck(const std::string& out, const Population& p) {
  CheckCounts c;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    long long a = 0, b = 0;
    if (std::sscanf(std::string(line).c_str(),
                    "read: %lld enrollments, %lld events", &a, &b) == 2) {
      c.enrollments_read = a;
      c.events_read = b;
    }
    size_t at = line.find("/events/");
    if (at != absl::string_view::npos) {
      absl::string_view range = line.substr(at + 8);
      range = range.substr(0, range.find(':'));
      if (absl::EndsWith(range, " and later")) {
        // The tail of the log from there on, as acknowledged.
        std::string name(line.substr(2, at - 2));
        int64_t from = 0;
        auto it = p.events_of.find(name);
        if (absl::SimpleAtoi(range.substr(0, range.find(' ')), &from) &&
            it != p.events_of.end()) {
          c.damaged_events += it->second - from + 1;
        }
        continue;
      }
      std::vector<absl::string_view> ends = absl::StrSplit(range, "..");
      int64_t lo = 0, hi = 0;
      if (absl::SimpleAtoi(ends[0], &lo)) {
        hi = ends.size() > 1 && absl::SimpleAtoi(ends[1], &hi) ? hi : lo;
        c.damaged_events += hi - lo + 1;
      }
    } else if (line.find("/enrollments/") != absl::string_view::npos &&
               line.find(": cannot be read") != absl::string_view::npos) {
      ++c.damaged_enrollments;
    }
  }
  return c;
}

TEST(StoreFaultsTest, ZeroedLeafPageOfEachTableStopsWritesAndIsAccounted) {
  TempDir source;
  const std::string source_config = WriteStoreConfig(source, "ipsrt.db");
  Population p;
  {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
        Ipsrtd::Start(source_config);
    ASSERT_TRUE(server.ok()) << server.status();
    p = Populate((*server)->address(), 40, 3);
    ASSERT_EQ(p.enrollments.size(), 40u);
    ASSERT_TRUE((*server)->Terminate().ok());
  }
  for (const char* table : {"enrollments", "events", "requests", "audit"}) {
    SCOPED_TRACE(table);
    TempDir dir;
    for (const char* file : {"ipsrt.db", "ipsrt.db.identity"}) {
      std::filesystem::copy_file(source.File(file), dir.File(file));
    }
    absl::StatusOr<int64_t> page =
        testing::MiddleLeafPage(dir.File("ipsrt.db"), table);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_TRUE(testing::ZeroPage(dir.File("ipsrt.db"), *page).ok());

    absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
        Ipsrtd::Start(WriteStoreConfig(dir, "ipsrt.db"));
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = EnrollmentStub((*server)->address());
    grpc::Status write = Create(*stub, "after-damage");
    EXPECT_EQ(write.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(write.error_message(),
                HasSubstr("store: read-only for safety since "));
    EXPECT_THAT(write.error_message(), HasSubstr("PRAGMA quick_check "));
    std::string log = (*server)->process().Log();
    // One ERROR line ("E" level) says what happened and what to run.
    EXPECT_THAT(log, HasSubstr("Z E sqlite_store.cc:"));
    EXPECT_THAT(log,
                HasSubstr(absl::StrCat("] store: ", dir.File("ipsrt.db"),
                                       " is read-only for safety since ")));
    EXPECT_THAT(log, HasSubstr(absl::StrCat("run `ipsrt store check --db=",
                                            dir.File("ipsrt.db"), "`")));
    EXPECT_THAT(log, Not(HasSubstr("Patient/")));
    // Readiness follows: the store's probe reports the safety stop, so
    // health turns NOT_SERVING within a few probe intervals (2 s each).
    std::string health;
    for (int i = 0; i < 50; ++i) {
      health = RunCli((*server)->address(), {"health"}).out;
      if (absl::StrContains(health, "NOT_SERVING")) break;
      absl::SleepFor(absl::Milliseconds(200));
    }
    EXPECT_THAT(health, HasSubstr("status: NOT_SERVING")) << health;
    // Reads that can be served are; every failing one says DATA_LOSS.
    int served = 0;
    for (const std::string& name : p.enrollments) {
      grpc::Status s = Get(*stub, name);
      if (s.ok()) {
        ++served;
      } else {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS)
            << name << ": " << s.error_message();
      }
    }
    EXPECT_GT(served, 0);
    // An admin asks the running server for the same check.
    ProcessResult online = RunCli((*server)->address(), {"store", "check"});
    EXPECT_EQ(online.exit_code, 1) << online.out << online.err;
    EXPECT_THAT(online.out, HasSubstr("integrity_check: DAMAGED"));
    EXPECT_THAT(online.out, HasSubstr("changes: FAILED_PRECONDITION: store: "
                                      "read-only for safety since "));
    ASSERT_TRUE((*server)->Terminate().ok());

    // Offline, every acknowledged row is read or named as damaged.
    ProcessResult check =
        RunCliNoServer({"store", "check", "--db=" + dir.File("ipsrt.db")});
    EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
    EXPECT_THAT(check.out, HasSubstr("integrity_check: DAMAGED"));
    EXPECT_THAT(check.out, Not(HasSubstr("Patient/")));
    CheckCounts counts = ParseCheck(check.out, p);
    EXPECT_EQ(counts.enrollments_read + counts.damaged_enrollments,
              static_cast<int64_t>(p.enrollments.size()))
        << check.out;
    EXPECT_EQ(counts.events_read + counts.damaged_events, p.events)
        << check.out;
  }
  // The undamaged source checks clean.
  ProcessResult clean =
      RunCliNoServer({"store", "check", "--db=" + source.File("ipsrt.db")});
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  EXPECT_THAT(clean.out,
              HasSubstr(absl::StrCat("read: 40 enrollments, ", p.events,
                                     " events\ndamaged rows: 0\n")));
}

// Tmpfs is a small tmpfs mounted at `path` for the test's life.
class Tmpfs {
 public:
  Tmpfs(const std::string& path, const std::string& size) : path_(path) {
    std::filesystem::create_directories(path);
    mounted_ = ::mount("tmpfs", path.c_str(), "tmpfs", 0,
                       ("size=" + size).c_str()) == 0;
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// Fill creates enrollments ("fill-<i>") until one fails; returns the
// acknowledged enrollments' names and the failure.
std::pair<std::vector<std::string>, grpc::Status> Fill(
    v1::EnrollmentService::Stub& stub) {
  std::vector<std::string> acked;
  for (int i = 0; i < 200000; ++i) {
    std::string name;
    grpc::Status s = Create(stub, absl::StrCat("fill-", i), &name);
    if (!s.ok()) return {acked, s};
    acked.push_back(name);
  }
  return {acked, grpc::Status::OK};
}

TEST(StoreFaultsTest, DiskFillingRefusesChangesBeforeItIsFullAndKeepsReads) {
  TempDir dir;
  Tmpfs fs(dir.File("data"), "12m");
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
  const std::string config =
      WriteStoreConfig(dir, "data/ipsrt.db", "    min_free_space: 2MiB\n");
  std::vector<std::string> acked;
  {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = EnrollmentStub((*server)->address());
    grpc::Status refused;
    std::tie(acked, refused) = Fill(*stub);
    ASSERT_GT(acked.size(), 10u);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(refused.error_message(),
                HasSubstr("store: disk nearly full: "));
    EXPECT_THAT(refused.error_message(),
                HasSubstr("below the watermark of 2.0 MiB"));
    // Reads keep working: their audit records pass the watermark.
    int64_t reads = 0;
    for (size_t i = 0; i < acked.size();
         i += std::max<size_t>(1, acked.size() / 50)) {
      grpc::Status read = Get(*stub, acked[i]);
      EXPECT_TRUE(read.ok()) << acked[i] << ": " << read.error_message();
      ++reads;
    }
    EXPECT_GT(reads, 10);
    EXPECT_THAT((*server)->process().Log(),
                HasSubstr("(store.sqlite.min_free_space): changes are refused "
                          "RESOURCE_EXHAUSTED, reads continue"));
    ASSERT_TRUE((*server)->Terminate().ok());
  }
  // Below the watermark at start: refused with the figures.
  std::filesystem::space_info space = std::filesystem::space(dir.File("data"));
  if (space.available > (2u << 20)) {
    std::string ballast(space.available - (1u << 20), 'b');
    ASSERT_TRUE(WriteFile(dir.File("data/ballast"), ballast).ok());
  }
  std::string log = Refused(dir, config);
  EXPECT_THAT(log, HasSubstr("below the free-space watermark of 2.0 MiB "
                             "(store.sqlite.min_free_space); free space "
                             "before starting"));
  std::filesystem::remove(dir.File("data/ballast"));
  // Nothing acknowledged was lost: each create replays its first result.
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(
      WriteStoreConfig(dir, "data/ipsrt.db", "    min_free_space: 0\n"));
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = EnrollmentStub((*server)->address());
  v1::ListEnrollmentsRequest list;
  list.set_parent("tenants/default");
  list.set_page_size(1000);
  int64_t listed = 0;
  while (true) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(10));
    v1::ListEnrollmentsResponse page;
    grpc::Status s = stub->ListEnrollments(&ctx, list, &page);
    ASSERT_TRUE(s.ok()) << s.error_message();
    listed += page.enrollments_size();
    if (page.next_page_token().empty()) break;
    list.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(listed, static_cast<int64_t>(acked.size()));
}

TEST(StoreFaultsTest, FullDiskFailuresCarryTheStoresCode) {
  TempDir dir;
  Tmpfs fs(dir.File("data"), "8m");
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
  // Room to free later; the watermark is off so the disk really fills.
  ASSERT_TRUE(
      WriteFile(dir.File("data/ballast"), std::string(2u << 20, 'b')).ok());
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(
      WriteStoreConfig(dir, "data/ipsrt.db", "    min_free_space: 0\n"));
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = EnrollmentStub((*server)->address());
  auto [acked, full] = Fill(*stub);
  ASSERT_GT(acked.size(), 10u);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << full.error_message();
  EXPECT_THAT(full.error_message(), HasSubstr("database or disk is full"));
  // Whatever fails now fails for the store's reason, not the audit layer's.
  std::map<int, int> codes;
  for (size_t i = 0; i < acked.size();
       i += std::max<size_t>(1, acked.size() / 40)) {
    grpc::Status s = Get(*stub, acked[i]);
    ++codes[s.error_code()];
    if (!s.ok()) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << s.error_message();
      EXPECT_THAT(s.error_message(),
                  HasSubstr("audit: the call's audit record could not be "
                            "stored, so its result is withheld: store: "));
      EXPECT_THAT(s.error_message(), HasSubstr("database or disk is full"));
    }
  }
  EXPECT_EQ(codes.count(grpc::StatusCode::UNAVAILABLE), 0u);
  EXPECT_THAT((*server)->process().Log(), HasSubstr("is full (store: "));
  // Space freed: the failed request succeeds on retry; nothing was lost.
  std::filesystem::remove(dir.File("data/ballast"));
  grpc::Status retried = Create(*stub, absl::StrCat("fill-", acked.size()));
  EXPECT_TRUE(retried.ok()) << retried.error_message();
  for (const std::string& name : acked) {
    grpc::Status s = Get(*stub, name);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
  }
}

TEST(StoreFaultsTest, PostgresRestartUnderLoadLosesNothingAndSaysWhy) {
  absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
      testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)->CreateDatabase("ipsrt").ok());
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
      Ipsrtd::Start(WritePostgresConfig(dir, (*pg)->Conninfo("ipsrt"), ""));
  ASSERT_TRUE(server.ok()) << server.status();

  absl::Mutex mu;
  int64_t acked = 0;                    // by mu
  std::map<std::string, int> failures;  // "CODE: message prefix"; by mu
  std::atomic<bool> stop{false};
  auto client = [&](int c) {
    auto stub = EnrollmentStub((*server)->address());
    for (int i = 0; !stop; ++i) {
      const std::string id = absl::StrCat("pg-", c, "-", i);
      // Retried with the same request id until it is acknowledged.
      for (int attempt = 0; attempt < 600; ++attempt) {
        grpc::Status s = Create(*stub, id);
        absl::MutexLock lock(&mu);
        if (s.ok()) {
          ++acked;
          break;
        }
        std::string message = s.error_message();
        ++failures[absl::StrCat(s.error_code(), " ",
                                message.substr(0, message.find(':', 7)))];
        mu.Unlock();
        absl::SleepFor(absl::Milliseconds(50));
        mu.Lock();
      }
    }
  };
  auto await_acks = [&](int64_t n) {
    absl::MutexLock lock(&mu);
    auto reached = [&]() { return acked >= n; };
    mu.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(60));
    return acked;
  };
  std::vector<std::thread> clients;
  for (int c = 0; c < 3; ++c) clients.emplace_back(client, c);
  int64_t before = await_acks(30);
  ASSERT_TRUE((*pg)->Stop().ok());
  absl::SleepFor(absl::Seconds(1));
  ASSERT_TRUE((*pg)->StartAgain().ok());
  await_acks(before + 30);
  stop = true;
  for (std::thread& t : clients) t.join();

  absl::MutexLock lock(&mu);
  std::string summary;
  for (const auto& [what, n] : failures)
    absl::StrAppend(&summary, "\n  ", n, " x ", what);
  SCOPED_TRACE(absl::StrCat(acked, " acknowledged; failures:", summary));
  EXPECT_FALSE(failures.empty()) << "the outage was not seen";
  for (const auto& [what, n] : failures) {
    // UNAVAILABLE (14) with the store's own cause, never the audit layer's.
    EXPECT_THAT(what, ::testing::StartsWith("14 store: ")) << what;
  }
  EXPECT_EQ(*(*pg)->Psql("ipsrt", "SELECT COUNT(*) FROM enrollments"),
            absl::StrCat(acked));
  EXPECT_EQ(*(*pg)->Psql("ipsrt", "SELECT COUNT(*) FROM requests"),
            absl::StrCat(acked));
}

}  // namespace
}  // namespace ipsrt::e2e
