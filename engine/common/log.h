// Minimal leveled logging to stderr (Debian's Abseil has no absl/log).
//
// Contract: log lines name operations, codes and opaque ids (enrollment ids,
// request ids); they never contain patient data (patient references, answers,
// notes, free text). Pass only such values.
//
// Example:
//   IPSRT_LOG(INFO) << "listening on " << address;
#ifndef IPSRT_COMMON_LOG_H_
#define IPSRT_COMMON_LOG_H_

#include <sstream>
#include <string>

namespace ipsrt {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// SetMinLogLevel drops messages below `level`. Thread-safe.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

enum class LogFormat { kText = 0, kJson = 1 };

// SetLogFormat chooses text lines ("2026-01-02T03:04:05.678Z I file.cc:12]
// message") or one JSON object a line ({"time", "level", "message",
// "source"}). Thread-safe; set once at start-up.
void SetLogFormat(LogFormat format);
LogFormat CurrentLogFormat();

// AccessRecord is one finished gRPC call. Every field is bounded or
// opaque: no patient data.
struct AccessRecord {
  std::string method;
  std::string code;
  double latency_seconds = 0;
  std::string request_id;
  std::string tenant;
  std::string actor_role;
};

// LogAccess writes one info-level line for `record`: in JSON its fields
// are members of the object, in text they follow the message.
void LogAccess(const AccessRecord& record);

// LogMessage writes one line when it is destroyed.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  const char* source_;
  int line_;
  std::ostringstream stream_;
};

}  // namespace ipsrt

#define IPSRT_LOG_LEVEL_DEBUG ::ipsrt::LogLevel::kDebug
#define IPSRT_LOG_LEVEL_INFO ::ipsrt::LogLevel::kInfo
#define IPSRT_LOG_LEVEL_WARNING ::ipsrt::LogLevel::kWarning
#define IPSRT_LOG_LEVEL_ERROR ::ipsrt::LogLevel::kError

#define IPSRT_LOG(level)                                  \
  if (IPSRT_LOG_LEVEL_##level < ::ipsrt::MinLogLevel()) { \
  } else                                                  \
    ::ipsrt::LogMessage(IPSRT_LOG_LEVEL_##level, __FILE__, __LINE__).stream()

#endif  // IPSRT_COMMON_LOG_H_
