// reminder-jsonl: a reminder channel that appends one JSON object per
// delivery to a file, one a line, with the fields of the engine's built-in
// channel (channel_common.h). Each line is one write(2) on an O_APPEND
// descriptor, so lines from concurrent deliveries never interleave; with
// `sync` (the default) the line is on disk (fdatasync) before the delivery
// counts as done. Nothing is dropped: a redelivery after a crash is a
// second line with the same idempotency key, for the reader to drop.
//
//   plugins:
//     - path: libipsrt_reminder_jsonl.so
//       config:
//         path: ../var/ipsrtd/reminders.jsonl   # relative: to ipsrtd.yaml
//         sync: true
#include <fcntl.h>
#include <ipsrt/plugin/plugin.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "channel_common.h"
#include "ipsrt/plugin/config_reader.h"

namespace {

namespace v1 = ::ipsrt::plugin::v1;

class ReminderJsonl final : public ipsrt::plugin::Plugin {
 public:
  ~ReminderJsonl() override {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Configure(const v1::ConfigureRequest& request) override {
    ipsrt::plugin::ConfigReader settings(request);
    if (absl::Status s = settings.OnlyKeys({"path", "sync"}); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::string> path = settings.String("path", "", true);
    if (!path.ok()) return path.status();
    absl::StatusOr<bool> sync = settings.Bool("sync", true);
    if (!sync.ok()) return sync.status();
    path_ = settings.Resolve(*path);
    sync_ = *sync;
    std::filesystem::path dir = std::filesystem::path(path_).parent_path();
    if (!dir.empty()) {
      std::error_code ignored;  // open() below reports what matters
      std::filesystem::create_directories(dir, ignored);
    }
    int fd =
        ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.path: cannot open ", path_,
                       " for appending: ", std::strerror(errno)));
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
    return absl::OkStatus();
  }

  absl::StatusOr<v1::DescribeResponse> Describe() override {
    v1::DescribeResponse d;
    d.set_summary("Appends one JSON line per reminder to a file");
    return d;
  }

  absl::StatusOr<v1::DeliverReminderResponse> DeliverReminder(
      const v1::DeliverReminderRequest& request) override {
    if (fd_ < 0) {
      return absl::FailedPreconditionError("not configured: config.path");
    }
    const v1::Reminder& r = request.reminder();
    if (r.idempotency_key().empty()) {
      return absl::InvalidArgumentError(
          "reminder.idempotency_key: must not be empty");
    }
    std::string line = ipsrt::channels::ReminderJson(r, host().Now()) + "\n";
    ssize_t n = ::write(fd_, line.data(), line.size());
    if (n != static_cast<ssize_t>(line.size())) {
      int err = n < 0 ? errno : ENOSPC;
      std::string msg =
          absl::StrCat(path_, ": write failed: ", std::strerror(err));
      return err == ENOSPC || err == EDQUOT ? absl::ResourceExhaustedError(msg)
                                            : absl::UnavailableError(msg);
    }
    if (sync_ && ::fdatasync(fd_) != 0) {
      return absl::UnavailableError(
          absl::StrCat(path_, ": fdatasync failed: ", std::strerror(errno)));
    }
    v1::DeliverReminderResponse response;
    response.set_receipt(path_);
    return response;
  }

 private:
  int fd_ = -1;
  std::string path_;
  bool sync_ = true;
};

}  // namespace

IPSRT_PLUGIN(ReminderJsonl, "reminder-jsonl", "1.0.0", IPSRT_KIND_REMINDER)
