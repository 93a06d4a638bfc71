// Reading the FHIR JSON the fhir-push plugin sends and receives: the
// transaction Bundle it is asked to deliver, the transaction-response
// Bundle a target answers, and the OperationOutcome of a refusal. JSON is
// parsed with protobuf's JSON reader into google.protobuf.Struct (already
// linked through the SDK).
#ifndef IPSRT_PLUGINS_FHIR_PUSH_TRANSACTION_H_
#define IPSRT_PLUGINS_FHIR_PUSH_TRANSACTION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ipsrt::fhir_push {

// CheckTransactionBundle returns the number of entries of a Bundle of type
// "transaction" that is safe to send again: every entry has a resource and
// a request, and every POST is a conditional create (request.ifNoneExist),
// so that a retried push creates no duplicates. INVALID_ARGUMENT naming
// the field from the request's root ("content.entry[2].request.ifNoneExist:
// ..."); the message never quotes resource content.
absl::StatusOr<int> CheckTransactionBundle(absl::string_view content);

// TransactionOutcome counts a transaction-response Bundle's entries.
struct TransactionOutcome {
  // entry.response.status "201 ..." (created).
  int created = 0;
  // entry.response.status "200 ..." (a conditional create that matched an
  // existing resource, or an update).
  int unchanged = 0;
  // The response Bundle's id, empty when it has none.
  std::string bundle_id;
};

// ReadTransactionResponse reads `body`, which must be a Bundle of type
// "transaction-response" with `expected_entries` entries, each with a 200
// or 201 status. UNKNOWN otherwise (the target said 2xx, so the
// transaction may have been applied; what it answered cannot be counted).
absl::StatusOr<TransactionOutcome> ReadTransactionResponse(
    absl::string_view body, int expected_entries);

// OperationOutcomeSummary renders the issues of an OperationOutcome as
// "error/invalid at Bundle.entry[1]: <diagnostics>; ..." (each issue's
// diagnostics or details.text, control characters replaced, each cut at
// 200 characters, at most 5 issues). Empty when `body` is not an
// OperationOutcome.
std::string OperationOutcomeSummary(absl::string_view body);

}  // namespace ipsrt::fhir_push

#endif  // IPSRT_PLUGINS_FHIR_PUSH_TRANSACTION_H_
