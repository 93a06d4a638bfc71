#include "cli/tools.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "cli/scenario.h"
#include "cli/stage_graph.h"
#include "cli/workflow_diff.h"
#include "common/files.h"
#include "common/json_string.h"
#include "core/enrollments.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/config.h"
#include "ipsrt/status_macros.h"
#include "model/instrument_context.h"
#include "model/workflow.h"
#include "plugin_host/registry.h"
#include "report/course_report.h"
#include "report/workflow_graph.h"
#include "runtime/step.h"

ABSL_DECLARE_FLAG(bool, json);

ABSL_FLAG(std::string, format, "dot",
          "graph: \"dot\" (Graphviz), \"mermaid\" (Mermaid flowchart) or "
          "\"svg\" (drawn by Graphviz dot). "
          "export: a format of the server's exporter plugins, e.g. "
          "fhir-r4-collection (bulk: fhir-r4-resources by default).");
ABSL_FLAG(std::string, config, "",
          "An ipsrtd configuration file. validate: its questionnaire plugins "
          "are loaded and templates are checked against their instruments "
          "(without it: the built-in instruments). store init, store check: "
          "the store it configures.");
ABSL_FLAG(bool, check, false,
          "simulate: check every expect of the scenario without stopping at "
          "the first unmet one; print only the unmet ones and a summary.");
ABSL_FLAG(std::string, scenario, "",
          "Scenario file: the patient's course as YAML (see "
          "workflows/scenarios.md).");

ABSL_FLAG(bool, raw, false,
          "graph: the machine form (canonical conditions, one edge per exit "
          "and rule move) instead of the clinician's drawing.");
ABSL_FLAG(std::string, report, "",
          "simulate: also write the simulated course as an HTML course "
          "report to this file.");

namespace ipsrt::cli {
namespace {

using ::google::protobuf::util::TimeUtil;

// MessageJson is protobuf JSON with the proto field names, every field
// present (the contract of cli/commands.h).
std::string MessageJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options)
           .ok()) {
    return "null";
  }
  return out;
}

// LoadTemplate reads and parses a template, printing its problems on
// stderr; nullopt after printing.
std::optional<WorkflowTemplate> LoadTemplate(const std::string& path) {
  absl::StatusOr<std::string> yaml = ReadFileToString(path);
  if (!yaml.ok()) {
    std::fprintf(stderr, "%s: error: cannot read the file: %s\n", path.c_str(),
                 std::string(yaml.status().message()).c_str());
    return std::nullopt;
  }
  absl::StatusOr<WorkflowTemplate> workflow =
      ParseWorkflowTemplate(*yaml, path);
  if (!workflow.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string(workflow.status().message()).c_str());
    return std::nullopt;
  }
  return *std::move(workflow);
}

// ---------------------------------------------------------------- validate

// ValidationInstruments is the instrument set templates are validated
// against: with --config, the instruments of the questionnaire plugins that
// configuration loads (as ipsrtd would load them); otherwise the built-in
// instruments.
absl::StatusOr<ModelContext> ValidationInstruments() {
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) return BuiltInModelContext();
  IPSRT_ASSIGN_OR_RETURN(Config config, LoadConfigFile(config_path));
  IPSRT_ASSIGN_OR_RETURN(
      std::unique_ptr<PluginRegistry> plugins,
      PluginRegistry::Load(config.plugins, DefaultPluginHostOptions()));
  IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<QuestionnaireCatalog> catalog,
                         QuestionnaireCatalog::Build(*plugins));
  return ModelContextFromInstruments(catalog->List());
}

