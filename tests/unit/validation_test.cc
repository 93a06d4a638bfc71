#include "common/validation.h"

#include <string>

#include "gtest/gtest.h"

namespace ipsrt {
namespace {

TEST(ValidationTest, ParentAndNames) {
  EXPECT_EQ(*ParseParent("parent", "tenants/clinic-a"), "clinic-a");
  EXPECT_EQ(ParseParent("parent", "tenant/x").status().message(),
            "parent: expected \"tenants/{tenant}\"");
  EXPECT_EQ(ParseParent("parent", "").status().message(),
            "parent: must not be empty; expected \"tenants/{tenant}\"");
  EXPECT_EQ(ParseParent("parent", "tenants/Clinic").status().message(),
            "parent: tenant may contain only a-z, 0-9 and '-'");
  absl::StatusOr<EnrollmentName> n =
      ParseEnrollmentName("name", "tenants/t1/enrollments/01abc");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->tenant, "t1");
  EXPECT_EQ(n->id, "01abc");
  EXPECT_EQ(n->Format(), "tenants/t1/enrollments/01abc");
  EXPECT_EQ(
      ParseEnrollmentName("name", "tenants/t1/patients/x").status().message(),
      "name: expected \"tenants/{tenant}/enrollments/{enrollment}\"");
  EXPECT_EQ(ParseEnrollmentName("name", "tenants/t1/enrollments/A;B")
                .status()
                .message(),
            "name: enrollment id may contain only a-z, 0-9 and '-'");
}

TEST(ValidationTest, RequestIds) {
  EXPECT_TRUE(CheckRequestId("request_id", "a1:b2.c3_d-4").ok());
  EXPECT_EQ(CheckRequestId("request_id", "").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckRequestId("request_id", std::string(129, 'a')).message(),
            "request_id: is over 128 characters");
  EXPECT_EQ(CheckRequestId("request_id", "a b").message(),
            "request_id: may contain only A-Z, a-z, 0-9 and . _ : -");
}

TEST(ValidationTest, ReferencesNeverEchoTheValue) {
  EXPECT_TRUE(CheckReference("patient_ref", "Patient/123", true).ok());
  EXPECT_TRUE(CheckReference("clinician_ref", "", false).ok());
  EXPECT_EQ(CheckReference("patient_ref", "", true).message(),
            "patient_ref: must not be empty");
  EXPECT_EQ(
      CheckReference("patient_ref", std::string(257, 'p'), true).message(),
      "patient_ref: is over 256 bytes (257)");
  EXPECT_EQ(CheckReference("patient_ref", "MRN\n42", true).message(),
            "patient_ref: must not contain control characters");
  EXPECT_EQ(CheckReference("patient_ref", " MRN42", true).message(),
            "patient_ref: must not start or end with white space");
}

TEST(ValidationTest, TimeZones) {
  for (const char* ok :
       {"Europe/London", "America/New_York", "UTC", "Australia/Lord_Howe",
        "Asia/Kolkata", "America/Argentina/Buenos_Aires", "Etc/GMT+5"}) {
    absl::StatusOr<absl::TimeZone> tz = LoadPatientTimeZone("time_zone", ok);
    EXPECT_TRUE(tz.ok()) << ok << ": " << tz.status();
  }
  for (const char* bad : {"Mars/Olympus", "localtime", "Fixed/UTC+05:00",
                          "/usr/share/zoneinfo/UTC", "../zoneinfo/UTC",
                          "Europe/London ", "europe/london"}) {
    absl::StatusOr<absl::TimeZone> tz = LoadPatientTimeZone("time_zone", bad);
    EXPECT_EQ(tz.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(LoadPatientTimeZone("time_zone", "Mars/Olympus").status().message(),
            "time_zone: unknown IANA time zone \"Mars/Olympus\"; e.g. "
            "\"Europe/London\"");
  EXPECT_EQ(LoadPatientTimeZone("time_zone", "").status().message(),
            "time_zone: must not be empty; give the patient's IANA time zone, "
            "e.g. \"America/New_York\"");
}

TEST(ValidationTest, Labels) {
  EXPECT_TRUE(
      CheckLabels("labels", {{"site", "north"}, {"cohort-2", ""}}).ok());
  EXPECT_EQ(CheckLabels("labels", {{"Site", "x"}}).message(),
            "labels[\"Site\"]: key must be 1-63 characters starting with a-z");
  EXPECT_EQ(CheckLabels("labels", {{"site", std::string(64, 'v')}}).message(),
            "labels[\"site\"]: value is over 63 characters");
}

}  // namespace
}  // namespace ipsrt
