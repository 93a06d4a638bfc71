#include "common/yaml_reader.h"

#include <algorithm>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/parser.h"

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

// Utf8Problem finds the first byte sequence that is not UTF-8 (or a control
// character YAML does not allow: C0 other than tab, LF and CR). Lines and
// columns are 1-based, columns in characters.
struct TextProblem {
  int line = 0;
  int column = 0;
  std::string message;
};
std::optional<TextProblem> Utf8Problem(absl::string_view text) {
  int line = 1, column = 1;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      if (c == '\n') {
        ++line;
        column = 1;
        ++i;
        continue;
      }
      if (c < 0x20 && c != '\t' && c != '\r') {
        return TextProblem{
            line, column,
            absl::StrFormat("control character U+%04X is not allowed in YAML",
                            c)};
      }
      ++i;
      ++column;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    }
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
    if (ok && ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)) {
      ok = false;
    }
    if (!ok) {
      return TextProblem{
          line, column,
          absl::StrFormat("byte 0x%02X is not valid UTF-8 (save the file as "
                          "UTF-8; Latin-1 and Windows code pages are not read)",
                          c)};
    }
    i += len;
    ++column;
  }
  return std::nullopt;
}

// Screener walks the parser's events (no tree is built) and enforces tags,
// depth, node counts and alias expansion. Fatal problems stop the walk by
// throwing Stop.
class Screener : public YAML::EventHandler {
 public:
  struct Stop {};

  Screener(const YamlLimits& limits, YamlReader& r) : limits_(limits), r_(r) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnAnchor(const YAML::Mark&, const std::string& name) override {
    pending_anchor_name_ = name;
  }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Enter(mark);
    Leaf(anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    std::string component = Enter(mark);
    if (open_anchors_.count(anchor)) {
      Fatal(mark, component,
            absl::StrCat("alias *", AnchorName(anchor),
                         " refers to the node that contains it (a recursive "
                         "alias is not allowed)"));
    }
    auto it = anchors_.find(anchor);
    const Extent e = it == anchors_.end() ? Extent{1, 0} : it->second;
    alias_nodes_ += e.size;
    if (alias_nodes_ > limits_.max_alias_nodes) {
      Fatal(
          mark, component,
          absl::StrCat("aliases expand to more than ", limits_.max_alias_nodes,
                       " nodes (the limit; nested aliases multiply)"));
    }
    if (static_cast<int64_t>(stack_.size()) + e.height > limits_.max_depth) {
      Fatal(mark, component,
            absl::StrCat("alias *", AnchorName(anchor), " nests deeper than ",
                         limits_.max_depth, " levels (the limit)"));
    }
    Add(e);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag,
                YAML::anchor_t anchor, const std::string& value) override {
    std::string component = Enter(mark);
    CheckTag(mark, tag, component);
    if (!stack_.empty() && stack_.back().is_map && stack_.back().key_next) {
      // This scalar was a key; the next node is its value.
      stack_.back().key = value;
    }
    Leaf(anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag,
                       YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, tag, anchor, false);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag,
                  YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    Open(mark, tag, anchor, true);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Extent {
    int64_t size = 1;    // nodes, aliases expanded
    int64_t height = 0;  // levels of maps and lists below and including it
  };
  struct Frame {
    bool is_map = false;
    bool key_next = true;   // maps: the next node is a key
    size_t index = 0;       // lists: the next item's index
    std::string key;        // maps: the key of the value being read
    std::string component;  // this node's own path component
    YAML::anchor_t anchor = 0;
    Extent extent;
  };

  // Enter accounts for a new node and returns its path component.
  std::string Enter(const YAML::Mark& mark) {
    if (++nodes_ > limits_.max_nodes) {
      Fatal(mark, "",
            absl::StrCat("more than ", limits_.max_nodes,
                         " YAML nodes (the limit)"));
    }
    if (stack_.empty()) return "";
    Frame& parent = stack_.back();
    if (!parent.is_map) return absl::StrCat("[", parent.index++, "]");
    if (parent.key_next) return "";  // a key: reported at its map
    return parent.key;
  }
  // After a node ends: maps alternate between keys and values.
  void Advance() {
    if (!stack_.empty() && stack_.back().is_map) {
      stack_.back().key_next = !stack_.back().key_next;
    }
  }
  void Add(const Extent& e) {
    if (!stack_.empty()) {
      stack_.back().extent.size += e.size;
      stack_.back().extent.height =
          std::max(stack_.back().extent.height, e.height + 1);
    }
    Advance();
  }
  void Leaf(YAML::anchor_t anchor) {
    Extent e;
    if (anchor != 0) Record(anchor, e);
    Add(e);
  }
  void Record(YAML::anchor_t anchor, const Extent& e) {
    anchors_[anchor] = e;
    if (!pending_anchor_name_.empty()) {
      names_[anchor] = pending_anchor_name_;
      pending_anchor_name_.clear();
    }
  }
  void Open(const YAML::Mark& mark, const std::string& tag,
            YAML::anchor_t anchor, bool is_map) {
    std::string component = Enter(mark);
    CheckTag(mark, tag, component);
    if (static_cast<int64_t>(stack_.size()) + 1 > limits_.max_depth) {
      Fatal(mark, component,
            absl::StrCat("nests deeper than ", limits_.max_depth,
                         " levels (the limit)"));
    }
    Frame f;
    f.is_map = is_map;
    f.component = std::move(component);
    f.anchor = anchor;
    f.extent.height = 1;
    if (anchor != 0) {
      open_anchors_.insert(anchor);
      if (!pending_anchor_name_.empty()) {
        names_[anchor] = pending_anchor_name_;
        pending_anchor_name_.clear();
      }
    }
    stack_.push_back(std::move(f));
  }
  void Close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.anchor != 0) {
      open_anchors_.erase(f.anchor);
      anchors_[f.anchor] = f.extent;
    }
    Add(f.extent);
  }
  // Path of the node being read, whose own component is `component`.
  std::string PathOf(absl::string_view component) const {
    std::string path;
    auto append = [&path](absl::string_view c) {
      if (c.empty()) return;
      if (c.front() != '[' && !path.empty()) path.push_back('.');
      absl::StrAppend(&path, c);
    };
    for (const Frame& f : stack_) append(f.component);
    append(component);
    return path;
  }
  std::string AnchorName(YAML::anchor_t anchor) const {
    auto it = names_.find(anchor);
    return it == names_.end() ? "?" : it->second;
  }
  void CheckTag(const YAML::Mark& mark, const std::string& tag,
                absl::string_view component) {
    if (tag.empty() || tag == "?" || tag == "!") return;
    std::string shown = absl::StartsWith(tag, "tag:yaml.org,2002:")
                            ? absl::StrCat("!!", tag.substr(18))
                            : tag;
    // The text after the tag is not shown: YAML has read part of it as
    // more syntax (in "!a && b" the "&&" is an anchor).
    r_.ErrorAt(mark.line + 1, mark.column + 1, PathOf(component),
               absl::StrCat("YAML tag \"", shown,
                            "\" is not allowed: a value that starts with '!' "
                            "must be quoted (",
                            component == "when" ? "when: " : "", "\"", shown,
                            " ...\")"));
  }
  [[noreturn]] void Fatal(const YAML::Mark& mark, absl::string_view component,
                          absl::string_view message) {
    r_.ErrorAt(mark.line + 1, mark.column + 1, PathOf(component), message);
    throw Stop{};
  }

  const YamlLimits& limits_;
  YamlReader& r_;
  std::vector<Frame> stack_;
  int64_t nodes_ = 0;
  int64_t alias_nodes_ = 0;
  std::string pending_anchor_name_;
  std::unordered_map<YAML::anchor_t, Extent> anchors_;
  std::unordered_map<YAML::anchor_t, std::string> names_;
  std::unordered_set<YAML::anchor_t> open_anchors_;
};

}  // namespace

