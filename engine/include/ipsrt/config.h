// Config: ipsrtd's settings, read from one YAML file.
//
// Unknown keys are errors; every problem is reported with its
// file:line:col and YAML path. Relative paths in the file are resolved
// against the directory of the file itself, so a config works from any
// working directory.
//
// Example (config/ipsrtd.yaml):
//   server:
//     listen: 127.0.0.1:50051
//   store:
//     sqlite:
//       path: ../var/ipsrtd/ipsrt.db
//   workflows:
//     directories: [../workflows]
#ifndef IPSRT_CONFIG_H_
#define IPSRT_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ipsrt {

// TLS for the gRPC listener. Paths are PEM files.
struct TlsConfig {
  std::string cert_file;
  std::string key_file;
  // When set, clients must present a certificate signed by this CA
  // (mutual TLS).
  std::string client_ca_file;
};

struct ServerConfig {
  // host:port to listen on; port 0 picks a free port. Without `tls` only a
  // loopback address is accepted.
  std::string listen = "127.0.0.1:50051";
  std::optional<TlsConfig> tls;
  // Largest request accepted; larger ones fail RESOURCE_EXHAUSTED.
  int64_t max_receive_message_bytes = 1 << 20;
  // How long SIGTERM waits for in-flight calls before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(10);
};

struct SqliteConfig {
  std::string path;
  std::string synchronous = "full";
  absl::Duration busy_timeout = absl::Seconds(5);
  int max_batch = 256;
  int read_connections = 4;
};

// PostgreSQL for several replicas on one database. The password never
// sits in the config file: it is read from an environment variable or a
// file (ResolvePostgresPassword) and never logged.
struct PostgresConfig {
  // libpq connection string or URI, without a password.
  std::string conninfo;
  // Name of the environment variable holding the password.
  std::string password_env;
  // File holding the password (one line; a trailing newline is dropped).
  std::string password_file;
  int pool_size = 8;
  absl::Duration statement_timeout = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(5);
};

struct StoreConfig {
  // "sqlite" (embedded, one ipsrtd) or "postgres" (any number of replicas).
  std::string kind = "sqlite";
  SqliteConfig sqlite;
  PostgresConfig postgres;
};

struct WorkflowsConfig {
  // Directories whose *.yaml files are workflow templates.
  std::vector<std::string> directories;
};

struct LoggingConfig {
  // "debug", "info", "warning" or "error".
  std::string level = "info";
};

struct SafetyConfig {
  // Shown to a patient at once when a response raises a safety flag (PHQ-9
  // item 9 above 0), e.g. "Call or text 988 (US Suicide & Crisis Lifeline)".
  std::vector<std::string> crisis_resources;
};

struct Config {
  ServerConfig server;
  StoreConfig store;
  WorkflowsConfig workflows;
  LoggingConfig logging;
  SafetyConfig safety;
};

// ParseConfig reads YAML text. `file_name` appears in diagnostics;
// relative paths are resolved against `base_dir`. INVALID_ARGUMENT lists
// every problem, one a line.
absl::StatusOr<Config> ParseConfig(absl::string_view yaml,
                                   absl::string_view file_name,
                                   absl::string_view base_dir);

// IsLoopback is true for "127.x.y.z:port", "localhost:port" and
// "[::1]:port".
bool IsLoopback(absl::string_view listen);

// ResolvePostgresPassword reads the password named by password_env or
// password_file ("" when neither is set). FAILED_PRECONDITION names the
// variable or file when it is unset, unreadable or empty, never the value.
absl::StatusOr<std::string> ResolvePostgresPassword(const PostgresConfig& pg);

// LoadConfigFile reads and parses a file. NOT_FOUND when it cannot be read.
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

}  // namespace ipsrt

#endif  // IPSRT_CONFIG_H_
