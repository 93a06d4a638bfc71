// The hl7v2-oru exporter plugin (plugins/hl7v2) as the engine loads it:
// through the plugin host, in process and out of process, rendering the
// events the engine records for tests/scenarios/standard-course.yaml (the
// simulator builds each event as the server does: scores, bands, flags,
// hash chain).
//
// Each rendering that the independent parser must read back is written to
// IPSRT_HL7_OUT_DIR as <name>.hl7 with <name>.request.json (the
// RenderExportRequest) and <name>.config.json (the plugin's config);
// check_oru.test.mjs (node-hl7-client) parses them in the ctest fixture
// that follows this one.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "cli/scenario.h"
#include "common/files.h"
#include "common/json_string.h"
#include "core/enrollments.h"
#include "core/questionnaires.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "ipsrt/clock.h"
#include "ipsrt/config.h"
#include "ipsrt/sqlite_store.h"
#include "model/workflow.h"
#include "plugin_host/registry.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

namespace pv1 = ::ipsrt::plugin::v1;
using ::google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

// Every delimiter of ER7 (| ^ ~ \ &) and line breaks.
constexpr char kPatientRef[] = R"(MRN|0042^A~B\C&D)";
constexpr char kAwkwardFacility[] =
    "St Elsewhere | Psychiatry ^ Mood & Rhythm ~ Unit \\ 2\r\nNorth wing";

// The plugin's config block, as ipsrtd passes it (JSON text).
std::string ConfigJson(const std::string& facility = "St Elsewhere",
                       const std::string& authority = "STE") {
  return absl::StrCat(
      R"({"sending_facility":)", JsonQuote(facility),
      R"(,"assigning_authority":)", JsonQuote(authority),
      R"(,"receiving_application":"EHR","receiving_facility":"STE-EHR"})");
}

PluginHostOptions Options() {
  PluginHostOptions o;
  o.plugin_dir = IPSRT_PLUGIN_DIR;
  o.runner_path = IPSRT_RUNNER_BIN;
  o.health_interval = absl::Milliseconds(200);
  return o;
}

PluginConfig Entry(const std::string& file, const std::string& transport,
                   const std::string& config_json = "{}") {
  PluginConfig c;
  c.path = file;
  c.transport = *ParsePluginTransport(transport);
  c.config_json = config_json;
  c.location = "ipsrtd.yaml:12:5";
  return c;
}

// Loads core-instruments (for the instrument definitions) and hl7v2-oru.
std::unique_ptr<PluginRegistry> Load(const std::string& transport,
                                     const std::string& config_json) {
  auto registry = PluginRegistry::Load(
      {Entry("libipsrt_core_instruments.so", "in_process"),
       Entry("libipsrt_hl7v2_oru.so", transport, config_json)},
      Options());
  EXPECT_TRUE(registry.ok()) << registry.status();
  return registry.ok() ? *std::move(registry) : nullptr;
}

// Runs a scenario on the shipped ipsrt-standard template.
cli::Simulation Simulate(const std::string& scenario_yaml,
                         const std::string& file,
                         const std::string& patient_ref) {
  absl::StatusOr<std::string> workflow_yaml = ReadFileToString(
      absl::StrCat(IPSRT_SOURCE_DIR, "/workflows/ipsrt-standard.yaml"));
  EXPECT_TRUE(workflow_yaml.ok()) << workflow_yaml.status();
  absl::StatusOr<WorkflowTemplate> workflow =
      ParseWorkflowTemplate(*workflow_yaml, "ipsrt-standard.yaml");
  EXPECT_TRUE(workflow.ok()) << workflow.status();
  absl::StatusOr<cli::Scenario> scenario =
      cli::ParseScenario(scenario_yaml, file, &Enrollments::LoadZone);
  EXPECT_TRUE(scenario.ok()) << scenario.status();
  scenario->patient_ref = patient_ref;
  cli::Simulation simulation;
  absl::Status status =
      cli::Simulate(*workflow, *scenario, &Enrollments::LoadZone, &simulation);
  EXPECT_TRUE(status.ok()) << status;
  return simulation;
}

