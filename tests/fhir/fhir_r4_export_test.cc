// The fhir-r4 exporter plugin as the engine loads it (PluginRegistry, in
// process and out of process), rendering a whole simulated course: the
// events come from running the engine's simulator (the runtime behind
// `ipsrt simulate`) on tests/scenarios/standard-course.yaml, and the
// instruments from the core-instruments plugin. The renderings are then
// checked by an independent FHIR R4 validator (FHIR.js, tests/fhir/
// validate.mjs) run with node.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/scenario.h"
#include "common/files.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "model/workflow.h"
#include "nlohmann/json.hpp"
#include "plugin_host/registry.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = ::nlohmann::json;

namespace pv1 = ::ipsrt::plugin::v1;

constexpr char kConfig[] =
    R"({"identifier_system":"https://ehr.example.org/ipsrt-id",)"
    R"("canonical_base":"https://fhir.example.org/ipsrt/"})";
constexpr char kIdSystem[] = "https://ehr.example.org/ipsrt-id";

PluginConfig Entry(const std::string& path, const std::string& transport,
                   const std::string& config_json = "{}") {
  PluginConfig c;
  c.path = path;
  c.transport = *ParsePluginTransport(transport);
  c.config_json = config_json;
  c.location = "ipsrtd.yaml:9:5";
  return c;
}

PluginHostOptions Options() {
  PluginHostOptions o;
  o.plugin_dir = IPSRT_PLUGIN_DIR;
  o.runner_path = IPSRT_RUNNER_BIN;
  return o;
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
  return out.good();
}

struct Command {
  int exit_code = -1;
  std::string output;
};

// Runs `command` through the shell, stdout and stderr together.
Command Run(const std::string& command) {
  Command result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    result.output.append(buffer, n);
  }
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The validator with the course's patient and clinician as the only
// references allowed to point outside the files.
Command Validate(const std::vector<std::string>& files) {
  return Run(absl::StrCat("'", IPSRT_NODE, "' '", IPSRT_FHIR_TEST_DIR,
                          "/validate.mjs' --external Patient/simulated "
                          "--external Practitioner/simulated '",
                          absl::StrJoin(files, "' '"), "'"));
}