std::string YamlDiagnostic::ToString() const {
  return absl::StrCat(file, ":", line, ":", column,
                      ": error: ", path.empty() ? "" : absl::StrCat(path, ": "),
                      message);
}

bool YamlReader::Screen(absl::string_view text) {
  if (text.size() > limits_.max_bytes) {
    ErrorAt(1, 1, "",
            absl::StrCat("the file is ", text.size(), " bytes; the limit is ",
                         limits_.max_bytes, " bytes"));
    return false;
  }
  if (std::optional<TextProblem> p = Utf8Problem(text); p.has_value()) {
    ErrorAt(p->line, p->column, "", p->message);
    return false;
  }
  const size_t before = diagnostics_.size();
  std::stringstream in{std::string(text)};
  YAML::Parser parser(in);
  Screener screener(limits_, *this);
  try {
    if (parser.HandleNextDocument(screener)) {
      // The scanner stops at the next document's start; a second document
      // is refused rather than silently ignored.
      struct Counter : YAML::EventHandler {
        YAML::Mark start;
        bool seen = false;
        void OnDocumentStart(const YAML::Mark& m) override {
          if (!seen) start = m;
          seen = true;
          throw Screener::Stop{};
        }
        void OnDocumentEnd() override {}
        void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
        void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
        void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                      const std::string&) override {}
        void OnSequenceStart(const YAML::Mark&, const std::string&,
                             YAML::anchor_t,
                             YAML::EmitterStyle::value) override {}
        void OnSequenceEnd() override {}
        void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                        YAML::EmitterStyle::value) override {}
        void OnMapEnd() override {}
      } second;
      try {
        parser.HandleNextDocument(second);
      } catch (const Screener::Stop&) {
      } catch (const YAML::Exception& e) {
        // A syntax error after the first document is still a second one.
        if (!second.seen) second.start = e.mark;
        second.seen = true;
      }
      if (second.seen) {
        ErrorAt(second.start.line + 1, second.start.column + 1, "",
                "a second YAML document (after ---) is not allowed: a file "
                "holds one document");
      }
    }
  } catch (const Screener::Stop&) {
  } catch (const YAML::Exception& e) {
    diagnostics_.push_back(
        YamlDiagnostic{file_, e.mark.line + 1, e.mark.column + 1, "", e.msg});
  }
  return diagnostics_.size() == before;
}

YAML::Node YamlReader::Parse(absl::string_view text) {
  if (!Screen(text)) return YAML::Node();
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
  // A node without a mark (an empty document's root) is the file's start.
  int line = 1, column = 1;
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
