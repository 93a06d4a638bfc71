#include "absl/strings/str_cat.h"
#include "core/enrollments.h"

namespace ipsrt {

WorkflowRegistry::ReloadResult WorkflowRegistry::Reload() {
  absl::MutexLock reload(&reload_mu_);
  ReloadResult result;
  WorkflowCatalog::Loaded loaded =
      WorkflowCatalog::LoadDirectoriesDiagnosed(directories_);
  if (loaded.catalog != nullptr) {
    loaded = loaded.catalog->WithRetained(*Get());
  }
  result.diagnostics = std::move(loaded.diagnostics);
  if (loaded.catalog != nullptr) {
    absl::MutexLock lock(&mu_);
    catalog_ = std::move(loaded.catalog);
    result.reloaded = true;
  }
  for (const WorkflowTemplate* t : Get()->All()) {
    result.serving.push_back(absl::StrCat(t->id, "@", t->version));
  }
  return result;
}

}  // namespace ipsrt
