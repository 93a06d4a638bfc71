// End-to-end tests of ipsrt's offline tools (validate, graph, simulate):
// the built binary on the shipped templates and tests/scenarios, no server.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using ::google::protobuf::ListValue;
using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const std::string kStandard =
    absl::StrCat(IPSRT_WORKFLOWS_DIR, "/ipsrt-standard.yaml");
const std::string kPreventiveFirst =
    absl::StrCat(IPSRT_WORKFLOWS_DIR, "/ipsrt-preventive-first.yaml");

std::string Scenario(const std::string& name) {
  return absl::StrCat(IPSRT_SCENARIOS_DIR, "/", name);
}

std::string Describe(const ProcessResult& r) {
  return absl::StrCat("exit_code=", r.exit_code, " signal=", r.term_signal,
                      " timed_out=", r.timed_out, "\nstdout:\n",
                      r.out.substr(0, 4000), "\nstderr:\n", r.err);
}

// ParseDocument reads one JSON document (object or array) into a Value.
Value ParseDocument(const std::string& json) {
  Value value;
  auto status = google::protobuf::util::JsonStringToMessage(json, &value);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json.substr(0, 2000);
  return value;
}

const std::string& Str(const Struct& s, const std::string& key) {
  static const std::string kEmpty;
  auto it = s.fields().find(key);
  return it == s.fields().end() ? kEmpty : it->second.string_value();
}

// Outcome is one outcome of a simulated event, with the event's sequence.
struct Outcome {
  double sequence;
  std::string kind, from, to, subject, reason;
};

std::vector<Outcome> Outcomes(const Struct& doc) {
  std::vector<Outcome> out;
  for (const Value& e : doc.fields().at("events").list_value().values()) {
    const Struct& event = e.struct_value();
    for (const Value& o : event.fields().at("outcomes").list_value().values()) {
      const Struct& s = o.struct_value();
      out.push_back({event.fields().at("sequence").number_value(),
                     Str(s, "kind"), Str(s, "from"), Str(s, "to"),
                     Str(s, "subject"), Str(s, "reason")});
    }
  }
  return out;
}

std::vector<Outcome> OfKind(const std::vector<Outcome>& all,
                            const std::string& kind) {
  std::vector<Outcome> out;
  std::copy_if(all.begin(), all.end(), std::back_inserter(out),
               [&](const Outcome& o) { return o.kind == kind; });
  return out;
}

// Simulate runs `ipsrt simulate --json` and returns the document.
Struct Simulate(const std::string& workflow, const std::string& scenario) {
  ProcessResult r = RunCliNoServer(
      {"simulate", workflow, absl::StrCat("--scenario=", scenario), "--json"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  return ParseDocument(r.out).struct_value();
}

// ---------------------------------------------------------------- validate

// As files, and as their directory (as ipsrtd loads them).
TEST(ValidateTest, ShippedTemplatesAreValid) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"validate", kStandard, kPreventiveFirst},
        std::vector<std::string>{"validate", IPSRT_WORKFLOWS_DIR}}) {
    ProcessResult r = RunCliNoServer(args);
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                           kStandard, ": ok (ipsrt-standard@1, 4 stages)\n")));
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                           kPreventiveFirst,
                           ": ok (ipsrt-preventive-first@1, 4 stages)\n")));
  }
}

