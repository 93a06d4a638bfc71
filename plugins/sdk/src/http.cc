#include "ipsrt/plugin/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>

#include "absl/time/clock.h"

namespace ipsrt::plugin {
namespace {

struct Response {
  std::string* body;
  size_t limit;
  bool too_large = false;
};

size_t Collect(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  if (r->limit == 0) return size * n;  // read and dropped
  if (r->body->size() + size * n > r->limit) {
    r->too_large = true;
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  r->body->append(data, size * n);
  return size * n;
}

HttpResult::Network Classify(CURLcode rc) {
  switch (rc) {
    case CURLE_OK:
      return HttpResult::Network::kNone;
    case CURLE_OPERATION_TIMEDOUT:
      return HttpResult::Network::kTimeout;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
      return HttpResult::Network::kConnection;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return HttpResult::Network::kBadUrl;
    default:
      return HttpResult::Network::kOther;
  }
}

}  // namespace

bool HttpResult::Retryable() const {
  switch (network) {
    case Network::kNone:
      return http_status == 429 || http_status >= 500;
    case Network::kTimeout:
      return !connected;
    case Network::kConnection:
      return true;
    default:
      return false;
  }
}

HttpResult HttpPost(const HttpRequest& request) {
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  HttpResult result;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    result.network = HttpResult::Network::kOther;
    result.error = "curl_easy_init failed";
    return result;
  }
  curl_slist* headers = nullptr;
  for (const std::string& h : request.headers) {
    if (!h.empty()) headers = curl_slist_append(headers, h.c_str());
  }
  headers = curl_slist_append(headers, "Expect:");
  Response response{&result.body, request.max_response_bytes};
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(request.body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, request.user_agent.c_str());
  curl_easy_setopt(
      curl, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(request.connect_timeout)));
  curl_easy_setopt(
      curl, CURLOPT_TIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(request.timeout)));
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  if (!request.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, request.ca_file.c_str());
  }
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.http_status);
  curl_off_t connect_time = 0;
  curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_time);
  result.connected = connect_time > 0;
  result.network = response.too_large ? HttpResult::Network::kResponseTooLarge
                                      : Classify(rc);
  if (rc != CURLE_OK) result.error = curl_easy_strerror(rc);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return result;
}

absl::Duration BackoffBefore(const RetryPolicy& policy, int attempt) {
  absl::Duration d = policy.initial_backoff;
  for (int i = 2; i < attempt && d < policy.max_backoff; ++i) d *= 2;
  return std::min(d, policy.max_backoff);
}

HttpResult PostWithRetries(
    const HttpRequest& request, const RetryPolicy& policy,
    const std::function<bool(const HttpResult&, int attempt)>& retry) {
  HttpResult result;
  for (int attempt = 1; attempt <= policy.max_attempts; ++attempt) {
    if (attempt > 1) absl::SleepFor(BackoffBefore(policy, attempt));
    result = HttpPost(request);
    if (attempt == policy.max_attempts || !retry(result, attempt)) break;
  }
  return result;
}

}  // namespace ipsrt::plugin
