// End-to-end tests of the course report in a real browser: the built ipsrt
// writes reports (simulate --report, and `ipsrt report` against a running
// ipsrtd), and headless Chromium loads each one once, giving the DOM, a
// screenshot and an A4 PDF. Checked: no console message at all (Chromium
// logs every blocked script or fetch there), chart point counts equal the
// simulated data, the screenshot is not blank, the PDF's pages are A4.
// Screenshots and PDFs stay under <build>/test-artifacts/reports/.
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Workflow(const std::string& id) {
  return absl::StrCat(IPSRT_WORKFLOWS_DIR, "/", id, ".yaml");
}

std::string ArtifactDir() {
  std::string dir = absl::StrCat(IPSRT_BUILD_DIR, "/test-artifacts/reports");
  std::filesystem::create_directories(dir);
  return dir;
}

std::string Describe(const ProcessResult& r) {
  return absl::StrCat("exit_code=", r.exit_code, " timed_out=", r.timed_out,
                      "\nstdout:\n", r.out.substr(0, 3000), "\nstderr:\n",
                      r.err.substr(0, 3000));
}

// Browser is what headless Chromium made of one HTML file.
struct Browser {
  std::string dom;
  // Console messages (errors, CSP violations, script output).
  std::vector<std::string> console;
  std::string png;
  std::string pdf;
};

