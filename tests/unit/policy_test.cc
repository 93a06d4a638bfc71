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

TEST(EventPolicyTableTest, EveryEventTypeHasExactlyOneEntry) {
  const google::protobuf::OneofDescriptor* payload =
      v1::EventPayload::descriptor()->FindOneofByName("payload");
  ASSERT_NE(payload, nullptr);
  ASSERT_GE(payload->field_count(), 14);
  for (int i = 0; i < payload->field_count(); ++i) {
    const std::string name = payload->field(i)->name();
    int entries = 0;
    for (const EventPolicy& e : EventPolicyTable())
      entries += e.payload == name;
    EXPECT_EQ(entries, 1) << name;
  }
  EXPECT_EQ(EventPolicyTable().size(),
            static_cast<size_t>(payload->field_count()));
  for (const EventPolicy& e : EventPolicyTable()) {
    EXPECT_NE(
        payload->containing_type()->FindFieldByName(std::string(e.payload)),
        nullptr)
        << e.payload << " is in the table but no such event exists";
    // Either someone records it through SubmitEvent, or its own RPC does.
    EXPECT_NE(e.roles.empty(), e.recorded_by.empty()) << e.payload;
    if (e.patient_tasks_only) {
      const auto* m = payload->containing_type()
                          ->FindFieldByName(std::string(e.payload))
                          ->message_type();
      EXPECT_NE(m->FindFieldByName("task_id"), nullptr) << e.payload;
    }
  }
  const MethodPolicy* submit =
      FindPolicy("/ipsrt.v1.EnrollmentService/SubmitEvent");
  ASSERT_NE(submit, nullptr);
  EXPECT_EQ(submit->event_field, "event");
}

// Task "history" of e1 is the clinician's, "diary" the patient's.
absl::StatusOr<bool> PatientTask(const std::string& tenant,
                                 const std::string& id,
                                 const std::string& task_id) {
  return task_id != "history";
}

TEST(AuthorizeTest, EventTypesByRole) {
  const std::string submit = "/ipsrt.v1.EnrollmentService/SubmitEvent";
  const RequestFacts facts{.resource = "tenants/a/enrollments/e1"};
  auto with = [&](std::string event, std::string task = "") {
    RequestFacts f = facts;
    f.event = std::move(event);
    f.event_task_id = std::move(task);
    return f;
  };
  Principal clinician{.subject = "c", .role = Role::kClinician, .tenant = "a"};
  Principal patient{.subject = "p",
                    .role = Role::kPatient,
                    .tenant = "a",
                    .patient_ref = "Patient/1"};
  Principal ehr{.subject = "i", .role = Role::kIntegration, .tenant = "a"};
  Principal clinical_ehr = ehr;
  clinical_ehr.clinical_integration = true;
  for (const char* clinical :
       {"session_held", "goal_set", "relapse_plan", "disruption_plan",
        "stage_change", "alert_acknowledged"}) {
    EXPECT_EQ(
        Authorize(patient, submit, with(clinical), PatientOf, PatientTask)
            .status(),
        absl::PermissionDeniedError(absl::StrCat(
            "permission denied: patient may not record event.", clinical)));
    EXPECT_EQ(
        Authorize(ehr, submit, with(clinical), PatientOf, PatientTask).status(),
        absl::PermissionDeniedError(absl::StrCat(
            "permission denied: integration may not record event.", clinical,
            " (this tenant is not in auth.integration_clinical_tenants)")));
    EXPECT_TRUE(
        Authorize(clinician, submit, with(clinical), PatientOf, PatientTask)
            .ok());
    EXPECT_TRUE(
        Authorize(clinical_ehr, submit, with(clinical), PatientOf, PatientTask)
            .ok());
  }
  // A patient's own reports, and the tasks assigned to the patient.
  for (const char* own : {"questionnaire_response", "srm_diary_day"}) {
    EXPECT_TRUE(
        Authorize(patient, submit, with(own), PatientOf, PatientTask).ok());
  }
  EXPECT_TRUE(Authorize(patient, submit, with("task_completed", "diary"),
                        PatientOf, PatientTask)
                  .ok());
  EXPECT_EQ(Authorize(patient, submit, with("task_completed", "history"),
                      PatientOf, PatientTask)
                .status(),
            absl::PermissionDeniedError(
                "permission denied: patient may complete only tasks assigned "
                "to the patient (event.task_completed.task_id)"));
  EXPECT_EQ(
      Authorize(patient, submit, with("questionnaire_response", "history"),
                PatientOf, PatientTask)
          .status()
          .code(),
      absl::StatusCode::kPermissionDenied);
  // Without the task lookup, a patient's task is refused (fail closed).
  EXPECT_EQ(
      Authorize(patient, submit, with("task_completed", "diary"), PatientOf)
          .status()
          .code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(Authorize(clinician, submit, with("task_completed", "history"),
                        PatientOf, PatientTask)
                  .ok());
  // A clinician's task is a clinical act for an integration caller too.
  EXPECT_EQ(Authorize(ehr, submit, with("task_completed", "history"), PatientOf,
                      PatientTask)
                .status(),
            absl::PermissionDeniedError(
                "permission denied: integration may complete only tasks "
                "assigned to the patient (event.task_completed.task_id)"));
  EXPECT_TRUE(Authorize(clinical_ehr, submit, with("task_completed", "history"),
                        PatientOf, PatientTask)
                  .ok());
  // Another patient's enrollment is still NOT_FOUND for what a patient may
  // record, and a refused type is refused before the enrollment is looked at.
  RequestFacts theirs = with("srm_diary_day");
  theirs.resource = "tenants/a/enrollments/e2";
  EXPECT_EQ(Authorize(patient, submit, theirs, PatientOf, PatientTask)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  theirs.event = "stage_change";
  EXPECT_EQ(Authorize(patient, submit, theirs, PatientOf, PatientTask)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  // The engine's own tick is staff's; the engine-recorded types are no
  // one's through SubmitEvent.
  EXPECT_EQ(Authorize(patient, submit, with("time_elapsed"), PatientOf)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(Authorize(ehr, submit, with("time_elapsed"), PatientOf).ok());
  EXPECT_EQ(
      Authorize(clinician, submit, with("workflow_migrated"), PatientOf)
          .status(),
      absl::InvalidArgumentError("event.workflow_migrated: is recorded by "
                                 "MigrateEnrollments, never submitted"));
  EXPECT_EQ(Authorize(clinician, submit, with("no_such_event"), PatientOf)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace ipsrt
