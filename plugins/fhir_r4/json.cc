#include "json.h"

#include <charconv>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/json_string.h"

namespace ipsrt::fhir {

Json Json::Int(int64_t value) {
  return Json(Kind::kLiteral, absl::StrCat(value));
}

Json Json::Decimal(double value) {
  char buffer[64];
  std::to_chars_result result =
      std::to_chars(buffer, buffer + sizeof(buffer), value);
  return Json(Kind::kLiteral, std::string(buffer, result.ptr));
}

Json& Json::Set(std::string key, Json value) {
  keys_.push_back(std::move(key));
  values_.push_back(std::move(value));
  return *this;
}

Json& Json::Add(Json value) {
  values_.push_back(std::move(value));
  return *this;
}

std::string Json::Write() const {
  std::string out;
  WriteTo(&out);
  return out;
}

void Json::WriteTo(std::string* out) const {
  switch (kind_) {
    case Kind::kString:
      out->append(JsonQuote(text_));
      return;
    case Kind::kLiteral:
      out->append(text_);
      return;
    case Kind::kArray:
      out->push_back('[');
      for (size_t i = 0; i < values_.size(); ++i) {
        if (i > 0) out->push_back(',');
        values_[i].WriteTo(out);
      }
      out->push_back(']');
      return;
    case Kind::kObject:
      out->push_back('{');
      for (size_t i = 0; i < values_.size(); ++i) {
        if (i > 0) out->push_back(',');
        out->append(JsonQuote(keys_[i]));
        out->push_back(':');
        values_[i].WriteTo(out);
      }
      out->push_back('}');
      return;
  }
}

}  // namespace ipsrt::fhir
