// The FHIR R4 and HL7 v2 renderers over generated event logs: the input is
// a scenario, simulated on ipsrt-standard as `ipsrt simulate` does; its
// event log becomes the RenderExportRequest ipsrtd would send, and the
// fhir-r4 (every format) and hl7v2-oru plugins, loaded in process as
// ipsrtd loads them, render it.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "cli/scenario.h"
#include "core/questionnaires.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ipsrt::WorkflowTemplate* workflow =
      ipsrt::fuzz::StandardTemplate();
  static ipsrt::PluginRegistry* plugins =
      ipsrt::fuzz::LoadPlugins(
          {ipsrt::fuzz::Library("libipsrt_core_instruments.so"),
           ipsrt::fuzz::Library("libipsrt_fhir_r4.so"),
           ipsrt::fuzz::Library("libipsrt_hl7v2_oru.so",
                                "{\"sending_facility\": \"F\", "
                                "\"assigning_authority\": \"A\"}")})
          .release();
  static ipsrt::QuestionnaireCatalog* catalog =
      ipsrt::QuestionnaireCatalog::Build(*plugins)->release();

  std::string yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ipsrt::cli::Scenario> scenario =
      ipsrt::cli::ParseScenario(yaml, "fuzz.yaml", ipsrt::fuzz::Zones());
  if (!scenario.ok()) return 0;
  ipsrt::cli::Simulation simulation;
  if (!ipsrt::cli::Simulate(*workflow, *scenario, ipsrt::fuzz::Zones(),
                            &simulation)
           .ok() ||
      simulation.events.empty()) {
    return 0;
  }
  ipsrt::plugin::v1::RenderExportRequest request;
  *request.mutable_enrollment() = simulation.state.enrollment();
  if (request.enrollment().name().empty()) {
    request.mutable_enrollment()->set_name("tenants/t/enrollments/fuzz");
  }
  std::map<std::string, const ipsrt::v1::Questionnaire*> used;
  for (const ipsrt::cli::SimulatedEvent& e : simulation.events) {
    *request.add_events() = e.event;
    std::string id;
    if (e.event.payload().has_questionnaire_response()) {
      id = e.event.payload().questionnaire_response().questionnaire_id();
    } else if (e.event.payload().has_srm_diary_day()) {
      id = e.event.payload().srm_diary_day().instrument();
    }
    if (id.empty()) continue;
    absl::StatusOr<const ipsrt::v1::Questionnaire*> q = catalog->Get(id, 0);
    if (q.ok()) used.emplace(id, *q);
  }
  for (const auto& [id, q] : used) *request.add_instruments() = *q;
  *request.mutable_export_time() =
      request.events(request.events_size() - 1).record_time();
  for (const char* format :
       {"fhir-r4-collection", "fhir-r4-transaction", "fhir-r4-resources"}) {
    request.set_format(format);
    (void)plugins->Find("fhir-r4")->RenderExport(request);
  }
  request.set_format("hl7v2-oru-r01");
  (void)plugins->Find("hl7v2-oru")->RenderExport(request);
  return 0;
}
