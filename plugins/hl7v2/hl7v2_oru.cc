// hl7v2-oru: an exporter plugin that renders an enrollment's questionnaire
// responses and Social Rhythm Metric diary days as HL7 v2.5.1 ORU^R01
// messages, wrapped in one HL7 batch file (FHS, BHS, messages, BTS, FTS),
// ER7 encoding. The segment mapping, the escaping and what is lost compared
// with FHIR are in README.md beside this file.
//
//   plugins:
//     - path: libipsrt_hl7v2_oru.so
//       config:
//         sending_facility: "St Elsewhere Psychiatry"   # required
//         assigning_authority: "STELSEWHERE"            # required, PID-3.4
//         sending_application: "IPSRT"                  # MSH-3, default
//         receiving_application: "EHR"                  # MSH-5, optional
//         receiving_facility: "ST-ELSEWHERE"            # MSH-6, optional
//         identifier_type: "MR"                         # PID-3.5, default
//         patient_identifiers:      # optional: patient_ref prefix -> PID-3
//           - prefix: "urn:mrn:ste:"
//             assigning_authority: "STELSEWHERE"
//             identifier_type: "MR"
//         processing_id: "P"                            # MSH-11: P, T or D
//
// Rendering is a pure function of the request: no clock, no randomness, no
// logging (the messages carry patient data), so equal requests give equal
// bytes.
#include <ipsrt/plugin/plugin.h>

#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "ipsrt/plugin/config_reader.h"
#include "ipsrt/plugin/hash.h"
#include "ipsrt/plugin/time.h"

