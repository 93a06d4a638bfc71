// Workflow templates as loaded from YAML, and the catalog of loaded ones.
//
// This is the header-level model: id, version, title, description and the
// ordered stages with their session cadence. Tasks, rules and exit
// conditions extend it; unknown keys are refused today so that a template
// never silently means less than its author wrote.
#ifndef IPSRT_MODEL_WORKFLOW_H_
#define IPSRT_MODEL_WORKFLOW_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ipsrt {

struct StageTemplate {
  std::string id;
  std::string title;
  std::string description;
  // ISO-8601 duration, e.g. "P1W".
  std::string session_cadence;
};

struct WorkflowTemplate {
  std::string id;
  int version = 0;
  std::string title;
  std::string description;
  std::vector<StageTemplate> stages;  // at least one, in order
  std::string source_file;
  std::string source_yaml;
  std::string source_sha256;
};

// ParseWorkflowTemplate reads one template. INVALID_ARGUMENT lists every
// problem as file:line:col: error: path: message.
absl::StatusOr<WorkflowTemplate> ParseWorkflowTemplate(
    absl::string_view yaml, absl::string_view file_name);

// IsIsoDuration accepts positive ISO-8601 durations of whole days, weeks,
// months or years ("P1W", "P2W", "P1M", "P10D", "P1Y2M").
bool IsIsoDuration(absl::string_view text);

// WorkflowCatalog is an immutable set of loaded templates; reloading makes
// a new catalog. Thread-safe (immutable).
class WorkflowCatalog {
 public:
  // LoadDirectories reads every *.yaml file of `directories` (sorted by
  // name). Any error in any file fails the whole load with every diagnostic,
  // so a catalog never holds part of a template set. A duplicate id@version
  // is an error.
  static absl::StatusOr<std::shared_ptr<const WorkflowCatalog>>
  LoadDirectories(const std::vector<std::string>& directories);

  // FromTemplates builds a catalog from parsed templates (tests).
  static absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> FromTemplates(
      std::vector<WorkflowTemplate> templates);

  // Find returns the template, or nullptr. `version` 0 means the newest.
  const WorkflowTemplate* Find(absl::string_view id, int version) const;

  // All returns every template, ordered by id then version descending.
  std::vector<const WorkflowTemplate*> All() const;

 private:
  std::map<std::pair<std::string, int>, WorkflowTemplate> templates_;
};

}  // namespace ipsrt

#endif  // IPSRT_MODEL_WORKFLOW_H_