// The simulated standard course, its instruments and the plugins, shared
// by all tests (simulating and starting a child process once).
class FhirR4ExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string root = IPSRT_SOURCE_DIR;
    auto workflow_yaml =
        ReadFileToString(root + "/workflows/ipsrt-standard.yaml");
    ASSERT_TRUE(workflow_yaml.ok()) << workflow_yaml.status();
    auto workflow =
        ParseWorkflowTemplate(*workflow_yaml, "ipsrt-standard.yaml");
    ASSERT_TRUE(workflow.ok()) << workflow.status();
    auto scenario_yaml =
        ReadFileToString(root + "/tests/scenarios/standard-course.yaml");
    ASSERT_TRUE(scenario_yaml.ok()) << scenario_yaml.status();
    auto scenario = cli::ParseScenario(*scenario_yaml, "standard-course.yaml",
                                       &Enrollments::LoadZone);
    ASSERT_TRUE(scenario.ok()) << scenario.status();
    cli::Simulation simulation;
    absl::Status simulated = cli::Simulate(*workflow, *scenario,
                                           &Enrollments::LoadZone, &simulation);
    ASSERT_TRUE(simulated.ok()) << simulated;

    course_ = new pv1::RenderExportRequest();
    *course_->mutable_enrollment() = simulation.state.enrollment();
    std::set<std::string> used;
    for (const cli::SimulatedEvent& s : simulation.events) {
      *course_->add_events() = s.event;
      if (s.event.payload().has_questionnaire_response()) {
        used.insert(
            s.event.payload().questionnaire_response().questionnaire_id());
      }
      if (s.event.payload().has_srm_diary_day()) used.insert("srm5");
    }
    *course_->mutable_export_time() =
        TimeUtil::SecondsToTimestamp(1785542400);  // 2026-08-01T00:00:00Z

    auto instruments = PluginRegistry::Load(
        {Entry("libipsrt_core_instruments.so", "in_process")}, Options());
    ASSERT_TRUE(instruments.ok()) << instruments.status();
    auto listed = (*instruments)->Find("core-instruments")->ListInstruments();
    ASSERT_TRUE(listed.ok()) << listed.status();
    for (const v1::Questionnaire& q : listed->instruments()) {
      if (used.contains(q.id())) *course_->add_instruments() = q;
    }

    auto in_process = PluginRegistry::Load(
        {Entry("libipsrt_fhir_r4.so", "in_process", kConfig)}, Options());
    ASSERT_TRUE(in_process.ok()) << in_process.status();
    in_process_ = in_process->release();
    auto out_of_process = PluginRegistry::Load(
        {Entry("libipsrt_fhir_r4.so", "out_of_process", kConfig)}, Options());
    ASSERT_TRUE(out_of_process.ok()) << out_of_process.status();
    out_of_process_ = out_of_process->release();
  }

  static void TearDownTestSuite() {
    delete in_process_;
    delete out_of_process_;
    delete course_;
  }

  static LoadedPlugin& InProcess() { return *in_process_->Find("fhir-r4"); }
  static LoadedPlugin& OutOfProcess() {
    return *out_of_process_->Find("fhir-r4");
  }

  static pv1::RenderExportRequest Course(const std::string& format) {
    pv1::RenderExportRequest request = *course_;
    request.set_format(format);
    return request;
  }

  static std::string Render(LoadedPlugin& plugin, const std::string& format) {
    auto rendered = plugin.RenderExport(Course(format));
    EXPECT_TRUE(rendered.ok()) << rendered.status();
    return rendered.ok() ? rendered->content() : "";
  }

  static std::string ResourcesAsNdjson(LoadedPlugin& plugin) {
    auto rendered = plugin.RenderExport(Course("fhir-r4-resources"));
    EXPECT_TRUE(rendered.ok()) << rendered.status();
    std::string out;
    if (!rendered.ok()) return out;
    for (const pv1::ExportedResource& r : rendered->resources()) {
      absl::StrAppend(&out, r.content(), "\n");
    }
    return out;
  }

  static std::map<std::string, int> CountByType(const Json& bundle) {
    std::map<std::string, int> counts;
    for (const Json& e : bundle["entry"]) {
      counts[e["resource"]["resourceType"].get<std::string>()] += 1;
    }
    return counts;
  }

  static pv1::RenderExportRequest* course_;
  static PluginRegistry* in_process_;
  static PluginRegistry* out_of_process_;
};

pv1::RenderExportRequest* FhirR4ExportTest::course_ = nullptr;
PluginRegistry* FhirR4ExportTest::in_process_ = nullptr;
PluginRegistry* FhirR4ExportTest::out_of_process_ = nullptr;

TEST_F(FhirR4ExportTest, DescribesItselfAsAnExporterOfThreeFormats) {
  const pv1::DescribeResponse& d = InProcess().description();
  EXPECT_EQ(d.name(), "fhir-r4");
  EXPECT_THAT(d.kinds(), ElementsAre(pv1::EXPORTER));
  EXPECT_THAT(d.export_formats(),
              ElementsAre("fhir-r4-collection", "fhir-r4-transaction",
                          "fhir-r4-resources"));
  EXPECT_EQ(OutOfProcess().description().SerializeAsString(),
            d.SerializeAsString());
}

TEST_F(FhirR4ExportTest, SameEventsGiveTheSameBytesOnBothTransports) {
  for (const std::string format :
       {"fhir-r4-collection", "fhir-r4-transaction"}) {
    const std::string first = Render(InProcess(), format);
    ASSERT_FALSE(first.empty()) << format;
    EXPECT_EQ(Render(InProcess(), format), first) << format;
    EXPECT_EQ(Render(OutOfProcess(), format), first) << format;
  }
  const std::string lines = ResourcesAsNdjson(InProcess());
  EXPECT_EQ(ResourcesAsNdjson(InProcess()), lines);
  EXPECT_EQ(ResourcesAsNdjson(OutOfProcess()), lines);
}

