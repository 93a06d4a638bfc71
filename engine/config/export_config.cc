#include "config/export_config.h"

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"

namespace ipsrt {
namespace {

// Target names appear in requests and audit records: a small alphabet.
bool IsTargetName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char ch : name) {
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
          ch == '_')) {
      return false;
    }
  }
  return true;
}

}  // namespace

void ParseExportSection(YamlReader& r, const YAML::Node& node,
                        absl::string_view file_name, absl::string_view base_dir,
                        ExportConfig& out) {
  const char* p = "export";
  if (!r.ExpectMap(node, p, true)) return;
  r.ExpectKeys(node, p, {"root", "default_target", "targets"});
  std::string root = r.String(node, p, "root", "");
  if (!root.empty()) {
    std::filesystem::path path(root);
    if (!path.is_absolute() && !base_dir.empty()) {
      path = std::filesystem::path(std::string(base_dir)) / path;
    }
    out.root = path.lexically_normal().string();
  } else if (node["root"].IsDefined()) {
    r.Error(node["root"], "export.root",
            "must be a directory (BulkExport writes under it)");
  }
  out.default_target = r.String(node, p, "default_target", "");

  const YAML::Node targets = node["targets"];
  if (r.ExpectMap(targets, "export.targets", true)) {
    for (const auto& kv : targets) {
      const std::string name = kv.first.Scalar();
      const std::string tp = YamlReader::Join("export.targets", name);
      if (!IsTargetName(name)) {
        r.Error(kv.first, tp, "target names are 1-63 characters of [a-z0-9_-]");
      }
      const YAML::Node t = kv.second;
      if (!r.ExpectMap(t, tp, false)) continue;
      r.ExpectKeys(t, tp,
                   {"format", "renderer", "deliverer", "deliverer_target"});
      ExportTargetConfig c;
      c.name = name;
      c.format = r.String(t, tp, "format", c.format);
      if (c.format.empty()) {
        r.Error(t["format"], YamlReader::Join(tp, "format"),
                "must name an export format, e.g. fhir-r4-transaction");
      }
      c.renderer = r.String(t, tp, "renderer", "");
      c.deliverer = r.String(t, tp, "deliverer", "", /*required=*/true);
      c.deliverer_target = r.String(t, tp, "deliverer_target", "");
      c.location = absl::StrCat(file_name, ":", t.Mark().line + 1, ":",
                                t.Mark().column + 1);
      out.targets.push_back(std::move(c));
    }
  }
  if (!out.default_target.empty()) {
    bool known = false;
    for (const ExportTargetConfig& t : out.targets) {
      known = known || t.name == out.default_target;
    }
    if (!known) {
      r.Error(node["default_target"], "export.default_target",
              absl::StrCat("names no target under export.targets: \"",
                           out.default_target, "\""));
    }
  }
}

}  // namespace ipsrt
