// JsonlFileSender: the built-in reminder channel until reminder plugins
// exist. Appends one JSON object per delivery to a file, one a line:
//
//   {"idempotency_key":"tenants/t/enrollments/e/reminder/initial.srm-diary#1",
//    "reminder":"tenants/t/reminders/7","tenant":"t",
//    "enrollment":"tenants/t/enrollments/e","kind":"reminder",
//    "subject":"initial.srm-diary#1","due_time":"2026-03-08T00:00:00Z",
//    "local_due_time":"2026-03-07T20:00 (-05:00)",
//    "time_zone":"America/New_York","attempt":1,
//    "delivered_time":"2026-03-08T00:00:01Z"}
//
// (one line in the file). Each line is written with one write(2) on an
// O_APPEND descriptor and, with `sync`, made durable (fdatasync) before
// Deliver returns, so a line in the file is a delivery that happened. A
// repeat delivery after a crash appears as a second line with the same
// idempotency key.
#ifndef IPSRT_REMINDERS_JSONL_SENDER_H_
#define IPSRT_REMINDERS_JSONL_SENDER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ipsrt/clock.h"
#include "reminders/sender.h"

namespace ipsrt::reminders {

class JsonlFileSender final : public ReminderSender {
 public:
  // Open creates the file (and its directory) when missing.
  // FAILED_PRECONDITION when it cannot be opened for appending.
  static absl::StatusOr<std::unique_ptr<JsonlFileSender>> Open(
      const std::string& path, bool sync, const Clock* clock);
  ~JsonlFileSender() override;

  // UNAVAILABLE when the write or sync fails (retried), RESOURCE_EXHAUSTED
  // when the disk is full.
  absl::Status Deliver(const ReminderDelivery& delivery) override;

  // Line renders the JSON line of a delivery, without the newline.
  static std::string Line(const ReminderDelivery& delivery,
                          absl::Time delivered);

 private:
  JsonlFileSender(int fd, std::string path, bool sync, const Clock* clock)
      : fd_(fd), path_(std::move(path)), sync_(sync), clock_(clock) {}
  int fd_;
  std::string path_;
  bool sync_;
  const Clock* clock_;
};

}  // namespace ipsrt::reminders

#endif  // IPSRT_REMINDERS_JSONL_SENDER_H_
