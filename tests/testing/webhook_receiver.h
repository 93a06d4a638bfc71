// WebhookReceiver: a real HTTP/1.1 server on a loopback port that plays the
// receiving end of the reminder-webhook channel in tests.
//
// It checks each POST's X-IPSRT-Signature itself (HMAC-SHA256 through
// OpenSSL's EVP_MAC interface, not the plugin's code path), records every
// request, and answers from a script: the next scripted reply per request,
// then 200. A request whose signature does not verify is answered 401.
// Connections are served one at a time; each is closed after its answer.
//
// Example:
//   auto receiver = WebhookReceiver::Start("0123456789abcdef0123");
//   (*receiver)->Script({WebhookReceiver::Reply::kServerError});
//   ... deliver to (*receiver)->url() ...
//   EXPECT_EQ((*receiver)->AcceptedByKey()["k1"], 1);
#ifndef IPSRT_TESTS_TESTING_WEBHOOK_RECEIVER_H_
#define IPSRT_TESTS_TESTING_WEBHOOK_RECEIVER_H_

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ipsrt::testing {

class WebhookReceiver {
 public:
  enum class Reply {
    kOk,           // 200
    kServerError,  // 500
    kTooMany,      // 429
    kBadRequest,   // 400
    kNotFound,     // 404
    kHang,         // reads the request, never answers (until closed)
  };

  struct Request {
    std::string path;
    std::string idempotency_key;
    std::string timestamp;
    std::string signature;  // the header's value, "sha256=<hex>"
    std::string body;
    bool signature_valid = false;
    int status = 0;  // what was answered; 0 for kHang
  };

  // Start listens on 127.0.0.1 on a free port. `secret` is the shared key.
  static absl::StatusOr<std::unique_ptr<WebhookReceiver>> Start(
      std::string secret);
  ~WebhookReceiver();  // stops the server thread and closes every socket

  // "http://127.0.0.1:<port>/hook".
  std::string url() const;
  // Script queues replies for the next requests, in order.
  void Script(std::vector<Reply> replies);
  std::vector<Request> Requests() const;
  // AcceptedByKey counts the requests answered 2xx, by Idempotency-Key.
  std::map<std::string, int> AcceptedByKey() const;
  // WaitForRequests waits until at least `n` requests arrived.
  bool WaitForRequests(size_t n, absl::Duration timeout) const;

 private:
  WebhookReceiver(int listen_fd, int stop_read, int stop_write, int port,
                  std::string secret);
  void Serve();
  void Handle(int fd);
  bool Verify(const std::string& timestamp, const std::string& body,
              const std::string& signature) const;

  int listen_fd_;
  int stop_read_;
  int stop_write_;
  int port_;
  std::string secret_;
  mutable absl::Mutex mu_;
  std::deque<Reply> script_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_TESTING_WEBHOOK_RECEIVER_H_
