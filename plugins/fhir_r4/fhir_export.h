// Renders one enrollment as FHIR R4: the pure function behind the fhir-r4
// exporter plugin (fhir_r4_plugin.cc). No I/O, no clock: the same request
// and options give byte-identical output.
//
// Formats (RenderExportRequest.format):
//   fhir-r4-collection   a Bundle of type collection in `content`
//   fhir-r4-transaction  a Bundle of type transaction in `content`; every
//                        entry is a conditional create (POST + ifNoneExist
//                        on the resource's stable identifier), so a retried
//                        push creates nothing twice
//   fhir-r4-resources    one ExportedResource per resource, for NDJSON
// The mapping of events to resources is in README.md beside this file.
//
// Example:
//   FhirExportOptions options;  // defaults, or from the plugin's config
//   absl::StatusOr<plugin::v1::RenderExportResponse> bundle =
//       RenderFhirExport(options, request);
#ifndef IPSRT_PLUGINS_FHIR_R4_FHIR_EXPORT_H_
#define IPSRT_PLUGINS_FHIR_R4_FHIR_EXPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ipsrt/plugin/v1/plugin.pb.h"

namespace ipsrt::fhir {

inline constexpr char kCollectionFormat[] = "fhir-r4-collection";
inline constexpr char kTransactionFormat[] = "fhir-r4-transaction";
inline constexpr char kResourcesFormat[] = "fhir-r4-resources";

struct FhirExportOptions {
  // System of every resource's stable identifier (value: the enrollment's
  // name and the event or alert the resource comes from).
  std::string identifier_system = "urn:ipsrt:id";
  // Base of the canonical URLs of the workflow templates
  // (<base>/PlanDefinition/<id>|<version>) and instruments
  // (<base>/Questionnaire/<id>|<version>).
  std::string canonical_base = "https://ipsrt.invalid/fhir";
  // Identifier systems for a patient_ref or clinician_ref that is not a
  // literal FHIR reference ("Patient/123", "Practitioner/7"), e.g. an MRN.
  std::string patient_identifier_system = "urn:ipsrt:patient-ref";
  std::string practitioner_identifier_system = "urn:ipsrt:clinician-ref";
};

// RenderFhirExport renders `request`. INVALID_ARGUMENT, naming the field:
// an unknown format (the message names it and the known ones), an
// enrollment without name or patient_ref, no export_time, events out of
// sequence order. An enrollment without responses still renders (a
// CarePlan and whatever its events give). Never logs.
absl::StatusOr<plugin::v1::RenderExportResponse> RenderFhirExport(
    const FhirExportOptions& options,
    const plugin::v1::RenderExportRequest& request);

// StableUuid derives a UUID from `name`: the first 128 bits of its SHA-256
// with the version set to 8 and the RFC 9562 variant (the name-based,
// SHA-256 construction of RFC 9562 appendix B.2), lowercase.
std::string StableUuid(absl::string_view name);

}  // namespace ipsrt::fhir

#endif  // IPSRT_PLUGINS_FHIR_R4_FHIR_EXPORT_H_
