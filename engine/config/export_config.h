// The `export:` section of ipsrtd.yaml (ExportConfig in ipsrt/config.h).
#ifndef IPSRT_CONFIG_EXPORT_CONFIG_H_
#define IPSRT_CONFIG_EXPORT_CONFIG_H_

#include "absl/strings/string_view.h"
#include "common/yaml_reader.h"
#include "ipsrt/config.h"

namespace ipsrt {

// ParseExportSection reads the optional `export:` map into `out`, recording
// every problem in `r` (unknown keys, a target without a deliverer, a
// default_target that names no target). `root` is resolved against
// `base_dir`.
void ParseExportSection(YamlReader& r, const YAML::Node& node,
                        absl::string_view file_name, absl::string_view base_dir,
                        ExportConfig& out);

}  // namespace ipsrt

#endif  // IPSRT_CONFIG_EXPORT_CONFIG_H_