TEST_F(FhirR4ExportTest, ResourceCountsFollowTheEvents) {
  // What the events say the export must hold, counted from the events.
  int responses = 0, score_observations = 0, panels = 0, sessions = 0,
      goals = 0, plans = 1, alerts = 0, provenances = 1;
  for (const v1::Event& e : course_->events()) {
    const v1::EventPayload& p = e.payload();
    bool makes_resources = false;
    if (p.has_questionnaire_response()) {
      ++responses;
      score_observations += e.scores_size();
      ++panels;  // PHQ-9, GAD-7 and ASRM all have a panel code
      makes_resources = true;
    } else if (p.has_srm_diary_day()) {
      ++responses;
      score_observations +=
          e.scores().contains("srm.score") + e.scores().contains("srm.ali");
      makes_resources = true;
    } else if (p.has_session_held()) {
      ++sessions;
      makes_resources = true;
    } else if (p.has_goal_set()) {
      ++goals;
      makes_resources = true;
    } else if (p.has_relapse_plan() || p.has_disruption_plan()) {
      ++plans;
      makes_resources = true;
    } else if (p.has_alert_acknowledged()) {
      makes_resources = true;  // a Provenance of the Flag's update
    }
    for (const v1::Outcome& o : e.outcomes()) {
      if (o.kind() == v1::Outcome::ALERT_RAISED) {
        ++alerts;
        makes_resources = true;
      }
    }
    provenances += makes_resources;
  }
  const Json bundle = Json::parse(Render(InProcess(), "fhir-r4-collection"));
  const std::map<std::string, int> counts = CountByType(bundle);
  EXPECT_EQ(counts.at("CarePlan"), plans);
  EXPECT_EQ(counts.at("QuestionnaireResponse"), responses);
  EXPECT_EQ(counts.at("Observation"), score_observations + panels);
  EXPECT_EQ(counts.at("Encounter"), sessions);
  EXPECT_EQ(counts.at("Goal"), goals);
  EXPECT_EQ(counts.at("Flag"), alerts);
  EXPECT_EQ(counts.at("Provenance"), provenances);
  EXPECT_EQ(counts.size(), 7u);
  // The scenario's own facts: one goal, a relapse and a disruption plan,
  // the item-9 and the early-warning alerts.
  EXPECT_EQ(goals, 1);
  EXPECT_EQ(plans, 3);
  EXPECT_EQ(alerts, 2);

  std::string summary;
  for (const auto& [type, n] : counts)
    absl::StrAppend(&summary, type, "=", n, " ");
  std::printf("standard course: %zu events, %zu resources: %s\n",
              static_cast<size_t>(course_->events_size()),
              static_cast<size_t>(bundle["entry"].size()), summary.c_str());
}

TEST_F(FhirR4ExportTest, Phq9ResponseBecomesAPanelWithOneObservationPerScore) {
  const Json bundle = Json::parse(Render(InProcess(), "fhir-r4-collection"));
  std::map<std::string, Json> by_url;
  for (const Json& e : bundle["entry"]) by_url[e["fullUrl"]] = e["resource"];
  int panels = 0;
  for (const Json& e : bundle["entry"]) {
    const Json& r = e["resource"];
    if (r["resourceType"] != "Observation" ||
        r["code"]["coding"][0]["code"] != "44249-1") {
      continue;
    }
    ++panels;
    EXPECT_EQ(r["category"][0]["coding"][0]["system"],
              "http://terminology.hl7.org/CodeSystem/observation-category");
    EXPECT_EQ(r["category"][0]["coding"][0]["code"], "survey");
    EXPECT_EQ(r["meta"]["profile"][0],
              "http://hl7.org/fhir/us/core/StructureDefinition/"
              "us-core-observation-screening-assessment");
    ASSERT_EQ(r["hasMember"].size(), 10u);  // total + 9 items
    const Json& total = by_url.at(r["hasMember"][0]["reference"]);
    EXPECT_EQ(total["code"]["coding"][0]["system"], "http://loinc.org");
    EXPECT_EQ(total["code"]["coding"][0]["code"], "44261-6");
    EXPECT_EQ(total["valueQuantity"]["code"], "{score}");
    EXPECT_EQ(total["derivedFrom"], r["derivedFrom"]);
    const Json& response = by_url.at(r["derivedFrom"][0]["reference"]);
    EXPECT_EQ(response["resourceType"], "QuestionnaireResponse");
    EXPECT_EQ(response["questionnaire"],
              "https://fhir.example.org/ipsrt/Questionnaire/phq9|1");
    EXPECT_EQ(response["item"].size(), 9u);
    int sum = 0;
    for (const Json& item : response["item"]) {
      sum += item["answer"][0]["valueInteger"].get<int>();
    }
    EXPECT_EQ(total["valueQuantity"]["value"].get<int>(), sum);
    const Json& item9 = by_url.at(r["hasMember"][9]["reference"]);
    EXPECT_EQ(item9["code"]["coding"][0]["code"], "44260-8");
  }
  int phq9_responses = 0;
  for (const v1::Event& e : course_->events()) {
    phq9_responses +=
        e.payload().questionnaire_response().questionnaire_id() == "phq9";
  }
  EXPECT_EQ(phq9_responses, 11);  // standard-course.yaml
  EXPECT_EQ(panels, phq9_responses);

  bool gad7 = false, asrm = false;
  for (const Json& e : bundle["entry"]) {
    if (e["resource"]["resourceType"] != "Observation") continue;
    const Json& code = e["resource"]["code"]["coding"];
    if (code[0]["code"] == "70274-6") gad7 = true;
    if (code[0]["system"] == "urn:ipsrt:instruments" &&
        code[0]["code"] == "asrm.total") {
      asrm = true;
    }
  }
  EXPECT_TRUE(gad7);
  EXPECT_TRUE(asrm);
}

