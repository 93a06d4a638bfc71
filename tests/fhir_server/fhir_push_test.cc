// The fhir-push plugin (plugins/fhir_push) loaded the way ipsrtd loads it
// (PluginRegistry: dlopen in process, ipsrt-plugin-runner out of process),
// pushing hand-built transaction Bundles to the FHIR test server of this
// directory (server.mjs), which each test starts on a loopback port and
// inspects over HTTP: what it stores, and every request it received.
#include <curl/curl.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "e2e/process.h"
#include "fhir_server/fhir_test_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "plugin_host/registry.h"
#include "tests/testing/scoped_env.h"

namespace ipsrt {
namespace {

using ::nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
namespace pv1 = ::ipsrt::plugin::v1;

constexpr char kToken[] = "tok-6f1d2c0a9b8e7f65";
constexpr char kIdSystem[] = "https://ipsrt.example.org/fhir/identifier";
constexpr char kKey[] = "tenants/t1/enrollments/e1/export/fhir-r4/3";

struct HttpAnswer {
  long status = 0;
  std::string body;
};

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// Http makes one request with libcurl, for the test's own look at the
// server. status 0 when it got no answer.
HttpAnswer Http(const std::string& method, const std::string& url,
                const std::string& body = "",
                std::vector<std::string> header_lines = {}) {
  HttpAnswer answer;
  CURL* curl = curl_easy_init();
  curl_slist* headers = nullptr;
  for (const std::string& h : header_lines) {
    headers = curl_slist_append(headers, h.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer.body);
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return answer;
}

// FhirServer is server.mjs running as a child of the test.
class FhirServer {
 public:
  static absl::StatusOr<std::unique_ptr<FhirServer>> Start(
      const e2e::TempDir& dir, std::vector<std::string> extra_args = {}) {
    if (std::string(IPSRT_NODE_BIN).empty()) {
      return absl::FailedPreconditionError(
          "node (Node.js) was not found when the build was configured");
    }
    auto server =
        e2e::StartFhirTestServer(IPSRT_NODE_BIN, IPSRT_FHIR_SERVER, extra_args,
                                 dir.File("fhir-server.log"));
    if (!server.ok()) return server.status();
    return std::unique_ptr<FhirServer>(
        new FhirServer(std::move(server->process), server->port));
  }

  std::string base_url() const {
    return absl::StrCat("http://127.0.0.1:", port_, "/fhir");
  }
  json Get(const std::string& path) const {
    HttpAnswer a = Http("GET", base_url() + path, "",
                        {absl::StrCat("Authorization: Bearer ", kToken)});
    return json::parse(a.body, nullptr, false);
  }
  // Total of a search by identifier value.
  int Count(const std::string& type, const std::string& value) const {
    json b =
        Get(absl::StrCat("/", type, "?identifier=", kIdSystem, "|", value));
    return b.value("total", -1);
  }
  json Stats() const {
    HttpAnswer a =
        Http("GET", absl::StrCat("http://127.0.0.1:", port_, "/admin/stats"));
    return json::parse(a.body, nullptr, false);
  }
  // POSTs received so far (the pushes; the test's own look is GETs).
  int Posts() const {
    int posts = 0;
    const json stats = Stats();
    for (const json& r : stats["log"]) posts += r["method"] == "POST";
    return posts;
  }
  void Fault(const json& fault) const {
    HttpAnswer a =
        Http("POST", absl::StrCat("http://127.0.0.1:", port_, "/admin/faults"),
             fault.dump());
    ASSERT_EQ(a.status, 200) << a.body;
  }

 private:
  FhirServer(std::unique_ptr<e2e::ChildProcess> child, int port)
      : child_(std::move(child)), port_(port) {}
  std::unique_ptr<e2e::ChildProcess> child_;
  int port_;
};

// The resources of the test bundle: type, identifier value, fullUrl uuid.
struct Resource {
  const char* type;
  const char* id_value;
  const char* uuid;
};
const Resource kResources[] = {
    {"Patient", "e1-patient", "0b7e3f2a-1c4d-4e5f-8a9b-000000000001"},
    {"Encounter", "e1-session-1", "0b7e3f2a-1c4d-4e5f-8a9b-000000000002"},
    {"QuestionnaireResponse", "e1-phq9-1",
     "0b7e3f2a-1c4d-4e5f-8a9b-000000000003"},
    {"Observation", "e1-phq9-1-total", "0b7e3f2a-1c4d-4e5f-8a9b-000000000004"},
    {"Goal", "e1-goal-1", "0b7e3f2a-1c4d-4e5f-8a9b-000000000005"},
    {"CarePlan", "e1-careplan", "0b7e3f2a-1c4d-4e5f-8a9b-000000000006"},
    {"Flag", "e1-alert-1", "0b7e3f2a-1c4d-4e5f-8a9b-000000000007"},
};
constexpr int kEntries = 7;

// RefText is a reference to entry `index` by its fullUrl.
std::string RefText(int index) {
  return absl::StrCat(R"({"reference":"urn:uuid:)", kResources[index].uuid,
                      R"("})");
}

// Bundle builds a transaction as the fhir-r4 renderer does: fullUrl
// urn:uuid, conditional creates by identifier, references by urn:uuid.
json Bundle() {
  const std::string patient = RefText(0), encounter = RefText(1);
  const std::string texts[kEntries] = {
      R"({"resourceType":"Patient"})",
      absl::StrCat(
          R"({"resourceType":"Encounter","status":"finished","class":)",
          R"({"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode",)",
          R"("code":"AMB"},"subject":)", patient, "}"),
      absl::StrCat(
          R"({"resourceType":"QuestionnaireResponse","status":"completed",)",
          R"("questionnaire":"https://ipsrt.example.org/fhir/Questionnaire/)",
          R"(phq9","subject":)", patient, R"(,"encounter":)", encounter,
          R"(,"authored":"2026-03-08T14:00:00Z","item":[{"linkId":"1",)",
          R"("answer":[{"valueInteger":2}]}]})"),
      absl::StrCat(
          R"({"resourceType":"Observation","status":"final","category":[)",
          R"({"coding":[{"system":"http://terminology.hl7.org/CodeSystem/)",
          R"(observation-category","code":"survey"}]}],"code":{"coding":[)",
          R"({"system":"http://loinc.org","code":"44261-6"}]},"subject":)",
          patient, R"(,"encounter":)", encounter,
          R"(,"effectiveDateTime":"2026-03-08T14:00:00Z","valueInteger":11,)",
          R"("derivedFrom":[)", RefText(2), "]}"),
      absl::StrCat(R"({"resourceType":"Goal","lifecycleStatus":"active",)",
                   R"("description":{"text":"Regular wake time"},"subject":)",
                   patient, "}"),
      absl::StrCat(
          R"({"resourceType":"CarePlan","status":"active","intent":"plan",)",
          R"("instantiatesCanonical":["https://ipsrt.example.org/fhir/)",
          R"(PlanDefinition/ipsrt-standard"],"subject":)", patient,
          R"(,"goal":[)", RefText(4), "]}"),
      absl::StrCat(R"({"resourceType":"Flag","status":"active","code":)",
                   R"({"text":"PHQ-9 item 9 positive"},"subject":)", patient,
                   R"(,"encounter":)", encounter, "}"),
  };
  json entries = json::array();
  for (int i = 0; i < kEntries; ++i) {
    json resource = json::parse(texts[i]);
    json identifier = json::object();
    identifier["system"] = kIdSystem;
    identifier["value"] = kResources[i].id_value;
    resource["identifier"] = json::array({identifier});
    json request = json::object();
    request["method"] = "POST";
    request["url"] = kResources[i].type;
    request["ifNoneExist"] =
        absl::StrCat("identifier=", kIdSystem, "|", kResources[i].id_value);
    json entry = json::object();
    entry["fullUrl"] = absl::StrCat("urn:uuid:", kResources[i].uuid);
    entry["resource"] = resource;
    entry["request"] = request;
    entries.push_back(entry);
  }
  json bundle = json::object();
  bundle["resourceType"] = "Bundle";
  bundle["type"] = "transaction";
  bundle["entry"] = entries;
  return bundle;
}

