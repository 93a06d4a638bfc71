// reminder-webhook: a reminder channel that POSTs each delivery as JSON to
// an HTTP(S) endpoint, signed so the receiver can tell it came from this
// engine and was not altered (plugins/reminders/README.md shows how to
// verify).
//
// One delivery is one POST of ReminderJson (channel_common.h) with
//   Content-Type: application/json
//   Idempotency-Key: <the reminder's idempotency key>
//   X-IPSRT-Timestamp: <unix seconds of this attempt>
//   X-IPSRT-Signature: sha256=<hex HMAC-SHA256(secret, timestamp "." body)>
// Outcome, per attempt:
// - 2xx: delivered.
// - connection errors (refused, reset, no answer before connect_timeout),
//   429 and 5xx: tried again after initial_backoff, doubling, up to
//   max_attempts POSTs in this delivery; then UNAVAILABLE, which the
//   engine's dispatcher retries later with its own backoff.
// - connected, but no complete answer before `timeout` (which bounds the
//   whole POST, connecting included): DEADLINE_EXCEEDED at once (the receiver
//   may be working on it; the dispatcher retries later with the same
//   Idempotency-Key).
// - 400, 413, 422: INVALID_ARGUMENT; other 4xx and 1xx/3xx (redirects are
//   not followed): FAILED_PRECONDITION. Both are permanent.
// A delivery takes at most max_attempts * timeout plus the backoffs;
// an out-of-process entry's call_timeout must be longer than that.
//
// The secret is read once, in Configure, from `secret_file`; it is never
// logged or put in an error message.
//
//   plugins:
//     - path: libipsrt_reminder_webhook.so
//       config:
//         url: https://notify.example.org/ipsrt/reminders
//         secret_file: /etc/ipsrtd/webhook.secret
//         connect_timeout: 2s
//         timeout: 5s
//         max_attempts: 3
//         initial_backoff: 200ms
//         ca_file: /etc/ipsrtd/notify-ca.pem   # optional
#include <curl/curl.h>
#include <ipsrt/plugin/plugin.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "channel_common.h"

namespace {

namespace v1 = ::ipsrt::plugin::v1;

// The smallest secret accepted: 128 bits.
constexpr size_t kMinSecretBytes = 16;

std::string HmacSha256Hex(const std::string& key, const std::string& data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
       &size);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac), size));
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