// SafetyFloorLines says which safety floors apply to a valid template and
// how (for `validate`).
std::vector<std::string> SafetyFloorLines(const WorkflowTemplate& w) {
  std::vector<std::string> lines;
  for (const AppliedSafetyFloor& f : w.safety_floors) {
    lines.push_back(absl::StrCat(
        "safety floor ", f.floor.flag, " (", f.floor.instrument, "): ",
        f.refined_by.empty()
            ? absl::StrCat("the engine's urgent alert, acknowledge within ",
                           f.acknowledge_within.ToString())
            : absl::StrCat("refined by rule ",
                           absl::StrJoin(f.refined_by, ", "),
                           "; the engine's urgent alert (acknowledge within ",
                           f.acknowledge_within.ToString(),
                           ") when the rule does not fire")));
  }
  return lines;
}

// Diagnostics of one file of a validate run.
struct FileReport {
  std::string file;
  std::string summary;  // "id@version, N stages" when the file parsed
  std::vector<YamlDiagnostic> diagnostics;
  // Which safety floors apply and how (valid templates only).
  std::vector<std::string> floors;
};

int RunValidate(const ParsedArgs& args) {
  const bool json = absl::GetFlag(FLAGS_json);
  absl::StatusOr<ModelContext> context = ValidationInstruments();
  if (!context.ok()) {
    std::fprintf(stderr, "ipsrt validate: --config: %s\n",
                 std::string(context.status().message()).c_str());
    return kExitFailure;
  }
  // Files as ipsrtd reads them: a directory gives its *.yaml files.
  std::vector<FileReport> reports;
  std::vector<std::string> files;
  std::map<std::string, size_t> report_of;
  auto report = [&](const std::string& file) -> FileReport& {
    auto [it, inserted] = report_of.emplace(file, reports.size());
    if (inserted) reports.push_back(FileReport{file, "", {}, {}});
    return reports[it->second];
  };
  for (const std::string& path : args.positional) {
    absl::StatusOr<std::vector<std::string>> listed =
        WorkflowCatalog::TemplateFiles({path});
    if (!listed.ok()) {
      std::error_code ec;
      std::string why = std::filesystem::exists(path, ec)
                            ? absl::StrCat("cannot read the directory: ",
                                           listed.status().message())
                            : "cannot read the file: No such file or directory";
      report(path).diagnostics.push_back(YamlDiagnostic{path, 0, 0, "", why});
      continue;
    }
    if (listed->empty()) {
      report(path).diagnostics.push_back(
          YamlDiagnostic{path, 0, 0, "", "the directory has no *.yaml file"});
      continue;
    }
    for (const std::string& f : *listed) {
      if (!report_of.count(f)) files.push_back(f);
      report(f);
    }
  }
  // The set together, exactly as ipsrtd loads it.
  WorkflowCatalog::Loaded loaded =
      WorkflowCatalog::LoadFilesDiagnosed(files, *context);
  for (const YamlDiagnostic& d : loaded.diagnostics) {
    YamlDiagnostic shown = d;
    if (d.line == 0) {
      // Unreadable: the loader's message names the file; say it once.
      absl::string_view m = d.message;
      absl::ConsumePrefix(&m, absl::StrCat(d.file, ": "));
      shown.message = std::string(m);
    }
    report(d.file).diagnostics.push_back(std::move(shown));
  }
  if (loaded.catalog != nullptr) {
    for (const WorkflowTemplate* w : loaded.catalog->All()) {
      FileReport& r = report(w->source_file);
      r.summary = absl::StrCat(w->id, "@", w->version, ", ", w->stages.size(),
                               " stages");
      r.floors = SafetyFloorLines(*w);
    }
  }
  bool all_valid = true;
  Json json_files = Json::array();
  for (const FileReport& r : reports) {
    all_valid = all_valid && r.diagnostics.empty();
    if (json) {
      Json diagnostics = Json::array();
      for (const YamlDiagnostic& d : r.diagnostics) {
        diagnostics.push_back({{"line", d.line},
                               {"column", d.column},
                               {"path", d.path},
                               {"message", d.message}});
      }
      json_files.push_back({{"file", r.file},
                            {"valid", r.diagnostics.empty()},
                            {"diagnostics", std::move(diagnostics)},
                            {"safety_floors", r.floors}});
      continue;
    }
    if (r.diagnostics.empty()) {
      if (r.summary.empty()) {
        // The file is fine, but another file of the set is not.
        std::printf("%s: ok on its own (the set has errors)\n", r.file.c_str());
      } else {
        std::printf("%s: ok (%s)\n", r.file.c_str(), r.summary.c_str());
        for (const std::string& f : r.floors) std::printf("  %s\n", f.c_str());
      }
    }
    for (const YamlDiagnostic& d : r.diagnostics) {
      if (d.line == 0) {
        // No position: the file itself (unreadable).
        std::printf("%s: error: %s\n", r.file.c_str(), d.message.c_str());
      } else {
        std::printf("%s\n", d.ToString().c_str());
      }
    }
  }
  if (json) std::printf("%s\n", JsonText(json_files).c_str());
  return all_valid ? kExitOk : kExitFailure;
}

