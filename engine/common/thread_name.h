// Names for the engine's long-lived threads, as `top -H`, `ps -L`, perf
// (its "comm" column) and /proc/PID/task/TID/comm show them, so that an
// operator or a profile can tell the store's writer from a gRPC thread.
#ifndef IPSRT_COMMON_THREAD_NAME_H_
#define IPSRT_COMMON_THREAD_NAME_H_

#include <thread>

#include "absl/strings/string_view.h"

namespace ipsrt {

// kThreadNameMax is the longest name Linux keeps (16 bytes with the NUL).
inline constexpr size_t kThreadNameMax = 15;

// NameThread names `thread` (started, not joined) `name`, cut to
// kThreadNameMax bytes. Called by the thread's creator right after starting
// it, so the name is in place before the creator returns. Best effort: a
// name the system refuses leaves the old one.
void NameThread(std::thread& thread, absl::string_view name);

}  // namespace ipsrt

#endif  // IPSRT_COMMON_THREAD_NAME_H_
