#include "fhir_server/fhir_test_server.h"

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ipsrt::e2e {

absl::StatusOr<FhirTestServerProcess> StartFhirTestServer(
    const std::string& node, const std::string& server_script,
    const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<std::string> argv = {node, server_script};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ChildProcess::Spawn(argv, log_path);
  if (!child.ok()) return child.status();
  const std::string marker = "listening on 127.0.0.1:";
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end) {
    const std::string log = (*child)->Log();
    const size_t at = log.find(marker);
    const size_t eol = at == std::string::npos ? at : log.find('\n', at);
    int port = 0;
    if (eol != std::string::npos &&
        absl::SimpleAtoi(
            log.substr(at + marker.size(), eol - at - marker.size()), &port)) {
      return FhirTestServerProcess{*std::move(child), port};
    }
    if ((*child)->Exited()) {
      return absl::InternalError(absl::StrCat("server exited: ", log));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError("the FHIR test server did not start");
}

}  // namespace ipsrt::e2e
