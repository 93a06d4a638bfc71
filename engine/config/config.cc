#include "ipsrt/config.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/json_string.h"
#include "common/yaml_reader.h"
#include "config/export_config.h"
#include "config/ops_config.h"

namespace ipsrt {
namespace {

std::string Resolve(absl::string_view base_dir, const std::string& p) {
  if (p.empty()) return p;
  std::filesystem::path path(p);
  if (path.is_absolute() || base_dir.empty()) return path.lexically_normal();
  return (std::filesystem::path(std::string(base_dir)) / path)
      .lexically_normal();
}

// YamlToJson converts a YAML value to JSON. Plain scalars that read as a
// JSON literal (true, false, null, a number) become that literal; quoted
// scalars and everything else become strings.
Json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node)
        out[kv.first.Scalar()] = YamlToJson(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        out.push_back(YamlToJson(node[i]));
      }
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& v = node.Scalar();
      if (node.Tag() != "!") {
        Json literal = Json::parse(v, nullptr, /*allow_exceptions=*/false);
        if (literal.is_number() || literal.is_boolean() || literal.is_null()) {
          return literal;
        }
      }
      return v;
    }
    default:
      return nullptr;
  }
}

// ParseIntegrity reads the optional `integrity:` section.
void ParseIntegrity(YamlReader& r, const YAML::Node& node,
                    absl::string_view base_dir, IntegrityConfig& c) {
  const char* p = "integrity";
  if (!r.ExpectMap(node, p, true)) return;
  r.ExpectKeys(
      node, p,
      {"verify_on_start", "anchor_path", "anchor_key_file", "anchor_interval"});
  c.verify_on_start = r.Bool(node, p, "verify_on_start", c.verify_on_start);
  c.anchor_path = Resolve(base_dir, r.String(node, p, "anchor_path", ""));
  c.anchor_key_file =
      Resolve(base_dir, r.String(node, p, "anchor_key_file", ""));
  c.anchor_interval = r.Duration(node, p, "anchor_interval", c.anchor_interval);
  if (c.anchor_interval <= absl::ZeroDuration()) {
    r.Error(node["anchor_interval"], "integrity.anchor_interval",
            "must be positive");
  }
  if (c.anchor_path.empty() != c.anchor_key_file.empty()) {
    r.Error(node, p, "anchor_path and anchor_key_file go together");
  }
}

// ParseReminders reads the optional `reminders:` section.
void ParseReminders(YamlReader& r, const YAML::Node& node,
                    absl::string_view file_name, absl::string_view base_dir,
                    RemindersConfig& c) {
  const char* p = "reminders";
  if (!r.ExpectMap(node, p, true)) return;
  r.ExpectKeys(
      node, p,
      {"enabled", "poll_interval", "lease", "batch_size", "max_attempts",
       "initial_backoff", "max_backoff", "jsonl", "channel"});
  c.enabled = r.Bool(node, p, "enabled", c.enabled);
  struct {
    const char* key;
    absl::Duration* value;
  } const durations[] = {{"poll_interval", &c.poll_interval},
                         {"lease", &c.lease},
                         {"initial_backoff", &c.initial_backoff},
                         {"max_backoff", &c.max_backoff}};
  for (const auto& d : durations) {
    *d.value = r.Duration(node, p, d.key, *d.value);
    if (*d.value <= absl::ZeroDuration() && node[d.key].IsDefined()) {
      r.Error(node[d.key], absl::StrCat(p, ".", d.key), "must be positive");
    }
  }
  c.batch_size =
      static_cast<int>(r.Int(node, p, "batch_size", c.batch_size, 1, 10000));
  c.max_attempts =
      static_cast<int>(r.Int(node, p, "max_attempts", c.max_attempts, 1, 1000));
  if (c.max_backoff < c.initial_backoff && node["max_backoff"].IsDefined()) {
    r.Error(node["max_backoff"], "reminders.max_backoff",
            "must not be shorter than reminders.initial_backoff");
  }
  YAML::Node jsonl = node["jsonl"];
  if (r.ExpectMap(jsonl, "reminders.jsonl", true)) {
    r.ExpectKeys(jsonl, "reminders.jsonl", {"path", "sync"});
    c.jsonl_path =
        Resolve(base_dir, r.String(jsonl, "reminders.jsonl", "path", ""));
    c.jsonl_sync = r.Bool(jsonl, "reminders.jsonl", "sync", c.jsonl_sync);
  }
  const YAML::Node& channel = node["channel"];
  if (channel.IsDefined() && !channel.IsNull()) {
    c.channel = r.String(node, p, "channel", "");
    c.channel_location = absl::StrCat(file_name, ":", channel.Mark().line + 1,
                                      ":", channel.Mark().column + 1);
    if (c.channel.empty()) {
      r.Error(channel, "reminders.channel",
              "must name a loaded reminder plugin, e.g. reminder-jsonl");
    } else if (jsonl.IsDefined() && !jsonl.IsNull()) {
      r.Error(jsonl, "reminders.jsonl",
              "configures the JSON Lines file, which reminders.channel "
              "replaces; remove one of them");
    }
  }
}

