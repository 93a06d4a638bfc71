// Reading whole files, with errors that say why.
#ifndef IPSRT_COMMON_FILES_H_
#define IPSRT_COMMON_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace ipsrt {

// ReadFileToString returns the bytes of `path`. NOT_FOUND when it cannot be
// opened, FAILED_PRECONDITION for a directory, DATA_LOSS when reading
// fails part way; the message is the system's reason, without the path
// (callers add it where they know what the file is for).
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace ipsrt

#endif  // IPSRT_COMMON_FILES_H_
