#include "common/log.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/json_string.h"

namespace ipsrt {
namespace {
std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> log_format{static_cast<int>(LogFormat::kText)};

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarning:
      return 'W';
    case LogLevel::kError:
      return 'E';
  }
  return '?';
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

std::string TimeNow() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                          absl::UTCTimeZone());
}

// Write emits one whole line with one write, so lines from different
// threads never interleave.
void Write(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

// JsonLine is one JSON log line: time, level, message and source, then
// the members of `fields` in their order.
std::string JsonLine(LogLevel level, absl::string_view message,
                     absl::string_view source, const Json& fields) {
  Json line = {{"time", TimeNow()},
               {"level", LevelName(level)},
               {"message", std::string(message)},
               {"source", std::string(source)}};
  for (const auto& field : fields.items()) line[field.key()] = field.value();
  return absl::StrCat(JsonText(line), "\n");
}

const char* BaseName(const char* file) {
  const char* base = std::strrchr(file, '/');
  return base ? base + 1 : file;
}
}  // namespace

void SetMinLogLevel(LogLevel level) {
  min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel MinLogLevel() {
  return static_cast<LogLevel>(min_level.load(std::memory_order_relaxed));
}

void SetLogFormat(LogFormat format) {
  log_format.store(static_cast<int>(format), std::memory_order_relaxed);
}

LogFormat CurrentLogFormat() {
  return static_cast<LogFormat>(log_format.load(std::memory_order_relaxed));
}

LogMessage::LogMessage(LogLevel level, const char* file, int line)
    : level_(level), source_(BaseName(file)), line_(line) {}

LogMessage::~LogMessage() {
  if (CurrentLogFormat() == LogFormat::kJson) {
    Write(JsonLine(level_, stream_.str(), absl::StrCat(source_, ":", line_),
                   Json::object()));
    return;
  }
  Write(absl::StrCat(TimeNow(), " ", std::string(1, LevelLetter(level_)), " ",
                     source_, ":", line_, "] ", stream_.str(), "\n"));
}

void LogAccess(const AccessRecord& r) {
  if (LogLevel::kInfo < MinLogLevel()) return;
  if (CurrentLogFormat() == LogFormat::kJson) {
    // Latency to the microsecond, as the text format shows it.
    Write(JsonLine(
        LogLevel::kInfo, "call", "access",
        {{"method", r.method},
         {"code", r.code},
         {"latency_seconds", std::round(r.latency_seconds * 1e6) / 1e6},
         {"request_id", r.request_id},
         {"tenant", r.tenant},
         {"actor_role", r.actor_role}}));
    return;
  }
  Write(absl::StrCat(TimeNow(), " I access] call ", r.method, " ", r.code,
                     absl::StrFormat(" %.6fs", r.latency_seconds),
                     " request_id=", r.request_id, " tenant=", r.tenant,
                     " role=", r.actor_role, "\n"));
}

}  // namespace ipsrt
