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
#include <curl/curl.h>
#include <ipsrt/plugin/plugin.h>

#include <mutex>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/hash.h"
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

struct ResponseBuffer {
  std::string bytes;
  bool overflow = false;
};

size_t Collect(char* data, size_t size, size_t n, void* user) {
  auto* buffer = static_cast<ResponseBuffer*>(user);
  if (buffer->bytes.size() + size * n > kMaxResponseBytes) {
    buffer->overflow = true;
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  buffer->bytes.append(data, size * n);
  return size * n;
}

bool IsHeaderSafe(absl::string_view value) {
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return !value.empty();
}

// One POST's result.
struct Attempt {
  // Set when the target answered.
  long http_status = 0;
  std::string body;
  // Set when it did not: what went wrong.
  CURLcode curl_code = CURLE_OK;
  bool connected = false;
};

class FhirPush final : public ipsrt::plugin::Plugin {
 public:
  absl::Status Configure(const v1::ConfigureRequest& request) override {
    static std::once_flag curl_once;
    std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
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
    d.set_config_schema(
        R"({"type":"object","required":["targets"],"properties":{)"
        R"("default_target":{"type":"string"},)"
        R"("targets":{"type":"object","minProperties":1,)"
        R"("additionalProperties":{"type":"object","required":["base_url"],)"
        R"("properties":{"base_url":{"type":"string"},)"
        R"("bearer_token_env":{"type":"string"},)"
        R"("bearer_token_file":{"type":"string"},)"
        R"("connect_timeout":{"type":"string"},"timeout":{"type":"string"},)"
        R"("max_attempts":{"type":"integer","minimum":1,"maximum":10},)"
        R"("initial_backoff":{"type":"string"},)"
        R"("max_backoff":{"type":"string"},)"
        R"("max_bundle_bytes":{"type":"integer","minimum":1},)"
        R"("ca_file":{"type":"string"}},"additionalProperties":false}}},)"
        R"("additionalProperties":false})");
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

    std::string last_problem;
    // The same without the target's diagnostics, which may quote what was
    // sent: the log never gets patient data.
    std::string last_problem_for_log;
    bool last_was_timeout = false;
    for (int attempt = 1; attempt <= target->max_attempts; ++attempt) {
      if (attempt > 1) absl::SleepFor(target->BackoffBefore(attempt));
      Attempt a = Post(*target, *token, request.idempotency_key(), bundle);
      if (a.curl_code == CURLE_OK) {
        if (a.http_status >= 200 && a.http_status < 300) {
          return Counted(*target, a, *entries);
        }
        if (!Transient(a.http_status)) {
          return Refusal(*target, a, bundle.size());
        }
        last_problem = absl::StrCat("HTTP ", a.http_status);
        last_problem_for_log = last_problem;
        if (std::string summary =
                ipsrt::fhir_push::OperationOutcomeSummary(a.body);
            !summary.empty()) {
          absl::StrAppend(&last_problem, ": ", summary);
        }
        last_was_timeout = false;
      } else {
        absl::StatusOr<std::string> problem = NetworkProblem(*target, a);
        if (!problem.ok()) return problem.status();
        last_problem = *problem;
        last_problem_for_log = last_problem;
        last_was_timeout =
            a.curl_code == CURLE_OPERATION_TIMEDOUT && a.connected;
      }
      if (attempt < target->max_attempts) {
        host().Log(IPSRT_LOG_WARNING,
                   absl::StrCat("target ", target->name, " attempt ", attempt,
                                "/", target->max_attempts, " failed (",
                                last_problem_for_log, "); trying again in ",
                                absl::FormatDuration(
                                    target->BackoffBefore(attempt + 1))));
      }
    }
    const std::string tail = absl::StrCat(
        " after ", target->max_attempts, " attempt",
        target->max_attempts == 1 ? "" : "s", "; last: ", last_problem);
    if (last_was_timeout) {
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
      const PushTarget& target, const Attempt& a, int entries) {
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
  static absl::Status Refusal(const PushTarget& target, const Attempt& a,
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
                                                    const Attempt& a) {
    switch (a.curl_code) {
      case CURLE_OPERATION_TIMEDOUT:
        if (a.connected) {
          return absl::StrCat("no answer within ",
                              absl::FormatDuration(target.timeout), " (",
                              target.key_path, ".timeout)");
        }
        return absl::StrCat("cannot connect within ",
                            absl::FormatDuration(target.connect_timeout));
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
      case CURLE_COULDNT_CONNECT:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_PARTIAL_FILE:
      case CURLE_SSL_CONNECT_ERROR:
        return std::string(curl_easy_strerror(a.curl_code));
      case CURLE_WRITE_ERROR:
        return absl::UnknownError(absl::StrCat(
            "target \"", target.name, "\" answered more than ",
            kMaxResponseBytes,
            " bytes (the transaction may have been applied; pushing again is "
            "safe)"));
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return absl::FailedPreconditionError(
            absl::StrCat("target \"", target.name, "\": ", target.key_path,
                         ".base_url: ", curl_easy_strerror(a.curl_code)));
      default:
        // TLS verification and the like: not fixed by trying again at once.
        return absl::UnavailableError(absl::StrCat(
            "target \"", target.name, "\": ", curl_easy_strerror(a.curl_code)));
    }
  }

  static Attempt Post(const PushTarget& target, const std::string& token,
                      const std::string& idempotency_key,
                      const std::string& bundle) {
    Attempt a;
    CURL* curl = curl_easy_init();
    if (curl == nullptr) {
      a.curl_code = CURLE_FAILED_INIT;
      return a;
    }
    curl_slist* headers = nullptr;
    std::string authorization;
    if (!token.empty())
      authorization = absl::StrCat("Authorization: Bearer ", token);
    for (const std::string& h :
         {std::string("Content-Type: application/fhir+json"),
          std::string("Accept: application/fhir+json"),
          std::string("Prefer: return=minimal"),
          absl::StrCat("X-Request-Id: ", idempotency_key),
          absl::StrCat("Idempotency-Key: ", idempotency_key),
          // No "Expect: 100-continue" round trip for large bundles.
          std::string("Expect:"), authorization}) {
      if (!h.empty()) headers = curl_slist_append(headers, h.c_str());
    }
    ResponseBuffer response;
    curl_easy_setopt(curl, CURLOPT_URL, target.base_url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, bundle.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(bundle.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ipsrt-fhir-push/1.0");
    curl_easy_setopt(
        curl, CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(target.connect_timeout)));
    curl_easy_setopt(
        curl, CURLOPT_TIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(target.timeout)));
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    if (!target.ca_file.empty()) {
      curl_easy_setopt(curl, CURLOPT_CAINFO, target.ca_file.c_str());
    }
    a.curl_code = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a.http_status);
    curl_off_t connect_time = 0;
    curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_time);
    a.connected = connect_time > 0;
    a.body = std::move(response.bytes);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return a;
  }

  std::optional<PushTargets> targets_;
};

}  // namespace

IPSRT_PLUGIN(FhirPush, "fhir-push", "1.0.0", IPSRT_KIND_EXPORTER)
