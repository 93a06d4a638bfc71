// The policy table: one entry per ipsrt.v1 method, found by walking the
// generated descriptor pool for every .proto file under proto/ipsrt/v1;
// and the decisions the table makes (gRPC-free).
#include "auth/policy.h"

#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "ipsrt/v1/audit.pb.h"
#include "ipsrt/v1/diagnostics.pb.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "ipsrt/v1/export.pb.h"
#include "ipsrt/v1/plugin.pb.h"
#include "ipsrt/v1/questionnaire.pb.h"
#include "ipsrt/v1/reminder.pb.h"
#include "ipsrt/v1/report.pb.h"
#include "ipsrt/v1/workflow.pb.h"

namespace ipsrt {
namespace {

// Every method of every service declared in proto/ipsrt/v1/*.proto.
std::set<std::string> AllMethods() {
  // Touch one message per file so the generated descriptors are linked.
  (void)v1::AuditRecord::descriptor();
  (void)v1::PingRequest::descriptor();
  (void)v1::Enrollment::descriptor();
  (void)v1::ExportEnrollmentRequest::descriptor();
  (void)v1::ListPluginsRequest::descriptor();
  (void)v1::Questionnaire::descriptor();
  (void)v1::Reminder::descriptor();
  (void)v1::RenderReportRequest::descriptor();
  (void)v1::Workflow::descriptor();
  std::set<std::string> methods;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(IPSRT_SOURCE_DIR) / "proto/ipsrt/v1")) {
    if (entry.path().extension() != ".proto") continue;
    std::string name =
        absl::StrCat("ipsrt/v1/", entry.path().filename().string());
    const google::protobuf::FileDescriptor* file = pool->FindFileByName(name);
    EXPECT_NE(file, nullptr) << name << " is not in the generated pool: "
                             << "add it to proto/CMakeLists.txt and touch "
                             << "one of its messages above";
    if (file == nullptr) continue;
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        methods.insert(absl::StrCat("/", service->full_name(), "/",
                                    service->method(m)->name()));
      }
    }
  }
  return methods;
}

TEST(PolicyTableTest, EveryMethodHasExactlyOneEntry) {
  std::set<std::string> methods = AllMethods();
  ASSERT_GE(methods.size(), 25u);
  for (const std::string& m : methods) {
    int entries = 0;
    for (const MethodPolicy& p : PolicyTable()) entries += p.method == m;
    EXPECT_EQ(entries, 1) << m;
  }
  for (const MethodPolicy& p : PolicyTable()) {
    EXPECT_TRUE(methods.count(std::string(p.method)))
        << p.method << " is in the table but no such method exists";
    EXPECT_FALSE(p.roles.empty()) << p.method;
    if (p.scope == Scope::kTenant || p.scope == Scope::kEnrollment) {
      EXPECT_FALSE(p.resource_field.empty()) << p.method;
      EXPECT_NE(p.audit, AuditKind::kNone)
          << p.method << " reaches patient data, so it must be audited";
    }
  }
}

TEST(PolicyTableTest, ResourceFieldsExistOnTheRequests) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const MethodPolicy& p : PolicyTable()) {
    std::string path(p.method.substr(1));
    std::string service = path.substr(0, path.find('/'));
    std::string method = path.substr(path.find('/') + 1);
    const auto* s = pool->FindServiceByName(service);
    ASSERT_NE(s, nullptr) << service;
    const auto* m = s->FindMethodByName(method);
    ASSERT_NE(m, nullptr) << p.method;
    for (absl::string_view field : {p.resource_field, p.patient_filter_field}) {
      if (field.empty()) continue;
      const auto* f = m->input_type()->FindFieldByName(std::string(field));
      ASSERT_NE(f, nullptr) << p.method << " has no field " << field;
      EXPECT_EQ(f->type(), google::protobuf::FieldDescriptor::TYPE_STRING);
    }
  }
}

TEST(PolicyTableTest, UnknownMethodsAreRefused) {
  Principal admin{.subject = "root", .role = Role::kAdmin};
  EXPECT_EQ(Authorize(admin, "/ipsrt.v1.EnrollmentService/DeleteEverything", {},
                      nullptr)
                .status(),
            absl::PermissionDeniedError(
                "permission denied: /ipsrt.v1.EnrollmentService/"
                "DeleteEverything has no access policy"));
}

absl::StatusOr<std::string> PatientOf(const std::string& tenant,
                                      const std::string& id) {
  if (tenant == "a" && id == "e1") return std::string("Patient/1");
  if (tenant == "a" && id == "e2") return std::string("Patient/2");
  return absl::NotFoundError("absent");
}

TEST(AuthorizeTest, TenantsAndPatientsAreScoped) {
  const std::string get = "/ipsrt.v1.EnrollmentService/GetEnrollment";
  const std::string list = "/ipsrt.v1.EnrollmentService/ListEnrollments";
  Principal clinician{.subject = "c", .role = Role::kClinician, .tenant = "a"};
  Principal patient{.subject = "p",
                    .role = Role::kPatient,
                    .tenant = "a",
                    .patient_ref = "Patient/1"};
  EXPECT_TRUE(Authorize(clinician, get,
                        {.resource = "tenants/a/enrollments/e2"}, PatientOf)
                  .ok());
  // Another tenant's enrollment reads like one that does not exist.
  EXPECT_EQ(
      Authorize(clinician, get, {.resource = "tenants/b/enrollments/e1"},
                PatientOf)
          .status(),
      absl::NotFoundError("enrollment tenants/b/enrollments/e1 not found"));
  EXPECT_EQ(
      Authorize(clinician, list, {.resource = "tenants/b"}, PatientOf).status(),
      absl::PermissionDeniedError(
          "permission denied: clinician may not access parent outside "
          "their tenant"));
  EXPECT_TRUE(Authorize(patient, get, {.resource = "tenants/a/enrollments/e1"},
                        PatientOf)
                  .ok());
  EXPECT_EQ(
      Authorize(patient, get, {.resource = "tenants/a/enrollments/e2"},
                PatientOf)
          .status(),
      absl::NotFoundError("enrollment tenants/a/enrollments/e2 not found"));
  EXPECT_EQ(Authorize(patient, list,
                      {.resource = "tenants/a", .patient_filter = "Patient/2"},
                      PatientOf)
                .status(),
            absl::PermissionDeniedError(
                "permission denied: patient may list only their own "
                "enrollments (set patient_ref to their patient_ref)"));
  EXPECT_TRUE(
      Authorize(patient, list,
                {.resource = "tenants/a", .patient_filter = "Patient/1"},
                PatientOf)
          .ok());
  EXPECT_EQ(
      Authorize(patient, "/ipsrt.v1.WorkflowService/ReloadWorkflows", {},
                PatientOf)
          .status(),
      absl::PermissionDeniedError("permission denied: patient may not call "
                                  "/ipsrt.v1.WorkflowService/ReloadWorkflows"));
  Principal tenant_admin{.subject = "t", .role = Role::kAdmin, .tenant = "a"};
  EXPECT_EQ(Authorize(tenant_admin, "/ipsrt.v1.AuditService/VerifyAuditChain",
                      {}, PatientOf)
                .status(),
            absl::PermissionDeniedError(
                "permission denied: admin of one tenant may not verify the "
                "deployment's audit chain"));
  Principal root{.subject = "r", .role = Role::kAdmin};
  EXPECT_TRUE(
      Authorize(root, get, {.resource = "tenants/b/enrollments/zz"}, PatientOf)
          .ok());
}

}  // namespace
}  // namespace ipsrt
