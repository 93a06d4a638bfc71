#include "transaction.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace ipsrt::fhir_push {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr size_t kMaxDiagnosticChars = 200;
constexpr int kMaxIssues = 5;

// Parse reads a JSON object; false when `text` is not one.
bool Parse(absl::string_view text, Struct* out) {
  google::protobuf::util::JsonParseOptions options;
  return google::protobuf::util::JsonStringToMessage(
             google::protobuf::StringPiece(text.data(), text.size()), out,
             options)
      .ok();
}

// Field returns the member `key` of `s` if it has the kind `kind`.
const Value* Field(const Struct& s, absl::string_view key,
                   Value::KindCase kind) {
  auto it = s.fields().find(std::string(key));
  if (it == s.fields().end() || it->second.kind_case() != kind) return nullptr;
  return &it->second;
}

std::string StringField(const Struct& s, absl::string_view key) {
  const Value* v = Field(s, key, Value::kStringValue);
  return v == nullptr ? std::string() : v->string_value();
}

const Struct* ObjectField(const Struct& s, absl::string_view key) {
  const Value* v = Field(s, key, Value::kStructValue);
  return v == nullptr ? nullptr : &v->struct_value();
}

// Entries returns Bundle.entry (empty when absent); false when it is
// present but not a list of objects.
bool Entries(const Struct& bundle, std::vector<const Struct*>* out) {
  auto it = bundle.fields().find("entry");
  if (it == bundle.fields().end()) return true;
  if (it->second.kind_case() != Value::kListValue) return false;
  for (const Value& v : it->second.list_value().values()) {
    if (v.kind_case() != Value::kStructValue) return false;
    out->push_back(&v.struct_value());
  }
  return true;
}

// Printable keeps text from a target fit for one line of an error message.
std::string Printable(absl::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxDiagnosticChars)) {
    out.push_back(absl::ascii_iscntrl(c) ? ' ' : c);
  }
  if (text.size() > kMaxDiagnosticChars) out += "...";
  return out;
}

}  // namespace

absl::StatusOr<int> CheckTransactionBundle(absl::string_view content) {
  Struct bundle;
  if (!Parse(content, &bundle)) {
    return absl::InvalidArgumentError("content: is not a JSON object");
  }
  if (StringField(bundle, "resourceType") != "Bundle") {
    return absl::InvalidArgumentError(
        "content.resourceType: must be \"Bundle\"");
  }
  if (StringField(bundle, "type") != "transaction") {
    return absl::InvalidArgumentError(
        "content.type: must be \"transaction\" (fhir-r4-transaction)");
  }
  std::vector<const Struct*> entries;
  if (!Entries(bundle, &entries)) {
    return absl::InvalidArgumentError(
        "content.entry: must be a list of objects");
  }
  if (entries.empty()) {
    return absl::InvalidArgumentError(
        "content.entry: the transaction has no entries");
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string at = absl::StrCat("content.entry[", i, "]");
    const Struct* resource = ObjectField(*entries[i], "resource");
    if (resource == nullptr || StringField(*resource, "resourceType").empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".resource: must be a resource with resourceType"));
    }
    const Struct* request = ObjectField(*entries[i], "request");
    if (request == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".request: is required in a transaction"));
    }
    const std::string method = StringField(*request, "method");
    if (method == "POST") {
      if (StringField(*request, "ifNoneExist").empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            at,
            ".request.ifNoneExist: required for a POST, so that a retried "
            "push creates no duplicate"));
      }
    } else if (method != "PUT") {
      return absl::InvalidArgumentError(absl::StrCat(
          at, ".request.method: must be POST (conditional create) or PUT"));
    }
  }
  return static_cast<int>(entries.size());
}

absl::StatusOr<TransactionOutcome> ReadTransactionResponse(
    absl::string_view body, int expected_entries) {
  const std::string may_be_applied =
      " (the transaction may have been applied; pushing again is safe)";
  Struct bundle;
  if (!Parse(body, &bundle) ||
      StringField(bundle, "resourceType") != "Bundle" ||
      StringField(bundle, "type") != "transaction-response") {
    return absl::UnknownError(absl::StrCat(
        "the answer is not a transaction-response Bundle", may_be_applied));
  }
  std::vector<const Struct*> entries;
  if (!Entries(bundle, &entries) ||
      static_cast<int>(entries.size()) != expected_entries) {
    return absl::UnknownError(absl::StrCat(
        "the transaction-response has ", entries.size(), " entries for ",
        expected_entries, " sent", may_be_applied));
  }
  TransactionOutcome outcome;
  outcome.bundle_id = Printable(StringField(bundle, "id"));
  for (size_t i = 0; i < entries.size(); ++i) {
    const Struct* response = ObjectField(*entries[i], "response");
    const std::string status =
        response == nullptr ? "" : StringField(*response, "status");
    if (absl::StartsWith(status, "201")) {
      ++outcome.created;
    } else if (absl::StartsWith(status, "200")) {
      ++outcome.unchanged;
    } else {
      return absl::UnknownError(absl::StrCat(
          "transaction-response entry[", i, "].response.status is \"",
          Printable(status), "\", not 200 or 201", may_be_applied));
    }
  }
  return outcome;
}

std::string OperationOutcomeSummary(absl::string_view body) {
  Struct outcome;
  if (!Parse(body, &outcome) ||
      StringField(outcome, "resourceType") != "OperationOutcome") {
    return "";
  }
  const Value* issues = Field(outcome, "issue", Value::kListValue);
  if (issues == nullptr) return "";
  std::vector<std::string> parts;
  for (const Value& v : issues->list_value().values()) {
    if (v.kind_case() != Value::kStructValue) continue;
    if (static_cast<int>(parts.size()) == kMaxIssues) {
      parts.push_back("...");
      break;
    }
    const Struct& issue = v.struct_value();
    std::string part = absl::StrCat(Printable(StringField(issue, "severity")),
                                    "/", Printable(StringField(issue, "code")));
    std::vector<std::string> where;
    for (absl::string_view key : {"expression", "location"}) {
      if (const Value* list = Field(issue, key, Value::kListValue)) {
        for (const Value& e : list->list_value().values()) {
          if (e.kind_case() == Value::kStringValue) {
            where.push_back(Printable(e.string_value()));
          }
        }
      }
      if (!where.empty()) break;
    }
    if (!where.empty())
      absl::StrAppend(&part, " at ", absl::StrJoin(where, ", "));
    std::string text = StringField(issue, "diagnostics");
    if (text.empty()) {
      if (const Struct* details = ObjectField(issue, "details")) {
        text = StringField(*details, "text");
      }
    }
    if (!text.empty()) absl::StrAppend(&part, ": ", Printable(text));
    parts.push_back(std::move(part));
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace ipsrt::fhir_push