pv1::DeliverExportRequest Push(const json& bundle,
                               const std::string& target = "") {
  pv1::DeliverExportRequest request;
  request.set_format("fhir-r4-transaction");
  request.set_content_type("application/fhir+json");
  request.set_content(bundle.dump());
  request.set_idempotency_key(kKey);
  request.set_target(target);
  return request;
}

class FhirPush : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.File("ehr.token")) << kToken << "\n";
  }
  void StartServer(std::vector<std::string> args = {"--token", kToken}) {
    auto server = FhirServer::Start(dir_, std::move(args));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  // A config with one target "ehr" at `url` plus `extra` target keys.
  std::string Config(const std::string& url, const std::string& extra = "") {
    return absl::StrCat(
        R"({"targets":{"ehr":{"base_url":")", url,
        R"(","bearer_token_file":"ehr.token","initial_backoff":"10ms")", extra,
        "}}}");
  }
  absl::StatusOr<std::unique_ptr<PluginRegistry>> Load(
      const std::string& config_json,
      const std::string& transport = "in_process") {
    PluginConfig c;
    c.path = "libipsrt_fhir_push.so";
    c.transport = *ParsePluginTransport(transport);
    c.config_json = config_json;
    c.location = dir_.File("ipsrtd.yaml") + ":9:5";
    c.call_timeout = absl::Seconds(30);
    PluginHostOptions o;
    o.plugin_dir = IPSRT_PLUGIN_DIR;
    o.runner_path = IPSRT_RUNNER_BIN;
    o.health_interval = absl::Milliseconds(100);
    return PluginRegistry::Load({c}, o);
  }
  // Loads the plugin with `config_json` and delivers `request` once.
  absl::StatusOr<pv1::DeliverExportResponse> Deliver(
      const std::string& config_json, const pv1::DeliverExportRequest& request,
      const std::string& transport = "in_process") {
    auto registry = Load(config_json, transport);
    if (!registry.ok()) return registry.status();
    return (*registry)->Find("fhir-push")->DeliverExport(request);
  }
  std::string RefusedConfig(const std::string& config_json) {
    auto registry = Load(config_json);
    EXPECT_EQ(registry.status().code(), absl::StatusCode::kFailedPrecondition);
    return std::string(registry.status().message());
  }
  std::string ConfigPrefix() const {
    return absl::StrCat(dir_.File("ipsrtd.yaml"),
                        ":9:5: plugin fhir-push refused its configuration: ");
  }
  // Every resource of the bundle exists exactly `n` times on the server.
  void ExpectEachStored(int n) {
    for (const Resource& r : kResources) {
      EXPECT_EQ(server_->Count(r.type, r.id_value), n) << r.type;
    }
  }

  e2e::TempDir dir_;
  std::unique_ptr<FhirServer> server_;
};

