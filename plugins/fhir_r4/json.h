// A JSON value that keeps object keys in insertion order and writes
// compact JSON, byte for byte the same for the same value.
//
// The FHIR renderer builds every resource with it so the key order is the
// order the code sets them in (resourceType first, as FHIR readers expect),
// never a hash order. FHIR decimals come out exactly as computed: the
// shortest text that reads back ("5.2", not "5.2000000000000002"), whole
// numbers without a fraction ("12").
//
// Example:
//   Json obs = Json::Object();
//   obs.Set("resourceType", "Observation").Set("valueInteger", Json::Int(3));
//   std::string text = obs.Write();  // {"resourceType":"Observation",...}
#ifndef IPSRT_PLUGINS_FHIR_R4_JSON_H_
#define IPSRT_PLUGINS_FHIR_R4_JSON_H_

#include <cstdint>
#include <string>

#include "ipsrt/plugin/json.h"

namespace ipsrt::fhir {

// A fluent builder over the SDK's ipsrt::Json (nlohmann::ordered_json).
class Json {
 public:
  // A string value.
  Json(const char* text) : value_(text) {}
  Json(std::string text) : value_(std::move(text)) {}

  static Json Object() { return Json(ipsrt::Json::object()); }
  static Json Array() { return Json(ipsrt::Json::array()); }
  static Json Bool(bool value) { return Json(ipsrt::Json(value)); }
  static Json Int(int64_t value) { return Json(ipsrt::Json(value)); }
  // The shortest decimal text that reads back as `value`, e.g. 5.2 -> "5.2",
  // 12.0 -> "12" (a whole number has no fraction). Not for NaN or
  // infinities.
  static Json Decimal(double value);

  // Appends a member to an object. The caller keeps keys unique.
  Json& Set(std::string key, Json value);
  // Appends an element to an array.
  Json& Add(Json value);

  // True for an object or array without members.
  bool empty() const { return value_.empty(); }

  // Compact JSON text, no newline.
  std::string Write() const { return JsonText(value_); }
  void WriteTo(std::string* out) const { out->append(Write()); }

 private:
  explicit Json(ipsrt::Json value) : value_(std::move(value)) {}
  ipsrt::Json value_;
};

}  // namespace ipsrt::fhir

#endif  // IPSRT_PLUGINS_FHIR_R4_JSON_H_
