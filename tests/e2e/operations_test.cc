// Operations end to end: a real Prometheus server (Debian's `prometheus`)
// scrapes the built ipsrtd while a short course runs, and the test asks
// Prometheus's query API whether the series moved (calls by code, a
// reminder delivered, a killed out-of-process plugin restarted);
// `promtool check metrics` checks a scrape. Readiness (grpc.health.v1)
// follows PostgreSQL going away and coming back, and a required plugin
// going down and coming back; `--check_config` and a metrics listener that
// cannot bind are checked against the built binary.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "postgres_e2e.h"
#include "process.h"
#include "testing/postgres_server.h"

namespace ipsrt::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace v1 = ::ipsrt::v1;
using HealthStatus = ::grpc::health::v1::HealthCheckResponse;

constexpr char kZone[] = "America/New_York";
constexpr char kPrometheus[] = "/usr/bin/prometheus";
constexpr char kPromtool[] = "/usr/bin/promtool";

// HttpGet fetches http://127.0.0.1:<port><path> (HTTP/1.0, loopback) and
// returns the body; an error for a refused connection or a non-200 answer.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect to ", port));
  }
  std::string request = absl::StrCat("GET ", path,
                                     " HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                                     "Connection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("write");
  }
  std::string response;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
  close(fd);
  size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return absl::UnavailableError("no header");
  if (response.compare(0, 12, "HTTP/1.1 200") != 0 &&
      response.compare(0, 12, "HTTP/1.0 200") != 0) {
    return absl::UnavailableError(response.substr(0, response.find('\r')));
  }
  return response.substr(body + 4);
}

// FreePort is a loopback port that was free a moment ago.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// MetricsPort reads the port from ipsrtd's "metrics: serving /metrics on
// 127.0.0.1:PORT" line.
int MetricsPort(const std::string& log) {
  const std::string marker = "serving /metrics on 127.0.0.1:";
  size_t at = log.find(marker);
  if (at == std::string::npos) return 0;
  int port = 0;
  size_t end = log.find_first_not_of("0123456789", at + marker.size());
  if (!absl::SimpleAtoi(
          log.substr(at + marker.size(), end - at - marker.size()), &port)) {
    return 0;
  }
  return port;
}

// Prometheus is Debian's prometheus server scraping one target every
// 500 ms, with its data in a directory of the test's own.
class Prometheus {
 public:
  static absl::StatusOr<std::unique_ptr<Prometheus>> Start(const TempDir& dir,
                                                           int target_port) {
    const std::string config = dir.File("prometheus.yml");
    absl::Status written =
        WriteFile(config, absl::StrCat("global:\n"
                                       "  scrape_interval: 500ms\n"
                                       "  evaluation_interval: 500ms\n"
                                       "scrape_configs:\n"
                                       "  - job_name: ipsrtd\n"
                                       "    scrape_interval: 500ms\n"
                                       "    static_configs:\n"
                                       "      - targets: ['127.0.0.1:",
                                       target_port, "']\n"));
    if (!written.ok()) return written;
    int port = FreePort();
    absl::StatusOr<std::unique_ptr<ChildProcess>> p = ChildProcess::Spawn(
        {kPrometheus, "--config.file=" + config,
         "--storage.tsdb.path=" + dir.File("prometheus-data"),
         absl::StrCat("--web.listen-address=127.0.0.1:", port),
         "--log.level=warn"},
        dir.File("prometheus.log"));
    if (!p.ok()) return p.status();
    std::unique_ptr<Prometheus> prom(new Prometheus(*std::move(p), port));
    if (!WaitFor([&] { return HttpGet(port, "/-/ready").ok(); },
                 absl::Seconds(30))) {
      return absl::DeadlineExceededError(
          absl::StrCat("prometheus not ready: ", prom->process_->Log()));
    }
    return prom;
  }

  ~Prometheus() {
    process_->Signal(SIGTERM);
    if (!process_->WaitForExit(absl::Seconds(20)).has_value()) {
      process_->Signal(SIGKILL);
      process_->WaitForExit(absl::Seconds(5));
    }
  }

