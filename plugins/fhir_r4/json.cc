#include "json.h"

#include <cmath>
#include <utility>

namespace ipsrt::fhir {

Json Json::Decimal(double value) {
  // Whole numbers as integers: nlohmann writes a double 12.0 as "12.0".
  if (value == std::trunc(value) && std::fabs(value) < 9.0e15) {
    return Int(static_cast<int64_t>(value));
  }
  return Json(ipsrt::Json(value));
}

Json& Json::Set(std::string key, Json value) {
  value_[std::move(key)] = std::move(value.value_);
  return *this;
}

Json& Json::Add(Json value) {
  value_.push_back(std::move(value.value_));
  return *this;
}

}  // namespace ipsrt::fhir