bool IsLowerHex(absl::string_view s) {
  for (char ch : s) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  }
  return true;
}

// ParseAuth reads the `auth:` section. Without one, the mode is "none",
// which only a loopback listener accepts.
void ParseAuth(YamlReader& r, const YAML::Node& auth,
               absl::string_view base_dir, const YAML::Node& listen,
               const ServerConfig& server, AuthConfig& a) {
  const bool present = r.ExpectMap(auth, "auth", true);
  if (present) {
    r.ExpectKeys(auth, "auth",
                 {"mode", "leeway", "jwt", "api_tokens",
                  "integration_clinical_tenants"});
    a.mode =
        r.Enum(auth, "auth", "mode", AuthMode::kRequired,
               {{"required", AuthMode::kRequired}, {"none", AuthMode::kNone}},
               "must be \"required\" or \"none\"");
    a.leeway = r.Duration(auth, "auth", "leeway", a.leeway);
    if (a.leeway < absl::ZeroDuration() || a.leeway > absl::Minutes(5)) {
      r.Error(auth["leeway"], "auth.leeway", "must be between 0s and 5m");
    }
    YAML::Node jwt = auth["jwt"];
    if (r.ExpectMap(jwt, "auth.jwt", true)) {
      const char* p = "auth.jwt";
      r.ExpectKeys(
          jwt, p,
          {"issuer", "audience", "hs256_secret_file", "rs256_public_key_file"});
      JwtConfig j;
      j.issuer = r.String(jwt, p, "issuer", "", true);
      j.audience = r.String(jwt, p, "audience", "", true);
      j.hs256_secret_file =
          Resolve(base_dir, r.String(jwt, p, "hs256_secret_file", ""));
      j.rs256_public_key_file =
          Resolve(base_dir, r.String(jwt, p, "rs256_public_key_file", ""));
      if (j.hs256_secret_file.empty() && j.rs256_public_key_file.empty()) {
        r.Error(jwt, p,
                "needs hs256_secret_file or rs256_public_key_file (or both)");
      }
      a.jwt = j;
    }
    YAML::Node tokens = auth["api_tokens"];
    if (tokens.IsDefined() && !tokens.IsNull()) {
      if (!tokens.IsSequence()) {
        r.Error(tokens, "auth.api_tokens", "must be a list");
      } else {
        for (size_t i = 0; i < tokens.size(); ++i) {
          std::string p = YamlReader::Join("auth.api_tokens", i);
          YAML::Node t = tokens[i];
          if (!r.ExpectMap(t, p, false)) continue;
          r.ExpectKeys(t, p,
                       {"sha256", "subject", "role", "tenant", "patient_ref"});
          ApiTokenConfig tc;
          tc.sha256 = r.String(t, p, "sha256", "", true);
          tc.subject = r.String(t, p, "subject", "", true);
          tc.role = r.String(t, p, "role", "", true);
          tc.tenant = r.String(t, p, "tenant", "");
          tc.patient_ref = r.String(t, p, "patient_ref", "");
          if (t["sha256"].IsDefined() &&
              (tc.sha256.size() != 64 || !IsLowerHex(tc.sha256))) {
            r.Error(t["sha256"], YamlReader::Join(p, "sha256"),
                    "must be 64 lowercase hex digits: the SHA-256 of the "
                    "token (ipsrt token hash), never the token itself");
          }
          if (t["role"].IsDefined() && tc.role != "admin" &&
              tc.role != "clinician" && tc.role != "patient" &&
              tc.role != "integration") {
            r.Error(t["role"], YamlReader::Join(p, "role"),
                    "must be admin, clinician, patient or integration");
          }
          if (tc.role != "admin" && !tc.role.empty() && tc.tenant.empty()) {
            r.Error(t, YamlReader::Join(p, "tenant"),
                    absl::StrCat("is required for role ", tc.role));
          }
          if (tc.role == "patient" && tc.patient_ref.empty()) {
            r.Error(t, YamlReader::Join(p, "patient_ref"),
                    "is required for role patient");
          }
          if (tc.role != "patient" && !tc.patient_ref.empty()) {
            r.Error(t["patient_ref"], YamlReader::Join(p, "patient_ref"),
                    "is only for role patient");
          }
          a.api_tokens.push_back(std::move(tc));
        }
      }
    }
    a.integration_clinical_tenants =
        r.StringList(auth, "auth", "integration_clinical_tenants");
    if (a.mode == AuthMode::kRequired && !a.jwt.has_value() &&
        a.api_tokens.empty()) {
      r.Error(auth, "auth",
              "mode required needs auth.jwt or auth.api_tokens (or both)");
    }
  }
  // (Without TLS, server.listen is already reported.)
  if (a.mode == AuthMode::kNone && !IsLoopback(server.listen) &&
      server.tls.has_value()) {
    r.Error(present ? auth["mode"] : listen, "auth.mode",
            absl::StrCat("\"", server.listen,
                         "\" is not a loopback address; a listener beyond "
                         "this machine needs authentication (an auth section "
                         "with jwt or api_tokens)"));
  }
}

