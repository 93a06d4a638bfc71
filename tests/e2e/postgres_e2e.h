// Helpers for end-to-end tests on PostgreSQL: an ipsrtd config that selects
// the postgres store, and small gRPC calls shared by those tests.
#ifndef IPSRT_TESTS_E2E_POSTGRES_E2E_H_
#define IPSRT_TESTS_E2E_POSTGRES_E2E_H_

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "harness.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"
#include "process.h"

namespace ipsrt::e2e {

// WritePostgresConfig writes dir/ipsrtd.yaml for store.kind postgres with
// `conninfo`, reading the password from the environment variable
// `password_env` when it is not empty, a 5 s statement_timeout unless
// `store_lines` (store.postgres lines, each indented four spaces and ended
// by a newline) sets another, and `store_lines`. Returns its path.
inline std::string WritePostgresConfig(const TempDir& dir,
                                       const std::string& conninfo,
                                       const std::string& password_env,
                                       int pool_size = 4,
                                       const std::string& store_lines = "") {
  const std::string path = dir.File("ipsrtd.yaml");
  std::string yaml = absl::StrCat(
      "server:\n"
      "  listen: 127.0.0.1:50051\n"
      "  shutdown_grace: 10s\n"
      "store:\n"
      "  kind: postgres\n"
      "  postgres:\n"
      "    conninfo: \"",
      conninfo, "\"\n    pool_size: ", pool_size, "\n",
      absl::StrContains(store_lines, "statement_timeout:")
          ? ""
          : "    statement_timeout: 5s\n",
      store_lines,
      password_env.empty()
          ? ""
          : absl::StrCat("    password_env: ", password_env, "\n"),
      "workflows:\n"
      "  directories:\n"
      "    - ",
      IPSRT_WORKFLOWS_DIR,
      "\n"
      "logging:\n"
      "  level: info\n"
      "plugins:\n  - path: libipsrt_core_instruments.so\n");
  absl::Status s = WriteFile(path, yaml);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::abort();
  }
  return path;
}

inline std::unique_ptr<v1::EnrollmentService::Stub> EnrollmentStub(
    const std::string& address) {
  return v1::EnrollmentService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

inline v1::CreateEnrollmentRequest NewEnrollment(
    const std::string& request_id, const std::string& patient_ref) {
  v1::CreateEnrollmentRequest request;
  request.set_parent("tenants/default");
  request.set_request_id(request_id);
  request.set_patient_ref(patient_ref);
  request.set_workflow_id("ipsrt-standard");
  request.set_time_zone("America/New_York");
  request.set_clinician_ref("Practitioner/1");
  return request;
}

inline v1::SubmitEventRequest SessionHeld(const std::string& name,
                                          const std::string& request_id,
                                          int64_t expected_revision) {
  v1::SubmitEventRequest r;
  r.set_name(name);
  r.set_request_id(request_id);
  r.set_expected_revision(expected_revision);
  r.mutable_event()->mutable_session_held();
  return r;
}

inline void SetDeadline(grpc::ClientContext& context, absl::Duration d) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + d));
}

}  // namespace ipsrt::e2e

#endif  // IPSRT_TESTS_E2E_POSTGRES_E2E_H_
