#include "reminders/jsonl_sender.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_string.h"
#include "common/proto_time.h"

namespace ipsrt::reminders {
absl::StatusOr<std::unique_ptr<JsonlFileSender>> JsonlFileSender::Open(
    const std::string& path, bool sync, const Clock* clock) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
  }
  int fd =
      ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("reminders.jsonl.path: cannot open ", path,
                     " for appending: ", std::strerror(errno)));
  }
  return std::unique_ptr<JsonlFileSender>(
      new JsonlFileSender(fd, path, sync, clock));
}

JsonlFileSender::~JsonlFileSender() { ::close(fd_); }

std::string JsonlFileSender::Line(const ReminderDelivery& d,
                                  absl::Time delivered) {
  return absl::StrCat(
      "{\"idempotency_key\":", JsonQuote(d.idempotency_key),
      ",\"reminder\":", JsonQuote(d.reminder),
      ",\"tenant\":", JsonQuote(d.tenant),
      ",\"enrollment\":", JsonQuote(d.enrollment),
      ",\"kind\":", JsonQuote(d.kind), ",\"subject\":", JsonQuote(d.subject),
      ",\"due_time\":", JsonQuote(Rfc3339Utc(d.due_time)),
      ",\"local_due_time\":", JsonQuote(d.local_due_time),
      ",\"time_zone\":", JsonQuote(d.time_zone), ",\"attempt\":", d.attempt,
      ",\"delivered_time\":", JsonQuote(Rfc3339Utc(delivered)), "}");
}

absl::Status JsonlFileSender::Deliver(const ReminderDelivery& delivery) {
  std::string line = Line(delivery, clock_->Now()) + "\n";
  ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    int err = n < 0 ? errno : ENOSPC;
    std::string msg = absl::StrCat("reminder file ", path_,
                                   ": write failed: ", std::strerror(err));
    return err == ENOSPC || err == EDQUOT ? absl::ResourceExhaustedError(msg)
                                          : absl::UnavailableError(msg);
  }
  if (sync_ && ::fdatasync(fd_) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "reminder file ", path_, ": fdatasync failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace ipsrt::reminders