// ParseByteSize reads "0", "123", "64KiB", "256MiB" or "2GiB"; -1 when the
// text is none of these.
int64_t ParseByteSize(absl::string_view text) {
  struct Unit {
    absl::string_view suffix;
    int64_t factor;
  };
  for (Unit u : {Unit{"GiB", int64_t{1} << 30}, Unit{"MiB", int64_t{1} << 20},
                 Unit{"KiB", int64_t{1} << 10}, Unit{"", 1}}) {
    if (!absl::EndsWith(text, u.suffix)) continue;
    int64_t n = 0;
    if (!absl::SimpleAtoi(text.substr(0, text.size() - u.suffix.size()), &n) ||
        n < 0 || n > (int64_t{1} << 50) / u.factor) {
      return -1;
    }
    return n * u.factor;
  }
  return -1;
}

// ParseSqliteSafety reads the keys of store.sqlite that guard against a
// wrong, shared or full database (docs/durability.md).
void ParseSqliteSafety(YamlReader& r, const YAML::Node& sqlite,
                       SqliteConfig& s) {
  const char* p = "store.sqlite";
  s.create = r.Enum(sqlite, p, "create", s.create,
                    {{"if_missing", SqliteCreate::kIfMissing},
                     {"true", SqliteCreate::kAlways},
                     {"false", SqliteCreate::kNever}},
                    "must be if_missing, true or false");
  s.allow_shared = r.Bool(sqlite, p, "allow_shared", s.allow_shared);
  std::string free = r.String(sqlite, p, "min_free_space", "auto");
  if (free != "auto") {
    s.min_free_bytes = ParseByteSize(free);
    if (s.min_free_bytes < 0) {
      r.Error(sqlite["min_free_space"], "store.sqlite.min_free_space",
              "must be auto, 0 (off) or a size such as 512MiB or 2GiB");
    }
  }
  s.quick_check_timeout =
      r.Duration(sqlite, p, "quick_check_timeout", s.quick_check_timeout);
  const YAML::Node cache = sqlite["enrollment_cache"];
  if (cache.IsDefined() && !cache.IsNull()) {
    s.enrollment_cache_bytes =
        ParseByteSize(r.String(sqlite, p, "enrollment_cache", ""));
    if (s.enrollment_cache_bytes < 0) {
      r.Error(cache, "store.sqlite.enrollment_cache",
              "must be 0 (off) or a size such as 32MiB or 1GiB");
    }
  }
}