  // Value is the single sample of instant query `promql` (after the
  // target's latest scrape), or nullopt when the query returns no series.
  std::optional<double> Value(const std::string& promql) {
    std::string escaped;
    for (unsigned char c : promql) {
      if (isalnum(c) || c == '_' || c == '.' || c == '-') {
        escaped += static_cast<char>(c);
      } else {
        absl::StrAppend(&escaped, "%", absl::Hex(c, absl::kZeroPad2));
      }
    }
    absl::StatusOr<std::string> body =
        HttpGet(port_, "/api/v1/query?query=" + escaped);
    if (!body.ok()) return std::nullopt;
    nlohmann::json j = nlohmann::json::parse(*body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") {
      return std::nullopt;
    }
    const nlohmann::json& result = j["data"]["result"];
    if (!result.is_array() || result.size() != 1) return std::nullopt;
    double v = 0;
    if (!absl::SimpleAtod(result[0]["value"][1].get<std::string>(), &v)) {
      return std::nullopt;
    }
    return v;
  }

  // WaitForValue waits (bounded) until `promql` yields `want` (any value
  // when nullopt); returns the last value seen.
  std::optional<double> WaitForValue(const std::string& promql,
                                     std::optional<double> want) {
    std::optional<double> last;
    WaitFor(
        [&] {
          last = Value(promql);
          return last.has_value() && (!want.has_value() || *last == *want);
        },
        absl::Seconds(30));
    return last;
  }

 private:
  Prometheus(std::unique_ptr<ChildProcess> p, int port)
      : process_(std::move(p)), port_(port) {}
  std::unique_ptr<ChildProcess> process_;
  int port_;
};

std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream in(task.path() / "children");
    pid_t child;
    while (in >> child) out.push_back(child);
  }
  return out;
}

std::string BedtimeLibrary() {
  return absl::StrCat(IPSRT_BUILD_DIR,
                      "/lib/ipsrt/plugins/libipsrt_bedtime_check.so");
}

// Health answers grpc.health.v1 Check for `service`.
HealthStatus::ServingStatus Health(const std::string& address,
                                   const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::Status s = stub->Check(&ctx, request, &response);
  if (!s.ok()) return HealthStatus::UNKNOWN;
  return response.status();
}

bool WaitForHealth(const std::string& address, const std::string& service,
                   HealthStatus::ServingStatus want) {
  return WaitFor([&] { return Health(address, service) == want; },
                 absl::Seconds(30));
}

