// The operations sections of ipsrtd.yaml: `metrics:`, `health:` and the
// format switches of `logging:` (MetricsConfig, HealthConfig and
// LoggingConfig in ipsrt/config.h).
#ifndef IPSRT_CONFIG_OPS_CONFIG_H_
#define IPSRT_CONFIG_OPS_CONFIG_H_

#include "absl/strings/string_view.h"
#include "common/yaml_reader.h"
#include "ipsrt/config.h"

namespace ipsrt {

// ParseLoggingFormat reads logging.format and logging.access_log from the
// `logging` map into `out`, recording problems in `r`.
void ParseLoggingFormat(YamlReader& r, const YAML::Node& logging,
                        LoggingConfig& out);

// ParseOperations reads the optional `metrics:` and `health:` maps of
// `root` into `out`, recording every problem in `r`.
void ParseOperations(YamlReader& r, const YAML::Node& root,
                     absl::string_view file_name, Config& out);

}  // namespace ipsrt

#endif  // IPSRT_CONFIG_OPS_CONFIG_H_