TEST_F(FhirR4ExportTest,
       CarePlanInstantiatesTheTemplateWithOneActivityPerStage) {
  const Json bundle = Json::parse(Render(InProcess(), "fhir-r4-collection"));
  const Json& plan = bundle["entry"][0]["resource"];
  ASSERT_EQ(plan["resourceType"], "CarePlan");
  EXPECT_EQ(plan["instantiatesCanonical"][0],
            absl::StrCat("https://fhir.example.org/ipsrt/PlanDefinition/"
                         "ipsrt-standard|",
                         course_->enrollment().workflow_version()));
  EXPECT_EQ(plan["status"], "active");
  EXPECT_EQ(plan["intent"], "plan");
  EXPECT_EQ(plan["subject"]["reference"], "Patient/simulated");
  std::vector<std::string> stages;
  for (const Json& a : plan["activity"]) {
    stages.push_back(a["detail"]["code"]["coding"][0]["code"]);
  }
  EXPECT_THAT(stages,
              ElementsAre("initial", "intermediate", "final", "maintenance"));
  EXPECT_EQ(plan["activity"][3]["detail"]["status"], "in-progress");
  EXPECT_EQ(plan["activity"][0]["detail"]["status"], "completed");
  // The three intake sessions are the initial stage's outcome.
  EXPECT_EQ(plan["activity"][0]["outcomeReference"].size(), 3u);
}