TEST(OperationsE2eTest, PrometheusSeesCallsRemindersAndPluginRestarts) {
  TempDir dir;
  std::string config = WriteConfig(dir);
  {
    absl::StatusOr<std::string> yaml = ReadFile(config);
    ASSERT_TRUE(yaml.ok());
    // The harness config ends with its plugins list.
    ASSERT_TRUE(
        WriteFile(config, absl::StrCat(*yaml, "  - path: ", BedtimeLibrary(),
                                       "\n    transport: "
                                       "out_of_process\n"
                                       "reminders:\n"
                                       "  poll_interval: 100ms\n"
                                       "  jsonl:\n"
                                       "    path: reminders.jsonl\n"
                                       "metrics:\n"
                                       "  listen: 127.0.0.1:0\n"
                                       "  store_refresh: 1s\n"))
            .ok());
  }
  // ipsrtd's clock reads 19:59:57 in New York: the diary reminder of an
  // enrollment created now falls due at 20:00.
  absl::TimeZone ny;
  ASSERT_TRUE(absl::LoadTimeZone(kZone, &ny));
  ScopedEnv offset("IPSRT_TEST_CLOCK_OFFSET",
                   ClockOffsetTo(TodayAt(ny, 19, 59, 57), ny));
  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  const int metrics_port = MetricsPort((*server)->process().Log());
  ASSERT_NE(metrics_port, 0) << (*server)->process().Log();
  auto prometheus = Prometheus::Start(dir, metrics_port);
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();
  Prometheus& prom = **prometheus;

  // Two enrollments created, one refused, one looked up that is not there.
  auto stub = EnrollmentStub((*server)->address());
  std::vector<std::string> names;
  for (int i = 0; i < 2; ++i) {
    v1::CreateEnrollmentRequest create =
        NewEnrollment(absl::StrCat("ops-", i), absl::StrCat("Patient/ops", i));
    create.set_parent("tenants/t1");
    grpc::ClientContext ctx;
    v1::Enrollment e;
    grpc::Status s = stub->CreateEnrollment(&ctx, create, &e);
    ASSERT_TRUE(s.ok()) << s.error_message();
    names.push_back(e.name());
  }
  // The first is read twice: the first read fills the enrollment cache
  // (a new enrollment is cached when first read), the second is a hit.
  for (int i = 0; i < 2; ++i) {
    v1::GetEnrollmentRequest get;
    get.set_name(names[0]);
    grpc::ClientContext ctx;
    v1::Enrollment e;
    grpc::Status s = stub->GetEnrollment(&ctx, get, &e);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  {
    v1::CreateEnrollmentRequest bad = NewEnrollment("ops-bad", "Patient/x");
    bad.set_time_zone("Mars/Olympus");
    grpc::ClientContext ctx;
    v1::Enrollment e;
    EXPECT_EQ(stub->CreateEnrollment(&ctx, bad, &e).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    v1::GetEnrollmentRequest get;
    get.set_name("tenants/t1/enrollments/nope");
    grpc::ClientContext ctx;
    v1::Enrollment e;
    EXPECT_EQ(stub->GetEnrollment(&ctx, get, &e).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  const std::string create_method =
      "method=\"/ipsrt.v1.EnrollmentService/CreateEnrollment\"";
  EXPECT_EQ(prom.WaitForValue(absl::StrCat("ipsrt_grpc_server_handled_total{",
                                           create_method, ",code=\"OK\"}"),
                              2),
            2);
  EXPECT_EQ(prom.WaitForValue(
                absl::StrCat("ipsrt_grpc_server_handled_total{", create_method,
                             ",code=\"INVALID_ARGUMENT\"}"),
                1),
            1);
  EXPECT_EQ(
      prom.WaitForValue("ipsrt_grpc_server_handled_total{method=\"/ipsrt.v1."
                        "EnrollmentService/GetEnrollment\",code=\"NOT_FOUND\"}",
                        1),
      1);
  EXPECT_EQ(prom.WaitForValue(
                absl::StrCat("ipsrt_grpc_server_handling_seconds_count{",
                             create_method, "}"),
                3),
            3);
  // Both diary reminders (and any other reminder due) go out at 20:00
  // through the JSON Lines channel.
  EXPECT_GE(prom.WaitForValue("ipsrt_reminder_deliveries_total{channel="
                              "\"jsonl\",outcome=\"sent\"} >= 2",
                              std::nullopt)
                .value_or(0),
            2);
  EXPECT_EQ(prom.WaitForValue("sum(ipsrt_enrollments{workflow=\"ipsrt-"
                              "standard\"})",
                              2),
            2);
  EXPECT_EQ(prom.WaitForValue("ipsrt_store_up", 1), 1);
  EXPECT_GE(prom.WaitForValue("ipsrt_enrollment_cache_reads_total{result="
                              "\"hit\"} >= 1",
                              std::nullopt)
                .value_or(0),
            1);
  EXPECT_GE(prom.WaitForValue("ipsrt_enrollment_cache_reads_total{result="
                              "\"miss\"} >= 1",
                              std::nullopt)
                .value_or(0),
            1);
  EXPECT_GE(prom.WaitForValue("ipsrt_enrollment_cache_rows >= 1", std::nullopt)
                .value_or(0),
            1);
  EXPECT_GT(prom.WaitForValue("ipsrt_enrollment_cache_bytes > 0", std::nullopt)
                .value_or(0),
            0);

  // The out-of-process plugin is killed; the host restarts it.
  EXPECT_EQ(prom.WaitForValue("ipsrt_plugin_up{plugin=\"bedtime-check\"}", 1),
            1);
  std::vector<pid_t> children = ChildrenOf((*server)->process().pid());
  ASSERT_EQ(children.size(), 1u);
  ASSERT_EQ(kill(children[0], SIGKILL), 0);
  EXPECT_EQ(prom.WaitForValue(
                "ipsrt_plugin_restarts_total{plugin=\"bedtime-check\"}", 1),
            1);
  // Plugin calls count by plugin, method and code: a questionnaire
  // plugin's instruments are listed at load.
  EXPECT_GE(prom.WaitForValue("ipsrt_plugin_calls_total{plugin=\"bedtime-"
                              "check\",method=\"ListInstruments\",code=\"OK\"}"
                              " >= 1",
                              std::nullopt)
                .value_or(0),
            1);

  // A scrape passes promtool's lint, and carries no patient reference.
  absl::StatusOr<std::string> scrape = HttpGet(metrics_port, "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_THAT(*scrape, Not(HasSubstr("Patient/")));
  EXPECT_THAT(*scrape, Not(HasSubstr("enrollments/")));
  ASSERT_TRUE(WriteFile(dir.File("scrape.txt"), *scrape).ok());
  absl::StatusOr<ProcessResult> lint =
      RunProcess({"/bin/sh", "-c",
                  absl::StrCat(kPromtool, " check metrics < '",
                               dir.File("scrape.txt"), "'")});
  ASSERT_TRUE(lint.ok());
  EXPECT_EQ(lint->exit_code, 0) << lint->out << lint->err;

  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);
}

TEST(OperationsE2eTest, ReadinessFollowsPostgres) {
  auto pg = testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)->CreateDatabase("ops").ok());
  TempDir dir;
  std::string config = WritePostgresConfig(dir, (*pg)->Conninfo("ops"), "");
  {
    absl::StatusOr<std::string> yaml = ReadFile(config);
    ASSERT_TRUE(yaml.ok());
    ASSERT_TRUE(WriteFile(config, *yaml + "reminders:\n  enabled: false\n"
                                          "health:\n  probe_interval: 200ms\n"
                                          "metrics:\n  listen: 127.0.0.1:0\n")
                    .ok());
  }
  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  const std::string service = "ipsrt.v1.EnrollmentService";
  EXPECT_TRUE(WaitForHealth(address, "", HealthStatus::SERVING));
  EXPECT_TRUE(WaitForHealth(address, service, HealthStatus::SERVING));
  EXPECT_EQ(Health(address, "ipsrt.liveness"), HealthStatus::SERVING);

  ASSERT_TRUE((*pg)->Stop().ok());
  EXPECT_TRUE(WaitForHealth(address, "", HealthStatus::NOT_SERVING));
  EXPECT_EQ(Health(address, service), HealthStatus::NOT_SERVING);
  EXPECT_EQ(Health(address, "ipsrt.v1.AuditService"),
            HealthStatus::NOT_SERVING);
  // Liveness: the process still answers.
  EXPECT_EQ(Health(address, "ipsrt.liveness"), HealthStatus::SERVING);
  const int metrics_port = MetricsPort((*server)->process().Log());
  absl::StatusOr<std::string> scrape = HttpGet(metrics_port, "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_THAT(*scrape, HasSubstr("\nipsrt_store_up 0\n"));
  EXPECT_THAT(*scrape, HasSubstr("\nipsrt_ready 0\n"));

  ASSERT_TRUE((*pg)->StartAgain().ok());
  EXPECT_TRUE(WaitForHealth(address, "", HealthStatus::SERVING));
  EXPECT_EQ(Health(address, service), HealthStatus::SERVING);
  {
    auto stub = EnrollmentStub(address);
    grpc::ClientContext ctx;
    v1::Enrollment e;
    grpc::Status s = stub->CreateEnrollment(
        &ctx, NewEnrollment("after-recovery", "Patient/r"), &e);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  std::string log = (*server)->process().Log();
  EXPECT_THAT(log, HasSubstr("readiness: NOT_SERVING: store: postgres probe "
                             "failed"));
  EXPECT_THAT(log, HasSubstr("readiness: SERVING again"));
  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);
}

TEST(OperationsE2eTest, ReadinessFollowsARequiredPlugin) {
  TempDir dir;
  // The plugin library is a copy of the test's own, so that it can be
  // taken away: the host's restarts then fail until it is back.
  const std::string library = dir.File("libbedtime.so");
  std::filesystem::copy_file(BedtimeLibrary(), library);
  std::string config = WriteConfig(dir);
  {
    absl::StatusOr<std::string> yaml = ReadFile(config);
    ASSERT_TRUE(yaml.ok());
    ASSERT_TRUE(WriteFile(config, absl::StrCat(*yaml, "  - path: ", library,
                                               "\n    transport: "
                                               "out_of_process\n"
                                               "    required: true\n"
                                               "health:\n"
                                               "  probe_interval: 100ms\n"))
                    .ok());
  }
  auto server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  EXPECT_TRUE(WaitForHealth(address, "", HealthStatus::SERVING));

  std::filesystem::rename(library, library + ".away");
  std::vector<pid_t> children = ChildrenOf((*server)->process().pid());
  ASSERT_EQ(children.size(), 1u);
  ASSERT_EQ(kill(children[0], SIGKILL), 0);
  EXPECT_TRUE(WaitForHealth(address, "", HealthStatus::NOT_SERVING));
  EXPECT_EQ(Health(address, "ipsrt.v1.QuestionnaireService"),
            HealthStatus::NOT_SERVING);
  EXPECT_EQ(Health(address, "ipsrt.liveness"), HealthStatus::SERVING);

  std::filesystem::rename(library + ".away", library);
  EXPECT_TRUE(WaitForHealth(address, "", HealthStatus::SERVING));
  EXPECT_THAT((*server)->process().Log(),
              HasSubstr("readiness: NOT_SERVING: required plugin "
                        "bedtime-check is not serving"));
  absl::StatusOr<int> exit = (*server)->Terminate();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0);
}

TEST(OperationsE2eTest, MetricsListenerThatCannotBindRefusesTheStart) {
  TempDir dir;
  // A port held by a listening socket of the test.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string config = WriteConfig(dir);
  absl::StatusOr<std::string> yaml = ReadFile(config);
  ASSERT_TRUE(yaml.ok());
  ASSERT_TRUE(
      WriteFile(config, absl::StrCat(*yaml, "metrics:\n  listen: ",
                                     "127.0.0.1:", ntohs(addr.sin_port), "\n"))
          .ok());
  auto server = Ipsrtd::Start(config);
  close(fd);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr(absl::StrCat("ipsrtd: ", config,
                                     ":18:11: metrics.listen: cannot listen "
                                     "on 127.0.0.1:",
                                     ntohs(addr.sin_port))));
}

TEST(OperationsE2eTest, CheckConfigReportsEveryProblemWithoutServing) {
  TempDir dir;
  std::string good = WriteConfig(dir);
  absl::StatusOr<ProcessResult> ok =
      RunProcess({IPSRTD_BIN, "--config=" + good, "--check_config"});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->exit_code, 0) << ok->err;
  EXPECT_THAT(ok->out, HasSubstr("configuration OK"));
  // --check_config opens no store.
  EXPECT_FALSE(std::filesystem::exists(dir.File("ipsrt.db")));

  ASSERT_TRUE(WriteFile(dir.File("bad.yaml"),
                        "server:\n  listen: 127.0.0.1:0\n"
                        "store:\n  sqlite:\n    path: x.db\n"
                        "logging:\n  format: xml\n  colour: true\n"
                        "workflows:\n  directories: [nowhere]\n")
                  .ok());
  absl::StatusOr<ProcessResult> bad = RunProcess(
      {IPSRTD_BIN, "--config=" + dir.File("bad.yaml"), "--check_config"});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->exit_code, 1);
  EXPECT_THAT(bad->err, HasSubstr("logging.format: must be text or json"));
  EXPECT_THAT(bad->err, HasSubstr("logging.colour"));

  // A config that parses but names a plugin that is not there.
  ASSERT_TRUE(WriteFile(dir.File("plugin.yaml"),
                        absl::StrCat("store:\n  sqlite:\n    path: y.db\n"
                                     "workflows:\n  directories: [",
                                     IPSRT_WORKFLOWS_DIR,
                                     "]\nplugins:\n  - path: "
                                     "libipsrt_missing.so\n"))
                  .ok());
  absl::StatusOr<ProcessResult> plugin = RunProcess(
      {IPSRTD_BIN, "--config=" + dir.File("plugin.yaml"), "--check_config"});
  ASSERT_TRUE(plugin.ok());
  EXPECT_EQ(plugin->exit_code, 1);
  EXPECT_THAT(plugin->err, HasSubstr("plugin refused: "));
  EXPECT_THAT(plugin->err, HasSubstr("1 problem(s)"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("y.db")));
}

}  // namespace
}  // namespace ipsrt::e2e