// ParsePostgres reads store.postgres (required when `selected`).
void ParsePostgres(YamlReader& r, const YAML::Node& store, bool selected,
                   absl::string_view base_dir, PostgresConfig& pg) {
  const char* p = "store.postgres";
  const YAML::Node node = store["postgres"];
  if (!node.IsDefined() || node.IsNull()) {
    if (selected) {
      r.Error(store["kind"], p, "is required when store.kind is postgres");
    }
    return;
  }
  if (!r.ExpectMap(node, p, !selected)) return;
  r.ExpectKeys(node, p,
               {"conninfo", "password_env", "password_file", "pool_size",
                "statement_timeout", "connect_timeout", "migration_timeout"});
  pg.conninfo = r.String(node, p, "conninfo", "", true);
  if (!pg.conninfo.empty()) {
    // The string itself is never echoed: it might hold the password.
    char* err = nullptr;
    PQconninfoOption* options = PQconninfoParse(pg.conninfo.c_str(), &err);
    if (options == nullptr) {
      r.Error(node["conninfo"], "store.postgres.conninfo",
              "is not a valid libpq connection string or URI");
    } else {
      for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        if (std::string(o->keyword) == "password" && o->val != nullptr) {
          r.Error(node["conninfo"], "store.postgres.conninfo",
                  "must not contain a password; use "
                  "store.postgres.password_env or password_file");
        }
      }
      PQconninfoFree(options);
    }
    PQfreemem(err);
  }
  pg.password_env = r.String(node, p, "password_env", "");
  pg.password_file = Resolve(base_dir, r.String(node, p, "password_file", ""));
  if (!pg.password_env.empty() && !pg.password_file.empty()) {
    r.Error(node["password_file"], "store.postgres.password_file",
            "set password_env or password_file, not both");
  }
  pg.pool_size =
      static_cast<int>(r.Int(node, p, "pool_size", pg.pool_size, 1, 256));
  pg.statement_timeout =
      r.Duration(node, p, "statement_timeout", pg.statement_timeout);
  pg.connect_timeout =
      r.Duration(node, p, "connect_timeout", pg.connect_timeout);
  for (const char* key : {"statement_timeout", "connect_timeout"}) {
    absl::Duration d = std::string(key) == "statement_timeout"
                           ? pg.statement_timeout
                           : pg.connect_timeout;
    if (d < absl::Seconds(1)) {
      r.Error(node[key].IsDefined() ? node[key] : node,
              absl::StrCat("store.postgres.", key), "must be at least 1s");
    }
  }
  pg.migration_timeout =
      r.Duration(node, p, "migration_timeout", pg.migration_timeout);
  if (pg.migration_timeout != absl::ZeroDuration() &&
      pg.migration_timeout < absl::Seconds(1)) {
    r.Error(node["migration_timeout"], "store.postgres.migration_timeout",
            "must be 0s (no limit) or at least 1s");
  }
}

// ParseServer reads the optional `server:` section.
void ParseServer(YamlReader& r, const YAML::Node& server,
                 absl::string_view base_dir, ServerConfig& s) {
  if (r.ExpectMap(server, "server", true)) {
    r.ExpectKeys(server, "server",
                 {"listen", "max_receive_message_bytes", "shutdown_grace",
                  "tls", "max_metadata_bytes", "umask"});
    s.listen = r.String(server, "server", "listen", s.listen);
    if (s.listen.find(':') == std::string::npos) {
      r.Error(server["listen"], "server.listen",
              "must be host:port, e.g. 127.0.0.1:50051");
    }
    s.max_receive_message_bytes =
        r.Int(server, "server", "max_receive_message_bytes",
              s.max_receive_message_bytes, 1024, int64_t{64} << 20);
    s.shutdown_grace =
        r.Duration(server, "server", "shutdown_grace", s.shutdown_grace);
    s.max_metadata_bytes = r.Int(server, "server", "max_metadata_bytes",
                                 s.max_metadata_bytes, 8 << 10, 1 << 20);
    const std::string umask = r.String(server, "server", "umask", "0077");
    if (umask.size() < 3 || umask.size() > 4 ||
        umask.find_first_not_of("01234567") != std::string::npos) {
      r.Error(server["umask"], "server.umask",
              "must be an octal mask of 3 or 4 digits, e.g. 0077");
    } else {
      s.umask = static_cast<uint32_t>(std::stoul(umask, nullptr, 8));
    }
    YAML::Node tls = server["tls"];
    if (r.ExpectMap(tls, "server.tls", true)) {
      const char* p = "server.tls";
      r.ExpectKeys(tls, p, {"cert_file", "key_file", "client_ca_file"});
      TlsConfig t;
      t.cert_file = Resolve(base_dir, r.String(tls, p, "cert_file", "", true));
      t.key_file = Resolve(base_dir, r.String(tls, p, "key_file", "", true));
      t.client_ca_file =
          Resolve(base_dir, r.String(tls, p, "client_ca_file", ""));
      s.tls = t;
    }
    if (!s.tls.has_value() && !IsLoopback(s.listen)) {
      r.Error(server["listen"], "server.listen",
              absl::StrCat("\"", s.listen,
                           "\" is not a loopback address; listening beyond "
                           "this machine needs server.tls"));
    }
  }
}

