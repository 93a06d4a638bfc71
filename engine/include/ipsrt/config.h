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
#include "common/log.h"

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
  // Largest request metadata (headers, the bearer token among them) a call
  // may carry; over it the call is UNAUTHENTICATED, naming this setting.
  // gRPC itself refuses header blocks over 4 times this (RESOURCE_EXHAUSTED)
  // before any handler runs. Fits RS256 JWTs with many claims.
  int64_t max_metadata_bytes = 16 << 10;
  // File mode creation mask ipsrtd sets at start-up ("0077": the database,
  // its WAL, reminder files and exports are 0600, directories 0700).
  uint32_t umask = 077;
};

// store.sqlite.synchronous: SQLite's PRAGMA synchronous. Nothing weaker
// than FULL can be configured: a commit that a power loss can undo is not a
// commit for health data.
enum class SqliteSynchronous { kFull, kExtra };

// store.sqlite.create (docs/durability.md): what start-up does with a
// database without the ipsrt schema. kIfMissing ("if_missing", default)
// creates the file only when it does not exist and refuses an existing
// empty or schema-less one; kAlways ("true") also initialises those (first
// start); kNever ("false") never creates (production: `ipsrt store init`
// first).
enum class SqliteCreate { kIfMissing, kAlways, kNever };

struct SqliteConfig {
  std::string path;
  SqliteSynchronous synchronous = SqliteSynchronous::kFull;
  absl::Duration busy_timeout = absl::Seconds(5);
  int max_batch = 256;
  int read_connections = 4;
  SqliteCreate create = SqliteCreate::kIfMissing;
  // Several processes may open the file (no lock file). Off by default:
  // one ipsrtd per database; PostgreSQL is the way to run replicas.
  bool allow_shared = false;
  // Bytes of enrollment rows cached in memory (store.sqlite.enrollment_cache,
  // default 32MiB; 0 off). Off whatever the value with allow_shared.
  int64_t enrollment_cache_bytes = 32 << 20;
  // Free space (bytes) below which changes are refused and start-up is
  // refused: -1 (default, `auto`) is the smaller of 5 % of the file system
  // and 256 MiB; 0 turns the watermark off.
  int64_t min_free_bytes = -1;
  // PRAGMA quick_check at start is abandoned after this long; 0s skips it.
  absl::Duration quick_check_timeout = absl::Seconds(10);
  // Set by `ipsrtd --adopt_store`, never from the file: serve a database
  // whose identity differs from its identity file, and record it anew.
  bool adopt = false;
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
  // Longest a statement of a schema migration may run; zero: no limit.
  absl::Duration migration_timeout = absl::ZeroDuration();
};

// store.kind: "sqlite" (embedded, one ipsrtd) or "postgres" (any number of
// replicas on one database).
enum class StoreKind { kSqlite, kPostgres };

// StoreKindName is the configuration spelling of `kind` ("sqlite",
// "postgres"), for messages.
const char* StoreKindName(StoreKind kind);

struct StoreConfig {
  StoreKind kind = StoreKind::kSqlite;
  SqliteConfig sqlite;
  PostgresConfig postgres;
  // How long each request's first response is kept for retries with the
  // same request id (docs/storage.md); 0 keeps them for ever.
  absl::Duration request_retention = absl::Hours(7 * 24);
};

struct WorkflowsConfig {
  // Directories whose *.yaml files are workflow templates.
  std::vector<std::string> directories;
};

struct LoggingConfig {
  // debug, info, warning or error.
  LogLevel level = LogLevel::kInfo;
  // text (one human-readable line) or json (one JSON object a line: time,
  // level, message, source, and for access logs the call's fields).
  LogFormat format = LogFormat::kText;
  // One log line per finished gRPC call (method, code, latency, request
  // id, tenant, actor role), at info level.
  bool access_log = false;
};

