// The shipped standard workflow (workflows/ipsrt-standard.yaml), loaded
// once for the layering tests with nothing but ipsrt_model.
#ifndef IPSRT_TESTS_LAYERING_STANDARD_WORKFLOW_H_
#define IPSRT_TESTS_LAYERING_STANDARD_WORKFLOW_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "model/workflow.h"

namespace ipsrt {

// nullptr (and a test failure) when the catalog does not load.
inline const WorkflowTemplate* StandardWorkflow() {
  static const auto* catalog =
      new absl::StatusOr<std::shared_ptr<const WorkflowCatalog>>(
          WorkflowCatalog::LoadDirectories(
              {std::string(IPSRT_SOURCE_DIR) + "/workflows"}));
  if (!catalog->ok()) {
    ADD_FAILURE() << catalog->status();
    return nullptr;
  }
  return (**catalog)->Find("ipsrt-standard", 0);
}

}  // namespace ipsrt

#endif  // IPSRT_TESTS_LAYERING_STANDARD_WORKFLOW_H_