// ParseStore reads the required `store:` section.
void ParseStore(YamlReader& r, const YAML::Node& root,
                absl::string_view base_dir, StoreConfig& st) {
  YAML::Node store = root["store"];
  if (!store.IsDefined()) {
    r.Error(root, "store", "is required (store.sqlite.path at least)");
  } else if (r.ExpectMap(store, "store", false)) {
    r.ExpectKeys(store, "store",
                 {"kind", "sqlite", "postgres", "request_retention"});
    // Read as text first: the error names the unsupported value.
    std::string kind = r.String(store, "store", "kind", "sqlite");
    st.request_retention =
        r.Duration(store, "store", "request_retention", st.request_retention);
    if (kind == StoreKindName(StoreKind::kPostgres)) {
      st.kind = StoreKind::kPostgres;
    } else if (kind != StoreKindName(StoreKind::kSqlite)) {
      r.Error(store["kind"], "store.kind",
              absl::StrCat("unsupported store kind \"", kind,
                           "\" (supported: sqlite, postgres)"));
    }
    const bool postgres = st.kind == StoreKind::kPostgres;
    ParsePostgres(r, store, postgres, base_dir, st.postgres);
    YAML::Node sqlite = store["sqlite"];
    if (r.ExpectMap(sqlite, "store.sqlite", postgres)) {
      const char* p = "store.sqlite";
      r.ExpectKeys(
          sqlite, p,
          {"path", "synchronous", "busy_timeout", "max_batch",
           "read_connections", "create", "allow_shared", "min_free_space",
           "quick_check_timeout", "enrollment_cache"});
      SqliteConfig& s = st.sqlite;
      s.path = Resolve(base_dir, r.String(sqlite, p, "path", "", true));
      s.synchronous =
          r.Enum(sqlite, p, "synchronous", s.synchronous,
                 {{"full", SqliteSynchronous::kFull},
                  {"extra", SqliteSynchronous::kExtra}},
                 "must be \"full\" or \"extra\": weaker settings can lose "
                 "acknowledged commits on power loss");
      s.busy_timeout = r.Duration(sqlite, p, "busy_timeout", s.busy_timeout);
      s.max_batch = static_cast<int>(
          r.Int(sqlite, p, "max_batch", s.max_batch, 1, 10000));
      s.read_connections = static_cast<int>(
          r.Int(sqlite, p, "read_connections", s.read_connections, 1, 64));
      ParseSqliteSafety(r, sqlite, s);
    }
  }
}

constexpr absl::string_view kInProcessName = "in_process";
constexpr absl::string_view kOutOfProcessName = "out_of_process";

