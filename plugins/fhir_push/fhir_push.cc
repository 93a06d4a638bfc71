// fhir-push: delivers a rendered FHIR R4 transaction Bundle to an EHR's
// FHIR server (README.md in this directory: config, retries, counts).
//
// One delivery is up to max_attempts POSTs of the Bundle to the target's
// base URL with
//   Content-Type: application/fhir+json
//   Accept: application/fhir+json
//   Authorization: Bearer <token>           (when the target has one)
//   X-Request-Id, Idempotency-Key: <the export's idempotency key>
//   Prefer: return=minimal                  (no resources echoed back)
// Every POST entry must be a conditional create (ifNoneExist), which makes
// the whole transaction safe to send again: that is why a timeout is
// retried here, unlike in the reminder webhook.
//
// The token is read at each delivery (a rotated file is picked up) and
// never logged or put in an error; neither is any part of the Bundle.
#include <ipsrt/plugin/plugin.h>

#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ipsrt/plugin/hash.h"
#include "ipsrt/plugin/http.h"
#include "push_target.h"
#include "transaction.h"

namespace {

namespace v1 = ::ipsrt::plugin::v1;
using ::ipsrt::fhir_push::PushTarget;
using ::ipsrt::fhir_push::PushTargets;

constexpr char kFormat[] = "fhir-r4-transaction";
// A transaction-response with return=minimal is small; more than this is
// not read.
constexpr size_t kMaxResponseBytes = 16 << 20;

bool IsHeaderSafe(absl::string_view value) {
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return !value.empty();
}

using ::ipsrt::plugin::HttpResult;

class FhirPush final : public ipsrt::plugin::Plugin {
 public:
  absl::Status Configure(const v1::ConfigureRequest& request) override {
    absl::StatusOr<PushTargets> targets =
        ipsrt::fhir_push::ReadPushTargets(request);
    if (!targets.ok()) return targets.status();
    targets_ = std::move(*targets);
    return absl::OkStatus();
  }

  absl::StatusOr<v1::DescribeResponse> Describe() override {
    v1::DescribeResponse d;
    d.set_summary(
        "Pushes FHIR R4 transaction Bundles to EHR FHIR servers, with "
        "conditional creates, bearer tokens and bounded retries");
    // No export_formats: those name formats a plugin renders, and this one
    // only delivers (fhir-r4-transaction Bundles rendered by fhir-r4), so
    // ExportService never picks it as a renderer.
    return d;
  }

  absl::StatusOr<v1::RenderExportResponse> RenderExport(
      const v1::RenderExportRequest&) override {
    return absl::UnimplementedError(
        "fhir-push delivers fhir-r4-transaction Bundles and renders none; "
        "render them with the FHIR R4 exporter plugin");
  }