TEST_F(FhirR4ExportTest, TransactionIsConditionalCreatesOnStableIdentifiers) {
  const Json bundle = Json::parse(Render(InProcess(), "fhir-r4-transaction"));
  EXPECT_EQ(bundle["type"], "transaction");
  EXPECT_EQ(bundle["timestamp"], "2026-08-01T00:00:00Z");
  std::set<std::string> full_urls, conditions;
  for (const Json& e : bundle["entry"]) {
    const Json& r = e["resource"];
    const std::string type = r["resourceType"];
    EXPECT_FALSE(r.contains("id")) << type;
    EXPECT_EQ(e["request"]["method"], "POST");
    EXPECT_EQ(e["request"]["url"], type);
    std::string value;
    if (type == "Provenance") {
      EXPECT_EQ(r["meta"]["tag"][0]["system"], kIdSystem);
      value = r["meta"]["tag"][0]["code"];
    } else if (type == "QuestionnaireResponse") {
      EXPECT_EQ(r["identifier"]["system"], kIdSystem);
      value = r["identifier"]["value"];
    } else {
      EXPECT_EQ(r["identifier"][0]["system"], kIdSystem);
      value = r["identifier"][0]["value"];
    }
    EXPECT_THAT(value, ::testing::StartsWith(course_->enrollment().name()));
    EXPECT_EQ(e["request"]["ifNoneExist"],
              absl::StrCat(type == "Provenance" ? "_tag=" : "identifier=",
                           kIdSystem, "|", value));
    EXPECT_THAT(e["fullUrl"].get<std::string>(),
                ::testing::StartsWith("urn:uuid:"));
    full_urls.insert(e["fullUrl"]);
    conditions.insert(e["request"]["ifNoneExist"]);
  }
  EXPECT_EQ(full_urls.size(), bundle["entry"].size());
  EXPECT_EQ(conditions.size(), bundle["entry"].size());

  // The collection names the same resources with the same uuids.
  const Json collection =
      Json::parse(Render(InProcess(), "fhir-r4-collection"));
  ASSERT_EQ(collection["entry"].size(), bundle["entry"].size());
  for (size_t i = 0; i < bundle["entry"].size(); ++i) {
    EXPECT_EQ(collection["entry"][i]["fullUrl"], bundle["entry"][i]["fullUrl"]);
    EXPECT_EQ(absl::StrCat(
                  "urn:uuid:",
                  collection["entry"][i]["resource"]["id"].get<std::string>()),
              collection["entry"][i]["fullUrl"]);
  }
}

TEST_F(FhirR4ExportTest, IndependentValidatorAcceptsEveryResourceOfEveryForm) {
  testing::TempDir dir;
  const std::string collection = dir.File("collection.json");
  const std::string transaction = dir.File("transaction.json");
  const std::string resources = dir.File("resources.ndjson");
  const std::string empty = dir.File("no-responses.json");
  ASSERT_TRUE(
      WriteFile(collection, Render(OutOfProcess(), "fhir-r4-collection")));
  ASSERT_TRUE(
      WriteFile(transaction, Render(OutOfProcess(), "fhir-r4-transaction")));
  ASSERT_TRUE(WriteFile(resources, ResourcesAsNdjson(OutOfProcess())));
  // An enrollment with no responses yet: just enrolled.
  pv1::RenderExportRequest just_enrolled = Course("fhir-r4-collection");
  just_enrolled.mutable_events()->DeleteSubrange(
      1, just_enrolled.events_size() - 1);
  just_enrolled.mutable_enrollment()->set_stage("initial");
  auto enrolled = InProcess().RenderExport(just_enrolled);
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  ASSERT_TRUE(WriteFile(empty, enrolled->content()));
  const Json enrolled_bundle = Json::parse(enrolled->content());
  EXPECT_THAT(
      CountByType(enrolled_bundle),
      ::testing::UnorderedElementsAre(::testing::Pair("CarePlan", 1),
                                      ::testing::Pair("Provenance", 1)));

  Command run = Validate({collection, transaction, resources, empty});
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("\n0 problems\n"));
  std::printf("%s", run.output.c_str());
}

TEST_F(FhirR4ExportTest, IndependentValidatorCatchesABrokenResource) {
  testing::TempDir dir;
  std::string bundle = Render(InProcess(), "fhir-r4-collection");
  const Json parsed = Json::parse(bundle);
  // One Observation with a status outside its required value set and a
  // property R4 does not have; one reference to nothing.
  std::string broken = bundle;
  size_t at = broken.find(R"("status":"final")");
  ASSERT_NE(at, std::string::npos);
  broken.replace(at, 16, R"("status":"finalised","mood":"low")");
  const std::string dangling = absl::StrReplaceAll(
      bundle,
      {{absl::StrCat(R"("reference":")",
                     parsed["entry"][0]["fullUrl"].get<std::string>()),
        R"("reference":"urn:uuid:00000000-0000-8000-8000-000000000000)"}});
  const std::string broken_file = dir.File("broken.json");
  const std::string dangling_file = dir.File("dangling.json");
  ASSERT_TRUE(WriteFile(broken_file, broken));
  ASSERT_TRUE(WriteFile(dangling_file, dangling));

  Command run = Validate({broken_file});
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("Observation.status: Code \"finalised\" "
                                    "not found in value set"));
  EXPECT_THAT(run.output, HasSubstr("Observation.mood: Unexpected property"));

  run = Validate({dangling_file});
  EXPECT_EQ(run.exit_code, 1) << run.output;
  // Every reference to the CarePlan now names nothing.
  EXPECT_THAT(run.output,
              HasSubstr("reference \"urn:uuid:00000000-0000-8000-8000-"
                        "000000000000\" does not resolve"));
}