cli::Simulation StandardCourse(const std::string& patient_ref) {
  const std::string file =
      absl::StrCat(IPSRT_SOURCE_DIR, "/tests/scenarios/standard-course.yaml");
  absl::StatusOr<std::string> yaml = ReadFileToString(file);
  EXPECT_TRUE(yaml.ok()) << yaml.status();
  return Simulate(*yaml, file, patient_ref);
}

pv1::RenderExportRequest Request(const cli::Simulation& simulation,
                                 PluginRegistry& registry) {
  pv1::RenderExportRequest request;
  request.set_format("hl7v2-oru-r01");
  *request.mutable_enrollment() = simulation.state.enrollment();
  for (const cli::SimulatedEvent& s : simulation.events) {
    *request.add_events() = s.event;
  }
  auto instruments = registry.Find("core-instruments")->ListInstruments();
  EXPECT_TRUE(instruments.ok()) << instruments.status();
  *request.mutable_instruments() = instruments->instruments();
  *request.mutable_export_time() =
      TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(absl::FromCivil(
          absl::CivilSecond(2026, 8, 1, 12, 0, 0), absl::UTCTimeZone())));
  return request;
}

std::vector<std::string> Segments(const std::string& content) {
  return absl::StrSplit(content, '\r', absl::SkipEmpty());
}

int CountPrefix(const std::vector<std::string>& segments,
                absl::string_view prefix) {
  int n = 0;
  for (const std::string& s : segments) n += absl::StartsWith(s, prefix);
  return n;
}

// Writes one rendering for check_oru.test.mjs.
void WriteForParser(const std::string& name,
                    const pv1::RenderExportRequest& request,
                    const std::string& config_json,
                    const std::string& content) {
  std::filesystem::create_directories(IPSRT_HL7_OUT_DIR);
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  ASSERT_TRUE(
      google::protobuf::util::MessageToJsonString(request, &json, options)
          .ok());
  const std::string base = absl::StrCat(IPSRT_HL7_OUT_DIR, "/", name);
  std::ofstream(base + ".request.json", std::ios::binary) << json;
  std::ofstream(base + ".config.json", std::ios::binary) << config_json;
  std::ofstream(base + ".hl7", std::ios::binary) << content;
}

TEST(Hl7ExportTest, DescribesItselfAsAnExporter) {
  auto registry = Load("in_process", ConfigJson());
  ASSERT_NE(registry, nullptr);
  LoadedPlugin* plugin = registry->Find("hl7v2-oru");
  ASSERT_NE(plugin, nullptr);
  EXPECT_TRUE(plugin->HasKind(pv1::EXPORTER));
  EXPECT_FALSE(plugin->HasKind(pv1::QUESTIONNAIRE));
  ASSERT_EQ(plugin->description().export_formats_size(), 1);
  EXPECT_EQ(plugin->description().export_formats(0), "hl7v2-oru-r01");
  EXPECT_EQ(plugin->description().version(), "1.0.0");
}

TEST(Hl7ExportTest, StandardCourseIsTheSameThroughBothTransports) {
  const cli::Simulation course = StandardCourse("Patient/123");
  auto in = Load("in_process", ConfigJson());
  auto out = Load("out_of_process", ConfigJson());
  ASSERT_NE(in, nullptr);
  ASSERT_NE(out, nullptr);
  const pv1::RenderExportRequest request = Request(course, *in);

  auto a = in->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = out->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->content(), b->content());
  EXPECT_EQ(a->content_type(), "x-application/hl7-v2+er7");
  EXPECT_EQ(b->content_type(), "x-application/hl7-v2+er7");
  // Same input, byte-identical output.
  auto again = in->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->content(), a->content());

  int responses = 0, diary_days = 0;
  for (const v1::Event& e : request.events()) {
    responses += e.type() == "questionnaire.responded";
    diary_days += e.type() == "srm.diary_day";
  }
  // standard-course.yaml: 14 questionnaires, 2 diary days.
  EXPECT_EQ(responses, 14);
  EXPECT_EQ(diary_days, 2);
  const std::vector<std::string> segments = Segments(a->content());
  EXPECT_EQ(CountPrefix(segments, "MSH|"), responses + diary_days);
  EXPECT_EQ(CountPrefix(segments, "PID|"), responses + diary_days);
  EXPECT_EQ(CountPrefix(segments, "OBR|"), responses + diary_days);
  EXPECT_EQ(segments.front().substr(0, 9), "FHS|^~\\&|");
  EXPECT_EQ(segments[segments.size() - 2],
            absl::StrCat("BTS|", responses + diary_days));
  EXPECT_EQ(segments.back(), "FTS|1");
  EXPECT_TRUE(absl::EndsWith(a->content(), "FTS|1\r"));
  EXPECT_EQ(a->content().find('\n'), std::string::npos);

  WriteForParser("standard-course", request, ConfigJson(), a->content());
}

