// JSON in the engine is the plugin SDK's (ipsrt/plugin/json.h): Json
// (nlohmann::ordered_json), JsonText and JsonQuote, one way to write it.
#ifndef IPSRT_COMMON_JSON_STRING_H_
#define IPSRT_COMMON_JSON_STRING_H_

#include "ipsrt/plugin/json.h"

#endif  // IPSRT_COMMON_JSON_STRING_H_
