#include "model/workflow.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/hash.h"
#include "common/yaml_reader.h"

namespace ipsrt {

bool IsIsoDuration(absl::string_view text) {
  if (text.size() < 3 || text[0] != 'P') return false;
  static constexpr absl::string_view kUnits = "YMWD";
  size_t last_unit = 0;
  bool any_positive = false;
  size_t i = 1;
  while (i < text.size()) {
    size_t start = i;
    uint64_t value = 0;
    while (i < text.size() && absl::ascii_isdigit(text[i])) {
      value = value * 10 + (text[i] - '0');
      if (value > 10000) return false;
      ++i;
    }
    if (i == start || i == text.size()) return false;
    size_t unit = kUnits.find(text[i]);
    if (unit == absl::string_view::npos) return false;
    if (unit + 1 <= last_unit) return false;  // units in order, once each
    last_unit = unit + 1;
    if (value > 0) any_positive = true;
    ++i;
  }
  return any_positive;
}

absl::StatusOr<WorkflowTemplate> ParseWorkflowTemplate(
    absl::string_view yaml, absl::string_view file_name) {
  YamlReader r{std::string(file_name)};
  YAML::Node root = r.Parse(yaml);
  if (!r.ok()) return r.ToStatus();
  if (!r.ExpectMap(root, "", false)) return r.ToStatus();
  r.ExpectKeys(root, "", {"id", "version", "title", "description", "stages"});
  WorkflowTemplate t;
  t.id = r.String(root, "", "id", "", true);
  if (root["id"].IsDefined() && !t.id.empty()) {
    bool ok = t.id.size() <= 63 && absl::ascii_islower(t.id[0]);
    for (char c : t.id) {
      ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-');
    }
    if (!ok) {
      r.Error(root["id"], "id",
              "must be 1-63 characters of a-z, 0-9 and '-', starting with a "
              "letter");
    }
  }
  if (!root["version"].IsDefined()) {
    r.Error(root, "version", "is required");
  }
  t.version = static_cast<int>(r.Int(root, "", "version", 0, 1, 1000000));
  t.title = r.String(root, "", "title", "", true);
  t.description = r.String(root, "", "description", "");
  YAML::Node stages = root["stages"];
  if (!stages.IsDefined() || !stages.IsSequence() || stages.size() == 0) {
    r.Error(stages.IsDefined() ? stages : root, "stages",
            "must be a non-empty list of stages");
  } else {
    std::set<std::string> seen;
    for (size_t i = 0; i < stages.size(); ++i) {
      std::string p = YamlReader::Join("stages", i);
      YAML::Node s = stages[i];
      if (!r.ExpectMap(s, p, false)) continue;
      r.ExpectKeys(s, p, {"id", "title", "description", "cadence"});
      StageTemplate st;
      st.id = r.String(s, p, "id", "", true);
      st.title = r.String(s, p, "title", "", true);
      st.description = r.String(s, p, "description", "");
      st.session_cadence = r.String(s, p, "cadence", "", true);
      if (!st.id.empty() && !seen.insert(st.id).second) {
        r.Error(s["id"], YamlReader::Join(p, "id"),
                absl::StrCat("duplicate stage id \"", st.id, "\""));
      }
      if (s["cadence"].IsDefined() && !IsIsoDuration(st.session_cadence)) {
        r.Error(s["cadence"], YamlReader::Join(p, "cadence"),
                absl::StrCat("\"", st.session_cadence,
                             "\" is not a positive ISO-8601 duration such as "
                             "P1W, P2W or P1M"));
      }
      t.stages.push_back(std::move(st));
    }
  }
  if (!r.ok()) return r.ToStatus();
  t.source_file = std::string(file_name);
  t.source_yaml = std::string(yaml);
  t.source_sha256 = Sha256Hex(yaml);
  return t;
}

absl::StatusOr<std::shared_ptr<const WorkflowCatalog>>
WorkflowCatalog::FromTemplates(std::vector<WorkflowTemplate> templates) {
  auto catalog = std::make_shared<WorkflowCatalog>();
  for (WorkflowTemplate& t : templates) {
    auto key = std::make_pair(t.id, t.version);
    if (catalog->templates_.count(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          t.source_file, ":1:1: error: id: workflow ", t.id, "@", t.version,
          " is already defined in ",
          catalog->templates_.at(key).source_file));
    }
    catalog->templates_.emplace(key, std::move(t));
  }
  return std::shared_ptr<const WorkflowCatalog>(std::move(catalog));
}

absl::StatusOr<std::shared_ptr<const WorkflowCatalog>>
WorkflowCatalog::LoadDirectories(const std::vector<std::string>& directories) {
  std::vector<std::string> files;
  for (const std::string& dir : directories) {
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) {
      return absl::NotFoundError(absl::StrCat(
          "workflows: cannot read directory ", dir, ": ", ec.message()));
    }
    for (const auto& entry : it) {
      if (entry.is_regular_file() && entry.path().extension() == ".yaml") {
        files.push_back(entry.path().string());
      }
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<WorkflowTemplate> templates;
  std::vector<std::string> errors;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<WorkflowTemplate> t = ParseWorkflowTemplate(text.str(), f);
    if (!t.ok()) {
      errors.push_back(std::string(t.status().message()));
    } else {
      templates.push_back(*std::move(t));
    }
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  return FromTemplates(std::move(templates));
}

const WorkflowTemplate* WorkflowCatalog::Find(absl::string_view id,
                                              int version) const {
  if (version > 0) {
    auto it = templates_.find(std::make_pair(std::string(id), version));
    return it == templates_.end() ? nullptr : &it->second;
  }
  const WorkflowTemplate* newest = nullptr;
  for (auto it = templates_.lower_bound(std::make_pair(std::string(id), 0));
       it != templates_.end() && it->first.first == id; ++it) {
    newest = &it->second;
  }
  return newest;
}

std::vector<const WorkflowTemplate*> WorkflowCatalog::All() const {
  std::vector<const WorkflowTemplate*> out;
  for (const auto& [key, t] : templates_) out.push_back(&t);
  std::stable_sort(out.begin(), out.end(), [](auto* a, auto* b) {
    return a->id != b->id ? a->id < b->id : a->version > b->version;
  });
  return out;
}

}  // namespace ipsrt