TEST(ValidateTest, BrokenTemplateReportsEveryFindingWithItsPosition) {
  TempDir dir;
  const std::string file = dir.File("broken.yaml");
  ASSERT_TRUE(WriteFile(file,
                        "id: broken\n"
                        "version: 1\n"
                        "title: Broken\n"
                        "stages:\n"
                        "  - id: initial\n"
                        "    title: Intake\n"
                        "    cadence: P1W\n"
                        "    colour: blue\n"
                        "    exit:\n"
                        "      - to: final\n"
                        "        when: phq9.totl >= 10\n")
                  .ok());
  ProcessResult r = RunCliNoServer({"validate", kStandard, file});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(kStandard, ": ok")));
  EXPECT_THAT(r.out,
              HasSubstr(absl::StrCat(
                  file,
                  ":8:5: error: stages[0].colour: unknown key \"colour\" "
                  "(allowed: id, title, description, cadence, tasks, exit, "
                  "rules, open_ended)\n")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                         file,
                         ":10:13: error: stages[0].exit[0].to: unknown stage "
                         "\"final\"\n")));
  EXPECT_THAT(r.out,
              HasSubstr(absl::StrCat(
                  file,
                  ":11:15: error: stages[0].exit[0].when: unknown identifier "
                  "\"phq9.totl\"; did you mean \"phq9.total\"?\n")));

  r = RunCliNoServer({"validate", "--json", file});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  Value doc = ParseDocument(r.out);
  ASSERT_EQ(doc.list_value().values_size(), 1);
  const Struct& result = doc.list_value().values(0).struct_value();
  EXPECT_EQ(Str(result, "file"), file);
  EXPECT_FALSE(result.fields().at("valid").bool_value());
  const ListValue& diagnostics = result.fields().at("diagnostics").list_value();
  ASSERT_EQ(diagnostics.values_size(), 3);
  const Struct& first = diagnostics.values(0).struct_value();
  EXPECT_EQ(first.fields().at("line").number_value(), 8);
  EXPECT_EQ(first.fields().at("column").number_value(), 5);
  EXPECT_EQ(Str(first, "path"), "stages[0].colour");
  EXPECT_EQ(Str(first, "message"),
            "unknown key \"colour\" (allowed: id, title, description, "
            "cadence, tasks, exit, rules, open_ended)");
}

TEST(ValidateTest, UnreadableFileIsAFindingAndNoFileIsAUsageError) {
  TempDir dir;
  const std::string missing = dir.File("missing.yaml");
  ProcessResult r = RunCliNoServer({"validate", missing});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_EQ(r.out, absl::StrCat(missing,
                                ": error: cannot read the file: No such file "
                                "or directory\n"));

  r = RunCliNoServer({"validate"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("'ipsrt validate' takes at least 1 argument"));
}

// Files are checked together, as ipsrtd loads them: two files with the same
// id@version pass one by one but not as a set (issue #14).
TEST(ValidateTest, SameIdAndVersionInTwoFilesIsAnError) {
  TempDir dir;
  absl::StatusOr<std::string> text = ReadFile(kStandard);
  ASSERT_TRUE(text.ok()) << text.status();
  const std::string a = dir.File("a.yaml");
  const std::string b = dir.File("b.yaml");
  ASSERT_TRUE(WriteFile(a, *text).ok());
  ASSERT_TRUE(WriteFile(b, *text).ok());
  const std::string expected = absl::StrCat(
      b, ":5:1: error: id: workflow ipsrt-standard@1 is already defined in ", a,
      ":5:1 (each id@version once; give the new one another version)\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"validate", a, b},
        std::vector<std::string>{"validate", dir.path()}}) {
    ProcessResult r = RunCliNoServer(args);
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr(expected)) << Describe(r);
  }
}

TEST(ValidateTest, ADirectoryWithoutTemplatesIsAFinding) {
  TempDir empty;
  ProcessResult r = RunCliNoServer({"validate", empty.path()});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_EQ(r.out, absl::StrCat(empty.path(),
                                ": error: the directory has no *.yaml file\n"));
}

// ---------------------------------------------------------------- graph