// ---------------------------------------------------------------- graph

int RunGraph(const ParsedArgs& args) {
  const std::string format = absl::GetFlag(FLAGS_format);
  const bool raw = absl::GetFlag(FLAGS_raw);
  if (format != "dot" && format != "mermaid" && format != "svg") {
    std::fprintf(stderr,
                 "ipsrt graph: --format must be dot, mermaid or svg, not "
                 "\"%s\"\nRun 'ipsrt graph --help' for usage.\n",
                 format.c_str());
    return kExitUsage;
  }
  if (raw && format == "svg") {
    return UsageError("graph", "--raw goes with --format dot or mermaid");
  }
  std::optional<WorkflowTemplate> workflow =
      LoadTemplate(args.positional.front());
  if (!workflow.has_value()) return kExitFailure;
  if (raw) {
    StageGraph graph = BuildStageGraph(*workflow);
    std::fputs(
        (format == "dot" ? RenderDot(graph) : RenderMermaid(graph)).c_str(),
        stdout);
    return kExitOk;
  }
  if (format == "mermaid") {
    std::fputs(report::RenderClinicianMermaid(*workflow).c_str(), stdout);
    return kExitOk;
  }
  const std::string dot = report::RenderClinicianDot(*workflow);
  if (format == "dot") {
    std::fputs(dot.c_str(), stdout);
    return kExitOk;
  }
  absl::StatusOr<std::string> svg = report::DotToSvg(dot);
  if (!svg.ok()) {
    std::fprintf(stderr, "error: %s: %s\n",
                 absl::StatusCodeToString(svg.status().code()).c_str(),
                 std::string(svg.status().message()).c_str());
    return kExitFailure;
  }
  std::fputs(svg->c_str(), stdout);
  return kExitOk;
}

// ---------------------------------------------------------------- diff

int RunDiff(const ParsedArgs& args) {
  std::optional<WorkflowTemplate> before = LoadTemplate(args.positional[0]);
  std::optional<WorkflowTemplate> after = LoadTemplate(args.positional[1]);
  if (!before.has_value() || !after.has_value()) return kExitFailure;
  std::vector<std::string> changes = DiffWorkflows(*before, *after);
  if (absl::GetFlag(FLAGS_json)) {
    const Json diff = {{"from", absl::StrCat(before->id, "@", before->version)},
                       {"to", absl::StrCat(after->id, "@", after->version)},
                       {"changes", changes}};
    std::printf("%s\n", JsonText(diff).c_str());
    return kExitOk;
  }
  std::printf("%s@%d -> %s@%d: %zu change(s)\n", before->id.c_str(),
              before->version, after->id.c_str(), after->version,
              changes.size());
  for (const std::string& c : changes) std::printf("  %s\n", c.c_str());
  return kExitOk;
}