// --- the plugin as the engine sees it ---

TEST_F(FhirPush, DescribesItselfAsAnExporterOfTransactions) {
  auto registry = Load(Config("http://127.0.0.1:1/fhir"));
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("fhir-push");
  ASSERT_NE(plugin, nullptr);
  EXPECT_TRUE(plugin->HasKind(pv1::EXPORTER));
  // It delivers but renders nothing.
  EXPECT_THAT(plugin->description().export_formats(), ::testing::IsEmpty());
  EXPECT_EQ(plugin->description().version(), "1.0.0");
}

// --- pushes that succeed ---

TEST_F(FhirPush, PushTwiceCreatesEachResourceOnce) {
  StartServer();
  auto registry = Load(Config(server_->base_url()));
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("fhir-push");

  auto first = plugin->DeliverExport(Push(Bundle()));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->created(), kEntries);
  EXPECT_EQ(first->unchanged(), 0);
  EXPECT_THAT(first->receipt(), StartsWith("Bundle/"));
  ExpectEachStored(1);

  auto second = plugin->DeliverExport(Push(Bundle()));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->created(), 0);
  EXPECT_EQ(second->unchanged(), kEntries);
  EXPECT_NE(second->receipt(), first->receipt());
  ExpectEachStored(1);

  // The server resolved the urn:uuid references to the ids it assigned.
  json patient = server_->Get(
      absl::StrCat("/Patient?identifier=", kIdSystem, "|e1-patient"));
  const std::string patient_ref = absl::StrCat(
      "Patient/", patient["entry"][0]["resource"]["id"].get<std::string>());
  json obs = server_->Get(
      absl::StrCat("/Observation?identifier=", kIdSystem, "|e1-phq9-1-total"));
  EXPECT_EQ(obs["entry"][0]["resource"]["subject"]["reference"], patient_ref);
  EXPECT_THAT(obs["entry"][0]["resource"]["derivedFrom"][0]["reference"]
                  .get<std::string>(),
              StartsWith("QuestionnaireResponse/"));

  // What went over the wire, as the server saw it.
  json stats = server_->Stats();
  EXPECT_EQ(server_->Posts(), 2);
  EXPECT_EQ(stats["committed"], 2);
  for (const json& r : stats["log"]) {
    if (r["method"] != "POST") continue;
    EXPECT_EQ(r["path"], "/fhir");
    EXPECT_EQ(r["contentType"], "application/fhir+json");
    EXPECT_EQ(r["accept"], "application/fhir+json");
    EXPECT_EQ(r["prefer"], "return=minimal");
    EXPECT_EQ(r["requestId"], kKey);
    EXPECT_EQ(r["idempotencyKey"], kKey);
    EXPECT_EQ(r["authorized"], true);
    EXPECT_EQ(r["status"], 200);
  }
}

