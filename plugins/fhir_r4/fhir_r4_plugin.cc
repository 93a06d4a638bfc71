// fhir-r4: the FHIR R4 exporter plugin. It renders an enrollment as a
// collection Bundle (files), a transaction Bundle of conditional creates
// (push to an EHR) or one resource per line (bulk NDJSON); the rendering is
// fhir_export.cc. It delivers nothing itself: a delivery plugin pushes.
//
//   plugins:
//     - path: libipsrt_fhir_r4.so
//       config:                                   # every key optional
//         identifier_system: https://ehr.example.org/ipsrt-id
//         canonical_base: https://fhir.example.org/ipsrt
//         patient_identifier_system: urn:oid:2.16.840.1.113883.19.5
//         practitioner_identifier_system: urn:oid:2.16.840.1.113883.4.6
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "fhir_export.h"
#include "ipsrt/plugin/plugin.h"

namespace {

namespace pv1 = ::ipsrt::plugin::v1;
using ::ipsrt::fhir::FhirExportOptions;

// A URI for a system or canonical base: not empty, no whitespace, and no
// '|' (which separates system and value, canonical and version).
absl::Status CheckUri(const std::string& key, const std::string& value) {
  if (value.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.", key, ": must not be empty"));
  }
  for (char c : value) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '|') {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.", key, ": must be a URI without spaces or '|'"));
    }
  }
  return absl::OkStatus();
}

class FhirR4 final : public ipsrt::plugin::Plugin {
 public:
  absl::Status Configure(const pv1::ConfigureRequest& request) override {
    FhirExportOptions options;
    for (const auto& [key, value] : request.config().fields()) {
      std::string* field = nullptr;
      if (key == "identifier_system") {
        field = &options.identifier_system;
      } else if (key == "canonical_base") {
        field = &options.canonical_base;
      } else if (key == "patient_identifier_system") {
        field = &options.patient_identifier_system;
      } else if (key == "practitioner_identifier_system") {
        field = &options.practitioner_identifier_system;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "config.", key,
            ": unknown key; fhir-r4 takes identifier_system, canonical_base, "
            "patient_identifier_system and practitioner_identifier_system"));
      }
      if (value.kind_case() != google::protobuf::Value::kStringValue) {
        return absl::InvalidArgumentError(
            absl::StrCat("config.", key, ": must be a string"));
      }
      *field = value.string_value();
      if (absl::Status s = CheckUri(key, *field); !s.ok()) return s;
    }
    while (!options.canonical_base.empty() &&
           options.canonical_base.back() == '/') {
      options.canonical_base.pop_back();
    }
    options_ = std::move(options);
    return absl::OkStatus();
  }

  absl::StatusOr<pv1::DescribeResponse> Describe() override {
    pv1::DescribeResponse d;
    d.set_summary(
        "Renders an enrollment as FHIR R4: collection or transaction Bundle, "
        "or resources for bulk NDJSON");
    d.add_export_formats(ipsrt::fhir::kCollectionFormat);
    d.add_export_formats(ipsrt::fhir::kTransactionFormat);
    d.add_export_formats(ipsrt::fhir::kResourcesFormat);
    return d;
  }

  absl::StatusOr<pv1::RenderExportResponse> RenderExport(
      const pv1::RenderExportRequest& request) override {
    return ipsrt::fhir::RenderFhirExport(options_, request);
  }

  absl::StatusOr<pv1::DeliverExportResponse> DeliverExport(
      const pv1::DeliverExportRequest&) override {
    return absl::UnimplementedError(
        "fhir-r4 renders only; deliver with a delivery plugin such as "
        "fhir-push");
  }

 private:
  // Written once by Configure, before any RenderExport.
  FhirExportOptions options_;
};

}  // namespace

IPSRT_PLUGIN(FhirR4, "fhir-r4", "1.0.0", IPSRT_KIND_EXPORTER)
