// Reading whole files, with errors that say why.
#ifndef IPSRT_COMMON_FILES_H_
#define IPSRT_COMMON_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ipsrt {

// ReadFileToString returns the bytes of `path`. NOT_FOUND when it cannot be
// opened, FAILED_PRECONDITION for a directory, DATA_LOSS when reading
// fails part way; the message is the system's reason, without the path
// (callers add it where they know what the file is for).
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// WriteStringToFile replaces `path` with `bytes` through "<path>.partial"
// and a rename, so a reader never sees half a file. On failure nothing is
// left behind; the message is the system's reason.
absl::Status WriteStringToFile(const std::string& path,
                               const std::string& bytes);

}  // namespace ipsrt

#endif  // IPSRT_COMMON_FILES_H_
