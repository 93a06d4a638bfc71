// ChainTemplate: a valid workflow template of `n` stages for size tests and
// the validation benchmark. Each stage has one task and an exit to the
// next stage on tasks.done of its task; the last stage ends the course.
#ifndef IPSRT_TESTS_TESTING_CHAIN_TEMPLATE_H_
#define IPSRT_TESTS_TESTING_CHAIN_TEMPLATE_H_

#include <string>

#include "absl/strings/str_cat.h"

namespace ipsrt::testing {

inline std::string ChainTemplate(int n) {
  std::string yaml = "id: chain\nversion: 1\ntitle: Chain\nstages:\n";
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&yaml, "  - id: s", i, "\n    title: Stage ", i,
                    "\n    cadence: P1W\n    tasks:\n      - id: t", i,
                    "\n        kind: note\n        title: Note\n");
    if (i + 1 < n) {
      absl::StrAppend(&yaml, "    exit:\n      - to: s", i + 1,
                      "\n        when: tasks.done(\"t", i, "\")\n");
    }
  }
  return yaml;
}

}  // namespace ipsrt::testing

#endif  // IPSRT_TESTS_TESTING_CHAIN_TEMPLATE_H_
