#include "config/ops_config.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace ipsrt {

void ParseLoggingFormat(YamlReader& r, const YAML::Node& logging,
                        LoggingConfig& out) {
  out.format = r.Enum(logging, "logging", "format", out.format,
                      {{"text", LogFormat::kText}, {"json", LogFormat::kJson}},
                      "must be text or json");
  out.access_log = r.Bool(logging, "logging", "access_log", out.access_log);
}

void ParseOperations(YamlReader& r, const YAML::Node& root,
                     absl::string_view file_name, Config& out) {
  YAML::Node metrics = root["metrics"];
  if (r.ExpectMap(metrics, "metrics", true)) {
    r.ExpectKeys(metrics, "metrics", {"listen", "store_refresh"});
    MetricsConfig& m = out.metrics;
    m.listen = r.String(metrics, "metrics", "listen", "");
    if (YAML::Node listen = metrics["listen"]; listen.IsDefined()) {
      m.location = absl::StrCat(file_name, ":", listen.Mark().line + 1, ":",
                                listen.Mark().column + 1);
      if (m.listen.find(':') == std::string::npos) {
        r.Error(listen, "metrics.listen",
                "must be host:port, e.g. 127.0.0.1:9464");
      }
    }
    m.store_refresh =
        r.Duration(metrics, "metrics", "store_refresh", m.store_refresh);
    if (m.store_refresh < absl::Seconds(1)) {
      r.Error(metrics["store_refresh"], "metrics.store_refresh",
              "must be at least 1s");
    }
  }
  YAML::Node health = root["health"];
  if (r.ExpectMap(health, "health", true)) {
    r.ExpectKeys(health, "health", {"probe_interval"});
    out.health.probe_interval = r.Duration(health, "health", "probe_interval",
                                           out.health.probe_interval);
    if (out.health.probe_interval < absl::Milliseconds(100)) {
      r.Error(health["probe_interval"], "health.probe_interval",
              "must be at least 100ms");
    }
  }
}

}  // namespace ipsrt
