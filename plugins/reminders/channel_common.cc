#include "channel_common.h"

#include "ipsrt/plugin/json.h"
#include "ipsrt/plugin/time.h"

namespace ipsrt::channels {

std::string ReminderJson(const plugin::v1::Reminder& r, absl::Time delivered) {
  const absl::Time due = FromProtoTime(r.due_time());
  // The contract's local_due_time as sent when the zone is unknown here.
  std::string local = r.local_due_time();
  absl::TimeZone zone;
  if (absl::LoadTimeZone(r.time_zone(), &zone))
    local = LocalTimeText(due, zone);
  return JsonText(Json{{"idempotency_key", r.idempotency_key()},
                       {"reminder", r.reminder()},
                       {"tenant", r.tenant()},
                       {"enrollment", r.enrollment()},
                       {"kind", r.kind()},
                       {"subject", r.task_id()},
                       {"due_time", Rfc3339Utc(due)},
                       {"local_due_time", local},
                       {"time_zone", r.time_zone()},
                       {"attempt", r.attempt()},
                       {"delivered_time", Rfc3339Utc(delivered)}});
}

}  // namespace ipsrt::channels
