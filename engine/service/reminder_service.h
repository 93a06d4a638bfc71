// ReminderService: lists, streams and acknowledges the reminders that the
// dispatcher (engine/reminders/dispatcher.h) delivers from the outbox.
#ifndef IPSRT_SERVICE_REMINDER_SERVICE_H_
#define IPSRT_SERVICE_REMINDER_SERVICE_H_

#include <memory>

#include "grpcpp/grpcpp.h"
#include "service/guard.h"
#include "service/server.h"

namespace ipsrt {

// MakeReminderService binds the service to `deps`. WatchReminders polls
// the store's change feed every `watch_poll` on one thread shared by all
// streams.
std::unique_ptr<grpc::Service> MakeReminderService(
    const ServerDeps& deps, Guard& guard,
    absl::Duration watch_poll = absl::Milliseconds(200));

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_REMINDER_SERVICE_H_