namespace {

namespace pv1 = ::ipsrt::plugin::v1;

// PID-5 when the engine knows no name: XPN with only the name type code,
// U (unspecified, HL7 table 0200). v2.5.1 makes PID-5 required.
constexpr char kUnknownName[] = "^^^^^^U";

namespace v1 = ::ipsrt::v1;

constexpr char kFormat[] = "hl7v2-oru-r01";
// The media type HL7 uses for ER7-encoded v2 content (FHIR's Binary and
// DocumentReference examples, HAPI): v2 has no IANA-registered type for
// the pipe-and-hat encoding.
constexpr char kContentType[] = "x-application/hl7-v2+er7";
constexpr char kLoinc[] = "http://loinc.org";
constexpr char kSnomed[] = "http://snomed.info/sct";
// The project's code system for instruments and items without LOINC codes;
// in v2 a local coding system (HL7 table 0396: "99zzz" is local).
constexpr char kLocal[] = "urn:ipsrt:instruments";
constexpr char kLocalV2[] = "99IPSRT";

// Escape makes `text` safe for any ER7 field, component or subcomponent
// with the delimiters |^~\& : each delimiter becomes its escape sequence
// and each control character (CR, LF, TAB, ...) a hexadecimal escape
// \Xhh\, so a decoder gives back exactly the original bytes. \.br\ is not
// used: it is a formatting command that only FT fields interpret.
std::string Escape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    switch (c) {
      case '|':
        out += "\\F\\";
        break;
      case '^':
        out += "\\S\\";
        break;
      case '&':
        out += "\\T\\";
        break;
      case '~':
        out += "\\R\\";
        break;
      case '\\':
        out += "\\E\\";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(&out, "\\X%02X\\", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

// Dtm is a v2 DTM in UTC to the second, "20260302140000+0000".
std::string Dtm(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y%m%d%H%M%S+0000", ipsrt::FromProtoTime(t),
                          absl::UTCTimeZone());
}

// ControlId is 20 hex digits (MSH-10 is an ST of at most 20) of the
// SHA-256 of `key`: stable for one enrollment and event across exports, so
// a receiver can drop a message it has already filed.
std::string ControlId(absl::string_view key) {
  return ipsrt::Sha256Hex(key).substr(0, 20);
}

// Number is an NM: the shortest decimal that reads back as `value` (the
// SRM score is a ratio such as 2.6666666666666665), never an exponent for
// the magnitudes scores have.
std::string Number(double value) {
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value,
                                 std::chars_format::fixed);
  if (ec != std::errc()) return absl::StrCat(value);
  return std::string(buffer, end);
}

// CodingSystem names a code system the v2 way (HL7 table 0396).
std::string CodingSystem(const std::string& system) {
  if (system == kLoinc) return "LN";
  if (system == kSnomed) return "SCT";
  if (system == kLocal) return kLocalV2;
  return "L";
}

// Ce is code^text^system (the first triplet of a CWE), each part escaped;
// `fallback_code` in the local system when the coding has no code.
std::string Ce(const v1::Coding& coding, absl::string_view fallback_code,
               absl::string_view fallback_text) {
  if (coding.code().empty()) {
    return absl::StrCat(Escape(fallback_code), "^", Escape(fallback_text), "^",
                        kLocalV2);
  }
  return absl::StrCat(
      Escape(coding.code()), "^",
      Escape(coding.display().empty() ? fallback_text : coding.display()), "^",
      CodingSystem(coding.system()));
}

// One configured mapping of patient references to a PID-3 identifier: a
// patient_ref starting with `prefix` is identifier (the rest of the ref)
// ^^^assigning_authority^identifier_type.
struct PatientIdentifier {
  std::string prefix;
  std::string assigning_authority;
  std::string identifier_type;
};

struct Settings {
  std::vector<PatientIdentifier> patient_identifiers;
  std::string sending_application;
  std::string sending_facility;
  std::string receiving_application;
  std::string receiving_facility;
  std::string assigning_authority;
  std::string identifier_type;
  std::string processing_id;
};

// One observation: OBX-2, OBX-3 and OBX-5 (OBX-5 already escaped).
struct Observation {
  std::string value_type;
  std::string code;
  std::string value;
};

// One ORU^R01 message before it is written out.
struct Report {
  const v1::Event* event;
  std::string panel;          // OBR-4
  std::string observed_time;  // OBR-7, OBX-14
  std::vector<Observation> observations;
};

class Hl7v2Oru final : public ipsrt::plugin::Plugin {
 public:
  absl::Status Configure(const pv1::ConfigureRequest& request) override {
    ipsrt::plugin::ConfigReader config(request);
    if (absl::Status s = config.OnlyKeys(
            {"sending_application", "sending_facility", "receiving_application",
             "receiving_facility", "assigning_authority", "identifier_type",
             "processing_id", "patient_identifiers"});
        !s.ok()) {
      return s;
    }
    Settings s;
    absl::StatusOr<std::vector<PatientIdentifier>> ids =
        PatientIdentifiers(request.config());
    if (!ids.ok()) return ids.status();
    s.patient_identifiers = *std::move(ids);
    struct Key {
      const char* name;
      std::string* value;
      const char* fallback;
      bool required;
    };
    for (const Key& k : {
             Key{"sending_application", &s.sending_application, "IPSRT", false},
             Key{"sending_facility", &s.sending_facility, "", true},
             Key{"receiving_application", &s.receiving_application, "", false},
             Key{"receiving_facility", &s.receiving_facility, "", false},
             Key{"assigning_authority", &s.assigning_authority, "",
                 s.patient_identifiers.empty()},
             Key{"identifier_type", &s.identifier_type, "MR", false},
             Key{"processing_id", &s.processing_id, "P", false},
         }) {
      absl::StatusOr<std::string> v =
          config.String(k.name, k.fallback, k.required);
      if (!v.ok()) return v.status();
      *k.value = *std::move(v);
    }
    if (s.processing_id != "P" && s.processing_id != "T" &&
        s.processing_id != "D") {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.processing_id: must be P (production), T (training) or D "
          "(debugging), not \"",
          s.processing_id, "\""));
    }
    settings_ = std::move(s);
    configured_ = true;
    return absl::OkStatus();
  }

  absl::StatusOr<pv1::DescribeResponse> Describe() override {
    pv1::DescribeResponse d;
    d.set_summary(
        "Renders questionnaire responses and SRM diary days as HL7 v2.5.1 "
        "ORU^R01 messages in one batch file");
    d.add_export_formats(kFormat);
    return d;
  }

  absl::StatusOr<pv1::RenderExportResponse> RenderExport(
      const pv1::RenderExportRequest& request) override {
    if (!configured_) {
      return absl::FailedPreconditionError(
          "hl7v2-oru is not configured: config.sending_facility and "
          "config.assigning_authority are required");
    }
    if (request.format() != kFormat) {
      return absl::InvalidArgumentError(
          absl::StrCat("format: hl7v2-oru renders \"", kFormat, "\", not \"",
                       request.format(), "\""));
    }
    const v1::Enrollment& enrollment = request.enrollment();
    if (enrollment.name().empty()) {
      return absl::InvalidArgumentError("enrollment.name: must not be empty");
    }
    if (enrollment.patient_ref().empty()) {
      return absl::InvalidArgumentError(
          "enrollment.patient_ref: must not be empty");
    }
    absl::StatusOr<std::string> pid3 = Pid3(enrollment.patient_ref());
    if (!pid3.ok()) return pid3.status();
    std::vector<Report> reports;
    for (int i = 0; i < request.events_size(); ++i) {
      const v1::Event& event = request.events(i);
      absl::StatusOr<std::optional<Report>> report =
          ReportOf(request, i, event);
      if (!report.ok()) return report.status();
      if (report->has_value()) reports.push_back(**std::move(report));
    }
    if (reports.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("enrollment ", enrollment.name(),
                       " has no questionnaire responses to export"));
    }
    pv1::RenderExportResponse response;
    response.set_content_type(kContentType);
    response.set_content(Batch(request, reports));
    return response;
  }

 private:
  // ReportOf maps one event: a questionnaire response or a diary day
  // becomes a report, every other event nothing.
  absl::StatusOr<std::optional<Report>> ReportOf(
      const pv1::RenderExportRequest& request, int index,
      const v1::Event& event) const {
    const v1::EventPayload& p = event.payload();
    std::string id;
    if (p.has_questionnaire_response()) {
      id = p.questionnaire_response().questionnaire_id();
    } else if (p.has_srm_diary_day()) {
      id = p.srm_diary_day().instrument().empty()
               ? "srm5"
               : p.srm_diary_day().instrument();
    } else {
      return std::optional<Report>();
    }
    const std::string field =
        absl::StrCat("events[", index, "].payload.",
                     p.has_questionnaire_response()
                         ? "questionnaire_response.questionnaire_id"
                         : "srm_diary_day.instrument");
    const v1::Questionnaire* instrument = nullptr;
    for (const v1::Questionnaire& q : request.instruments()) {
      if (q.id() != id) continue;
      int wanted = p.has_questionnaire_response()
                       ? p.questionnaire_response().questionnaire_version()
                       : 0;
      if (instrument == nullptr || q.version() == wanted) instrument = &q;
    }
    if (instrument == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": instrument \"", id,
                       "\" is not among the request's instruments"));
    }
    Report r;
    r.event = &event;
    r.panel =
        Ce(instrument->panel_code(), instrument->id(), instrument->title());
    if (p.has_questionnaire_response()) {
      const v1::QuestionnaireResponse& qr = p.questionnaire_response();
      r.observed_time = Dtm(qr.has_authored_time() ? qr.authored_time()
                                                   : event.record_time());
      int known = 0;
      for (const v1::QuestionnaireItem& item : instrument->items()) {
        auto it = qr.answers().find(item.id());
        if (it == qr.answers().end()) continue;
        ++known;
        r.observations.push_back(
            {"NM",
             Ce(item.code(), absl::StrCat(instrument->id(), ".", item.id()),
                item.text()),
             absl::StrCat(it->second)});
      }
      if (known != qr.answers_size()) {
        for (const auto& [item, value] : qr.answers()) {
          bool found = false;
          for (const v1::QuestionnaireItem& i : instrument->items()) {
            found = found || i.id() == item;
          }
          if (!found) {
            return absl::InvalidArgumentError(absl::StrCat(
                "events[", index, "].payload.questionnaire_response.answers[\"",
                item, "\"]: instrument \"", id, "\" has no such item"));
          }
        }
      }
      AddTotal(*instrument, event, absl::StrCat(id, ".total"), &r);
    } else {
      const v1::SrmDiaryDay& day = p.srm_diary_day();
      // The diary is about one local calendar day: a DTM to the day.
      r.observed_time = absl::StrReplaceAll(day.local_date(), {{"-", ""}});
      for (const v1::QuestionnaireItem& item : instrument->items()) {
        for (const v1::SrmActivity& a : day.activities()) {
          if (a.activity() != item.id() || a.local_time().empty()) continue;
          r.observations.push_back(
              {"TM",
               Ce(item.code(), absl::StrCat("srm.", item.id()), item.text()),
               Escape(absl::StrReplaceAll(a.local_time(), {{":", ""}}))});
        }
      }
      r.observations.push_back({"NM",
                                absl::StrCat("srm.mood^Mood rating (-5 to "
                                             "+5)^",
                                             kLocalV2),
                                absl::StrCat(day.mood())});
      AddTotal(*instrument, event, "srm.score", &r);
    }
    return std::optional<Report>(std::move(r));
  }

  // AddTotal adds the total (or weekly score) the engine recorded on the
  // event under `score`, when it recorded one.
  static void AddTotal(const v1::Questionnaire& instrument,
                       const v1::Event& event, const std::string& score,
                       Report* r) {
    auto it = event.scores().find(score);
    if (it == event.scores().end()) return;
    r->observations.push_back({"NM",
                               Ce(instrument.total_code(), score,
                                  absl::StrCat(instrument.title(), " total")),
                               Number(it->second)});
  }

  // Hd is a hierarchic designator with only its namespace id.
  static std::string Hd(const std::string& name) { return Escape(name); }

  std::string Message(const pv1::RenderExportRequest& request, const Report& r,
                      const std::string& message_time) const {
    const v1::Enrollment& e = request.enrollment();
    const std::string control = ControlId(
        absl::StrCat(e.name(), "/events/", r.event->sequence(), "/oru-r01"));
    std::vector<std::string> segments;
    segments.push_back(
        absl::StrCat("MSH|^~\\&|", Hd(settings_.sending_application), "|",
                     Hd(settings_.sending_facility), "|",
                     Hd(settings_.receiving_application), "|",
                     Hd(settings_.receiving_facility), "|", message_time,
                     "||ORU^R01^ORU_R01|", control, "|",
                     settings_.processing_id, "|2.5.1||||||UNICODE UTF-8"));
    // PID-5 is required by v2.5.1; the engine holds no names, so it is the
    // documented placeholder of a name of type U (unspecified).
    segments.push_back(
        absl::StrCat("PID|1||", *Pid3(e.patient_ref()), "||", kUnknownName));
    segments.push_back(
        absl::StrCat("OBR|1||", control, "^", Hd(settings_.sending_application),
                     "|", r.panel, "|||", r.observed_time, "|||||||||||||||",
                     Dtm(r.event->record_time()), "|||F"));
    for (size_t i = 0; i < r.observations.size(); ++i) {
      const Observation& o = r.observations[i];
      segments.push_back(absl::StrCat("OBX|", i + 1, "|", o.value_type, "|",
                                      o.code, "||", o.value, "||||||F|||",
                                      r.observed_time));
    }
    return absl::StrJoin(segments, "\r");
  }

  std::string Batch(const pv1::RenderExportRequest& request,
                    const std::vector<Report>& reports) const {
    const v1::Enrollment& e = request.enrollment();
    const std::string file_time =
        Dtm(request.has_export_time() ? request.export_time()
                                      : reports.back().event->record_time());
    // The batch is named by the enrollment and the last event it covers.
    const std::string batch_key =
        absl::StrCat(e.name(), "/events/",
                     request.events(request.events_size() - 1).sequence());
    const std::string header =
        absl::StrCat("|^~\\&|", Hd(settings_.sending_application), "|",
                     Hd(settings_.sending_facility), "|",
                     Hd(settings_.receiving_application), "|",
                     Hd(settings_.receiving_facility), "|", file_time, "||||");
    std::vector<std::string> segments;
    segments.push_back(absl::StrCat(
        "FHS", header, ControlId(absl::StrCat(batch_key, "/fhs"))));
    segments.push_back(absl::StrCat(
        "BHS", header, ControlId(absl::StrCat(batch_key, "/bhs"))));
    for (const Report& r : reports) {
      const std::string message_time =
          request.has_export_time() ? file_time : Dtm(r.event->record_time());
      segments.push_back(Message(request, r, message_time));
    }
    segments.push_back(absl::StrCat("BTS|", reports.size()));
    segments.push_back("FTS|1");
    return absl::StrCat(absl::StrJoin(segments, "\r"), "\r");
  }

  // Pid3 is the patient identifier (CX): the first configured mapping whose
  // prefix the reference starts with, else (none configured) the whole
  // reference with the plugin's assigning authority. INVALID_ARGUMENT when
  // mappings are configured and none matches (naming the prefixes, never
  // the reference).
  absl::StatusOr<std::string> Pid3(const std::string& patient_ref) const {
    if (settings_.patient_identifiers.empty()) {
      return absl::StrCat(Escape(patient_ref), "^^^",
                          Hd(settings_.assigning_authority), "^",
                          Escape(settings_.identifier_type));
    }
    std::vector<std::string> prefixes;
    for (const PatientIdentifier& id : settings_.patient_identifiers) {
      if (patient_ref.size() > id.prefix.size() &&
          patient_ref.compare(0, id.prefix.size(), id.prefix) == 0) {
        return absl::StrCat(Escape(patient_ref.substr(id.prefix.size())), "^^^",
                            Hd(id.assigning_authority), "^",
                            Escape(id.identifier_type));
      }
      prefixes.push_back(absl::StrCat("\"", id.prefix, "\""));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "enrollment.patient_ref: starts with none of the prefixes of "
        "config.patient_identifiers (",
        absl::StrJoin(prefixes, ", "), ")"));
  }

  // PatientIdentifiers reads config.patient_identifiers (absent: none).
  absl::StatusOr<std::vector<PatientIdentifier>> PatientIdentifiers(
      const google::protobuf::Struct& config) const {
    std::vector<PatientIdentifier> out;
    auto it = config.fields().find("patient_identifiers");
    if (it == config.fields().end()) return out;
    if (!it->second.has_list_value()) {
      return absl::InvalidArgumentError(
          "config.patient_identifiers: must be a list of {prefix, "
          "assigning_authority, identifier_type}");
    }
    const auto& list = it->second.list_value().values();
    for (int i = 0; i < list.size(); ++i) {
      const std::string at =
          absl::StrCat("config.patient_identifiers[", i, "]");
      if (!list[i].has_struct_value()) {
        return absl::InvalidArgumentError(absl::StrCat(at, ": must be a map"));
      }
      const auto& f = list[i].struct_value().fields();
      PatientIdentifier id;
      id.identifier_type = "MR";
      for (const auto& [key, value] : f) {
        std::string* target = key == "prefix" ? &id.prefix
                              : key == "assigning_authority"
                                  ? &id.assigning_authority
                              : key == "identifier_type" ? &id.identifier_type
                                                         : nullptr;
        if (target == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(
              at, ".", key,
              ": unknown key (allowed: prefix, assigning_authority, "
              "identifier_type)"));
        }
        if (!value.has_string_value() || value.string_value().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(at, ".", key, ": must be a non-empty string"));
        }
        *target = value.string_value();
      }
      for (const auto& [key, value] :
           {std::pair<const char*, const std::string*>{"prefix", &id.prefix},
            {"assigning_authority", &id.assigning_authority}}) {
        if (value->empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(at, ".", key, ": is required"));
        }
      }
      out.push_back(std::move(id));
    }
    return out;
  }

  Settings settings_;
  bool configured_ = false;
};

}  // namespace

IPSRT_PLUGIN(Hl7v2Oru, "hl7v2-oru", "1.0.0", IPSRT_KIND_EXPORTER)