// ParsePlugin reads one entry of `plugins:` (at `p`, e.g. "plugins[0]").
PluginConfig ParsePlugin(YamlReader& r, const YAML::Node& entry,
                         const std::string& p, absl::string_view file_name,
                         absl::string_view base_dir) {
  r.ExpectKeys(entry, p,
               {"path", "transport", "sha256", "args", "config", "call_timeout",
                "required", "handshake_timeout", "memory_limit_mb",
                "cpu_limit_seconds", "max_concurrent_calls"});
  PluginConfig pc;
  pc.location = absl::StrCat(file_name, ":", entry.Mark().line + 1, ":",
                             entry.Mark().column + 1);
  std::string path = r.String(entry, p, "path", "", true);
  pc.path =
      path.find('/') == std::string::npos ? path : Resolve(base_dir, path);
  pc.transport =
      r.Enum(entry, p, "transport", pc.transport,
             {{kInProcessName, PluginTransportKind::kInProcess},
              {kOutOfProcessName, PluginTransportKind::kOutOfProcess}},
             "must be in_process or out_of_process");
  pc.sha256 = absl::AsciiStrToLower(r.String(entry, p, "sha256", ""));
  if (!pc.sha256.empty() &&
      (pc.sha256.size() != 64 ||
       pc.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    r.Error(entry["sha256"], YamlReader::Join(p, "sha256"),
            "must be 64 hexadecimal digits");
  }
  pc.args = r.StringList(entry, p, "args");
  if (!pc.args.empty() && pc.transport != PluginTransportKind::kOutOfProcess) {
    r.Error(entry["args"], YamlReader::Join(p, "args"),
            "only an out_of_process plugin takes arguments");
  }
  pc.call_timeout = r.Duration(entry, p, "call_timeout", pc.call_timeout);
  if (pc.call_timeout <= absl::ZeroDuration()) {
    r.Error(entry["call_timeout"], YamlReader::Join(p, "call_timeout"),
            "must be positive");
  }
  pc.handshake_timeout =
      r.Duration(entry, p, "handshake_timeout", pc.handshake_timeout);
  if (pc.handshake_timeout <= absl::ZeroDuration()) {
    r.Error(entry["handshake_timeout"],
            YamlReader::Join(p, "handshake_timeout"), "must be positive");
  }
  pc.memory_limit_mb =
      r.Int(entry, p, "memory_limit_mb", 0, 0, int64_t{1} << 30);
  pc.cpu_limit_seconds =
      r.Int(entry, p, "cpu_limit_seconds", 0, 0, int64_t{1} << 30);
  pc.max_concurrent_calls = static_cast<int>(r.Int(
      entry, p, "max_concurrent_calls", pc.max_concurrent_calls, 1, 1024));
  if (pc.transport != PluginTransportKind::kOutOfProcess &&
      (pc.memory_limit_mb > 0 || pc.cpu_limit_seconds > 0)) {
    r.Error(entry, p,
            "memory_limit_mb and cpu_limit_seconds need transport "
            "out_of_process");
  }
  const YAML::Node& config = entry["config"];
  if (config.IsDefined() && !config.IsNull()) {
    if (!config.IsMap()) {
      r.Error(config, YamlReader::Join(p, "config"),
              "must be a map (the plugin's own settings)");
    } else {
      pc.config_json = JsonText(YamlToJson(config));
    }
  }
  pc.required = r.Bool(entry, p, "required", false);
  return pc;
}

// ParsePlugins reads the optional `plugins:` list.
void ParsePlugins(YamlReader& r, const YAML::Node& plugins,
                  absl::string_view file_name, absl::string_view base_dir,
                  std::vector<PluginConfig>& out) {
  if (!plugins.IsDefined() || plugins.IsNull()) return;
  if (!plugins.IsSequence()) {
    r.Error(plugins, "plugins", "must be a list of plugins");
    return;
  }
  for (size_t i = 0; i < plugins.size(); ++i) {
    const std::string p = YamlReader::Join("plugins", i);
    if (!r.ExpectMap(plugins[i], p, false)) continue;
    out.push_back(ParsePlugin(r, plugins[i], p, file_name, base_dir));
  }
}

// ParseEvents reads the optional `events:` section.
void ParseEvents(YamlReader& r, const YAML::Node& events, EventsConfig& e) {
  if (r.ExpectMap(events, "events", true)) {
    r.ExpectKeys(events, "events", {"future_leeway"});
    e.future_leeway =
        r.Duration(events, "events", "future_leeway", e.future_leeway);
    if (e.future_leeway < absl::ZeroDuration() ||
        e.future_leeway > absl::Hours(24)) {
      r.Error(events["future_leeway"], "events.future_leeway",
              "must be between 0s and 24h");
    }
  }
}

}  // namespace

