#include "common/yaml_reader.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ipsrt {
namespace {

const char* KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
      return "null";
    default:
      return "nothing";
  }
}

}  // namespace

std::string YamlDiagnostic::ToString() const {
  return absl::StrCat(file, ":", line, ":", column,
                      ": error: ", path.empty() ? "" : absl::StrCat(path, ": "),
                      message);
}

YAML::Node YamlReader::Parse(absl::string_view text) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    if (!root.IsDefined() || root.IsNull())
      return YAML::Node(YAML::NodeType::Map);
    return root;
  } catch (const YAML::Exception& e) {
    diagnostics_.push_back(
        YamlDiagnostic{file_, e.mark.line + 1, e.mark.column + 1, "", e.msg});
    return YAML::Node();
  }
}

std::string YamlReader::Join(absl::string_view parent, absl::string_view key) {
  return parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
}

std::string YamlReader::Join(absl::string_view parent, size_t index) {
  return absl::StrCat(parent, "[", index, "]");
}

void YamlReader::Error(const YAML::Node& node, absl::string_view path,
                       absl::string_view message) {
  int line = 0, column = 0;
  if (node.IsDefined()) {
    YAML::Mark m = node.Mark();
    if (m.line >= 0) {
      line = m.line + 1;
      column = m.column + 1;
    }
  }
  diagnostics_.push_back(YamlDiagnostic{file_, line, column, std::string(path),
                                        std::string(message)});
}

void YamlReader::ErrorAt(int line, int column, absl::string_view path,
                         absl::string_view message) {
  diagnostics_.push_back(YamlDiagnostic{file_, line, column, std::string(path),
                                        std::string(message)});
}

bool YamlReader::ExpectMap(const YAML::Node& node, absl::string_view path,
                           bool optional) {
  if (!node.IsDefined() || node.IsNull()) {
    if (!optional) Error(node, path, "is required");
    return false;
  }
  if (!node.IsMap()) {
    Error(node, path, absl::StrCat("must be a map, not ", KindName(node)));
    return false;
  }
  return true;
}

void YamlReader::ExpectKeys(const YAML::Node& node, absl::string_view path,
                            std::initializer_list<absl::string_view> allowed) {
  if (!node.IsMap()) return;
  std::set<std::string> seen;
  for (const auto& kv : node) {
    std::string key = kv.first.Scalar();
    if (!seen.insert(key).second) {
      Error(kv.first, Join(path, key),
            absl::StrCat("duplicate key \"", key, "\""));
      continue;
    }
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      Error(kv.first, Join(path, key),
            absl::StrCat("unknown key \"", key,
                         "\" (allowed: ", absl::StrJoin(allowed, ", "), ")"));
    }
  }
}

std::string YamlReader::String(const YAML::Node& map, absl::string_view path,
                               absl::string_view key,
                               absl::string_view fallback, bool required) {
  std::string p = Join(path, key);
  if (!map.IsMap()) {
    if (required) Error(map, p, "is required");
    return std::string(fallback);
  }
  YAML::Node n = map[std::string(key)];
  if (!n.IsDefined() || n.IsNull()) {
    if (required) Error(map, p, "is required");
    return std::string(fallback);
  }
  if (!n.IsScalar()) {
    Error(n, p, absl::StrCat("must be a string, not ", KindName(n)));
    return std::string(fallback);
  }
  if (required && n.Scalar().empty()) {
    Error(n, p, "must not be empty");
    return std::string(fallback);
  }
  return n.Scalar();
}

int64_t YamlReader::Int(const YAML::Node& map, absl::string_view path,
                        absl::string_view key, int64_t fallback, int64_t min,
                        int64_t max) {
  if (!map.IsMap()) return fallback;
  YAML::Node n = map[std::string(key)];
  std::string p = Join(path, key);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  int64_t v = 0;
  if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) {
    Error(n, p, "must be an integer");
    return fallback;
  }
  if (v < min || v > max) {
    Error(n, p,
          absl::StrCat("must be between ", min, " and ", max, ", not ", v));
    return fallback;
  }
  return v;
}

bool YamlReader::Bool(const YAML::Node& map, absl::string_view path,
                      absl::string_view key, bool fallback) {
  if (!map.IsMap()) return fallback;
  YAML::Node n = map[std::string(key)];
  if (!n.IsDefined() || n.IsNull()) return fallback;
  bool v = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
    Error(n, Join(path, key), "must be true or false");
    return fallback;
  }
  return v;
}

absl::Duration YamlReader::Duration(const YAML::Node& map,
                                    absl::string_view path,
                                    absl::string_view key,
                                    absl::Duration fallback) {
  if (!map.IsMap()) return fallback;
  YAML::Node n = map[std::string(key)];
  if (!n.IsDefined() || n.IsNull()) return fallback;
  absl::Duration d;
  if (!n.IsScalar() || !absl::ParseDuration(n.Scalar(), &d) ||
      d < absl::ZeroDuration()) {
    Error(n, Join(path, key),
          "must be a non-negative duration such as \"10s\" or \"250ms\"");
    return fallback;
  }
  return d;
}

std::vector<std::string> YamlReader::StringList(const YAML::Node& map,
                                                absl::string_view path,
                                                absl::string_view key) {
  std::vector<std::string> out;
  if (!map.IsMap()) return out;
  YAML::Node n = map[std::string(key)];
  std::string p = Join(path, key);
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsSequence()) {
    Error(n, p, absl::StrCat("must be a list, not ", KindName(n)));
    return out;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) {
      Error(n[i], Join(p, i), "must be a string");
      continue;
    }
    out.push_back(n[i].Scalar());
  }
  return out;
}

std::vector<YamlDiagnostic> YamlReader::SortedDiagnostics() const {
  std::vector<YamlDiagnostic> out = diagnostics_;
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  return out;
}

absl::Status YamlReader::ToStatus() const {
  if (diagnostics_.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  for (const YamlDiagnostic& d : SortedDiagnostics()) {
    lines.push_back(d.ToString());
  }
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

}  // namespace ipsrt