// The Prometheus endpoint (docs/operations.md).
//   metrics:
//     listen: 127.0.0.1:9464   # off unless set
struct MetricsConfig {
  // host:port of the HTTP listener serving /metrics; empty: no metrics.
  std::string listen;
  // "file:line:col" of `listen`, for start-up errors.
  std::string location;
  // How often the store-derived gauges (enrollments by stage, outbox
  // depth and lag) are refreshed; a scrape never queries the store.
  absl::Duration store_refresh = absl::Seconds(10);
};

// Readiness (grpc.health.v1), see docs/operations.md.
//   health:
//     probe_interval: 2s
struct HealthConfig {
  // How often the store and the required plugins are probed.
  absl::Duration probe_interval = absl::Seconds(2);
};

struct SafetyConfig {
  // Shown to a patient at once when a response raises a safety flag (PHQ-9
  // item 9 above 0), e.g. "Call or text 988 (US Suicide & Crisis Lifeline)".
  std::vector<std::string> crisis_resources;
};

// How a plugin runs: in_process (dlopen) or out_of_process (a child
// process; a shared library is then run by ipsrt-plugin-runner).
enum class PluginTransportKind { kInProcess, kOutOfProcess };

// ParsePluginTransport maps "in_process" and "out_of_process" to their
// value; nullopt for anything else.
std::optional<PluginTransportKind> ParsePluginTransport(absl::string_view name);

// One plugin to load at start-up (plugins/sdk/README.md).
struct PluginConfig {
  // A shared library, or (out of process only) an executable. A bare file
  // name (no '/') names a library in the engine's plugin directory,
  // <directory of ipsrtd>/../lib/ipsrt/plugins; other relative paths are
  // resolved against the config file's directory.
  std::string path;
  PluginTransportKind transport = PluginTransportKind::kInProcess;
  // Lowercase hex SHA-256 of the file; when set, a file with another hash
  // is refused before it is loaded or run.
  std::string sha256;
  // Extra arguments for an out-of-process executable.
  std::vector<std::string> args;
  // The plugin's own `config` block as JSON text ("{}" when absent); the
  // plugin validates it at load.
  std::string config_json = "{}";
  // Deadline of each call to an out-of-process plugin.
  absl::Duration call_timeout = absl::Seconds(5);
  // "file:line:col" of the entry, for load errors.
  std::string location;
  // A required plugin that is down makes ipsrtd NOT_SERVING (readiness).
  bool required = false;
  // Out of process: how long the child has to print its handshake line and
  // answer its first health check; past it the child's process group is
  // killed and the engine refuses to start.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // Out of process: setrlimit in the child (0: unlimited). memory_limit_mb
  // caps each process's address space (RLIMIT_AS), cpu_limit_seconds its
  // CPU time (RLIMIT_CPU).
  int64_t memory_limit_mb = 0;
  int64_t cpu_limit_seconds = 0;
  // In process: calls allowed to run in the plugin at once; a call beyond
  // it waits (within call_timeout) for a slot.
  int max_concurrent_calls = 4;
};

// Delivery of planned reminders (engine/reminders/dispatcher.h).
//   reminders:
//     enabled: true
//     poll_interval: 1s
//     lease: 60s
//     batch_size: 100
//     max_attempts: 8
//     initial_backoff: 30s
//     max_backoff: 1h
//     jsonl:
//       path: ../var/ipsrtd/reminders.jsonl   # default: beside the database
//       sync: true
//     channel: reminder-webhook   # instead of jsonl: a loaded reminder plugin
struct RemindersConfig {
  bool enabled = true;
  absl::Duration poll_interval = absl::Seconds(1);
  absl::Duration lease = absl::Seconds(60);
  int batch_size = 100;
  int max_attempts = 8;
  absl::Duration initial_backoff = absl::Seconds(30);
  absl::Duration max_backoff = absl::Hours(1);
  // The JSON Lines file (written by the reminder-jsonl plugin, which
  // ipsrtd loads for it); empty path: reminders.jsonl in the database's
  // directory.
  std::string jsonl_path;
  bool jsonl_sync = true;
  // Name of the REMINDER plugin that delivers (reminders/plugin_sender.h);
  // empty: the JSON Lines file of `jsonl`. Set together with jsonl is an
  // error.
  std::string channel;
  // "file:line:col" of `channel`, for start-up errors.
  std::string channel_location;
};