absl::StatusOr<std::string> ResolvePostgresPassword(const PostgresConfig& pg) {
  if (!pg.password_env.empty()) {
    const char* v = std::getenv(pg.password_env.c_str());
    if (v == nullptr || *v == '\0') {
      return absl::FailedPreconditionError(
          absl::StrCat("store.postgres.password_env: environment variable ",
                       pg.password_env, " is not set or empty"));
    }
    return std::string(v);
  }
  if (!pg.password_file.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(pg.password_file);
    if (!text.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store.postgres.password_file: cannot read ", pg.password_file));
    }
    std::string v = *std::move(text);
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    if (v.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store.postgres.password_file: ", pg.password_file, " is empty"));
    }
    return v;
  }
  return std::string();
}

bool IsLoopback(absl::string_view listen) {
  size_t colon = listen.rfind(':');
  absl::string_view host =
      colon == absl::string_view::npos ? listen : listen.substr(0, colon);
  return absl::StartsWith(host, "127.") || host == "localhost" ||
         host == "[::1]";
}

const char* StoreKindName(StoreKind kind) {
  return kind == StoreKind::kPostgres ? "postgres" : "sqlite";
}

absl::StatusOr<Config> ParseConfig(absl::string_view yaml,
                                   absl::string_view file_name,
                                   absl::string_view base_dir) {
  YamlReader r{std::string(file_name)};
  YAML::Node root = r.Parse(yaml);
  if (!r.ok()) return r.ToStatus();
  Config c;
  if (!r.ExpectMap(root, "", false)) return r.ToStatus();
  r.ExpectKeys(
      root, "",
      {"server", "auth", "store", "workflows", "logging", "safety", "plugins",
       "reminders", "export", "integrity", "metrics", "health", "events"});

  ParseServer(r, root["server"], base_dir, c.server);
  ParseAuth(r, root["auth"], base_dir,
            root["server"].IsMap() ? root["server"]["listen"] : YAML::Node(),
            c.server, c.auth);

  ParseStore(r, root, base_dir, c.store);
  YAML::Node workflows = root["workflows"];
  if (r.ExpectMap(workflows, "workflows", true)) {
    r.ExpectKeys(workflows, "workflows", {"directories"});
    for (const std::string& d :
         r.StringList(workflows, "workflows", "directories")) {
      c.workflows.directories.push_back(Resolve(base_dir, d));
    }
  }

  YAML::Node logging = root["logging"];
  if (r.ExpectMap(logging, "logging", true)) {
    r.ExpectKeys(logging, "logging", {"level", "format", "access_log"});
    c.logging.level = r.Enum(logging, "logging", "level", c.logging.level,
                             {{"debug", LogLevel::kDebug},
                              {"info", LogLevel::kInfo},
                              {"warning", LogLevel::kWarning},
                              {"error", LogLevel::kError}},
                             "must be debug, info, warning or error");
    ParseLoggingFormat(r, logging, c.logging);
  }
  YAML::Node safety = root["safety"];
  if (r.ExpectMap(safety, "safety", true)) {
    r.ExpectKeys(safety, "safety", {"crisis_resources"});
    c.safety.crisis_resources =
        r.StringList(safety, "safety", "crisis_resources");
  }
  ParsePlugins(r, root["plugins"], file_name, base_dir, c.plugins);
  ParseReminders(r, root["reminders"], file_name, base_dir, c.reminders);
  ParseExportSection(r, root["export"], file_name, base_dir, c.export_);
  ParseIntegrity(r, root["integrity"], base_dir, c.integrity);
  ParseOperations(r, root, file_name, c);
  ParseEvents(r, root["events"], c.events);
  if (!r.ok()) return r.ToStatus();
  return c;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("config: cannot read ", path));
  }
  std::string base = std::filesystem::absolute(path).parent_path().string();
  return ParseConfig(*text, path, base);
}

std::optional<PluginTransportKind> ParsePluginTransport(
    absl::string_view name) {
  if (name == kInProcessName) return PluginTransportKind::kInProcess;
  if (name == kOutOfProcessName) return PluginTransportKind::kOutOfProcess;
  return std::nullopt;
}

}  // namespace ipsrt