TEST(Hl7ExportTest, FirstPhq9MessageHasTheExpectedSegments) {
  const cli::Simulation course = StandardCourse("Patient/123");
  auto registry = Load("in_process", ConfigJson());
  ASSERT_NE(registry, nullptr);
  auto rendered =
      registry->Find("hl7v2-oru")->RenderExport(Request(course, *registry));
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  const std::vector<std::string> segments = Segments(rendered->content());
  // The first PHQ-9 of the course (answers 1,1,1,1,1,0,0,0,0 at
  // 2026-03-03 18:00 New York = 23:00 UTC); a diary day comes before it.
  auto obr =
      std::find_if(segments.begin(), segments.end(), [](const std::string& s) {
        return absl::StartsWith(s, "OBR|") && absl::StrContains(s, "|44249-1^");
      });
  ASSERT_NE(obr, segments.end());
  auto msh = obr - 2;
  EXPECT_THAT(*msh, ::testing::MatchesRegex(
                        "MSH\\|\\^~\\\\&\\|IPSRT\\|St Elsewhere\\|EHR\\|STE-"
                        "EHR\\|20260801120000\\+0000\\|\\|ORU\\^R01\\^ORU_"
                        "R01\\|[0-9a-f]{20}\\|P\\|2\\.5\\.1\\|\\|\\|\\|\\|\\|"
                        "UNICODE UTF-8"));
  EXPECT_EQ(msh[1], "PID|1||Patient/123^^^STE^MR||^^^^^^U");
  const std::string control = msh->substr(msh->find("ORU_R01|") + 8, 20);
  EXPECT_EQ(msh[2],
            absl::StrCat("OBR|1||", control,
                         "^IPSRT|44249-1^PHQ-9 quick depression assessment "
                         "panel^LN|||20260303230000+0000|||||||||||||||"
                         "20260303230000+0000|||F"));
  EXPECT_EQ(msh[3],
            "OBX|1|NM|44250-9^Little interest or pleasure in doing "
            "things^LN||1||||||F|||20260303230000+0000");
  EXPECT_EQ(msh[11],
            "OBX|9|NM|44260-8^Thoughts that you would be better off dead or "
            "of hurting yourself in some way^LN||0||||||F|||"
            "20260303230000+0000");
  EXPECT_EQ(msh[12],
            "OBX|10|NM|44261-6^PHQ-9 total score^LN||5||||||F|||"
            "20260303230000+0000");
  EXPECT_TRUE(absl::StartsWith(msh[13], "MSH|")) << msh[13];
}

TEST(Hl7ExportTest, ControlIdsAreStableAcrossExportTimes) {
  const cli::Simulation course = StandardCourse("Patient/123");
  auto registry = Load("in_process", ConfigJson());
  ASSERT_NE(registry, nullptr);
  pv1::RenderExportRequest request = Request(course, *registry);
  auto first = registry->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(first.ok()) << first.status();
  *request.mutable_export_time() =
      TimeUtil::SecondsToTimestamp(request.export_time().seconds() + 86400);
  auto later = registry->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(later.ok()) << later.status();
  // Only the creation times (FHS-7, BHS-7, MSH-7) move by one day.
  EXPECT_NE(first->content(), later->content());
  std::string shifted = first->content();
  absl::StrReplaceAll({{"20260801120000+0000", "20260802120000+0000"}},
                      &shifted);
  EXPECT_EQ(shifted, later->content());

  // Without export_time each message carries its event's record time.
  request.clear_export_time();
  auto untimed = registry->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(untimed.ok()) << untimed.status();
  EXPECT_THAT(untimed->content(),
              HasSubstr("|20260303230000+0000||ORU^R01^ORU_R01|"));
}