TEST_F(FhirPush, OutOfProcessPushTwiceCreatesEachResourceOnce) {
  StartServer();
  auto registry = Load(Config(server_->base_url()), "out_of_process");
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("fhir-push");
  auto first = plugin->DeliverExport(Push(Bundle()));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->created(), kEntries);
  auto second = plugin->DeliverExport(Push(Bundle()));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->unchanged(), kEntries);
  ExpectEachStored(1);
}

TEST_F(FhirPush, TokenFromTheEnvironmentAndNamedTargets) {
  StartServer();
  testing::ScopedEnv token("IPSRT_TEST_EHR_TOKEN", kToken);
  e2e::UnusedPort registry_port;
  const std::string config =
      absl::StrCat(R"({"default_target":"registry","targets":{)",
                   R"("registry":{"base_url":"http://127.0.0.1:)",
                   registry_port.port(), R"(/fhir","max_attempts":1},)",
                   R"("ehr":{"base_url":")", server_->base_url(),
                   R"(/","bearer_token_env":"IPSRT_TEST_EHR_TOKEN"}}})");
  auto registry = Load(config);
  ASSERT_TRUE(registry.ok()) << registry.status();
  LoadedPlugin* plugin = (*registry)->Find("fhir-push");
  auto pushed = plugin->DeliverExport(Push(Bundle(), "ehr"));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->created(), kEntries);
  // The default target is the other one, which is down.
  auto fallback = plugin->DeliverExport(Push(Bundle()));
  EXPECT_EQ(fallback.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(
      std::string(fallback.status().message()),
      StartsWith("target \"registry\" is unavailable after 1 attempt;"));
  auto unknown = plugin->DeliverExport(Push(Bundle(), "archive"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(),
            "target: fhir-push has no delivery target named \"archive\" "
            "(targets: ehr, registry)");
}

// --- retries ---

TEST_F(FhirPush, RetriesAfterTwo503sWithoutDuplicates) {
  StartServer();
  server_->Fault(json::parse(R"({"status":503,"count":2})"));
  ::testing::internal::CaptureStderr();
  auto pushed = Deliver(Config(server_->base_url()), Push(Bundle()));
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->created(), kEntries);
  json stats = server_->Stats();
  EXPECT_EQ(server_->Posts(), 3);
  EXPECT_EQ(stats["log"][0]["status"], 503);
  EXPECT_EQ(stats["log"][1]["status"], 503);
  EXPECT_EQ(stats["log"][2]["status"], 200);
  ExpectEachStored(1);
  // One warning per retried attempt: status only, no token, no bundle.
  EXPECT_THAT(log, HasSubstr("plugin fhir-push: target ehr attempt 1/3 "
                             "failed (HTTP 503); trying again in 10ms\n"));
  EXPECT_THAT(log, HasSubstr("plugin fhir-push: target ehr attempt 2/3 "
                             "failed (HTTP 503); trying again in 20ms\n"));
  EXPECT_THAT(log, Not(HasSubstr(kToken)));
  EXPECT_THAT(log, Not(HasSubstr("e1-patient")));
}

TEST_F(FhirPush, PersistentServerErrorIsUnavailableAfterMaxAttempts) {
  StartServer();
  server_->Fault(json::parse(R"({"status":503,"count":3})"));
  auto pushed = Deliver(Config(server_->base_url(), R"(,"max_attempts":3)"),
                        Push(Bundle()));
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(pushed.status().message(),
            "target \"ehr\" is unavailable after 3 attempts; last: HTTP 503: "
            "error/transient: injected fault: HTTP 503");
  EXPECT_EQ(server_->Posts(), 3);
  ExpectEachStored(0);
}