  absl::StatusOr<v1::DeliverExportResponse> DeliverExport(
      const v1::DeliverExportRequest& request) override {
    if (!targets_.has_value()) {
      return absl::FailedPreconditionError("fhir-push is not configured");
    }
    if (request.format() != kFormat) {
      return absl::InvalidArgumentError(absl::StrCat(
          "format: \"", request.format(),
          "\" is not delivered by fhir-push (formats: ", kFormat, ")"));
    }
    const PushTarget* target = targets_->Find(request.target());
    if (target == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "target: fhir-push has no delivery target named \"", request.target(),
          "\" (targets: ", targets_->Names(), ")"));
    }
    if (!IsHeaderSafe(request.idempotency_key())) {
      return absl::InvalidArgumentError(
          "idempotency_key: must be non-empty printable ASCII");
    }
    const std::string& bundle = request.content();
    if (target->max_bundle_bytes > 0 &&
        static_cast<int64_t>(bundle.size()) > target->max_bundle_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the bundle (", bundle.size(), " bytes) is too large for target \"",
          target->name, "\": ", target->key_path, ".max_bundle_bytes is ",
          target->max_bundle_bytes));
    }
    absl::StatusOr<int> entries =
        ipsrt::fhir_push::CheckTransactionBundle(bundle);
    if (!entries.ok()) return entries.status();
    absl::StatusOr<std::string> token = target->BearerToken();
    if (!token.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("target \"", target->name, "\": ", target->key_path, ".",
                       token.status().message()));
    }

    // A retryable problem, the same without the target's diagnostics for
    // the log (they may quote what was sent: the log never gets patient
    // data), or a permanent status.
    auto problem_of = [&](const HttpResult& a,
                          std::string* for_log) -> absl::StatusOr<std::string> {
      if (!a.answered()) {
        absl::StatusOr<std::string> problem = NetworkProblem(*target, a);
        if (problem.ok()) *for_log = *problem;
        return problem;
      }
      *for_log = absl::StrCat("HTTP ", a.http_status);
      std::string summary = ipsrt::fhir_push::OperationOutcomeSummary(a.body);
      return summary.empty() ? *for_log : absl::StrCat(*for_log, ": ", summary);
    };
    absl::Status permanent;
    const ipsrt::plugin::RetryPolicy retries = target->Retries();
    HttpResult last = ipsrt::plugin::PostWithRetries(
        Request(*target, *token, request.idempotency_key(), bundle), retries,
        [&](const HttpResult& a, int attempt) {
          if (a.success() || (a.answered() && !Transient(a.http_status))) {
            return false;
          }
          std::string for_log;
          absl::StatusOr<std::string> problem = problem_of(a, &for_log);
          if (!problem.ok()) {
            permanent = problem.status();
            return false;
          }
          host().Log(
              IPSRT_LOG_WARNING,
              absl::StrCat("target ", target->name, " attempt ", attempt, "/",
                           target->max_attempts, " failed (", for_log,
                           "); trying again in ",
                           absl::FormatDuration(ipsrt::plugin::BackoffBefore(
                               retries, attempt + 1))));
          return true;
        });
    if (last.success()) return Counted(*target, last, *entries);
    if (last.answered() && !Transient(last.http_status)) {
      return Refusal(*target, last, bundle.size());
    }
    if (!permanent.ok()) return permanent;
    std::string for_log;
    absl::StatusOr<std::string> last_problem = problem_of(last, &for_log);
    if (!last_problem.ok()) return last_problem.status();
    const std::string tail = absl::StrCat(
        " after ", target->max_attempts, " attempt",
        target->max_attempts == 1 ? "" : "s", "; last: ", *last_problem);
    if (last.network == HttpResult::Network::kTimeout && last.connected) {
      return absl::DeadlineExceededError(
          absl::StrCat("target \"", target->name, "\" did not answer", tail));
    }
    return absl::UnavailableError(
        absl::StrCat("target \"", target->name, "\" is unavailable", tail));
  }

 private:
  static bool Transient(long http) {
    return http == 408 || http == 429 || http >= 500;
  }

  // Counted reads a 2xx answer.
  static absl::StatusOr<v1::DeliverExportResponse> Counted(
      const PushTarget& target, const HttpResult& a, int entries) {
    absl::StatusOr<ipsrt::fhir_push::TransactionOutcome> outcome =
        ipsrt::fhir_push::ReadTransactionResponse(a.body, entries);
    if (!outcome.ok()) {
      return absl::Status(
          outcome.status().code(),
          absl::StrCat("target \"", target.name, "\" answered HTTP ",
                       a.http_status, " but ", outcome.status().message()));
    }
    v1::DeliverExportResponse response;
    // The server's id of its response Bundle identifies the delivery in its
    // logs; a digest of the answer when it gave none. Neither carries
    // patient data.
    response.set_receipt(outcome->bundle_id.empty()
                             ? absl::StrCat("sha256:", ipsrt::Sha256Hex(a.body))
                             : absl::StrCat("Bundle/", outcome->bundle_id));
    response.set_created(outcome->created);
    response.set_unchanged(outcome->unchanged);
    return response;
  }

  // Refusal turns a final non-2xx answer into the status to return.
  static absl::Status Refusal(const PushTarget& target, const HttpResult& a,
                              size_t bundle_bytes) {
    std::string detail = ipsrt::fhir_push::OperationOutcomeSummary(a.body);
    if (!detail.empty()) detail = absl::StrCat(": ", detail);
    const std::string who = absl::StrCat("target \"", target.name, "\"");
    const long http = a.http_status;
    if (http == 401 || http == 403) {
      return absl::FailedPreconditionError(
          absl::StrCat(who, " refused authentication (HTTP ", http, ")", detail,
                       "; check the bearer token of ", target.key_path));
    }
    if (http == 413) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the bundle (", bundle_bytes, " bytes) is too large for ", who,
          " (HTTP 413)", detail));
    }
    if (http == 400 || http == 422) {
      return absl::InvalidArgumentError(absl::StrCat(
          who, " refused the transaction (HTTP ", http, ")", detail));
    }
    if (http == 404 || http == 405) {
      return absl::FailedPreconditionError(absl::StrCat(
          who,
          " has no FHIR transaction endpoint at its base "
          "URL (HTTP ",
          http, ")", detail, "; check ", target.key_path, ".base_url"));
    }
    if (http < 200 || (http >= 300 && http < 400)) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, " answered HTTP ", http, " (redirects are not followed); check ",
          target.key_path, ".base_url"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        who, " refused the transaction (HTTP ", http, ")", detail));
  }

  // NetworkProblem describes a POST that got no answer: a retryable
  // problem, or a permanent status.
  static absl::StatusOr<std::string> NetworkProblem(const PushTarget& target,
                                                    const HttpResult& a) {
    switch (a.network) {
      case HttpResult::Network::kTimeout:
        if (a.connected) {
          return absl::StrCat("no answer within ",
                              absl::FormatDuration(target.timeout), " (",
                              target.key_path, ".timeout)");
        }
        return absl::StrCat("cannot connect within ",
                            absl::FormatDuration(target.connect_timeout));
      case HttpResult::Network::kConnection:
        return a.error;
      case HttpResult::Network::kResponseTooLarge:
        return absl::UnknownError(absl::StrCat(
            "target \"", target.name, "\" answered more than ",
            kMaxResponseBytes,
            " bytes (the transaction may have been applied; pushing again is "
            "safe)"));
      case HttpResult::Network::kBadUrl:
        return absl::FailedPreconditionError(
            absl::StrCat("target \"", target.name, "\": ", target.key_path,
                         ".base_url: ", a.error));
      default:
        // TLS verification and the like: not fixed by trying again at once.
        return absl::UnavailableError(
            absl::StrCat("target \"", target.name, "\": ", a.error));
    }
  }

  // Request is one POST of `bundle` to the target.
  static ipsrt::plugin::HttpRequest Request(const PushTarget& target,
                                            const std::string& token,
                                            const std::string& idempotency_key,
                                            const std::string& bundle) {
    return {
        .url = target.base_url,
        .body = bundle,
        .headers = {"Content-Type: application/fhir+json",
                    "Accept: application/fhir+json", "Prefer: return=minimal",
                    absl::StrCat("X-Request-Id: ", idempotency_key),
                    absl::StrCat("Idempotency-Key: ", idempotency_key),
                    token.empty()
                        ? std::string()
                        : absl::StrCat("Authorization: Bearer ", token)},
        .user_agent = "ipsrt-fhir-push/1.0",
        .connect_timeout = target.connect_timeout,
        .timeout = target.timeout,
        .ca_file = target.ca_file,
        .max_response_bytes = kMaxResponseBytes};
  }

  std::optional<PushTargets> targets_;
};

}  // namespace

IPSRT_PLUGIN(FhirPush, "fhir-push", "1.0.0", IPSRT_KIND_EXPORTER)
