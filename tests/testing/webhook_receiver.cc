#include "webhook_receiver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace ipsrt::testing {
namespace {

// WaitReadable polls `fd` and the stop pipe; false when stopping.
bool WaitReadable(int fd, int stop) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {stop, POLLIN, 0}};
  while (true) {
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN)) return false;
    if (fds[0].revents != 0) return true;
  }
}

void WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<WebhookReceiver>> WebhookReceiver::Start(
    std::string secret) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return absl::InternalError(
        absl::StrCat("bind/listen failed: ", std::strerror(errno)));
  }
  int stop[2];
  if (::pipe2(stop, O_CLOEXEC) != 0) {
    ::close(fd);
    return absl::InternalError("pipe failed");
  }
  std::unique_ptr<WebhookReceiver> r(new WebhookReceiver(
      fd, stop[0], stop[1], ntohs(addr.sin_port), std::move(secret)));
  r->thread_ = std::thread([p = r.get()] { p->Serve(); });
  return r;
}

WebhookReceiver::WebhookReceiver(int listen_fd, int stop_read, int stop_write,
                                 int port, std::string secret)
    : listen_fd_(listen_fd),
      stop_read_(stop_read),
      stop_write_(stop_write),
      port_(port),
      secret_(std::move(secret)) {}

WebhookReceiver::~WebhookReceiver() {
  char c = 'x';
  (void)!::write(stop_write_, &c, 1);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(stop_read_);
  ::close(stop_write_);
}

std::string WebhookReceiver::url() const {
  return absl::StrCat("http://127.0.0.1:", port_, "/hook");
}

void WebhookReceiver::Script(std::vector<Reply> replies) {
  absl::MutexLock lock(&mu_);
  for (Reply r : replies) script_.push_back(r);
}

std::vector<WebhookReceiver::Request> WebhookReceiver::Requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

std::map<std::string, int> WebhookReceiver::AcceptedByKey() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, int> out;
  for (const Request& r : requests_) {
    if (r.status >= 200 && r.status < 300) ++out[r.idempotency_key];
  }
  return out;
}

bool WebhookReceiver::WaitForRequests(size_t n, absl::Duration timeout) const {
  absl::Time end = absl::Now() + timeout;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (requests_.size() >= n) return true;
    }
    if (absl::Now() >= end) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

bool WebhookReceiver::Verify(const std::string& timestamp,
                             const std::string& body,
                             const std::string& signature) const {
  if (!absl::StartsWith(signature, "sha256=")) return false;
  std::string expected_hex = signature.substr(7);
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t out_len = 0;
  const std::string signed_text = timestamp + "." + body;
  bool ok =
      EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(secret_.data()),
                   secret_.size(), params) == 1 &&
      EVP_MAC_update(ctx,
                     reinterpret_cast<const unsigned char*>(signed_text.data()),
                     signed_text.size()) == 1 &&
      EVP_MAC_final(ctx, out, &out_len, sizeof(out)) == 1;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  if (!ok) return false;
  const std::string got = absl::HexStringToBytes(expected_hex);
  return got.size() == out_len && CRYPTO_memcmp(got.data(), out, out_len) == 0;
}

void WebhookReceiver::Serve() {
  while (WaitReadable(listen_fd_, stop_read_)) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Handle(fd);
    ::close(fd);
  }
}

void WebhookReceiver::Handle(int fd) {
  std::string data;
  size_t header_end = std::string::npos;
  size_t content_length = 0;
  char buf[4096];
  // Reads the head, then the body by Content-Length.
  while (true) {
    if (header_end != std::string::npos &&
        data.size() >= header_end + 4 + content_length) {
      break;
    }
    if (!WaitReadable(fd, stop_read_)) return;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return;
    data.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos) {
      header_end = data.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        for (absl::string_view line :
             absl::StrSplit(data.substr(0, header_end), "\r\n")) {
          std::pair<std::string, std::string> kv =
              absl::StrSplit(line, absl::MaxSplits(':', 1));
          if (absl::AsciiStrToLower(kv.first) == "content-length") {
            (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(kv.second),
                                   &content_length);
          }
        }
      }
    }
  }
  Request req;
  std::vector<std::string> lines =
      absl::StrSplit(data.substr(0, header_end), "\r\n");
  std::vector<std::string> start = absl::StrSplit(lines[0], ' ');
  if (start.size() >= 2) req.path = start[1];
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(lines[i], absl::MaxSplits(':', 1));
    std::string name = absl::AsciiStrToLower(kv.first);
    std::string value(absl::StripAsciiWhitespace(kv.second));
    if (name == "idempotency-key") req.idempotency_key = value;
    if (name == "x-ipsrt-timestamp") req.timestamp = value;
    if (name == "x-ipsrt-signature") req.signature = value;
  }
  req.body = data.substr(header_end + 4, content_length);
  req.signature_valid = Verify(req.timestamp, req.body, req.signature);

  Reply reply = Reply::kOk;
  {
    absl::MutexLock lock(&mu_);
    if (!script_.empty()) {
      reply = script_.front();
      script_.pop_front();
    }
  }
  int status = 200;
  switch (reply) {
    case Reply::kOk:
      status = 200;
      break;
    case Reply::kServerError:
      status = 500;
      break;
    case Reply::kTooMany:
      status = 429;
      break;
    case Reply::kBadRequest:
      status = 400;
      break;
    case Reply::kNotFound:
      status = 404;
      break;
    case Reply::kHang:
      status = 0;
      break;
  }
  if (status != 0 && !req.signature_valid) status = 401;
  {
    absl::MutexLock lock(&mu_);
    req.status = status;
    requests_.push_back(req);
  }
  if (status == 0) {
    // Until the client gives up and closes, or the receiver stops.
    while (WaitReadable(fd, stop_read_)) {
      if (::recv(fd, buf, sizeof(buf), 0) <= 0) return;
    }
    return;
  }
  WriteAll(fd, absl::StrCat("HTTP/1.1 ", status, " Status\r\n",
                            "Content-Length: 0\r\nConnection: close\r\n\r\n"));
}

}  // namespace ipsrt::testing