TEST(GraphTest, DotHasEveryStageAndEdge) {
  ProcessResult r = RunCliNoServer({"graph", kStandard, "--raw"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("digraph \"ipsrt-standard@1\" {\n"));
  EXPECT_THAT(r.out, HasSubstr("  \"initial\" [label=\"initial\\nInitial "
                               "stage (intake)\\ncadence P1W\"];\n"));
  for (const char* stage : {"intermediate", "final", "maintenance"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("  \"", stage, "\" [label=\"",
                                              stage, "\\n")));
  }
  EXPECT_THAT(r.out, HasSubstr("  \"maintenance\" [label=\"maintenance\\n"
                               "Maintenance\\ncadence P2W\"];\n"));
  EXPECT_THAT(r.out, HasSubstr("  \"__start__\" -> \"initial\";\n"));
  // Conditions in canonical form, quotes escaped.
  EXPECT_THAT(r.out,
              HasSubstr("  \"intermediate\" -> \"final\" [label=\"((goal.set "
                        "&& tasks.done(\\\"disruption-plan\\\")) && "
                        "(stage.sessions >= 10))\"];\n"));
  EXPECT_THAT(r.out, HasSubstr("  \"final\" -> \"maintenance\" "
                               "[label=\"(relapse_plan.written && "
                               "(stage.sessions >= 2))\"];\n"));
  EXPECT_THAT(r.out, HasSubstr("  \"initial\" -> \"intermediate\" "
                               "[label=\"((((((tasks.done(\\\"history\\\")"));
  EXPECT_TRUE(r.out.ends_with("}\n")) << r.out;
}