Browser Open(const std::string& html, const std::string& name) {
  Browser b;
  const std::string dir = ArtifactDir();
  b.png = absl::StrCat(dir, "/", name, ".png");
  b.pdf = absl::StrCat(dir, "/", name, ".pdf");
  std::filesystem::remove(b.png);
  std::filesystem::remove(b.pdf);
  TempDir profile;  // the browser's own files, removed afterwards
  absl::StatusOr<ProcessResult> r = RunProcess(
      {IPSRT_CHROMIUM_BIN, "--headless", "--no-sandbox", "--disable-gpu",
       "--no-first-run", "--disable-extensions", "--hide-scrollbars",
       "--enable-logging=stderr", "--v=0", "--window-size=1000,1400",
       absl::StrCat("--user-data-dir=", profile.path()),
       absl::StrCat("--screenshot=", b.png),
       absl::StrCat("--print-to-pdf=", b.pdf), "--no-pdf-header-footer",
       "--dump-dom", absl::StrCat("file://", html)},
      absl::Seconds(90));
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return b;
  EXPECT_EQ(r->exit_code, 0) << Describe(*r);
  b.dom = r->out;
  for (absl::string_view line : absl::StrSplit(r->err, '\n')) {
    if (absl::StrContains(line, ":CONSOLE")) b.console.emplace_back(line);
  }
  return b;
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// PixelDeviation is the standard deviation of the screenshot's grey
// levels (0 for a blank page, up to 0.5), measured by ImageMagick.
double PixelDeviation(const std::string& png) {
  absl::StatusOr<ProcessResult> r =
      RunProcess({"/bin/sh", "-c",
                  absl::StrCat("/usr/bin/convert '", png,
                               "' -colorspace Gray -format "
                               "'%[fx:standard_deviation]' info:")});
  EXPECT_TRUE(r.ok() && r->exit_code == 0) << (r.ok() ? Describe(*r) : "");
  double v = -1;
  if (r.ok()) {
    EXPECT_TRUE(absl::SimpleAtod(r->out, &v)) << r->out;
  }
  return v;
}

struct PdfInfo {
  int pages = 0;
  std::string page_size;
};

PdfInfo Pdf(const std::string& pdf) {
  PdfInfo info;
  absl::StatusOr<ProcessResult> r = RunProcess({"/usr/bin/pdfinfo", pdf});
  EXPECT_TRUE(r.ok() && r->exit_code == 0) << (r.ok() ? Describe(*r) : "");
  if (!r.ok()) return info;
  for (absl::string_view line : absl::StrSplit(r->out, '\n')) {
    if (absl::ConsumePrefix(&line, "Pages:")) {
      EXPECT_TRUE(
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &info.pages));
    }
    if (absl::ConsumePrefix(&line, "Page size:")) {
      info.page_size = std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return info;
}

Struct Parse(const std::string& json) {
  Value value;
  auto status = google::protobuf::util::JsonStringToMessage(json, &value);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return value.struct_value();
}

// ExpectedPoints counts, from `ipsrt simulate --json`, what each chart
// must plot: responses with a total per instrument, diary days with a
// 7-day SRM score, each anchor's distinct diary dates with a time (the
// latest entry of a date wins), sessions held and cadence changes.
std::map<std::string, int> ExpectedPoints(const Struct& doc) {
  std::map<std::string, int> n;
  std::map<std::string, std::set<std::string>> diary;  // date -> activities
  for (const Value& v : doc.fields().at("events").list_value().values()) {
    const Struct& e = v.struct_value();
    const Struct& payload = e.fields().at("payload").struct_value();
    const Struct& scores = e.fields().at("scores").struct_value();
    if (payload.fields().contains("questionnaire_response")) {
      std::string id = payload.fields()
                           .at("questionnaire_response")
                           .struct_value()
                           .fields()
                           .at("questionnaire_id")
                           .string_value();
      if (scores.fields().contains(id + ".total")) ++n[id];
    }
    if (payload.fields().contains("srm_diary_day")) {
      const Struct& day = payload.fields().at("srm_diary_day").struct_value();
      if (scores.fields().contains("srm.score")) ++n["srm"];
      std::set<std::string>& activities =
          diary[day.fields().at("local_date").string_value()];
      activities.clear();
      if (day.fields().contains("activities")) {
        for (const Value& a :
             day.fields().at("activities").list_value().values()) {
          const auto& f = a.struct_value().fields();
          if (f.contains("local_time") &&
              !f.at("local_time").string_value().empty()) {
            activities.insert(f.at("activity").string_value());
          }
        }
      }
    }
    if (payload.fields().contains("session_held")) ++n["session"];
    for (const Value& o : e.fields().at("outcomes").list_value().values()) {
      if (o.struct_value().fields().at("kind").string_value() ==
          "CADENCE_CHANGED") {
        ++n["cadence"];
      }
    }
  }
  for (const auto& [date, activities] : diary) {
    for (const std::string& a : activities) ++n["srm-" + a];
  }
  return n;
}

// CheckRendered applies the checks every report must pass in the browser.
void CheckRendered(const Browser& b) {
  EXPECT_THAT(b.console, ::testing::IsEmpty());
  EXPECT_THAT(b.dom, HasSubstr("<h1>Course report</h1>"));
  // Every chart has a text alternative.
  EXPECT_EQ(Count(b.dom, "<svg id=\"chart-"),
            Count(b.dom, "<figcaption>") - 1 /* the timeline */ -
                (absl::StrContains(b.dom, "id=\"graph\"") ? 1 : 0));
  EXPECT_EQ(Count(b.dom, "role=\"img\""), Count(b.dom, "aria-labelledby"));
  const double deviation = PixelDeviation(b.png);
  EXPECT_GT(deviation, 0.05) << b.png << " looks blank";
  PdfInfo pdf = Pdf(b.pdf);
  EXPECT_THAT(pdf.page_size, HasSubstr("(A4)"));
  EXPECT_GE(pdf.pages, 2);
  EXPECT_LE(pdf.pages, 20);
}

struct ShippedScenario {
  const char* scenario;
  const char* workflow;
};

class ShippedScenarioReportTest
    : public ::testing::TestWithParam<ShippedScenario> {};

TEST_P(ShippedScenarioReportTest, RendersEveryPointWithoutConsoleErrors) {
  const ShippedScenario& s = GetParam();
  TempDir dir;
  const std::string html = dir.File("course.html");
  const std::string scenario =
      absl::StrCat(IPSRT_SCENARIOS_DIR, "/", s.scenario, ".yaml");
  ProcessResult r = RunCliNoServer({"simulate", Workflow(s.workflow),
                                    absl::StrCat("--scenario=", scenario),
                                    "--report", html, "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const std::map<std::string, int> expected = ExpectedPoints(Parse(r.out));
  Browser b = Open(html, s.scenario);
  CheckRendered(b);
  for (const char* series :
       {"phq9", "gad7", "asrm", "srm", "session", "cadence", "srm-out_of_bed",
        "srm-first_contact", "srm-start_work", "srm-dinner", "srm-to_bed"}) {
    auto it = expected.find(series);
    EXPECT_EQ(Count(b.dom, absl::StrCat("data-point=\"", series, "\"")),
              it == expected.end() ? 0 : it->second)
        << series;
  }
  // The workflow graph is embedded, as SVG from Graphviz.
  EXPECT_THAT(b.dom, HasSubstr("id=\"graph\""));
  EXPECT_THAT(b.dom, HasSubstr("Simulated course"));
}

INSTANTIATE_TEST_SUITE_P(
    Scenarios, ShippedScenarioReportTest,
    ::testing::Values(
        ShippedScenario{"standard-course", "ipsrt-standard"},
        ShippedScenario{"year-long", "ipsrt-standard"},
        ShippedScenario{"preventive-first-course", "ipsrt-preventive-first"},
        ShippedScenario{"maintenance-cadence", "ipsrt-preventive-first"},
        ShippedScenario{"bedtime-drift", "ipsrt-standard"}),
    [](const ::testing::TestParamInfo<ShippedScenario>& info) {
      std::string name = info.param.scenario;
      for (char& c : name) {
        if (c == '-') c = '_';
      }
      return name;
    });

TEST(ReportTest, NoResponsesRendersEmptyChartsThatSaySo) {
  TempDir dir;
  ASSERT_TRUE(WriteFile(dir.File("empty.yaml"),
                        "patient:\n  time_zone: Europe/London\n"
                        "  start: 2026-03-02T09:00\n"
                        "events: []\n")
                  .ok());
  const std::string html = dir.File("empty.html");
  ProcessResult r = RunCliNoServer(
      {"simulate", Workflow("ipsrt-standard"),
       absl::StrCat("--scenario=", dir.File("empty.yaml")), "--report", html});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  Browser b = Open(html, "no-responses");
  CheckRendered(b);
  EXPECT_EQ(Count(b.dom, "data-point=\""), 0);
  for (const char* text :
       {"No PHQ-9 (depression) recorded yet", "No GAD-7 (anxiety) recorded yet",
        "No ASRM (mania) recorded yet", "No SRM score recorded yet",
        "No diary times for to_bed yet", "No alerts raised.",
        "No goal set yet.", "No relapse-prevention plan written yet."}) {
    EXPECT_THAT(b.dom, HasSubstr(text));
  }
}

// Free text everywhere a person can type it, trying to run script.
constexpr char kHostile[] =
    R"(<script>document.title='pwned'</script><img src=x onerror="document.title='pwned'">" ' &amp;)";

std::string YamlQuoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

TEST(ReportTest, FreeTextIsEscapedAndRunsNothing) {
  TempDir dir;
  const std::string t = YamlQuoted(kHostile);
  ASSERT_TRUE(
      WriteFile(
          dir.File("hostile.yaml"),
          absl::StrCat(
              "patient:\n  time_zone: Europe/London\n"
              "  start: 2026-03-02T09:00\n  patient_ref: ",
              t, "\n  clinician_ref: ", t,
              "\nevents:\n"
              "  - at: \"+0d 10:00\"\n    session_held: {note: ",
              t,
              "}\n"
              "  - at: \"+0d 11:00\"\n    task_completed: {task: history, "
              "note: ",
              t,
              "}\n"
              "  - at: \"+1d 18:00\"\n"
              "    questionnaire: {id: phq9, answers: {1: 1, 2: 1, 3: 1, 4: 1, "
              "5: 1, 6: 0, 7: 0, 8: 0, 9: 1}}\n"
              "  - after: PT1H\n    alert_acknowledged: {latest: phq9-item9, "
              "note: ",
              t,
              "}\n"
              // The problem area is a checked list, not free text.
              "  - at: \"+2d 10:00\"\n    goal_set: {problem_area: "
              "role_dispute, description: ",
              t, ", target: ", t,
              "}\n"
              "  - at: \"+2d 11:00\"\n    disruption_plan: {kind: ",
              t, ", plan: ", t,
              "}\n"
              "  - at: \"+3d 10:00\"\n    relapse_plan: {early_warning_signs: "
              "[",
              t, "], triggers: [", t, "], coping_strategies: [", t,
              "], supports: [", t, "], professional_contacts: [", t,
              "]}\n"
              "  - at: \"+4d 10:00\"\n    stage_change: {to: intermediate, "
              "reason: ",
              t, "}\n"))
          .ok());
  const std::string html = dir.File("hostile.html");
  ProcessResult r =
      RunCliNoServer({"simulate", Workflow("ipsrt-standard"),
                      absl::StrCat("--scenario=", dir.File("hostile.yaml")),
                      "--report", html});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  Browser b = Open(html, "hostile-text");
  CheckRendered(b);
  // No element came from the text (the serialized DOM would show them as
  // tags; text keeps its quotes, so onerror=" appears only inside text).
  EXPECT_FALSE(absl::StrContains(b.dom, "<script"));
  EXPECT_FALSE(absl::StrContains(b.dom, "<img"));
  EXPECT_FALSE(absl::StrContains(b.dom, "<title>pwned"));
  // The text is shown as text, in every field (14 of them).
  EXPECT_GE(Count(b.dom, "&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
            14);
}

// ---------------------------------------------------------------- server

TEST(ReportTest, RenderReportOverGrpcIsAReadOfTheEnrollment) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
      Ipsrtd::Start(WriteConfig(dir));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  ProcessResult created =
      RunCli(address, {"enroll", "--tenant=clinic-a", "--patient=Patient/r-1",
                       "--workflow=ipsrt-standard", "--time_zone=Europe/Paris",
                       "--clinician=Practitioner/9", "--request_id=report-1"});
  ASSERT_EQ(created.exit_code, 0) << Describe(created);
  std::string name = created.out.substr(created.out.find("tenants/"));
  name = name.substr(0, name.find_first_of(" \n"));

  const std::string html = dir.File("course.html");
  ProcessResult report = RunCli(address, {"report", name, "-o", html});
  ASSERT_EQ(report.exit_code, 0) << Describe(report);
  Browser b = Open(html, "server-enrollment");
  CheckRendered(b);
  EXPECT_THAT(b.dom, HasSubstr("Patient/r-1"));
  EXPECT_THAT(b.dom, HasSubstr("Initial stage (intake) (initial)"));
  EXPECT_THAT(b.dom, HasSubstr("weekly (P1W)"));
  EXPECT_THAT(b.dom, Not(HasSubstr("Simulated course")));

  // The same id in another tenant: NOT_FOUND, and no file written.
  const std::string id = name.substr(name.rfind('/') + 1);
  const std::string other = dir.File("other.html");
  ProcessResult refused = RunCli(
      address, {"report", absl::StrCat("tenants/clinic-b/enrollments/", id),
                "-o", other});
  EXPECT_EQ(refused.exit_code, 1) << Describe(refused);
  EXPECT_THAT(refused.err, HasSubstr("error: NOT_FOUND: enrollment"));
  EXPECT_FALSE(std::filesystem::exists(other));

  ProcessResult missing_output = RunCli(address, {"report", name});
  EXPECT_EQ(missing_output.exit_code, 2) << Describe(missing_output);

  // Audited as a read of the enrollment.
  ProcessResult audit = RunCli(address, {"audit", "list"});
  ASSERT_EQ(audit.exit_code, 0) << Describe(audit);
  EXPECT_THAT(audit.out,
              HasSubstr(absl::StrCat("/ipsrt.v1.ReportService/RenderReport ",
                                     name, " OK")));
  EXPECT_THAT(audit.out, HasSubstr("/ipsrt.v1.ReportService/RenderReport "
                                   "tenants/clinic-b/enrollments/"));
}

}  // namespace
}  // namespace ipsrt::e2e