class ReminderWebhook final : public ipsrt::plugin::Plugin {
 public:
  absl::Status Configure(const v1::ConfigureRequest& request) override {
    static std::once_flag curl_once;
    std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

    ipsrt::channels::Settings settings(request);
    if (absl::Status s = settings.OnlyKeys(
            {"url", "secret_file", "connect_timeout", "timeout", "max_attempts",
             "initial_backoff", "ca_file"});
        !s.ok()) {
      return s;
    }
    absl::StatusOr<std::string> url = settings.String("url", "", true);
    if (!url.ok()) return url.status();
    if (!absl::StartsWith(*url, "http://") &&
        !absl::StartsWith(*url, "https://")) {
      return absl::InvalidArgumentError(
          "config.url: must start with http:// or https://");
    }
    absl::StatusOr<std::string> secret_file =
        settings.String("secret_file", "", true);
    if (!secret_file.ok()) return secret_file.status();
    const std::string secret_path = settings.Resolve(*secret_file);
    std::ifstream in(secret_path, std::ios::binary);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.secret_file: cannot read ", secret_path));
    }
    std::stringstream text;
    text << in.rdbuf();
    // A trailing newline (echo > file) is not part of the secret.
    std::string secret(absl::StripTrailingAsciiWhitespace(text.str()));
    if (secret.size() < kMinSecretBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.secret_file: ", secret_path, " must hold at least ",
          kMinSecretBytes, " bytes (e.g. openssl rand -hex 32)"));
    }
    absl::StatusOr<absl::Duration> connect_timeout = settings.Duration(
        "connect_timeout", absl::Seconds(2), absl::Seconds(60));
    if (!connect_timeout.ok()) return connect_timeout.status();
    absl::StatusOr<absl::Duration> timeout =
        settings.Duration("timeout", absl::Seconds(5), absl::Seconds(60));
    if (!timeout.ok()) return timeout.status();
    if (*connect_timeout > *timeout) {
      return absl::InvalidArgumentError(
          "config.connect_timeout: must not be longer than config.timeout "
          "(which bounds the whole POST)");
    }
    absl::StatusOr<int> max_attempts = settings.Int("max_attempts", 3, 1, 10);
    if (!max_attempts.ok()) return max_attempts.status();
    absl::StatusOr<absl::Duration> initial_backoff = settings.Duration(
        "initial_backoff", absl::Milliseconds(200), absl::Seconds(10));
    if (!initial_backoff.ok()) return initial_backoff.status();
    absl::StatusOr<std::string> ca_file = settings.String("ca_file", "");
    if (!ca_file.ok()) return ca_file.status();
    std::string ca_path = settings.Resolve(*ca_file);
    if (!ca_path.empty() && !std::ifstream(ca_path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.ca_file: cannot read ", ca_path));
    }

    url_ = *url;
    secret_ = std::move(secret);
    connect_timeout_ = *connect_timeout;
    timeout_ = *timeout;
    max_attempts_ = *max_attempts;
    initial_backoff_ = *initial_backoff;
    ca_file_ = std::move(ca_path);
    return absl::OkStatus();
  }

  absl::StatusOr<v1::DescribeResponse> Describe() override {
    v1::DescribeResponse d;
    d.set_summary(
        "POSTs each reminder as JSON, signed with HMAC-SHA256, to a webhook");
    d.set_config_schema(
        R"({"type":"object","required":["url","secret_file"],"properties":{)"
        R"("url":{"type":"string"},"secret_file":{"type":"string"},)"
        R"("connect_timeout":{"type":"string"},"timeout":{"type":"string"},)"
        R"("max_attempts":{"type":"integer","minimum":1,"maximum":10},)"
        R"("initial_backoff":{"type":"string"},"ca_file":{"type":"string"}},)"
        R"("additionalProperties":false})");
    return d;
  }

  absl::StatusOr<v1::DeliverReminderResponse> DeliverReminder(
      const v1::DeliverReminderRequest& request) override {
    if (url_.empty()) {
      return absl::FailedPreconditionError("not configured: config.url");
    }
    const v1::Reminder& r = request.reminder();
    if (r.idempotency_key().empty()) {
      return absl::InvalidArgumentError(
          "reminder.idempotency_key: must not be empty");
    }
    const std::string body = ipsrt::channels::ReminderJson(r, host().Now());
    std::string last_error;
    for (int attempt = 1; attempt <= max_attempts_; ++attempt) {
      if (attempt > 1) {
        absl::SleepFor(initial_backoff_ * (1 << (attempt - 2)));
      }
      Outcome o = Post(r.idempotency_key(), body);
      if (o.status.ok()) {
        v1::DeliverReminderResponse response;
        response.set_receipt(absl::StrCat("HTTP ", o.http_status));
        return response;
      }
      if (!o.retry_here) return o.status;
      last_error = std::string(o.status.message());
    }
    return absl::UnavailableError(absl::StrCat("webhook: ", last_error, " (",
                                               max_attempts_, " attempts)"));
  }

 private:
  struct Outcome {
    absl::Status status;
    long http_status = 0;
    // Worth another POST within this delivery.
    bool retry_here = false;
  };

  // Post makes one signed POST and classifies its outcome.
  Outcome Post(const std::string& idempotency_key,
               const std::string& body) const {
    // The signature's timestamp is the real time of this attempt, not the
    // engine's clock: the receiver compares it with its own clock to refuse
    // replays.
    const std::string timestamp =
        absl::StrCat(absl::ToUnixSeconds(absl::Now()));
    const std::string signature =
        HmacSha256Hex(secret_, absl::StrCat(timestamp, ".", body));

    CURL* curl = curl_easy_init();
    if (curl == nullptr) {
      return {absl::UnavailableError("webhook: curl_easy_init failed"), 0,
              false};
    }
    curl_slist* headers = nullptr;
    for (const std::string& h :
         {std::string("Content-Type: application/json"),
          absl::StrCat("Idempotency-Key: ", idempotency_key),
          absl::StrCat("X-IPSRT-Timestamp: ", timestamp),
          absl::StrCat("X-IPSRT-Signature: sha256=", signature),
          // No "Expect: 100-continue" round trip.
          std::string("Expect:")}) {
      headers = curl_slist_append(headers, h.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ipsrt-reminder-webhook/1.0");
    curl_easy_setopt(
        curl, CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(connect_timeout_)));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(timeout_)));
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Discard);
    if (!ca_file_.empty()) {
      curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file_.c_str());
    }
    CURLcode rc = curl_easy_perform(curl);
    long http_status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
    curl_off_t connect_time = 0;
    curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_time);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return Classify(rc, http_status, connect_time > 0);
  }

  Outcome Classify(CURLcode rc, long http, bool connected) const {
    if (rc == CURLE_OK) {
      const std::string what = absl::StrCat("HTTP ", http);
      if (http >= 200 && http < 300) return {absl::OkStatus(), http, false};
      if (http == 429 || http >= 500) {
        return {absl::UnavailableError(what), http, true};
      }
      if (http == 400 || http == 413 || http == 422) {
        return {
            absl::InvalidArgumentError(absl::StrCat("webhook: ", what,
                                                    ": the receiver refused "
                                                    "the reminder")),
            http, false};
      }
      return {absl::FailedPreconditionError(absl::StrCat(
                  "webhook: ", what,
                  http < 400 ? " (redirects are not followed)"
                             : ": fix the receiver or config.url")),
              http, false};
    }
    const std::string what = curl_easy_strerror(rc);
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT:
        if (connected) {
          return {absl::DeadlineExceededError(absl::StrCat(
                      "webhook: no answer within ",
                      absl::FormatDuration(timeout_), " (config.timeout)")),
                  0, false};
        }
        return {absl::UnavailableError(
                    absl::StrCat("cannot connect within ",
                                 absl::FormatDuration(connect_timeout_))),
                0, true};
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
      case CURLE_COULDNT_CONNECT:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_SSL_CONNECT_ERROR:
        return {absl::UnavailableError(what), 0, true};
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return {absl::FailedPreconditionError(
                    absl::StrCat("webhook: config.url: ", what)),
                0, false};
      default:
        // TLS verification and the like: not fixed by trying again at
        // once, but perhaps by the operator before the dispatcher's next
        // attempt.
        return {absl::UnavailableError(absl::StrCat("webhook: ", what)), 0,
                false};
    }
  }

  std::string url_;
  std::string secret_;
  absl::Duration connect_timeout_ = absl::Seconds(2);
  absl::Duration timeout_ = absl::Seconds(5);
  int max_attempts_ = 3;
  absl::Duration initial_backoff_ = absl::Milliseconds(200);
  std::string ca_file_;
};

}  // namespace

IPSRT_PLUGIN(ReminderWebhook, "reminder-webhook", "1.0.0", IPSRT_KIND_REMINDER)