TEST(Hl7ExportTest, DelimitersInPatientRefFacilityAndItemTextAreEscaped) {
  const cli::Simulation course = StandardCourse(kPatientRef);
  const std::string config = ConfigJson(kAwkwardFacility, "AUTH&1.2^X");
  auto in = Load("in_process", config);
  auto out = Load("out_of_process", config);
  ASSERT_NE(in, nullptr);
  ASSERT_NE(out, nullptr);
  pv1::RenderExportRequest request = Request(course, *in);
  // An instrument whose item text has every delimiter and a line break
  // (a clinician-defined form could say anything).
  for (v1::Questionnaire& q : *request.mutable_instruments()) {
    if (q.id() != "phq9") continue;
    q.mutable_items(0)->mutable_code()->set_display(
        "Interest | pleasure ^ joy & fun ~ play \\ rest\nsecond line");
    q.mutable_panel_code()->set_display("PHQ-9 \\ panel");
  }
  auto a = in->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = out->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->content(), b->content());
  const std::string& c = a->content();
  EXPECT_THAT(c, HasSubstr("PID|1||MRN\\F\\0042\\S\\A\\R\\B\\E\\C\\T\\D^^^"
                           "AUTH\\T\\1.2\\S\\X^MR||^^^^^^U\r"));
  EXPECT_THAT(c, HasSubstr("|IPSRT|St Elsewhere \\F\\ Psychiatry \\S\\ Mood "
                           "\\T\\ Rhythm \\R\\ Unit \\E\\ 2\\X0D\\\\X0A\\"
                           "North wing|EHR|"));
  EXPECT_THAT(c, HasSubstr("|44250-9^Interest \\F\\ pleasure \\S\\ joy \\T\\ "
                           "fun \\R\\ play \\E\\ rest\\X0A\\second line^LN|"));
  EXPECT_THAT(c, HasSubstr("|44249-1^PHQ-9 \\E\\ panel^LN|"));
  // Nothing unescaped: every segment still has its fixed field count.
  for (const std::string& s : Segments(c)) {
    if (absl::StartsWith(s, "PID|")) {
      EXPECT_EQ(std::count(s.begin(), s.end(), '|'), 5) << s;
    }
  }
  WriteForParser("escapes", request, config, c);
}