TEST_F(FhirR4ExportTest, UnknownFormatIsInvalidArgumentNamingIt) {
  pv1::RenderExportRequest request = Course("fhir-r5-collection");
  for (LoadedPlugin* plugin : {&InProcess(), &OutOfProcess()}) {
    auto rendered = plugin->RenderExport(request);
    ASSERT_FALSE(rendered.ok());
    EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(rendered.status().message(),
              "format: unknown export format \"fhir-r5-collection\"; fhir-r4 "
              "renders fhir-r4-collection, fhir-r4-transaction and "
              "fhir-r4-resources");
  }
}

TEST_F(FhirR4ExportTest, RequestsItCannotRenderAreInvalidArgument) {
  pv1::RenderExportRequest no_time = Course("fhir-r4-collection");
  no_time.clear_export_time();
  auto rendered = InProcess().RenderExport(no_time);
  EXPECT_EQ(rendered.status(),
            absl::InvalidArgumentError(
                "export_time: must be set (it fixes the bundle's timestamp)"));

  pv1::RenderExportRequest no_patient = Course("fhir-r4-collection");
  no_patient.mutable_enrollment()->clear_patient_ref();
  EXPECT_EQ(
      InProcess().RenderExport(no_patient).status(),
      absl::InvalidArgumentError("enrollment.patient_ref: must not be empty"));

  pv1::RenderExportRequest reordered = Course("fhir-r4-collection");
  reordered.mutable_events()->SwapElements(1, 2);
  EXPECT_EQ(InProcess().RenderExport(reordered).status(),
            absl::InvalidArgumentError(
                "events[2].sequence: 2 does not follow 3; events must be in "
                "sequence order"));
}

