// Starts the FHIR test server (server.mjs of this directory) as a child of
// the test, for the fhir-push tests and the export end-to-end tests.
#ifndef IPSRT_TESTS_FHIR_SERVER_FHIR_TEST_SERVER_H_
#define IPSRT_TESTS_FHIR_SERVER_FHIR_TEST_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "e2e/process.h"

namespace ipsrt::e2e {

struct FhirTestServerProcess {
  std::unique_ptr<ChildProcess> process;
  // The loopback port it listens on.
  int port = 0;
};

// StartFhirTestServer runs `node server_script args...` with its output in
// `log_path` and waits (up to 20 s) for its "listening on 127.0.0.1:PORT"
// line. INTERNAL when it exits first, DEADLINE_EXCEEDED when it never says.
absl::StatusOr<FhirTestServerProcess> StartFhirTestServer(
    const std::string& node, const std::string& server_script,
    const std::vector<std::string>& args, const std::string& log_path);

}  // namespace ipsrt::e2e

#endif  // IPSRT_TESTS_FHIR_SERVER_FHIR_TEST_SERVER_H_