// The path the export service takes: the engine's Enrollments on a real
// SQLite file, responses scored by the core-instruments plugin, the
// enrollment and its timeline read back from the store.
TEST(Hl7ExportTest, CourseStoredInSqliteIsExported) {
  testing::TempDir dir;
  auto store = SqliteStore::Open({.path = dir.File("ipsrt.db")});
  ASSERT_TRUE(store.ok()) << store.status();
  auto registry = Load("out_of_process", ConfigJson());
  ASSERT_NE(registry, nullptr);
  auto questionnaires = QuestionnaireCatalog::Build(*registry);
  ASSERT_TRUE(questionnaires.ok()) << questionnaires.status();
  auto workflows = WorkflowCatalog::LoadDirectories(
      {absl::StrCat(IPSRT_SOURCE_DIR, "/workflows")});
  ASSERT_TRUE(workflows.ok()) << workflows.status();
  WorkflowRegistry workflow_registry(*workflows);

  const std::string file =
      absl::StrCat(IPSRT_SOURCE_DIR, "/tests/scenarios/standard-course.yaml");
  absl::StatusOr<std::string> yaml = ReadFileToString(file);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  absl::StatusOr<cli::Scenario> scenario =
      cli::ParseScenario(*yaml, file, &Enrollments::LoadZone);
  ASSERT_TRUE(scenario.ok()) << scenario.status();

  FakeClock clock(scenario->start);
  RandomIdGenerator ids;
  Enrollments enrollments({.store = store->get(),
                           .clock = &clock,
                           .ids = &ids,
                           .workflows = &workflow_registry,
                           .questionnaires = questionnaires->get()});
  v1::Actor actor;
  actor.set_subject("clinician-7");
  actor.set_role("clinician");

  v1::CreateEnrollmentRequest create;
  create.set_parent("tenants/t1");
  create.set_request_id("create-1");
  create.set_patient_ref(kPatientRef);
  create.set_workflow_id("ipsrt-standard");
  create.set_time_zone(scenario->time_zone);
  create.set_clinician_ref("Practitioner/7");
  absl::StatusOr<v1::Enrollment> created;
  absl::Notification enrolled;
  enrollments.Create(create, actor, [&](absl::StatusOr<v1::Enrollment> e) {
    created = std::move(e);
    enrolled.Notify();
  });
  enrolled.WaitForNotification();
  ASSERT_TRUE(created.ok()) << created.status();

  // The scenario's questionnaires and diary days, each at its time.
  int submitted = 0;
  for (const cli::ScenarioEvent& e : scenario->events) {
    if (!e.payload.has_questionnaire_response() &&
        !e.payload.has_srm_diary_day()) {
      continue;
    }
    clock.Set(e.time);
    v1::SubmitEventRequest submit;
    submit.set_name(created->name());
    submit.set_request_id(absl::StrCat("submit-", ++submitted));
    *submit.mutable_event() = e.payload;
    absl::Status status;
    absl::Notification done;
    enrollments.Submit(submit, actor,
                       [&](absl::StatusOr<v1::SubmitEventResponse> r) {
                         status = r.status();
                         done.Notify();
                       });
    done.WaitForNotification();
    ASSERT_TRUE(status.ok()) << e.where << ": " << status;
  }
  EXPECT_EQ(submitted, 16);

  v1::GetEnrollmentRequest get;
  get.set_name(created->name());
  absl::StatusOr<v1::Enrollment> enrollment = enrollments.Get(get);
  ASSERT_TRUE(enrollment.ok()) << enrollment.status();
  v1::GetTimelineRequest timeline;
  timeline.set_name(created->name());
  timeline.set_page_size(500);
  absl::StatusOr<v1::GetTimelineResponse> events =
      enrollments.Timeline(timeline);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->events_size(), 1 + submitted);

  pv1::RenderExportRequest request;
  request.set_format("hl7v2-oru-r01");
  *request.mutable_enrollment() = *enrollment;
  *request.mutable_events() = events->events();
  for (const v1::Questionnaire* q : (*questionnaires)->List()) {
    *request.add_instruments() = *q;
  }
  *request.mutable_export_time() = TimeUtil::SecondsToTimestamp(
      absl::ToUnixSeconds(clock.Now() + absl::Hours(1)));
  auto rendered = registry->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  const std::vector<std::string> segments = Segments(rendered->content());
  EXPECT_EQ(CountPrefix(segments, "MSH|"), submitted);
  EXPECT_EQ(CountPrefix(segments,
                        "PID|1||MRN\\F\\0042\\S\\A\\R\\B\\E\\C"
                        "\\T\\D^^^STE^MR||^^^^^^U"),
            submitted);
  WriteForParser("sqlite-course", request, ConfigJson(), rendered->content());
}