// GraphSvgForReport draws the template for a course report; "" (with a
// note on stderr) when Graphviz is not available, so the report still
// renders without its workflow section.
std::string GraphSvgForReport(const WorkflowTemplate& workflow) {
  absl::StatusOr<std::string> svg =
      report::DotToSvg(report::RenderClinicianDot(workflow));
  if (!svg.ok()) {
    std::fprintf(stderr, "note: the report has no workflow graph: %s\n",
                 std::string(svg.status().message()).c_str());
    return "";
  }
  return *std::move(svg);
}

// ---------------------------------------------------------------- simulate

std::string Utc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M UTC", t, absl::UTCTimeZone());
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

// TimelinePrinter renders a simulation for people: one block per event.
class TimelinePrinter {
 public:
  explicit TimelinePrinter(absl::TimeZone zone) : zone_(zone) {}

  // Event prints one event; ticks that changed nothing are counted, not
  // printed.
  void Event(const SimulatedEvent& s);
  int quiet_ticks() const { return quiet_ticks_; }

 private:
  std::string When(const google::protobuf::Timestamp& t) const {
    absl::Time at = FromProto(t);
    return absl::StrCat(runtime::FormatLocal(at, zone_), " = ", Utc(at));
  }
  void Outcome(const v1::Outcome& o);

  absl::TimeZone zone_;
  int quiet_ticks_ = 0;
  // Due times of scheduled reminders, for their cancellation lines.
  std::map<std::string, google::protobuf::Timestamp> reminders_;
};

void TimelinePrinter::Event(const SimulatedEvent& s) {
  const v1::Event& e = s.event;
  if (s.tick && e.outcomes().empty()) {
    ++quiet_ticks_;
    return;
  }
  absl::Time at = FromProto(e.record_time());
  std::string detail;
  const v1::EventPayload& p = e.payload();
  if (p.has_questionnaire_response()) {
    const std::string& id = p.questionnaire_response().questionnaire_id();
    auto total = e.scores().find(absl::StrCat(id, ".total"));
    detail = absl::StrCat(" ", id);
    if (total != e.scores().end()) {
      absl::StrAppend(&detail, " total=", total->second);
    }
    if (!e.band().empty()) absl::StrAppend(&detail, " band=", e.band());
    if (!e.flags().empty()) {
      absl::StrAppend(&detail, " flags=", absl::StrJoin(e.flags(), ","));
    }
  } else if (p.has_stage_change()) {
    detail = absl::StrCat(" to ", p.stage_change().to_stage());
  } else if (p.has_alert_acknowledged()) {
    detail = absl::StrCat(" ", p.alert_acknowledged().alert_id());
  } else if (p.has_srm_diary_day()) {
    detail = absl::StrCat(" ", p.srm_diary_day().local_date());
  }
  std::printf("#%lld  %s  %s  %s%s  [%s, %s]%s\n",
              static_cast<long long>(e.sequence()), Utc(at).c_str(),
              runtime::FormatLocal(at, zone_).c_str(), e.type().c_str(),
              detail.c_str(), s.stage.c_str(), s.session_cadence.c_str(),
              s.where.empty() ? "" : absl::StrCat("  (", s.where, ")").c_str());
  for (const v1::Outcome& o : e.outcomes()) Outcome(o);
  for (const runtime::Effect& effect : s.effects) {
    if (effect.kind == runtime::Effect::Kind::kScheduleEscalation) {
      std::printf(
          "    escalation planned  %s  at %s (to the on-call contact unless "
          "acknowledged first)\n",
          effect.subject.c_str(),
          absl::StrCat(runtime::FormatLocal(effect.due, zone_), " = ",
                       Utc(effect.due))
              .c_str());
    } else if (effect.kind == runtime::Effect::Kind::kCancelEscalation) {
      std::printf("    escalation cancelled %s\n", effect.subject.c_str());
    }
  }
}