TEST_F(FhirPush, TargetDownIsUnavailableAfterMaxAttempts) {
  e2e::UnusedPort target_port;
  const std::string url =
      absl::StrCat("http://127.0.0.1:", target_port.port(), "/fhir");
  auto pushed = Deliver(Config(url, R"(,"max_attempts":3)"), Push(Bundle()));
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(pushed.status().message(),
            "target \"ehr\" is unavailable after 3 attempts; last: Couldn't "
            "connect to server");
}

TEST_F(FhirPush, HangingTargetIsRetriedThenDeadlineExceeded) {
  StartServer();
  server_->Fault(json::parse(R"({"hang":2})"));
  auto pushed = Deliver(
      Config(
          server_->base_url(),
          R"(,"timeout":"300ms","connect_timeout":"100ms","max_attempts":2)"),
      Push(Bundle()));
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(pushed.status().message(),
            "target \"ehr\" did not answer after 2 attempts; last: no answer "
            "within 300ms (config.targets.ehr.timeout)");
  EXPECT_EQ(server_->Posts(), 2);
  ExpectEachStored(0);
}

TEST_F(FhirPush, OneHangThenSuccessCreatesNoDuplicates) {
  StartServer();
  server_->Fault(json::parse(R"({"hang":1})"));
  auto pushed = Deliver(
      Config(
          server_->base_url(),
          R"(,"timeout":"300ms","connect_timeout":"100ms","max_attempts":2)"),
      Push(Bundle()));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->created(), kEntries);
  EXPECT_EQ(server_->Posts(), 2);
  ExpectEachStored(1);
}

// --- refusals, not retried ---

TEST_F(FhirPush, BadRequestIsNotRetried) {
  StartServer();
  server_->Fault(json::parse(R"({"status":400,"count":1})"));
  auto pushed = Deliver(Config(server_->base_url()), Push(Bundle()));
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pushed.status().message(),
            "target \"ehr\" refused the transaction (HTTP 400): "
            "error/processing: injected fault: HTTP 400");
  EXPECT_EQ(server_->Posts(), 1);
  ExpectEachStored(0);
}

TEST_F(FhirPush, OneBadEntryRefusesTheWholeTransaction) {
  StartServer();
  json bundle = Bundle();
  // The last entry refers to an entry that is not in the bundle.
  bundle["entry"][6]["resource"]["encounter"]["reference"] =
      "urn:uuid:0b7e3f2a-1c4d-4e5f-8a9b-0000000000ff";
  auto pushed = Deliver(Config(server_->base_url()), Push(bundle));
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pushed.status().message(),
            "target \"ehr\" refused the transaction (HTTP 400): "
            "error/not-found at Bundle.entry[6].resource: reference "
            "urn:uuid:0b7e3f2a-1c4d-4e5f-8a9b-0000000000ff is not the fullUrl "
            "of any entry");
  EXPECT_EQ(server_->Posts(), 1);
  ExpectEachStored(0);
}

TEST_F(FhirPush, TooLargeForTheServerIsResourceExhausted) {
  StartServer();
  server_->Fault(json::parse(R"({"maxBody":1000})"));
  const pv1::DeliverExportRequest request = Push(Bundle());
  auto pushed = Deliver(Config(server_->base_url()), request);
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kResourceExhausted);
  const size_t size = request.content().size();
  EXPECT_EQ(pushed.status().message(),
            absl::StrCat("the bundle (", size,
                         " bytes) is too large for target \"ehr\" (HTTP 413): "
                         "error/too-costly: request body of ",
                         size, " bytes is over the limit of 1000 bytes"));
  EXPECT_EQ(server_->Posts(), 1);
  ExpectEachStored(0);
}

TEST_F(FhirPush, OverMaxBundleBytesIsRefusedBeforeSending) {
  StartServer();
  const pv1::DeliverExportRequest request = Push(Bundle());
  auto pushed = Deliver(
      Config(server_->base_url(), R"(,"max_bundle_bytes":2048)"), request);
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pushed.status().message(),
            absl::StrCat("the bundle (", request.content().size(),
                         " bytes) is too large for target \"ehr\": "
                         "config.targets.ehr.max_bundle_bytes is 2048"));
  EXPECT_EQ(server_->Posts(), 0);
}