TEST(Hl7ExportTest, WeeklySrmScoreIsExportedWhenTheEngineRecordedOne) {
  std::string yaml = R"(workflow: ipsrt-standard
patient:
  time_zone: Europe/London
  start: "2026-05-04T09:00"
events:
)";
  for (int d = 0; d < 7; ++d) {
    absl::StrAppend(&yaml, "  - at: \"+", d,
                    "d 21:00\"\n    srm_diary:\n      mood: ", d % 3 - 1,
                    "\n      activities: {out_of_bed: \"07:", 30 + d,
                    "\", first_contact: \"08:15\", start_work: \"09:00\", "
                    "dinner: \"19:00\", to_bed: \"\"}\n");
  }
  const cli::Simulation week = Simulate(yaml, "week.yaml", "Patient/7");
  auto registry = Load("in_process", ConfigJson());
  ASSERT_NE(registry, nullptr);
  const pv1::RenderExportRequest request = Request(week, *registry);
  const v1::Event& last = request.events(request.events_size() - 1);
  ASSERT_EQ(last.type(), "srm.diary_day");
  ASSERT_EQ(last.scores().count("srm.score"), 1u);
  auto rendered = registry->Find("hl7v2-oru")->RenderExport(request);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  const std::vector<std::string> segments = Segments(rendered->content());
  EXPECT_EQ(CountPrefix(segments, "MSH|"), 7);
  // The last day: four activities done (to_bed left empty), mood, score.
  const size_t obr = segments.size() - 9;
  EXPECT_THAT(segments[obr], HasSubstr("|srm5^Social Rhythm Metric (SRM-5)^"
                                       "99IPSRT|||20260510|"));
  EXPECT_EQ(segments[obr + 1],
            "OBX|1|TM|srm.out_of_bed^Out of bed^99IPSRT||0736||||||F|||"
            "20260510");
  EXPECT_EQ(segments[obr + 5],
            "OBX|5|NM|srm.mood^Mood rating (-5 to +5)^99IPSRT||-1||||||F|||"
            "20260510");
  // OBX-5 reads back as exactly the score the engine recorded.
  const std::vector<std::string> score = absl::StrSplit(segments[obr + 6], '|');
  ASSERT_EQ(score.size(), 15u) << segments[obr + 6];
  EXPECT_EQ(score[3], "srm.score^Social Rhythm Metric weekly score^99IPSRT");
  double value = -1;
  ASSERT_TRUE(absl::SimpleAtod(score[5], &value)) << score[5];
  EXPECT_EQ(value, last.scores().at("srm.score"));
  EXPECT_EQ(score[14], "20260510");
  WriteForParser("srm-week", request, ConfigJson(), rendered->content());
}

TEST(Hl7ExportTest, EnrollmentWithoutResponsesIsAFailedPrecondition) {
  const cli::Simulation course = StandardCourse("Patient/123");
  for (const std::string transport : {"in_process", "out_of_process"}) {
    auto registry = Load(transport, ConfigJson());
    ASSERT_NE(registry, nullptr);
    pv1::RenderExportRequest request = Request(course, *registry);
    // Only what happened before the first questionnaire: the enrollment,
    // a session, ticks.
    request.clear_events();
    for (const cli::SimulatedEvent& s : course.events) {
      if (s.event.type() == "questionnaire.responded" ||
          s.event.type() == "srm.diary_day") {
        continue;
      }
      *request.add_events() = s.event;
    }
    auto rendered = registry->Find("hl7v2-oru")->RenderExport(request);
    EXPECT_EQ(rendered.status().code(), absl::StatusCode::kFailedPrecondition)
        << transport;
    EXPECT_EQ(rendered.status().message(),
              "enrollment tenants/simulation/enrollments/scenario has no "
              "questionnaire responses to export")
        << transport;
  }
}

TEST(Hl7ExportTest, BadRequestsNameTheField) {
  const cli::Simulation course = StandardCourse("Patient/123");
  auto registry = Load("in_process", ConfigJson());
  ASSERT_NE(registry, nullptr);
  LoadedPlugin* plugin = registry->Find("hl7v2-oru");
  const pv1::RenderExportRequest good = Request(course, *registry);

  pv1::RenderExportRequest fhir = good;
  fhir.set_format("fhir-r4+json");
  auto refused = plugin->RenderExport(fhir);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "format: hl7v2-oru renders \"hl7v2-oru-r01\", not "
            "\"fhir-r4+json\"");

  pv1::RenderExportRequest no_gad7 = good;
  no_gad7.clear_instruments();
  for (const v1::Questionnaire& q : good.instruments()) {
    if (q.id() != "gad7") *no_gad7.add_instruments() = q;
  }
  int gad7_index = 0;
  while (good.events(gad7_index)
             .payload()
             .questionnaire_response()
             .questionnaire_id() != "gad7") {
    ++gad7_index;
  }
  refused = plugin->RenderExport(no_gad7);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            absl::StrCat("events[", gad7_index,
                         "].payload.questionnaire_response.questionnaire_id: "
                         "instrument \"gad7\" is not among the request's "
                         "instruments"));

  pv1::RenderExportRequest no_patient = good;
  no_patient.mutable_enrollment()->clear_patient_ref();
  refused = plugin->RenderExport(no_patient);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "enrollment.patient_ref: must not be empty");
}