void TimelinePrinter::Outcome(const v1::Outcome& o) {
  const std::string reason =
      o.reason().empty() ? "" : absl::StrCat(" (", o.reason(), ")");
  switch (o.kind()) {
    case v1::Outcome::STAGE_CHANGED:
      std::printf("    stage changed       %s -> %s%s\n", o.from().c_str(),
                  o.to().c_str(), reason.c_str());
      break;
    case v1::Outcome::CADENCE_CHANGED:
      std::printf("    cadence changed     %s -> %s%s\n", o.from().c_str(),
                  o.to().c_str(), reason.c_str());
      break;
    case v1::Outcome::TASK_OPENED:
      std::printf("    task opened         %s%s\n", o.subject().c_str(),
                  o.has_due_time()
                      ? absl::StrCat("  due ", When(o.due_time())).c_str()
                      : "");
      break;
    case v1::Outcome::TASK_CLOSED:
      std::printf("    task closed         %s %s%s\n", o.subject().c_str(),
                  o.to().c_str(), reason.c_str());
      break;
    case v1::Outcome::REMINDER_SCHEDULED:
      reminders_[o.subject()] = o.due_time();
      std::printf("    reminder scheduled  %s  at %s\n", o.subject().c_str(),
                  When(o.due_time()).c_str());
      break;
    case v1::Outcome::REMINDER_CANCELLED: {
      auto it = reminders_.find(o.subject());
      std::printf("    reminder cancelled  %s%s%s\n", o.subject().c_str(),
                  it == reminders_.end()
                      ? ""
                      : absl::StrCat("  was at ", When(it->second)).c_str(),
                  reason.c_str());
      break;
    }
    case v1::Outcome::ALERT_RAISED:
      std::printf(
          "    alert raised        %s %s%s%s\n", o.subject().c_str(),
          o.to().c_str(), reason.c_str(),
          o.has_due_time()
              ? absl::StrCat("  acknowledge by ", When(o.due_time())).c_str()
              : "");
      break;
    case v1::Outcome::ALERT_ACKNOWLEDGED:
      std::printf("    alert acknowledged  %s%s\n", o.subject().c_str(),
                  reason.c_str());
      break;
    case v1::Outcome::SESSION_PLANNED:
      std::printf(
          "    session planned     %s  at %s  cadence %s%s%s\n",
          o.subject().c_str(), When(o.due_time()).c_str(), o.to().c_str(),
          o.from().empty() ? "" : absl::StrCat(", replaces ", o.from()).c_str(),
          reason.c_str());
      break;
    case v1::Outcome::RULE_FIRED:
      std::printf("    rule fired          %s: %s%s\n", o.subject().c_str(),
                  o.to().c_str(), reason.c_str());
      break;
    default:
      std::printf("    %s %s\n", v1::Outcome::Kind_Name(o.kind()).c_str(),
                  o.subject().c_str());
  }
}

Json EventJson(const SimulatedEvent& s, absl::TimeZone zone) {
  const v1::Event& e = s.event;
  Json outcomes = Json::array();
  for (const v1::Outcome& o : e.outcomes()) {
    outcomes.push_back(Json::parse(MessageJson(o)));
  }
  // In name order; doubles in full (the shortest text that reads back).
  Json scores = Json::object();
  for (const auto& [name, value] :
       std::map<std::string, double>(e.scores().begin(), e.scores().end())) {
    scores[name] = value;
  }
  return {
      {"sequence", e.sequence()},
      {"type", e.type()},
      {"time_utc", TimeUtil::ToString(e.record_time())},
      {"time_local", runtime::FormatLocal(FromProto(e.record_time()), zone)},
      {"source", s.where.empty() ? Json(nullptr) : Json(s.where)},
      {"tick", s.tick},
      {"stage", s.stage},
      {"session_cadence", s.session_cadence},
      {"payload", Json::parse(MessageJson(e.payload()))},
      {"outcomes", std::move(outcomes)},
      {"scores", std::move(scores)},
      {"band", e.band()},
      {"flags",
       Json(std::vector<std::string>(e.flags().begin(), e.flags().end()))}};
}

