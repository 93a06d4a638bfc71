// JsonQuote renders `text` as a JSON string literal: quotes, backslashes
// and control characters escaped (newline, return and tab as \n \r \t,
// the others as \u00XX), other bytes (UTF-8 included) as they are. Shared by
// the engine and the built-in plugins that write JSON by hand.
#ifndef IPSRT_COMMON_JSON_STRING_H_
#define IPSRT_COMMON_JSON_STRING_H_

#include <string>

#include "absl/strings/string_view.h"

namespace ipsrt {

std::string JsonQuote(absl::string_view text);

}  // namespace ipsrt

#endif  // IPSRT_COMMON_JSON_STRING_H_