// A static API token, stored only as the SHA-256 of the token (64
// lowercase hex digits, see `ipsrt token hash`).
struct ApiTokenConfig {
  std::string sha256;
  std::string subject;
  // "admin", "clinician", "patient" or "integration".
  std::string role;
  // Required except for admin (an admin without tenant reaches every
  // tenant).
  std::string tenant;
  // Required for role patient.
  std::string patient_ref;
};

struct JwtConfig {
  std::string issuer;
  std::string audience;
  // File holding the HS256 shared secret (raw bytes, at least 32; one
  // trailing newline is ignored).
  std::string hs256_secret_file;
  // PEM file with the RS256 public key of the token issuer.
  std::string rs256_public_key_file;
};

// required: every call but health and reflection needs a bearer token.
// none: accepted only on a loopback listener; every caller acts as the
// local administrator (subject "local", all tenants).
enum class AuthMode { kRequired, kNone };

struct AuthConfig {
  // Without an auth section: none; with one, required unless it says none.
  AuthMode mode = AuthMode::kNone;
  // Clock skew allowed for JWT exp and nbf.
  absl::Duration leeway = absl::Seconds(30);
  std::optional<JwtConfig> jwt;
  std::vector<ApiTokenConfig> api_tokens;
  // Tenants whose integration callers (an EHR bridge) may record clinical
  // events: session_held, goal_set, relapse_plan, disruption_plan,
  // stage_change, alert_acknowledged. Elsewhere only clinicians and admins
  // may (see README, "Security model").
  std::vector<std::string> integration_clinical_tenants;
};

// One named delivery target of PushEnrollment (export.targets.NAME).
struct ExportTargetConfig {
  std::string name;
  // Format rendered for delivery.
  std::string format = "fhir-r4-transaction";
  // EXPORTER plugin that renders `format`; empty: the one loaded plugin
  // that lists the format.
  std::string renderer;
  // EXPORTER plugin whose DeliverExport sends the rendering.
  std::string deliverer;
  // Target in the deliverer's own configuration; empty: its default.
  std::string deliverer_target;
  // "file:line:col" of the entry, for start-up errors.
  std::string location;
};

// Export of enrollments (engine/service/export_service.h).
//   export:
//     root: ../var/ipsrtd/exports    # BulkExport writes under it only
//     default_target: ehr           # optional with exactly one target
//     targets:
//       ehr:
//         deliverer: fhir-push
//         deliverer_target: main
//         format: fhir-r4-transaction
struct ExportConfig {
  // Directory BulkExport's output_dir is relative to; empty: BulkExport is
  // refused (FAILED_PRECONDITION).
  std::string root;
  // Target used when PushEnrollment names none; empty with exactly one
  // target means that one.
  std::string default_target;
  // In file order.
  std::vector<ExportTargetConfig> targets;
};

// The `integrity:` section (docs/integrity.md).
struct IntegrityConfig {
  // Verify every event chain and the audit chain before serving; a broken
  // chain refuses the start-up with the first broken records.
  bool verify_on_start = false;
  // Where ipsrtd writes its HMAC-sealed anchor of the store's heads (outside
  // the database), and the file holding the HMAC key. Both or neither.
  std::string anchor_path;
  std::string anchor_key_file;
  absl::Duration anchor_interval = absl::Minutes(5);
};

// Submitted events (README, "Plausible clinical times").
//   events:
//     future_leeway: 10m   # authored and session times at most this late
struct EventsConfig {
  absl::Duration future_leeway = absl::Minutes(10);
};

struct Config {
  ServerConfig server;
  AuthConfig auth;
  StoreConfig store;
  WorkflowsConfig workflows;
  LoggingConfig logging;
  SafetyConfig safety;
  std::vector<PluginConfig> plugins;
  RemindersConfig reminders;
  ExportConfig export_;
  IntegrityConfig integrity;
  MetricsConfig metrics;
  HealthConfig health;
  EventsConfig events;
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
