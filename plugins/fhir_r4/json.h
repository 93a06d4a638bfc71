// A JSON value that keeps object keys in insertion order and writes
// compact JSON, byte for byte the same for the same value.
//
// The FHIR renderer builds every resource with it so the key order is the
// order the code sets them in (resourceType first, as FHIR readers expect),
// never a hash order. Numbers are held as their final text: FHIR decimals
// must come out exactly as computed ("5.2", not "5.2000000000000002").
//
// Example:
//   Json obs = Json::Object();
//   obs.Set("resourceType", "Observation").Set("valueInteger", Json::Int(3));
//   std::string text = obs.Write();  // {"resourceType":"Observation",...}
#ifndef IPSRT_PLUGINS_FHIR_R4_JSON_H_
#define IPSRT_PLUGINS_FHIR_R4_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ipsrt::fhir {

class Json {
 public:
  // A string value.
  Json(const char* text) : kind_(Kind::kString), text_(text) {}
  Json(std::string text) : kind_(Kind::kString), text_(std::move(text)) {}

  static Json Object() { return Json(Kind::kObject, ""); }
  static Json Array() { return Json(Kind::kArray, ""); }
  static Json Bool(bool value) {
    return Json(Kind::kLiteral, value ? "true" : "false");
  }
  static Json Int(int64_t value);
  // The shortest decimal text that reads back as `value` (std::to_chars),
  // e.g. 5.2 -> "5.2", 12.0 -> "12". Not for NaN or infinities.
  static Json Decimal(double value);

  // Appends a member to an object. The caller keeps keys unique.
  Json& Set(std::string key, Json value);
  // Appends an element to an array.
  Json& Add(Json value);

  // True for an object or array without members.
  bool empty() const { return values_.empty(); }

  // Compact JSON text, no newline.
  std::string Write() const;
  void WriteTo(std::string* out) const;

 private:
  enum class Kind { kString, kLiteral, kObject, kArray };
  Json(Kind kind, std::string text) : kind_(kind), text_(std::move(text)) {}

  Kind kind_;
  std::string text_;
  std::vector<std::string> keys_;
  std::vector<Json> values_;
};

}  // namespace ipsrt::fhir

#endif  // IPSRT_PLUGINS_FHIR_R4_JSON_H_
