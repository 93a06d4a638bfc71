// The ipsrtd config reader.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ipsrt/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string yaml(reinterpret_cast<const char*>(data), size);
  (void)ipsrt::ParseConfig(yaml, "ipsrtd.yaml", "/nonexistent");
  return 0;
}
