// The workflow template loader (YAML, structure, conditions, references).
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/workflow.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string yaml(reinterpret_cast<const char*>(data), size);
  (void)ipsrt::ParseWorkflowTemplate(yaml, "fuzz.yaml");
  return 0;
}
