// In-process transport: a shared library loaded with dlopen and called
// through the C ABI of plugins/sdk/include/ipsrt_plugin.h.
//
// A plugin in the engine's address space is trusted code: a crash in it is
// a crash of ipsrtd (a fatal signal during a call first logs one line
// naming the plugin and the call). Each call runs on its own thread, at
// most `max_concurrent_calls` at once per plugin; a call past its deadline
// answers DEADLINE_EXCEEDED and the plugin is NOT_SERVING (calls fail
// UNAVAILABLE at once) until that call returns, but the call itself cannot
// be stopped. Run plugins you do not fully trust out of process
// (out_of_process.h).
#ifndef IPSRT_PLUGIN_HOST_IN_PROCESS_H_
#define IPSRT_PLUGIN_HOST_IN_PROCESS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ipsrt/clock.h"
#include "plugin_host/plugin.h"

namespace ipsrt {

// LoadInProcessPlugin dlopens `path`, checks its descriptor (entry point,
// ABI major and minor, descriptor size, required entry points of its kinds)
// before calling anything in it, then creates one instance. Every refusal is
// FAILED_PRECONDITION with a message naming the library and, for version
// problems, both ABI versions. `clock` must outlive the transport.
absl::StatusOr<std::unique_ptr<PluginTransport>> LoadInProcessPlugin(
    const std::string& path, const Clock* clock, int max_concurrent_calls = 4);

// Installs (once) handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT
// that write one line naming the in-process plugin and call running on the
// crashing thread (if any), kill every out-of-process plugin's process group
// (KillAllPluginProcessGroups), then die of the signal as before. Loading
// any plugin installs it.
void InstallFatalSignalHandler();

}  // namespace ipsrt

#endif  // IPSRT_PLUGIN_HOST_IN_PROCESS_H_
