// The condition language: parse and type-check a condition, then evaluate
// it against facts derived from the same input (so that evaluation sees
// present, absent, zero and negative values).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/condition.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<ipsrt::ConditionError> errors;
  std::vector<ipsrt::CompiledCondition::TaskRef> refs;
  auto condition = ipsrt::CompiledCondition::Compile(
      text, ipsrt::ModelContext(), &errors, &refs);
  if (condition == nullptr) return 0;
  ipsrt::ConditionFacts facts;
  const char* names[] = {"phq9.total",     "phq9.item9", "gad7.total",
                         "asrm.total",     "srm.score",  "srm.ali",
                         "stage.sessions", "stage.days", "alerts.open"};
  size_t i = 0;
  for (const char* name : names) {
    unsigned char b = i < size ? data[i] : 0;
    ++i;
    if (b % 3 == 0) continue;  // absent
    facts.numbers[name] = static_cast<double>(static_cast<signed char>(b));
  }
  facts.booleans["goal.set"] = size % 2 == 0;
  facts.counts["session_held"] = static_cast<double>(size % 7);
  facts.days_since["enrolled"] = static_cast<double>(size % 100);
  (void)condition->Evaluate(facts);
  return 0;
}