TEST(Hl7ExportTest, BadConfigurationIsRefusedAtLoad) {
  struct Case {
    std::string config;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"assigning_authority":"STE"})",
            "config.sending_facility: is required"},
           {R"({"sending_facility":"STE"})",
            "config.assigning_authority: is required"},
           {R"({"sending_facility":"STE","assigning_authority":"STE",)"
            R"("processing_id":"X"})",
            "config.processing_id: must be P (production), T (training) or "
            "D (debugging), not \"X\""},
           {R"({"sending_facility":"STE","assigning_authority":"STE",)"
            R"("facility":"x"})",
            "config.facility: unknown key (allowed: sending_application, "
            "sending_facility, receiving_application, receiving_facility, "
            "assigning_authority, identifier_type, processing_id, "
            "patient_identifiers)"},
       }) {
    auto registry = PluginRegistry::Load(
        {Entry("libipsrt_hl7v2_oru.so", "in_process", c.config)}, Options());
    EXPECT_EQ(registry.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(registry.status().message(),
              absl::StrCat("ipsrtd.yaml:12:5: plugin hl7v2-oru refused its "
                           "configuration: ",
                           c.message));
  }
}

// With config.patient_identifiers, PID-3 is the identifier the reference
// maps to (an MRN with its assigning authority), not the FHIR-style
// reference; a reference no mapping covers is refused, naming the prefixes.
TEST(Hl7ExportTest, PatientIdentifierMappingGivesPid3) {
  const std::string config =
      R"({"sending_facility":"St Elsewhere","patient_identifiers":[)"
      R"({"prefix":"urn:mrn:ste:","assigning_authority":"STELSEWHERE"},)"
      R"({"prefix":"Patient/","assigning_authority":"STE-FHIR",)"
      R"("identifier_type":"PI"}]})";
  auto registry = Load("out_of_process", config);
  ASSERT_NE(registry, nullptr);
  LoadedPlugin* plugin = registry->Find("hl7v2-oru");
  const cli::Simulation mrn = StandardCourse("urn:mrn:ste:0042");
  pv1::RenderExportRequest request = Request(mrn, *registry);
  auto rendered = plugin->RenderExport(request);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  const std::vector<std::string> segments = Segments(rendered->content());
  EXPECT_EQ(CountPrefix(segments, "PID|"),
            CountPrefix(segments, "PID|1||0042^^^STELSEWHERE^MR||^^^^^^U"));
  EXPECT_GT(CountPrefix(segments, "PID|"), 0);
  WriteForParser("mapped-mrn", request, config, rendered->content());

  request.mutable_enrollment()->set_patient_ref("Patient/123");
  rendered = plugin->RenderExport(request);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_THAT(rendered->content(),
              HasSubstr("\rPID|1||123^^^STE-FHIR^PI||^^^^^^U\r"));

  request.mutable_enrollment()->set_patient_ref("urn:other:7");
  rendered = plugin->RenderExport(request);
  EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rendered.status().message(),
            "enrollment.patient_ref: starts with none of the prefixes of "
            "config.patient_identifiers (\"urn:mrn:ste:\", \"Patient/\")");

  auto bad = PluginRegistry::Load(
      {Entry(
          "libipsrt_hl7v2_oru.so", "in_process",
          R"({"sending_facility":"S","patient_identifiers":[{"prefix":"x"}]})")},
      Options());
  EXPECT_EQ(bad.status().message(),
            "ipsrtd.yaml:12:5: plugin hl7v2-oru refused its configuration: "
            "config.patient_identifiers[0].assigning_authority: is required");
}

}  // namespace
}  // namespace ipsrt
