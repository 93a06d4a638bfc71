// YamlReader: strict reading of YAML documents with located diagnostics.
//
// Every problem is collected (not just the first) as
//   file:line:col: error: path: message
// with 1-based line and column and the YAML path ("store.sqlite.path"),
// and unknown keys are errors, so a typo never passes silently.
//
// Parse is the one hardened entry point for YAML the project reads
// (templates, instrument YAML, scenarios, ipsrtd.yaml). Before yaml-cpp
// builds a tree it refuses, each with file:line:col and YAML path:
//   * bytes that are not UTF-8, and control characters YAML does not allow;
//   * a YAML tag on any node (`when: !goal.set` is the tag "!goal.set", not
//     text: conditions that start with `!` must be quoted);
//   * a second document (`---`);
//   * input past YamlLimits: file size, nesting depth, node count, and
//     nodes reached through aliases (an alias that refers to the node that
//     contains it, or a nested-alias "billion laughs", is refused before any
//     consumer expands it).
// Every check is one pass over the input, linear in its size.
//
// Example:
//   YamlReader r("ipsrtd.yaml");
//   YAML::Node root = r.Parse(text);
//   r.ExpectKeys(root, "", {"server", "store"});
//   std::string listen = r.String(root["server"], "server", "listen", "");
//   if (!r.ok()) return r.ToStatus();
#ifndef IPSRT_COMMON_YAML_READER_H_
#define IPSRT_COMMON_YAML_READER_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "yaml-cpp/yaml.h"

namespace ipsrt {

struct YamlDiagnostic {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string path;
  std::string message;
  // "file:line:col: error: path: message".
  std::string ToString() const;
};

// Limits every YAML input is held to (workflows/README.md, "Limits").
struct YamlLimits {
  size_t max_bytes = 4 * 1024 * 1024;  // 4 MiB
  int max_depth = 64;                  // nested maps and lists
  int64_t max_nodes = 250000;          // scalars, maps and lists as written
  // Nodes reached through aliases, each alias counting the whole node it
  // refers to (what a consumer that expands aliases would visit).
  int64_t max_alias_nodes = 10000;
};

class YamlReader {
 public:
  explicit YamlReader(std::string file_name, YamlLimits limits = YamlLimits())
      : file_(std::move(file_name)), limits_(limits) {}

  // Parse returns the document's root, or a null node after recording the
  // problems (see the header comment). An empty document is an empty map.
  YAML::Node Parse(absl::string_view text);

  // Join builds a child path: Join("store", "sqlite") == "store.sqlite",
  // Join("stages", 2) == "stages[2]".
  static std::string Join(absl::string_view parent, absl::string_view key);
  static std::string Join(absl::string_view parent, size_t index);

  // ExpectMap records an error unless `node` is a map (or absent/null when
  // `optional`). Returns true when `node` is a map.
  bool ExpectMap(const YAML::Node& node, absl::string_view path, bool optional);
  // ExpectKeys records an error for each key of map `node` not in `allowed`.
  void ExpectKeys(const YAML::Node& node, absl::string_view path,
                  std::initializer_list<absl::string_view> allowed);

  // Scalar readers: return the value of `map[key]`, or `fallback` when the
  // key is absent (recording an error if `required`). Wrong types record an
  // error naming the expected type and return `fallback`.
  std::string String(const YAML::Node& map, absl::string_view path,
                     absl::string_view key, absl::string_view fallback,
                     bool required = false);
  int64_t Int(const YAML::Node& map, absl::string_view path,
              absl::string_view key, int64_t fallback, int64_t min,
              int64_t max);
  bool Bool(const YAML::Node& map, absl::string_view path,
            absl::string_view key, bool fallback);
  // Enum reads a string that must be one of the names in `values` and
  // returns its value, or `fallback` (one of `values`) when the key is
  // absent. Any other string records `message` (e.g. "must be text or
  // json") at the value and returns `fallback`.
  template <typename E>
  E Enum(const YAML::Node& map, absl::string_view path, absl::string_view key,
         E fallback,
         std::initializer_list<std::pair<absl::string_view, E>> values,
         absl::string_view message) {
    absl::string_view fallback_name;
    for (const auto& [name, value] : values) {
      if (value == fallback) fallback_name = name;
    }
    std::string text = String(map, path, key, fallback_name);
    for (const auto& [name, value] : values) {
      if (name == text) return value;
    }
    Error(map[std::string(key)], Join(path, key), message);
    return fallback;
  }
  // Duration reads Go-style durations such as "10s", "1m30s", "250ms".
  absl::Duration Duration(const YAML::Node& map, absl::string_view path,
                          absl::string_view key, absl::Duration fallback);
  std::vector<std::string> StringList(const YAML::Node& map,
                                      absl::string_view path,
                                      absl::string_view key);

  // Error records a diagnostic at `node` (or at the document start when the
  // node has no mark).
  void Error(const YAML::Node& node, absl::string_view path,
             absl::string_view message);
  // ErrorAt records a diagnostic at an explicit 1-based position (for
  // problems inside a scalar, such as a condition's text).
  void ErrorAt(int line, int column, absl::string_view path,
               absl::string_view message);

  bool ok() const { return diagnostics_.empty(); }
  const std::vector<YamlDiagnostic>& diagnostics() const {
    return diagnostics_;
  }
  // SortedDiagnostics is diagnostics() in file order (line, then column).
  std::vector<YamlDiagnostic> SortedDiagnostics() const;
  // ToStatus is OK when there is no diagnostic, else INVALID_ARGUMENT whose
  // message lists every diagnostic in file order, one a line.
  absl::Status ToStatus() const;
  const std::string& file() const { return file_; }

 private:
  // Screen runs the checks above; true when yaml-cpp may build the tree.
  bool Screen(absl::string_view text);

  std::string file_;
  YamlLimits limits_;
  std::vector<YamlDiagnostic> diagnostics_;
};

}  // namespace ipsrt

#endif  // IPSRT_COMMON_YAML_READER_H_
