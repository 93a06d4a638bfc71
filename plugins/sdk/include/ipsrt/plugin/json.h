// JSON for the engine and its plugins: nlohmann::ordered_json (members keep
// the order they are set in, so the same value always writes the same
// bytes) and one way to write it.
//
// Example:
//   ipsrt::Json line = {{"reminder", name}, {"attempt", 1}};
//   std::string text = ipsrt::JsonText(line);  // {"reminder":"...",...}
#ifndef IPSRT_PLUGIN_JSON_H_
#define IPSRT_PLUGIN_JSON_H_

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace ipsrt {

using Json = nlohmann::ordered_json;

// JsonText writes `value` as compact JSON without a newline. UTF-8 is kept
// as it is; bytes that are not UTF-8 are written as U+FFFD, so it never
// throws. Doubles are written in the shortest form that reads back exactly.
inline std::string JsonText(const Json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false,
                    Json::error_handler_t::replace);
}

// JsonQuote renders `text` as a JSON string literal (JsonText of a string).
inline std::string JsonQuote(absl::string_view text) {
  return JsonText(Json(std::string(text)));
}

// JsonDecimal is `value` as a JSON number: a whole number as an integer
// ("12", where nlohmann writes a double 12.0 as "12.0"), any other in the
// shortest form that reads back exactly ("5.2").
inline Json JsonDecimal(double value) {
  if (value == std::trunc(value) && std::fabs(value) < 9.0e15) {
    return Json(static_cast<int64_t>(value));
  }
  return Json(value);
}

}  // namespace ipsrt

#endif  // IPSRT_PLUGIN_JSON_H_
