#include "json.h"

#include <utility>

namespace ipsrt::fhir {

Json Json::Decimal(double value) { return Json(ipsrt::JsonDecimal(value)); }

Json& Json::Set(std::string key, Json value) {
  value_[std::move(key)] = std::move(value.value_);
  return *this;
}

Json& Json::Add(Json value) {
  value_.push_back(std::move(value.value_));
  return *this;
}

}  // namespace ipsrt::fhir