TEST(GraphTest, MermaidHasEveryStageAndEdgeWithEntityEscapes) {
  ProcessResult r =
      RunCliNoServer({"graph", kPreventiveFirst, "--format=mermaid", "--raw"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_TRUE(r.out.starts_with("flowchart LR\n")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("  s0[\"initial<br/>Initial stage "
                               "(intake)<br/>cadence P1W\"]\n"));
  EXPECT_THAT(r.out, HasSubstr("  s1[\"intermediate<br/>"));
  EXPECT_THAT(r.out, HasSubstr("  s2[\"maintenance<br/>Maintenance "
                               "(preventive)<br/>cadence P1M\"]\n"));
  EXPECT_THAT(r.out, HasSubstr("  s3[\"final<br/>Final stage "
                               "(termination)<br/>cadence P2W\"]\n"));
  EXPECT_THAT(r.out, HasSubstr("  enrolled((enrolled)) --> s0\n"));
  EXPECT_THAT(r.out,
              HasSubstr("  s0 -->|\"((tasks.done(#quot;history#quot;) "
                        "#amp;#amp; tasks.done(#quot;baseline-phq9#quot;)) "
                        "#amp;#amp; (stage.sessions #gt;= 3))\"| s1\n"));
  EXPECT_THAT(r.out, HasSubstr("  s1 -->|\"(goal.set #amp;#amp; "
                               "(stage.sessions #gt;= 8))\"| s2\n"));
  EXPECT_THAT(r.out, HasSubstr("  s2 -->|\"(relapse_plan.written #amp;#amp; "
                               "(stage.days #gt;= 180))\"| s3\n"));
  // No raw quote may appear inside a label.
  EXPECT_THAT(r.out, Not(HasSubstr("(\"")));
}

TEST(GraphTest, RuleMoveIsADashedEdge) {
  TempDir dir;
  const std::string file = dir.File("moves.yaml");
  ASSERT_TRUE(WriteFile(file,
                        "id: moves\n"
                        "version: 2\n"
                        "title: Moves\n"
                        "stages:\n"
                        "  - id: a\n"
                        "    title: Stage \"A\"\n"
                        "    cadence: P1W\n"
                        "    exit:\n"
                        "      - to: b\n"
                        "        when: stage.sessions >= 4\n"
                        "  - id: b\n"
                        "    title: B\n"
                        "    cadence: P2W\n"
                        "    exit:\n"
                        "      - to: c\n"
                        "        when: relapse_plan.written\n"
                        "    rules:\n"
                        "      - id: crisis\n"
                        "        on: questionnaire:phq9\n"
                        "        when: phq9.total >= 20\n"
                        "        then:\n"
                        "          - move_to: a\n"
                        "  - id: c\n"
                        "    title: C\n"
                        "    cadence: P1M\n")
                  .ok());
  ProcessResult r = RunCliNoServer({"graph", file, "--raw"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("  \"a\" [label=\"a\\nStage \\\"A\\\"\\n"
                               "cadence P1W\"];\n"));
  EXPECT_THAT(r.out, HasSubstr("  \"a\" -> \"b\" [label=\"(stage.sessions "
                               ">= 4)\"];\n"));
  EXPECT_THAT(r.out, HasSubstr("  \"b\" -> \"c\" "
                               "[label=\"relapse_plan.written\"];\n"));
  EXPECT_THAT(r.out, HasSubstr("  \"b\" -> \"a\" [label=\"rule crisis\", "
                               "style=dashed];\n"));

  r = RunCliNoServer({"graph", file, "--format=mermaid", "--raw"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("  s0[\"a<br/>Stage #quot;A#quot;<br/>cadence "
                               "P1W\"]\n"));
  EXPECT_THAT(r.out, HasSubstr("  s1 -.->|\"rule crisis\"| s0\n"));
}

TEST(GraphTest, InvalidTemplateAndBadFormat) {
  TempDir dir;
  const std::string file = dir.File("bad.yaml");
  ASSERT_TRUE(
      WriteFile(file, "id: bad\nversion: 1\nstages: []\nextra: 1\n").ok());
  ProcessResult r = RunCliNoServer({"graph", file});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(file,
                                            ":4:1: error: extra: "
                                            "unknown key \"extra\"")));

  r = RunCliNoServer({"graph", kStandard, "--format=png"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err,
              HasSubstr("--format must be dot, mermaid or svg, not \"png\""));
  r = RunCliNoServer({"graph", kStandard, "--format=svg", "--raw"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
}

TEST(GraphTest, ClinicianDrawingHasTasksRulesAndSourceText) {
  ProcessResult r = RunCliNoServer({"graph", kStandard});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("digraph \"ipsrt-standard@1\" {\n"));
  EXPECT_THAT(r.out, HasSubstr("rankdir=TB;"));
  // Stage boxes: title, cadence, a short task list.
  EXPECT_THAT(r.out, HasSubstr("<B>Initial stage (intake)</B>"));
  EXPECT_THAT(r.out, HasSubstr("initial - sessions every P1W"));
  EXPECT_THAT(r.out, HasSubstr("- History of mood episodes and treatments"));
  EXPECT_THAT(r.out, HasSubstr("+ 3 more tasks"));
  // Exits in the author's words, wrapped, not bracketed.
  EXPECT_THAT(r.out,
              HasSubstr("\"intermediate\" -> \"final\" [label=<goal.set "
                        "&amp;&amp;<BR ALIGN=\"LEFT\"/>tasks.done(&quot;"
                        "disruption-plan&quot;) &amp;&amp;<BR ALIGN=\"LEFT\"/>"
                        "stage.sessions &gt;= 10<BR ALIGN=\"LEFT\"/>>];\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("((")));
  // Rules that change cadence or raise alerts sit in their stage; the
  // urgent item-9 alert is marked.
  EXPECT_THAT(r.out, HasSubstr("Rule early-warning: when"));
  EXPECT_THAT(r.out, HasSubstr("-&gt; sessions every P1W"));
  EXPECT_THAT(r.out, HasSubstr("otherwise -&gt; sessions back to the"));
  EXPECT_THAT(r.out, HasSubstr("<B>In every stage</B>"));
  EXPECT_THAT(r.out, HasSubstr("-&gt; URGENT alert: PHQ-9 item 9"));

  r = RunCliNoServer({"graph", kStandard, "--format=svg"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_TRUE(r.out.starts_with("<svg")) << r.out.substr(0, 200);
  EXPECT_THAT(r.out, HasSubstr(">Maintenance</text>"));
  EXPECT_THAT(r.out, HasSubstr("</svg>"));

  r = RunCliNoServer({"graph", kStandard, "--format=mermaid"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_TRUE(r.out.starts_with("flowchart TB\n")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("s2 -->|\"relapse_plan.written #amp;#amp; "
                               "stage.sessions<br/>#gt;= 2\"| s3\n"));
}

// ---------------------------------------------------------------- diff

TEST(DiffTest, ListsChangesInClinicalTerms) {
  TempDir dir;
  absl::StatusOr<std::string> v1 = ReadFile(kStandard);
  ASSERT_TRUE(v1.ok());
  std::string v2 = absl::StrReplaceAll(
      *v1, {{"version: 1", "version: 2"},
            {"    cadence: P2W", "    cadence: P4W"},
            {"when: srm.to_bed.shift_minutes > 60 || "
             "srm.to_bed.shift_minutes < -60",
             "when: >-\n          srm.to_bed.shift_minutes > 90 ||\n"
             "          srm.to_bed.shift_minutes < -90"},
            {"        remind_at: \"20:00\"", "        remind_at: \"21:00\""},
            {"      - id: baseline-gad7\n", "      - id: baseline-gad-7\n"}});
  ASSERT_TRUE(WriteFile(dir.File("v2.yaml"), v2).ok());
  ProcessResult r = RunCliNoServer({"diff", kStandard, dir.File("v2.yaml")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("ipsrt-standard@1 -> ipsrt-standard@2: "));
  EXPECT_THAT(r.out,
              HasSubstr("  stage maintenance: sessions every: P2W -> P4W\n"));
  EXPECT_THAT(
      r.out,
      HasSubstr("  stage initial: task baseline-gad7 removed "
                "(Baseline GAD-7, questionnaire gad7, for the patient, due "
                "P7D)\n"));
  EXPECT_THAT(r.out, HasSubstr("  stage initial: task baseline-gad-7 added"));
  EXPECT_THAT(
      r.out,
      HasSubstr("  stage initial: task srm-diary\n    was: "
                "Social Rhythm Metric diary, questionnaire "
                "srm5, for the patient, every P1D, reminder at 20:00\n    now: "
                "Social Rhythm Metric diary, questionnaire "
                "srm5, for the patient, every P1D, reminder at 21:00\n"));
  EXPECT_THAT(r.out, HasSubstr("  rule bedtime-drift (stage maintenance): "
                               "condition\n    was: srm.to_bed.shift_minutes "
                               "> 60 || srm.to_bed.shift_minutes < -60\n    "
                               "now: srm.to_bed.shift_minutes > 90 || "
                               "srm.to_bed.shift_minutes < -90\n"));
  // Re-wrapping alone is no change.
  ProcessResult same = RunCliNoServer({"diff", kStandard, kStandard});
  EXPECT_EQ(same.exit_code, 0);
  EXPECT_EQ(same.out, "ipsrt-standard@1 -> ipsrt-standard@1: 0 change(s)\n");
}

// ---------------------------------------------------------------- simulate

TEST(SimulateTest, StandardCourseWalksEveryStageAndTheEarlyWarningRule) {
  Struct doc = Simulate(kStandard, Scenario("standard-course.yaml"));
  EXPECT_EQ(Str(doc.fields().at("workflow").struct_value(), "id"),
            "ipsrt-standard");
  const std::vector<Outcome> all = Outcomes(doc);

  std::vector<std::string> stages = {"initial"};
  for (const Outcome& o : OfKind(all, "STAGE_CHANGED")) {
    EXPECT_EQ(o.from, stages.back());
    stages.push_back(o.to);
  }
  EXPECT_THAT(stages,
              ElementsAre("initial", "intermediate", "final", "maintenance"));

  // Cadence: P2W on entering maintenance, P1W on the PHQ-9 of total 12,
  // P2W again once the sign has stayed clear for two whole weeks (at a
  // daily tick).
  const std::vector<Outcome> cadences = OfKind(all, "CADENCE_CHANGED");
  ASSERT_EQ(cadences.size(), 3u);
  EXPECT_EQ(cadences[0].reason, "stage maintenance");
  EXPECT_EQ(cadences[0].to, "P2W");
  EXPECT_EQ(cadences[1].from, "P2W");
  EXPECT_EQ(cadences[1].to, "P1W");
  EXPECT_EQ(cadences[1].reason, "rule early-warning");
  EXPECT_EQ(cadences[2].from, "P1W");
  EXPECT_EQ(cadences[2].to, "P2W");
  EXPECT_EQ(cadences[2].reason, "rule early-warning");

  const auto& events = doc.fields().at("events").list_value().values();
  auto event = [&](double sequence) -> const Struct& {
    return events[static_cast<int>(sequence) - 1].struct_value();
  };
  const Struct& worse = event(cadences[1].sequence);
  EXPECT_EQ(Str(worse, "type"), "questionnaire.responded");
  EXPECT_EQ(worse.fields()
                .at("scores")
                .struct_value()
                .fields()
                .at("phq9.total")
                .number_value(),
            12);
  EXPECT_EQ(Str(worse, "band"), "moderate");
  EXPECT_EQ(Str(worse, "stage"), "maintenance");
  EXPECT_EQ(Str(worse, "session_cadence"), "P1W");
  EXPECT_EQ(Str(event(cadences[2].sequence), "type"), "time.elapsed");

  // Alerts: the urgent item-9 alert and the early-warning alert, each
  // raised once and acknowledged.
  const std::vector<Outcome> raised = OfKind(all, "ALERT_RAISED");
  ASSERT_EQ(raised.size(), 2u);
  const Outcome& item9 = raised[0];
  EXPECT_EQ(item9.subject,
            absl::StrCat("phq9-item9-", static_cast<int>(item9.sequence)));
  EXPECT_EQ(item9.to, "urgent");
  EXPECT_EQ(item9.reason, "rule phq9-item9");
  const Struct& item9_event = event(item9.sequence);
  EXPECT_EQ(Str(item9_event, "stage"), "intermediate");
  ASSERT_EQ(item9_event.fields().at("flags").list_value().values_size(), 1);
  EXPECT_EQ(
      item9_event.fields().at("flags").list_value().values(0).string_value(),
      "phq9.item9_positive");
  const Outcome& early = raised[1];
  EXPECT_EQ(early.sequence, cadences[1].sequence);
  EXPECT_EQ(early.subject,
            absl::StrCat("early-warning-", static_cast<int>(early.sequence)));
  EXPECT_EQ(early.to, "routine");

  const std::vector<Outcome> acknowledged = OfKind(all, "ALERT_ACKNOWLEDGED");
  ASSERT_EQ(acknowledged.size(), 2u);
  EXPECT_EQ(acknowledged[0].subject, item9.subject);
  EXPECT_GT(acknowledged[0].sequence, item9.sequence);
  EXPECT_EQ(acknowledged[1].subject, early.subject);

  const Struct& final_state = doc.fields().at("final").struct_value();
  EXPECT_EQ(Str(final_state, "stage"), "maintenance");
  EXPECT_EQ(Str(final_state, "session_cadence"), "P2W");
  EXPECT_EQ(final_state.fields().at("revision").number_value(), events.size());
  EXPECT_GT(doc.fields().at("elapsed_ms").number_value(), 0);
}

// Scenarios are read through the same hardened YAML entry point as
// templates: a tag, a second document or a self-referencing alias is a
// located error, never a silently different course.
TEST(SimulateTest, ScenarioYamlIsHeldToTheSameRules) {
  TempDir dir;
  const std::string head =
      "workflow: ipsrt-standard\n"
      "patient:\n"
      "  time_zone: America/New_York\n"
      "  start: \"2026-02-26T09:00\"\n";
  struct Case {
    std::string body;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {"  patient_ref: !ref Patient/1\n",
            ":5:16: error: patient.patient_ref: YAML tag \"!ref\" is not "
            "allowed"},
           {"---\nworkflow: other\n",
            ":5:1: error: a second YAML document (after ---) is not allowed"},
           {"  clinician_ref: &a [*a]\n",
            ":5:22: error: patient.clinician_ref[0]: alias *a refers to the "
            "node that contains it"},
           {"  patient_ref: \"Patient/Mu\xf1oz\"\n",
            ":5:27: error: byte 0xF1 is not valid UTF-8"}}) {
    const std::string file = dir.File("scenario.yaml");
    ASSERT_TRUE(WriteFile(file, head + c.body).ok());
    ProcessResult r = RunCliNoServer(
        {"simulate", kStandard, absl::StrCat("--scenario=", file)});
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.out + r.err, HasSubstr(file + c.expected)) << Describe(r);
  }
}

TEST(SimulateTest, HumanTimelineShowsLocalAndUtcTimes) {
  ProcessResult r = RunCliNoServer(
      {"simulate", kStandard,
       absl::StrCat("--scenario=", Scenario("standard-course.yaml"))});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  // 20:00 in New York is 01:00 UTC before clocks go forward on 8 March and
  // 00:00 UTC after.
  EXPECT_THAT(r.out, HasSubstr("    reminder scheduled  initial.srm-diary#1  "
                               "at 2026-03-02T20:00 (-05:00) = 2026-03-03 "
                               "01:00 UTC\n"));
  EXPECT_THAT(r.out, HasSubstr("    reminder scheduled  initial.srm-diary#7  "
                               "at 2026-03-08T20:00 (-04:00) = 2026-03-09 "
                               "00:00 UTC\n"));
  EXPECT_THAT(r.out, HasSubstr("    stage changed       final -> maintenance "
                               "(exit condition of final)\n"));
  EXPECT_THAT(r.out, HasSubstr("\nfinal: stage maintenance, cadence P2W, "
                               "ACTIVE, revision "));
  EXPECT_THAT(r.err, HasSubstr("simulated "));
  EXPECT_THAT(r.err, HasSubstr(" events in "));
}

TEST(SimulateTest, PreventiveFirstCourseReachesFinal) {
  Struct doc =
      Simulate(kPreventiveFirst, Scenario("preventive-first-course.yaml"));
  std::vector<std::string> stages = {"initial"};
  std::vector<std::string> reasons;
  for (const Outcome& o : OfKind(Outcomes(doc), "STAGE_CHANGED")) {
    stages.push_back(o.to);
    reasons.push_back(o.reason);
  }
  EXPECT_THAT(stages,
              ElementsAre("initial", "intermediate", "maintenance", "final"));
  EXPECT_THAT(reasons, ElementsAre("exit condition of initial",
                                   "exit condition of intermediate",
                                   "exit condition of maintenance"));
  const Struct& final_state = doc.fields().at("final").struct_value();
  EXPECT_EQ(Str(final_state, "stage"), "final");
  EXPECT_EQ(Str(final_state, "session_cadence"), "P2W");
}

TEST(SimulateTest, YearLongCourse) {
  Struct doc = Simulate(kStandard, Scenario("year-long.yaml"));
  const int events = doc.fields().at("events").list_value().values_size();
  const double elapsed_ms = doc.fields().at("elapsed_ms").number_value();
  EXPECT_GE(events, 450);
  EXPECT_GT(elapsed_ms, 0);
  EXPECT_EQ(Str(doc.fields().at("final").struct_value(), "stage"),
            "maintenance");
  RecordProperty("events", events);
  RecordProperty("elapsed_ms", absl::StrCat(elapsed_ms));
  std::cout << "year-long simulation: " << events << " events in " << elapsed_ms
            << " ms\n";
}

TEST(SimulateTest, UnknownScenarioKeyIsReportedWithItsPosition) {
  TempDir dir;
  const std::string file = dir.File("typo.yaml");
  ASSERT_TRUE(WriteFile(file,
                        "patient: {time_zone: Europe/London, start: "
                        "\"2026-01-05T09:00\"}\n"
                        "events:\n"
                        "  - at: \"+1d 10:00\"\n"
                        "    session_held: {durattion_minutes: 50}\n")
                  .ok());
  ProcessResult r = RunCliNoServer(
      {"simulate", kStandard, absl::StrCat("--scenario=", file), "--json"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_EQ(r.err, absl::StrCat(file,
                                ":4:20: error: events[0].session_held."
                                "durattion_minutes: unknown key "
                                "\"durattion_minutes\" (allowed: "
                                "duration_minutes, note)\n"));
}

TEST(SimulateTest, RefusedEventIsReportedWithItsPosition) {
  TempDir dir;
  const std::string file = dir.File("refused.yaml");
  ASSERT_TRUE(WriteFile(file,
                        "patient: {time_zone: Europe/London, start: "
                        "\"2026-01-05T09:00\"}\n"
                        "events:\n"
                        "  - at: \"+1d 10:00\"\n"
                        "    session_held: {}\n"
                        "  - after: PT1H\n"
                        "    stage_change: {to: final}\n"
                        "  - at: \"+2d 10:00\"\n"
                        "    session_held: {}\n")
                  .ok());
  ProcessResult r = RunCliNoServer(
      {"simulate", kStandard, absl::StrCat("--scenario=", file)});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_EQ(r.err, absl::StrCat(file,
                                ":5:5: error: events[1]: "
                                "event.stage_change.reason: a clinician's "
                                "stage change needs a reason\n"));
  // The timeline up to the refused event is still shown.
  EXPECT_THAT(r.out, HasSubstr("#2  2026-01-06 10:00 UTC  2026-01-06T10:00 "
                               "(+00:00)  session.held  [initial, P1W]"));
  EXPECT_THAT(r.out, Not(HasSubstr("#3 ")));
}

TEST(SimulateTest, UnmetExpectationIsAFinding) {
  TempDir dir;
  const std::string file = dir.File("expect.yaml");
  ASSERT_TRUE(WriteFile(file,
                        "workflow: ipsrt-standard\n"
                        "patient: {time_zone: Europe/London, start: "
                        "\"2026-01-05T09:00\"}\n"
                        "events:\n"
                        "  - at: \"+1d 10:00\"\n"
                        "    session_held: {}\n"
                        "    expect: {stage: intermediate}\n")
                  .ok());
  ProcessResult r = RunCliNoServer(
      {"simulate", kStandard, absl::StrCat("--scenario=", file)});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_EQ(r.err, absl::StrCat(file,
                                ":4:5: error: events[0]: expect.stage: "
                                "expected stage \"intermediate\", but the "
                                "enrollment is in stage \"initial\"\n"));

  r = RunCliNoServer(
      {"simulate", kPreventiveFirst, absl::StrCat("--scenario=", file)});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_EQ(r.err, absl::StrCat(file,
                                ": error: workflow: the scenario is written "
                                "for \"ipsrt-standard\", not "
                                "\"ipsrt-preventive-first\"\n"));
}

TEST(SimulateTest, ScenarioFlagIsRequired) {
  ProcessResult r = RunCliNoServer({"simulate", kStandard});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("missing required flag --scenario"));
}

// The rhythm analytics in a template rule: bedtime-drift (ipsrt-standard,
// maintenance) fires once, on the 13th diary day, when the habitual
// bedtime has moved from 23:00 to 00:15 (+75 minutes across midnight).
TEST(SimulateTest, BedtimeDriftRuleUsesTheWeeklyShift) {
  Struct doc = Simulate(kStandard, Scenario("bedtime-drift.yaml"));
  const std::vector<Outcome> raised = OfKind(Outcomes(doc), "ALERT_RAISED");
  ASSERT_EQ(raised.size(), 1u);
  EXPECT_TRUE(raised[0].subject.starts_with("bedtime-drift-"))
      << raised[0].subject;
  EXPECT_EQ(raised[0].reason, "rule bedtime-drift");
  int diary_days = 0;
  for (const Value& v : doc.fields().at("events").list_value().values()) {
    const Struct& e = v.struct_value();
    if (Str(e, "type") != "srm.diary_day") continue;
    ++diary_days;
    const auto& scores = e.fields().at("scores").struct_value().fields();
    if (e.fields().at("sequence").number_value() != raised[0].sequence) {
      continue;
    }
    EXPECT_EQ(diary_days, 13);
    EXPECT_DOUBLE_EQ(scores.at("srm.to_bed.shift_minutes").number_value(), 75);
    // The JSON carries 6 significant digits.
    EXPECT_NEAR(scores.at("srm.to_bed.hit_rate").number_value(), 6.0 / 7, 1e-5);
    EXPECT_DOUBLE_EQ(scores.at("srm.dinner.shift_minutes").number_value(), 0);
  }
  EXPECT_EQ(diary_days, 14);
}

}  // namespace
}  // namespace ipsrt::e2e
