// reminder-webhook: a reminder channel that POSTs each delivery as JSON to
// an HTTP(S) endpoint, signed so the receiver can tell it came from this
// engine and was not altered (plugins/reminders/README.md shows how to
// verify).
//
// One delivery is one POST of ReminderJson (channel_common.h) with
//   Content-Type: application/json
//   Idempotency-Key: <the reminder's idempotency key>
//   X-IPSRT-Timestamp: <unix seconds of this delivery>
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
#include <ipsrt/plugin/plugin.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "channel_common.h"
#include "ipsrt/plugin/config_reader.h"
#include "ipsrt/plugin/hash.h"
#include "ipsrt/plugin/http.h"

namespace {

namespace v1 = ::ipsrt::plugin::v1;

// The smallest secret accepted: 128 bits.
constexpr size_t kMinSecretBytes = 16;

class ReminderWebhook final : public ipsrt::plugin::Plugin {
 public:
  absl::Status Configure(const v1::ConfigureRequest& request) override {
    ipsrt::plugin::ConfigReader settings(request);
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
    // Another POST within this delivery only for a problem the next one may
    // not have; the dispatcher retries the rest later with its own backoff.
    ipsrt::plugin::HttpResult last = ipsrt::plugin::PostWithRetries(
        Request(r.idempotency_key(), body),
        {.max_attempts = max_attempts_, .initial_backoff = initial_backoff_},
        [](const ipsrt::plugin::HttpResult& result, int) {
          return result.Retryable();
        });
    if (last.success()) {
      v1::DeliverReminderResponse response;
      response.set_receipt(absl::StrCat("HTTP ", last.http_status));
      return response;
    }
    absl::Status status = Failure(last);
    if (!last.Retryable()) return status;
    return absl::UnavailableError(absl::StrCat(
        "webhook: ", status.message(), " (", max_attempts_, " attempts)"));
  }

 private:
  // Request is one signed POST of `body`.
  ipsrt::plugin::HttpRequest Request(const std::string& idempotency_key,
                                     const std::string& body) const {
    // The signature's timestamp is the real time of the delivery, not the
    // engine's clock: the receiver compares it with its own clock to refuse
    // replays.
    const std::string timestamp =
        absl::StrCat(absl::ToUnixSeconds(absl::Now()));
    const std::string signature =
        ipsrt::HmacSha256Hex(secret_, absl::StrCat(timestamp, ".", body));
    return {.url = url_,
            .body = body,
            .headers = {"Content-Type: application/json",
                        absl::StrCat("Idempotency-Key: ", idempotency_key),
                        absl::StrCat("X-IPSRT-Timestamp: ", timestamp),
                        absl::StrCat("X-IPSRT-Signature: sha256=", signature)},
            .user_agent = "ipsrt-reminder-webhook/1.0",
            .connect_timeout = connect_timeout_,
            .timeout = timeout_,
            .ca_file = ca_file_};
  }

  // Failure is the status of an attempt that did not deliver.
  absl::Status Failure(const ipsrt::plugin::HttpResult& r) const {
    using Network = ipsrt::plugin::HttpResult::Network;
    if (r.answered()) {
      const long http = r.http_status;
      const std::string what = absl::StrCat("HTTP ", http);
      if (http == 429 || http >= 500) return absl::UnavailableError(what);
      if (http == 400 || http == 413 || http == 422) {
        return absl::InvalidArgumentError(absl::StrCat(
            "webhook: ", what, ": the receiver refused the reminder"));
      }
      return absl::FailedPreconditionError(
          absl::StrCat("webhook: ", what,
                       http < 400 ? " (redirects are not followed)"
                                  : ": fix the receiver or config.url"));
    }
    switch (r.network) {
      case Network::kTimeout:
        if (r.connected) {
          return absl::DeadlineExceededError(absl::StrCat(
              "webhook: no answer within ", absl::FormatDuration(timeout_),
              " (config.timeout)"));
        }
        return absl::UnavailableError(absl::StrCat(
            "cannot connect within ", absl::FormatDuration(connect_timeout_)));
      case Network::kConnection:
        return absl::UnavailableError(r.error);
      case Network::kBadUrl:
        return absl::FailedPreconditionError(
            absl::StrCat("webhook: config.url: ", r.error));
      default:
        // TLS verification and the like: not fixed by trying again at
        // once, but perhaps by the operator before the dispatcher's next
        // attempt.
        return absl::UnavailableError(absl::StrCat("webhook: ", r.error));
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
