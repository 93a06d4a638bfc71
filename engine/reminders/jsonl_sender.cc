#include "reminders/jsonl_sender.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ipsrt::reminders {
namespace {

// Quote renders a JSON string (the values are names and times, but a
// tenant or id is escaped all the same).
std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

}  // namespace

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
      "{\"idempotency_key\":", Quote(d.idempotency_key),
      ",\"reminder\":", Quote(d.reminder), ",\"tenant\":", Quote(d.tenant),
      ",\"enrollment\":", Quote(d.enrollment), ",\"kind\":", Quote(d.kind),
      ",\"subject\":", Quote(d.subject),
      ",\"due_time\":", Quote(Rfc3339(d.due_time)),
      ",\"local_due_time\":", Quote(d.local_due_time),
      ",\"time_zone\":", Quote(d.time_zone), ",\"attempt\":", d.attempt,
      ",\"delivered_time\":", Quote(Rfc3339(delivered)), "}");
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