TEST_F(FhirPush, WrongTokenNamesAuthenticationWithoutTheToken) {
  StartServer();
  std::ofstream(dir_.File("wrong.token")) << "tok-not-the-right-one\n";
  auto pushed = Deliver(
      absl::StrCat(R"({"targets":{"ehr":{"base_url":")", server_->base_url(),
                   R"(","bearer_token_file":"wrong.token"}}})"),
      Push(Bundle()));
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pushed.status().message(),
            "target \"ehr\" refused authentication (HTTP 401): error/login: "
            "the bearer token is not valid; check the bearer token of "
            "config.targets.ehr");
  EXPECT_THAT(std::string(pushed.status().message()), Not(HasSubstr("tok-")));
  EXPECT_EQ(server_->Posts(), 1);
  ExpectEachStored(0);
}

TEST_F(FhirPush, MissingTokenNamesAuthentication) {
  StartServer();
  auto pushed = Deliver(absl::StrCat(R"({"targets":{"ehr":{"base_url":")",
                                     server_->base_url(), R"("}}})"),
                        Push(Bundle()));
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pushed.status().message(),
            "target \"ehr\" refused authentication (HTTP 401): error/login: "
            "authentication required: no bearer token; check the bearer "
            "token of config.targets.ehr");
  EXPECT_EQ(server_->Posts(), 1);
}

TEST_F(FhirPush, RefusesBundlesThatAreNotSafeToRetry) {
  StartServer();
  json bundle = Bundle();
  bundle["entry"][3]["request"].erase("ifNoneExist");
  auto pushed = Deliver(Config(server_->base_url()), Push(bundle));
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pushed.status().message(),
            "content.entry[3].request.ifNoneExist: required for a POST, so "
            "that a retried push creates no duplicate");
  json collection = Bundle();
  collection["type"] = "collection";
  auto wrong_type = Deliver(Config(server_->base_url()), Push(collection));
  EXPECT_EQ(wrong_type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong_type.status().message(),
            "content.type: must be \"transaction\" (fhir-r4-transaction)");
  pv1::DeliverExportRequest hl7 = Push(Bundle());
  hl7.set_format("hl7v2-oru-r01");
  auto wrong_format = Deliver(Config(server_->base_url()), hl7);
  EXPECT_EQ(wrong_format.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong_format.status().message(),
            "format: \"hl7v2-oru-r01\" is not delivered by fhir-push "
            "(formats: fhir-r4-transaction)");
  EXPECT_EQ(server_->Posts(), 0);
}

// --- configuration ---

