#include "absl/strings/str_cat.h"
#include "core/enrollments.h"
#include "model/instrument_context.h"

namespace ipsrt {

WorkflowRegistry::ReloadResult WorkflowRegistry::Reload() {
  absl::MutexLock reload(&reload_mu_);
  ReloadResult result;
  WorkflowCatalog::Loaded loaded =
      WorkflowCatalog::LoadDirectoriesDiagnosed(directories_, context_);
  if (loaded.catalog != nullptr) {
    loaded = loaded.catalog->WithRetained(*Get());
  }
  if (loaded.catalog != nullptr) {
    // Every template kept serving (new or retained) must still have its
    // instruments, or its enrollments could not record a response.
    for (const std::string& orphan :
         MissingInstruments(loaded.catalog->All(), context_)) {
      loaded.diagnostics.push_back(YamlDiagnostic{
          "", 0, 0, "",
          absl::StrCat("workflow ", orphan,
                       ": no loaded questionnaire plugin serves these "
                       "instruments; the reload is refused")});
    }
    if (!loaded.diagnostics.empty()) loaded.catalog = nullptr;
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
