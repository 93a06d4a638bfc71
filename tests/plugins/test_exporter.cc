// test-exporter: a small deterministic EXPORTER plugin for the export
// service's tests and benchmark, built with the plugin SDK like any other.
//
// Formats:
//   test-collection   one JSON document holding every resource
//   test-transaction  one resource per line (what DeliverExport counts)
//   test-resources    resource-wise (RenderExportResponse.resources)
// Each event becomes one resource whose type is the event type in
// CamelCase ("questionnaire.responded" -> "QuestionnaireResponded"), plus
// one "Enrollment" resource. No patient references are rendered.
//
// Config (all optional):
//   control_file: a file read on every call, lines of key=value:
//     deliver=CODE          DeliverExport fails with that canonical code
//     render_fail=ID        RenderExport fails (UNAVAILABLE) for the
//                           enrollment with that id
//     render_crash=ID       RenderExport aborts the process for the
//                           enrollment with that id (a plugin crash)
//     render_delay_ms=N     RenderExport sleeps N ms (cancellation tests)
//   deliveries_file: DeliverExport appends "key target format lines" to it.
// DeliverExport reports `created` for a new idempotency key and
// `unchanged` for one it has seen (per loaded instance).
#include <ipsrt/plugin/plugin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace {

namespace v1 = ::ipsrt::plugin::v1;

std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    out.push_back(ch);
  }
  out.push_back('"');
  return out;
}

std::string CamelType(absl::string_view event_type) {
  std::string out;
  bool upper = true;
  for (char ch : event_type) {
    if (ch == '.' || ch == '_' || ch == '-') {
      upper = true;
      continue;
    }
    out.push_back(upper && ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
    upper = false;
  }
  return out.empty() ? "Event" : out;
}

std::string ConfigString(const v1::ConfigureRequest& r, const char* key) {
  auto it = r.config().fields().find(key);
  if (it == r.config().fields().end()) return "";
  return it->second.string_value();
}

class TestExporter final : public ipsrt::plugin::Plugin {
 public:
  absl::Status Configure(const v1::ConfigureRequest& request) override {
    for (const auto& [key, value] : request.config().fields()) {
      if (key != "control_file" && key != "deliveries_file") {
        return absl::InvalidArgumentError(
            absl::StrCat("config.", key, ": unknown key"));
      }
    }
    control_file_ = ConfigString(request, "control_file");
    deliveries_file_ = ConfigString(request, "deliveries_file");
    return absl::OkStatus();
  }

  absl::StatusOr<v1::DescribeResponse> Describe() override {
    v1::DescribeResponse d;
    d.set_summary("Deterministic exporter for tests and benchmarks");
    d.add_export_formats("test-collection");
    d.add_export_formats("test-transaction");
    d.add_export_formats("test-resources");
    return d;
  }

  absl::StatusOr<v1::RenderExportResponse> RenderExport(
      const v1::RenderExportRequest& request) override {
    std::map<std::string, std::string> control = Control();
    if (auto it = control.find("render_delay_ms"); it != control.end()) {
      int ms = 0;
      if (absl::SimpleAtoi(it->second, &ms)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      }
    }
    const std::string& name = request.enrollment().name();
    const std::string id = name.substr(name.rfind('/') + 1);
    if (auto it = control.find("render_fail");
        it != control.end() && it->second == id) {
      return absl::UnavailableError("render refused by the control file");
    }
    if (auto it = control.find("render_crash");
        it != control.end() && it->second == id) {
      std::abort();
    }
    std::vector<std::pair<std::string, std::string>> resources;
    resources.emplace_back(
        "Enrollment",
        absl::StrCat(
            "{\"resourceType\":\"Enrollment\",\"id\":", Quote(id),
            ",\"workflow\":",
            Quote(absl::StrCat(request.enrollment().workflow_id(), "@",
                               request.enrollment().workflow_version())),
            ",\"stage\":", Quote(request.enrollment().stage()),
            ",\"events\":", request.events_size(),
            ",\"instruments\":", request.instruments_size(),
            ",\"exported\":", request.export_time().seconds(), "}"));
    for (const ipsrt::v1::Event& e : request.events()) {
      const std::string type = CamelType(e.type());
      std::map<std::string, double> scores(e.scores().begin(),
                                           e.scores().end());
      std::vector<std::string> parts;
      for (const auto& [k, v] : scores) {
        parts.push_back(absl::StrCat(Quote(k), ":", v));
      }
      resources.emplace_back(
          type, absl::StrCat("{\"resourceType\":", Quote(type), ",\"id\":",
                             Quote(absl::StrCat(id, "-", e.sequence())),
                             ",\"recorded\":", e.record_time().seconds(),
                             ",\"scores\":{", absl::StrJoin(parts, ","), "}}"));
    }
    v1::RenderExportResponse out;
    if (request.format() == "test-resources") {
      for (auto& [type, json] : resources) {
        v1::ExportedResource* r = out.add_resources();
        r->set_resource_type(type);
        r->set_content(json);
      }
      out.set_content_type("application/fhir+ndjson");
      return out;
    }
    std::vector<std::string> lines;
    for (auto& [type, json] : resources) lines.push_back(json);
    if (request.format() == "test-transaction") {
      out.set_content(absl::StrJoin(lines, "\n"));
      out.set_content_type("application/x-test-transaction");
      return out;
    }
    out.set_content(absl::StrCat(
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"timestamp\":",
        request.export_time().seconds(), ",\"entry\":[",
        absl::StrJoin(lines, ","), "]}"));
    out.set_content_type("application/fhir+json");
    return out;
  }

  absl::StatusOr<v1::DeliverExportResponse> DeliverExport(
      const v1::DeliverExportRequest& request) override {
    std::map<std::string, std::string> control = Control();
    if (auto it = control.find("deliver"); it != control.end()) {
      absl::StatusCode code = absl::StatusCode::kUnknown;
      for (int c = 1; c <= 16; ++c) {
        if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) ==
            it->second) {
          code = static_cast<absl::StatusCode>(c);
        }
      }
      return absl::Status(code, "delivery refused by the control file");
    }
    if (request.idempotency_key().empty()) {
      return absl::InvalidArgumentError("idempotency_key: must not be empty");
    }
    const int lines =
        request.content().empty()
            ? 0
            : 1 + static_cast<int>(std::count(request.content().begin(),
                                              request.content().end(), '\n'));
    v1::DeliverExportResponse out;
    std::lock_guard<std::mutex> lock(mu_);
    if (seen_.insert(request.idempotency_key()).second) {
      out.set_created(lines);
    } else {
      out.set_unchanged(lines);
    }
    out.set_receipt(absl::StrCat("receipt-", seen_.size()));
    if (!deliveries_file_.empty()) {
      std::ofstream(deliveries_file_, std::ios::app)
          << request.idempotency_key() << " " << request.target() << " "
          << request.format() << " " << lines << "\n";
    }
    return out;
  }

 private:
  std::map<std::string, std::string> Control() const {
    std::map<std::string, std::string> out;
    if (control_file_.empty()) return out;
    std::ifstream in(control_file_);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> kv =
          absl::StrSplit(line, absl::MaxSplits('=', 1));
      if (kv.size() == 2) out[kv[0]] = kv[1];
    }
    return out;
  }

  std::string control_file_;
  std::string deliveries_file_;
  std::mutex mu_;
  std::set<std::string> seen_;
};

}  // namespace

IPSRT_PLUGIN(TestExporter, "test-exporter", "1.0.0", IPSRT_KIND_EXPORTER)