// WriteSimulationReport writes the course report of a simulation to
// `path`; false (with a message on stderr) when it cannot.
bool WriteSimulationReport(const WorkflowTemplate& workflow,
                           const Scenario& scenario,
                           const std::string& scenario_path,
                           const Simulation& simulation,
                           const std::string& path) {
  report::CourseReportInput input;
  input.workflow = &workflow;
  input.enrollment = simulation.state.enrollment();
  for (const SimulatedEvent& s : simulation.events) {
    input.events.push_back(s.event);
  }
  input.open_tasks = runtime::OpenTasks(simulation.state, false);
  input.zone = scenario.zone;
  input.as_of = input.events.empty()
                    ? scenario.start
                    : FromProto(input.events.back().record_time());
  input.note = absl::StrCat("Simulated course: scenario ", scenario_path,
                            " (not a real patient)");
  input.graph_svg = GraphSvgForReport(workflow);
  absl::Status written =
      WriteStringToFile(path, report::RenderCourseReport(input));
  if (!written.ok()) {
    std::fprintf(stderr, "error: cannot write %s: %s\n", path.c_str(),
                 std::string(written.message()).c_str());
    return false;
  }
  return true;
}

// LoadScenario reads and parses a scenario file; nullopt after printing
// the error.
std::optional<Scenario> LoadScenario(const std::string& scenario_path) {
  absl::StatusOr<std::string> yaml = ReadFileToString(scenario_path);
  if (!yaml.ok()) {
    std::fprintf(stderr, "%s: error: cannot read the file: %s\n",
                 scenario_path.c_str(),
                 std::string(yaml.status().message()).c_str());
    return std::nullopt;
  }
  absl::StatusOr<Scenario> scenario =
      ParseScenario(*yaml, scenario_path, &Enrollments::LoadZone);
  if (!scenario.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string(scenario.status().message()).c_str());
    return std::nullopt;
  }
  return *std::move(scenario);
}

// SimulationJson is `simulate --json`'s answer: the workflow, the
// scenario, each event and the final state with its open tasks.
Json SimulationJson(const WorkflowTemplate& workflow,
                    const std::string& template_path, const Scenario& scenario,
                    const std::string& scenario_path,
                    const Simulation& simulation, double elapsed_ms) {
  Json events = Json::array();
  for (const SimulatedEvent& s : simulation.events) {
    events.push_back(EventJson(s, scenario.zone));
  }
  Json open_tasks = Json::array();
  for (const v1::Task& t : runtime::OpenTasks(simulation.state, false)) {
    open_tasks.push_back(Json::parse(MessageJson(t)));
  }
  const v1::Enrollment& e = simulation.state.enrollment();
  return {{"workflow",
           {{"id", workflow.id},
            {"version", workflow.version},
            {"file", template_path}}},
          {"scenario", scenario_path},
          {"time_zone", scenario.time_zone},
          {"events", std::move(events)},
          {"final",
           {{"stage", e.stage()},
            {"session_cadence", e.session_cadence()},
            {"state", v1::Enrollment::State_Name(e.state())},
            {"revision", e.revision()},
            {"open_tasks", std::move(open_tasks)}}},
          {"elapsed_ms", elapsed_ms}};
}

// PrintFinalState prints the enrollment's final stage, cadence, state
// and revision, and its open tasks with their due times in `zone`.
void PrintFinalState(const internal::EnrollmentState& state,
                     absl::TimeZone zone) {
  const v1::Enrollment& e = state.enrollment();
  std::vector<v1::Task> open = runtime::OpenTasks(state, false);
  std::printf(
      "\nfinal: stage %s, cadence %s, %s, revision %lld, %zu open "
      "tasks\n",
      e.stage().c_str(), e.session_cadence().c_str(),
      v1::Enrollment::State_Name(e.state()).c_str(),
      static_cast<long long>(e.revision()), open.size());
  for (const v1::Task& t : open) {
    std::string key = t.name().substr(t.name().rfind('/') + 1);
    std::printf("  open %-8s %s (%s)%s\n",
                v1::Task::Priority_Name(t.priority()).c_str(), key.c_str(),
                t.title().c_str(),
                t.has_due_time()
                    ? absl::StrCat(" due ", runtime::FormatLocal(
                                                FromProto(t.due_time()), zone))
                          .c_str()
                    : "");
  }
}

