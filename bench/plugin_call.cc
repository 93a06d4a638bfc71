// ipsrt_plugin_call_bench: the cost of one scoring call through each plugin
// transport, against calling the same C++ method directly.
//
// The plugin is the SDK example (plugins/sdk/example/bedtime_check.cc):
// - direct: its class compiled into this binary, ScoreResponse called as a
//   C++ method (the floor: validation and scoring only);
// - in_process: the built library dlopen'ed through the engine's host
//   (serialize, C ABI call, parse on both sides);
// - out_of_process: the same library under ipsrt-plugin-runner, called
//   over gRPC on a unix socket with a deadline, as ipsrtd calls it.
// Each mode runs single-threaded for --duration after --warmup; the
// report gives calls/s, mean microseconds per call and the ratio to
// direct, all from one run.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "plugin_host/registry.h"

// The example's class, for the direct call. Its exported entry point is
// harmless here: dlsym on the library handle never looks at this binary.
#include "../plugins/sdk/example/bedtime_check.cc"

ABSL_FLAG(std::string, plugin_dir, "",
          "directory of libipsrt_bedtime_check.so");
ABSL_FLAG(std::string, runner, "", "path of ipsrt-plugin-runner");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(3), "measurement per mode");
ABSL_FLAG(absl::Duration, warmup, absl::Milliseconds(500), "warm-up per mode");

namespace {

namespace pv1 = ::ipsrt::plugin::v1;

pv1::ScoreResponseRequest Request() {
  pv1::ScoreResponseRequest request;
  request.mutable_response()->set_questionnaire_id("bedtime-check");
  (*request.mutable_response()->mutable_answers())["bedtime"] = 2;
  (*request.mutable_response()->mutable_answers())["rested"] = 3;
  return request;
}

struct Result {
  long calls = 0;
  absl::Duration elapsed;
  double PerSecond() const { return calls / absl::ToDoubleSeconds(elapsed); }
  double MicrosPerCall() const {
    return absl::ToDoubleMicroseconds(elapsed) / calls;
  }
};

// Runs `call` (which returns false on failure) for the warm-up, then
// counts calls for the duration.
template <typename F>
Result Measure(F call) {
  absl::Time end = absl::Now() + absl::GetFlag(FLAGS_warmup);
  while (absl::Now() < end) {
    if (!call()) std::abort();
  }
  Result r;
  absl::Time start = absl::Now();
  end = start + absl::GetFlag(FLAGS_duration);
  absl::Time now = start;
  while (now < end) {
    for (int i = 0; i < 64; ++i) {
      if (!call()) std::abort();
    }
    r.calls += 64;
    now = absl::Now();
  }
  r.elapsed = now - start;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const pv1::ScoreResponseRequest request = Request();

  BedtimeCheck direct_plugin;
  Result direct = Measure([&] {
    auto r = direct_plugin.ScoreResponse(request);
    return r.ok() && r->scores().at("bedtime-check.total") == 5;
  });

  ipsrt::PluginHostOptions options;
  options.plugin_dir = absl::GetFlag(FLAGS_plugin_dir);
  options.runner_path = absl::GetFlag(FLAGS_runner);
  auto Load = [&](const std::string& transport) {
    ipsrt::PluginConfig c;
    c.path = "libipsrt_bedtime_check.so";
    c.transport = *ipsrt::ParsePluginTransport(transport);
    c.location = "bench";
    auto registry = ipsrt::PluginRegistry::Load({c}, options);
    if (!registry.ok()) {
      std::fprintf(stderr, "%s\n", registry.status().ToString().c_str());
      std::exit(1);
    }
    return std::move(*registry);
  };
  auto in_process = Load("in_process");
  ipsrt::LoadedPlugin* in = in_process->Find("bedtime-check");
  Result in_result = Measure([&] {
    auto r = in->ScoreResponse(request);
    return r.ok() && r->scores().at("bedtime-check.total") == 5;
  });
  auto out_of_process = Load("out_of_process");
  ipsrt::LoadedPlugin* out = out_of_process->Find("bedtime-check");
  Result out_result = Measure([&] {
    auto r = out->ScoreResponse(request);
    return r.ok() && r->scores().at("bedtime-check.total") == 5;
  });

  std::printf("| mode | calls | calls/s | us/call | time / direct |\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  for (auto [name, r] :
       {std::pair{"direct C++ call", direct},
        std::pair{"in_process (C ABI)", in_result},
        std::pair{"out_of_process (gRPC, unix socket)", out_result}}) {
    std::printf("| %s | %ld | %.0f | %.2f | %.1f |\n", name, r.calls,
                r.PerSecond(), r.MicrosPerCall(),
                r.MicrosPerCall() / direct.MicrosPerCall());
  }
  return 0;
}
