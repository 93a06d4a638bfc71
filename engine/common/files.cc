#include "common/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ipsrt {

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::FailedPreconditionError("is a directory, not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(std::strerror(errno));
  return text.str();
}

absl::Status WriteStringToFile(const std::string& path,
                               const std::string& bytes) {
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out.good()) {
      const std::string reason = std::strerror(errno);
      std::remove(tmp.c_str());
      return absl::DataLossError(reason);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    return absl::FailedPreconditionError(reason);
  }
  return absl::OkStatus();
}

}  // namespace ipsrt