int RunSimulate(const ParsedArgs& args) {
  const bool json = absl::GetFlag(FLAGS_json);
  const std::string& template_path = args.positional.front();
  const std::string scenario_path = absl::GetFlag(FLAGS_scenario);
  std::optional<WorkflowTemplate> workflow = LoadTemplate(template_path);
  if (!workflow.has_value()) return kExitFailure;
  std::optional<Scenario> scenario = LoadScenario(scenario_path);
  if (!scenario.has_value()) return kExitFailure;

  Simulation simulation;
  simulation.check_all = absl::GetFlag(FLAGS_check);
  absl::Status status =
      Simulate(*workflow, *scenario, &Enrollments::LoadZone, &simulation);
  const double elapsed_ms = absl::ToDoubleMilliseconds(simulation.elapsed);
  const std::string report_path = absl::GetFlag(FLAGS_report);
  if (!report_path.empty() && status.ok() &&
      !WriteSimulationReport(*workflow, *scenario, scenario_path, simulation,
                             report_path)) {
    return kExitFailure;
  }
  if (simulation.check_all) {
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
      return kExitFailure;
    }
    for (const std::string& m : simulation.unmet) {
      std::fprintf(stderr, "%s\n", m.c_str());
    }
    std::printf("%s: %d expectations checked, %zu unmet\n",
                scenario_path.c_str(), simulation.expectations_checked,
                simulation.unmet.size());
    return simulation.unmet.empty() ? kExitOk : kExitFailure;
  }

  if (json) {
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
      return kExitFailure;
    }
    const Json out = SimulationJson(*workflow, template_path, *scenario,
                                    scenario_path, simulation, elapsed_ms);
    std::printf("%s\n", JsonText(out).c_str());
    return kExitOk;
  }

  std::printf("%s@%d (%s), scenario %s, patient time zone %s\n\n",
              workflow->id.c_str(), workflow->version, template_path.c_str(),
              scenario_path.c_str(), scenario->time_zone.c_str());
  TimelinePrinter printer(scenario->zone);
  for (const SimulatedEvent& s : simulation.events) printer.Event(s);
  if (printer.quiet_ticks() > 0) {
    std::printf("(%d time.elapsed ticks that changed nothing are not shown)\n",
                printer.quiet_ticks());
  }
  std::fflush(stdout);
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
    return kExitFailure;
  }
  PrintFinalState(simulation.state, scenario->zone);
  std::fprintf(
      stderr,
      "simulated %zu events in %.3f ms (%.0f events/s), final "
      "snapshot %zu bytes\n",
      simulation.events.size(), elapsed_ms,
      elapsed_ms > 0 ? simulation.events.size() * 1000.0 / elapsed_ms : 0.0,
      simulation.state.ByteSizeLong());
  return kExitOk;
}

}  // namespace