TEST_F(FhirPush, ConfigErrorsNameTheKeyPath) {
  const std::string p = ConfigPrefix();
  EXPECT_EQ(RefusedConfig("{}"),
            p + "config.targets: is required: a map of target name to "
                "{base_url, ...}");
  EXPECT_EQ(RefusedConfig(R"({"targets":{"ehr":{"base_url":"ftp://x/fhir"}}})"),
            p + "config.targets.ehr.base_url: must start with http:// or "
                "https://");
  EXPECT_EQ(
      RefusedConfig(
          R"({"targets":{"ehr":{"base_url":"https://u:pw@x/fhir"}}})"),
      p + "config.targets.ehr.base_url: must not contain credentials; use "
          "bearer_token_file or bearer_token_env");
  EXPECT_EQ(
      RefusedConfig(
          R"({"targets":{"ehr":{"base_url":"https://x/fhir","timeout":"soon"}}})"),
      p + "config.targets.ehr.timeout: must be a positive duration up to 5m, "
          "e.g. 500ms or 5s");
  EXPECT_EQ(
      RefusedConfig(
          R"({"targets":{"ehr":{"base_url":"https://x/fhir","max_attempts":0}}})"),
      p + "config.targets.ehr.max_attempts: must be a whole number from 1 to "
          "10");
  EXPECT_EQ(
      RefusedConfig(
          R"({"targets":{"ehr":{"base_url":"https://x/fhir","token":"abc"}}})"),
      p + "config.targets.ehr.token: unknown key (allowed: base_url, "
          "bearer_token_env, bearer_token_file, connect_timeout, timeout, "
          "max_attempts, initial_backoff, max_backoff, max_bundle_bytes, "
          "ca_file)");
  EXPECT_EQ(
      RefusedConfig(
          R"({"targets":{"a":{"base_url":"https://x"},"b":{"base_url":"https://y"}}})"),
      p + "config.default_target: is required when there are several "
          "targets (a, b)");
  EXPECT_EQ(
      RefusedConfig(
          R"({"default_target":"c","targets":{"a":{"base_url":"https://x"}}})"),
      p + "config.default_target: names no target: \"c\" is not one of "
          "a");
  EXPECT_EQ(
      RefusedConfig(
          R"({"targets":{"ehr":{"base_url":"https://x","bearer_token_file":"none.token"}}})"),
      p + "config.targets.ehr.bearer_token_file: " + dir_.File("none.token") +
          " cannot be read");
  unsetenv("IPSRT_TEST_UNSET_TOKEN");
  EXPECT_EQ(
      RefusedConfig(
          R"({"targets":{"ehr":{"base_url":"https://x","bearer_token_env":"IPSRT_TEST_UNSET_TOKEN"}}})"),
      p + "config.targets.ehr.bearer_token_env: environment variable "
          "IPSRT_TEST_UNSET_TOKEN is not set");
  std::ofstream(dir_.File("two-lines.token")) << "tok-a\ntok-b\n";
  const std::string two_lines = RefusedConfig(
      R"({"targets":{"ehr":{"base_url":"https://x","bearer_token_file":"two-lines.token"}}})");
  EXPECT_EQ(two_lines, p + "config.targets.ehr.bearer_token_file: " +
                           dir_.File("two-lines.token") +
                           " does not hold one line of visible ASCII");
  EXPECT_THAT(two_lines, Not(HasSubstr("tok-")));
}

// --- the test server's own transaction semantics ---

class FhirTestServer : public FhirPush {
 protected:
  HttpAnswer PostBundle(const json& bundle) {
    return Http("POST", server_->base_url(), bundle.dump(),
                {"Content-Type: application/fhir+json",
                 absl::StrCat("Authorization: Bearer ", kToken)});
  }
};

TEST_F(FhirTestServer, OneFailingEntryStoresNothing) {
  StartServer();
  json bundle = Bundle();
  // Every entry but the last is valid; a server without atomic
  // transactions would keep the first six.
  bundle["entry"][6]["request"]["url"] = "Observation";
  HttpAnswer a = PostBundle(bundle);
  EXPECT_EQ(a.status, 400);
  json outcome = json::parse(a.body);
  EXPECT_EQ(outcome["resourceType"], "OperationOutcome");
  EXPECT_EQ(outcome["issue"][0]["expression"][0],
            "Bundle.entry[6].request.url");
  ExpectEachStored(0);
  EXPECT_EQ(server_->Stats()["committed"], 0);
  // The same bundle fixed is stored whole.
  EXPECT_EQ(PostBundle(Bundle()).status, 200);
  ExpectEachStored(1);
}

TEST_F(FhirTestServer, AmbiguousConditionalCreateIs412AndStoresNothing) {
  StartServer();
  // Two Patients with the same identifier, written by id.
  json seed = json::parse(absl::StrCat(
      R"({"resourceType":"Bundle","type":"transaction","entry":[)",
      R"({"resource":{"resourceType":"Patient","identifier":[{"system":")",
      kIdSystem, R"(","value":"e1-patient"}]},)",
      R"("request":{"method":"PUT","url":"Patient/a"}},)",
      R"({"resource":{"resourceType":"Patient","identifier":[{"system":")",
      kIdSystem, R"(","value":"e1-patient"}]},)",
      R"("request":{"method":"PUT","url":"Patient/b"}}]})"));
  ASSERT_EQ(PostBundle(seed).status, 200);
  HttpAnswer a = PostBundle(Bundle());
  EXPECT_EQ(a.status, 412);
  EXPECT_EQ(json::parse(a.body)["issue"][0]["code"], "multiple-matches");
  EXPECT_EQ(server_->Count("Patient", "e1-patient"), 2);
  EXPECT_EQ(server_->Count("Observation", "e1-phq9-1-total"), 0);
}

TEST_F(FhirTestServer, RequiresTheBearerToken) {
  StartServer();
  HttpAnswer a = Http("POST", server_->base_url(), Bundle().dump(),
                      {"Content-Type: application/fhir+json"});
  EXPECT_EQ(a.status, 401);
  HttpAnswer search = Http("GET", server_->base_url() + "/Patient", "",
                           {"Authorization: Bearer wrong"});
  EXPECT_EQ(search.status, 401);
  ExpectEachStored(0);
}

}  // namespace
}  // namespace ipsrt
