// In-process transport: a shared library loaded with dlopen and called
// through the C ABI of plugins/sdk/include/ipsrt_plugin.h.
//
// A plugin in the engine's address space is trusted code: a crash in it is
// a crash of ipsrtd, and a call cannot be timed out. Run plugins you do not
// fully trust out of process (out_of_process.h).
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
    const std::string& path, const Clock* clock);

}  // namespace ipsrt

#endif  // IPSRT_PLUGIN_HOST_IN_PROCESS_H_
