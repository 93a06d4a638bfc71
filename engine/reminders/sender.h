// ReminderSender: the delivery channel behind the reminder dispatcher.
//
// Every channel is a reminder plugin behind PluginSender (the JSON Lines
// file of reminders.jsonl is the reminder-jsonl plugin's); tests implement
// the interface directly. A sender receives each
// due reminder at least once and must use `idempotency_key` to drop a
// repeat: a dispatcher that crashed after sending and before recording the
// outcome sends again, with the same key, once the lease expires.
#ifndef IPSRT_REMINDERS_SENDER_H_
#define IPSRT_REMINDERS_SENDER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace ipsrt::reminders {

// One delivery. Carries names and times only: no patient data beyond the
// enrollment's resource name (the channel looks up contact details itself).
struct ReminderDelivery {
  // Stable for the reminder across every attempt and process,
  // "tenants/{t}/enrollments/{id}/reminder/{task key}".
  std::string idempotency_key;
  std::string tenant;
  // "tenants/{tenant}/enrollments/{id}".
  std::string enrollment;
  // "reminder" (a task's reminder), "session" (a planned session's) or
  // "alert.escalation".
  std::string kind;
  // The task key ("initial.srm-diary#3"), the planned session's key
  // ("session:maintenance#2") or the alert id.
  std::string subject;
  absl::Time due_time;
  // The due time on the enrollment's wall clock, "YYYY-MM-DDTHH:MM
  // (+HH:MM)", and the IANA zone it is read in.
  std::string local_due_time;
  std::string time_zone;
  // 1 for the first attempt.
  int attempt = 1;
  // Name of the reminder resource, "tenants/{t}/reminders/{id}".
  std::string reminder;
};

class ReminderSender {
 public:
  virtual ~ReminderSender() = default;
  // Deliver sends one reminder. OK when the channel accepted it.
  // UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED are
  // retried with backoff; any other code fails the reminder for good.
  // Called from the dispatcher's thread only.
  virtual absl::Status Deliver(const ReminderDelivery& delivery) = 0;
};

}  // namespace ipsrt::reminders

#endif  // IPSRT_REMINDERS_SENDER_H_