std::vector<Command> ToolCommands() {
  return {
      {.spec =
           {.name = "validate",
            .synopsis = "validate FILE|DIR... [--config=ipsrtd.yaml] [--json]",
            .description =
                "Check workflow templates offline, together, as ipsrtd loads "
                "them\n(a directory gives its *.yaml files; each id@version "
                "once).\n\n"
                "Prints every problem as file:line:col: error: path: message, "
                "one a line,\nand FILE: ok for each valid file. With --json: "
                "[{\"file\", \"valid\",\n\"diagnostics\": [{\"line\", "
                "\"column\", \"path\", \"message\"}]}]. Exit status 0\nwhen "
                "every file is valid, 1 when any has a problem or cannot be "
                "read.\nWith --config, templates are checked against the "
                "instruments of the\nquestionnaire plugins that "
                "configuration loads; without it, against the\nbuilt-in "
                "instruments. A valid file's safety floors are listed below "
                "it.",
            .flags = {{.name = "config", .value_name = "FILE"}},
            .global_flags = GlobalFlags(),
            .min_positional = 1,
            .max_positional = kAnyNumberOfArguments},
       .run = RunValidate},
      {.spec =
           {.name = "graph",
            .synopsis = "graph TEMPLATE [--format=dot|mermaid|svg] [--raw]",
            .description =
                "Draw a template's stages offline for clinicians, as "
                "Graphviz DOT, Mermaid\nor SVG (svg runs Graphviz's dot "
                "program).\n\n"
                "Each stage shows its title, cadence, a short task list and "
                "its rules\n(condition as written, then what they do: "
                "cadence, alerts); exits are\narrows labelled with their "
                "condition as written, wrapped; rules that\nmove to a stage "
                "are dashed, red and marked URGENT when they raise an\n"
                "urgent alert; template-wide rules sit in an \"In every "
                "stage\" box.\nWith --raw (dot or mermaid): the machine "
                "form, stages with cadence and\none edge per exit labelled "
                "with the canonical condition text. An invalid\ntemplate "
                "prints its problems on stderr and exits 1.",
            .flags = {{.name = "format", .value_name = "FORMAT"},
                      {.name = "raw", .value_name = ""}},
            .global_flags = GlobalFlags(),
            .min_positional = 1,
            .max_positional = 1},
       .run = RunGraph},
      {.spec = {.name = "diff",
                .synopsis = "diff OLD.yaml NEW.yaml [--json]",
                .description =
                    "List what changed between two versions of a template, in "
                    "clinical terms,\noffline: stages added, removed or "
                    "reordered; each stage's title, session\ncadence, tasks "
                    "(kind, due, repeat, reminder time), exits (condition as\n"
                    "written); rules (condition, actions); the session plan "
                    "and its reminder.\nWith --json: {\"from\", \"to\", "
                    "\"changes\": [...]}. Exit status 0 whether or not\nthere "
                    "are changes, 1 when a file is invalid.",
                .flags = {},
                .global_flags = GlobalFlags(),
                .min_positional = 2,
                .max_positional = 2},
       .run = RunDiff},
      {.spec =
           {.name = "simulate",
            .synopsis = "simulate TEMPLATE --scenario=FILE [--check] "
                        "[--report=OUT.html] [--json]",
            .description =
                "Run a scripted patient course through a template offline.\n\n"
                "Each scenario event (and each injected time tick) is built "
                "and applied as\nthe server applies it, with the same Step "
                "function; the timeline shows\nevery outcome (stage and "
                "cadence changes, tasks, reminders, alerts, rules)\nin UTC "
                "and in the patient's time. The scenario format is described "
                "in\nworkflows/scenarios.md. An event the workflow refuses, or "
                "an unmet expect,\nis reported with the scenario's "
                "file:line:col and exits 1. The time the\nsimulation took is "
                "printed on stderr (elapsed_ms with --json). With --check,\n"
                "every expect is checked without stopping, only the unmet "
                "ones are\nprinted (on stderr) with a summary line, and the "
                "exit status is 1 when\nany is unmet. With --report, the "
                "simulated course is also\nwritten as an HTML course report "
                "(docs/course-report.md).",
            .flags =
                {{.name = "scenario", .value_name = "FILE", .required = true},
                 {.name = "check", .value_name = ""},
                 {.name = "report", .value_name = "FILE"}},
            .global_flags = GlobalFlags(),
            .min_positional = 1,
            .max_positional = 1},
       .run = RunSimulate},
  };
}

}  // namespace ipsrt::cli
