#include "service/request_limits.h"

#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/reflection.h"

namespace ipsrt {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

struct Override {
  size_t bytes = 0;     // 0: the default
  size_t elements = 0;  // 0: the default
};

// Fields whose maximum differs from the defaults, by full field name.
// Free text a clinician types gets 16 KiB; a whole workflow template 1 MiB.
const absl::flat_hash_map<std::string, Override>& Overrides() {
  static const auto* table = new absl::flat_hash_map<std::string, Override>{
      {"ipsrt.v1.ValidateWorkflowRequest.yaml", {1 << 20, 0}},
      {"ipsrt.v1.PingRequest.payload", {1 << 20, 0}},
      {"ipsrt.v1.SessionHeld.note", {16 << 10, 0}},
      {"ipsrt.v1.TaskCompleted.note", {16 << 10, 0}},
      {"ipsrt.v1.AlertAcknowledged.note", {16 << 10, 0}},
      {"ipsrt.v1.GoalSet.description", {16 << 10, 0}},
      {"ipsrt.v1.GoalSet.target", {16 << 10, 0}},
      {"ipsrt.v1.DisruptionPlan.plan", {16 << 10, 0}},
      {"ipsrt.v1.StageChange.reason", {4 << 10, 0}},
      {"ipsrt.v1.UpdateEnrollmentRequest.reason", {4 << 10, 0}},
      {"ipsrt.v1.MigrateEnrollmentsRequest.reason", {4 << 10, 0}},
      {"ipsrt.v1.RelapsePreventionPlan.early_warning_signs", {4 << 10, 100}},
      {"ipsrt.v1.RelapsePreventionPlan.triggers", {4 << 10, 100}},
      {"ipsrt.v1.RelapsePreventionPlan.coping_strategies", {4 << 10, 100}},
      {"ipsrt.v1.RelapsePreventionPlan.supports", {4 << 10, 100}},
      {"ipsrt.v1.RelapsePreventionPlan.professional_contacts", {4 << 10, 100}},
      {"ipsrt.v1.CreateEnrollmentRequest.labels", {0, 64}},
      {"ipsrt.v1.ScoreResponseRequest.days", {0, 366}},
      {"ipsrt.v1.SrmDiaryDay.activities", {0, 100}},
  };
  return *table;
}

const Override* Find(const FieldDescriptor& field) {
  auto it = Overrides().find(field.full_name());
  return it == Overrides().end() ? nullptr : &it->second;
}

std::string Join(const std::string& prefix, const FieldDescriptor& field) {
  return prefix.empty() ? field.name()
                        : absl::StrCat(prefix, ".", field.name());
}

absl::Status TooLong(const std::string& path, size_t size, size_t max) {
  return absl::InvalidArgumentError(absl::StrCat("request field ", path, " is ",
                                                 size, " bytes; the limit is ",
                                                 max, " bytes"));
}

absl::Status Check(const Message& m, const std::string& prefix, int depth) {
  if (depth > 32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request field ", prefix, " nests messages deeper than 32 levels"));
  }
  const Reflection* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const FieldDescriptor* f : fields) {
    const std::string path = Join(prefix, *f);
    if (f->is_repeated()) {
      const size_t n = static_cast<size_t>(r->FieldSize(m, f));
      if (n > MaxElements(*f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("request field ", path, " has ", n,
                         " elements; the limit is ", MaxElements(*f)));
      }
      for (size_t i = 0; i < n; ++i) {
        const std::string at = absl::StrCat(path, "[", i, "]");
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
          std::string scratch;
          const std::string& v = r->GetRepeatedStringReference(
              m, f, static_cast<int>(i), &scratch);
          if (v.size() > MaxBytes(*f))
            return TooLong(at, v.size(), MaxBytes(*f));
        } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          if (absl::Status s =
                  Check(r->GetRepeatedMessage(m, f, static_cast<int>(i)), at,
                        depth + 1);
              !s.ok()) {
            return s;
          }
        }
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      std::string scratch;
      const std::string& v = r->GetStringReference(m, f, &scratch);
      if (v.size() > MaxBytes(*f)) return TooLong(path, v.size(), MaxBytes(*f));
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (absl::Status s = Check(r->GetMessage(m, f), path, depth + 1);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

size_t MaxBytes(const FieldDescriptor& field) {
  const Override* o = Find(field);
  if (o != nullptr && o->bytes > 0) return o->bytes;
  // A map entry's key and value take the map field's limits.
  return kMaxStringBytes;
}

size_t MaxElements(const FieldDescriptor& field) {
  const Override* o = Find(field);
  return o != nullptr && o->elements > 0 ? o->elements : kMaxRepeated;
}

absl::Status CheckRequestLimits(const Message& request) {
  return Check(request, "", 0);
}

}  // namespace ipsrt