TEST_F(FhirR4ExportTest, DecimalScoresAreWrittenExactly) {
  // A diary day whose weekly SRM score is the worked example of docs/domain.md,
  // 26 hits over 5 qualifying activities.
  pv1::RenderExportRequest request = Course("fhir-r4-resources");
  v1::Event day;
  day.set_sequence(request.events(request.events_size() - 1).sequence() + 1);
  day.set_type("srm.diary_day");
  *day.mutable_record_time() = request.export_time();
  day.mutable_payload()->mutable_srm_diary_day()->set_local_date("2026-07-31");
  (*day.mutable_scores())["srm.score"] = 26.0 / 5.0;
  (*day.mutable_scores())["srm.ali"] = 34;
  *request.add_events() = day;
  auto rendered = InProcess().RenderExport(request);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  const std::string prefix = absl::StrCat(
      request.enrollment().name(), "/events/", day.sequence(), "/observation/");
  std::vector<std::string> quantities;
  for (const pv1::ExportedResource& r : rendered->resources()) {
    if (r.content().find(prefix) == std::string::npos) continue;
    size_t at = r.content().find("\"valueQuantity\":");
    ASSERT_NE(at, std::string::npos) << r.content();
    // The quantity's last member is its code, e.g. "code":"{score}"}.
    size_t code = r.content().find("\"code\":\"", at);
    size_t end = r.content().find("\"}", code);
    ASSERT_NE(end, std::string::npos) << r.content();
    quantities.push_back(r.content().substr(at, end + 2 - at));
  }
  EXPECT_THAT(
      quantities,
      ElementsAre(R"("valueQuantity":{"value":5.2,"unit":"{score}",)"
                  R"("system":"http://unitsofmeasure.org","code":"{score}"})",
                  R"("valueQuantity":{"value":34,"unit":"{count}",)"
                  R"("system":"http://unitsofmeasure.org","code":"{count}"})"));
}

// A diary day entered, then corrected: the correction is the amended
// QuestionnaireResponse linked to the one it replaces (extension and a
// Provenance entity of role revision), and the SRM Observations take the
// diary's date as their effective date. FHIR.js accepts the Bundle.
TEST_F(FhirR4ExportTest, CorrectedDiaryDayIsTheAmendedResponse) {
  pv1::RenderExportRequest request = Course("fhir-r4-collection");
  int64_t seq = request.events(request.events_size() - 1).sequence();
  for (bool correction : {false, true}) {
    v1::Event day;
    day.set_sequence(++seq);
    day.set_type("srm.diary_day");
    *day.mutable_record_time() = request.export_time();
    v1::SrmDiaryDay* d = day.mutable_payload()->mutable_srm_diary_day();
    d->set_local_date("2026-07-30");
    d->set_mood(correction ? -1 : 2);
    d->set_correction(correction);
    (*day.mutable_scores())["srm.score"] = correction ? 3 : 4;
    *request.add_events() = day;
  }
  auto rendered = InProcess().RenderExport(request);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  const Json bundle = Json::parse(rendered->content());
  const std::string prefix =
      absl::StrCat(request.enrollment().name(), "/events/");
  const std::string first_key =
      absl::StrCat(prefix, seq - 1, "/questionnaire-response");
  const std::string amended_key =
      absl::StrCat(prefix, seq, "/questionnaire-response");
  std::map<std::string, Json> by_key;
  std::map<std::string, std::string> full_url;
  for (const Json& e : bundle["entry"]) {
    const Json& r = e["resource"];
    std::string key = r["resourceType"] == "Provenance"
                          ? r["meta"]["tag"][0]["code"].get<std::string>()
                      : r["identifier"].is_array()
                          ? r["identifier"][0]["value"].get<std::string>()
                          : r["identifier"]["value"].get<std::string>();
    by_key[key] = r;
    full_url[key] = e["fullUrl"].get<std::string>();
  }
  ASSERT_TRUE(by_key.contains(first_key));
  ASSERT_TRUE(by_key.contains(amended_key));
  EXPECT_EQ(by_key[first_key]["status"], "completed");
  const Json& amended = by_key[amended_key];
  EXPECT_EQ(amended["status"], "amended");
  ASSERT_EQ(amended["extension"].size(), 1u);
  EXPECT_EQ(amended["extension"][0]["url"],
            "https://fhir.example.org/ipsrt/StructureDefinition/replaces");
  EXPECT_EQ(amended["extension"][0]["valueReference"]["reference"],
            full_url[first_key]);
  const Json& provenance = by_key[absl::StrCat(prefix, seq, "/provenance")];
  EXPECT_EQ(provenance["activity"]["coding"][0]["code"], "UPDATE");
  ASSERT_EQ(provenance["entity"].size(), 1u);
  EXPECT_EQ(provenance["entity"][0]["role"], "revision");
  EXPECT_EQ(provenance["entity"][0]["what"]["reference"], full_url[first_key]);
  for (int64_t s : {seq - 1, seq}) {
    const Json& obs = by_key[absl::StrCat(prefix, s, "/observation/srm.score")];
    EXPECT_EQ(obs["effectiveDateTime"], "2026-07-30") << s;
  }
  testing::TempDir dir;
  const std::string file = dir.File("corrected.json");
  ASSERT_TRUE(WriteFile(file, rendered->content()));
  Command run = Validate({file});
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("\n0 problems\n"));
}

TEST(FhirR4ConfigTest, UnknownOrEmptyKeysAreRefusedAtLoad) {
  auto unknown = PluginRegistry::Load(
      {Entry("libipsrt_fhir_r4.so", "in_process", R"({"base_url":"x"})")},
      Options());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(unknown.status().message(),
              HasSubstr("config.base_url: unknown key; fhir-r4 takes "
                        "identifier_system, canonical_base, "
                        "patient_identifier_system and "
                        "practitioner_identifier_system"));
  auto spaced =
      PluginRegistry::Load({Entry("libipsrt_fhir_r4.so", "in_process",
                                  R"({"identifier_system":"urn:a b"})")},
                           Options());
  ASSERT_FALSE(spaced.ok());
  EXPECT_THAT(spaced.status().message(),
              HasSubstr("config.identifier_system: must be a URI without "
                        "spaces or '|'"));
}

}  // namespace
}  // namespace ipsrt
