#include "ipsrt/config.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/yaml_reader.h"

namespace ipsrt {
namespace {

std::string Resolve(absl::string_view base_dir, const std::string& p) {
  if (p.empty()) return p;
  std::filesystem::path path(p);
  if (path.is_absolute() || base_dir.empty()) return path.lexically_normal();
  return (std::filesystem::path(std::string(base_dir)) / path)
      .lexically_normal();
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
                "statement_timeout", "connect_timeout"});
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

absl::StatusOr<Config> ParseConfig(absl::string_view yaml,
                                   absl::string_view file_name,
                                   absl::string_view base_dir) {
  YamlReader r{std::string(file_name)};
  YAML::Node root = r.Parse(yaml);
  if (!r.ok()) return r.ToStatus();
  Config c;
  if (!r.ExpectMap(root, "", false)) return r.ToStatus();
  r.ExpectKeys(root, "", {"server", "store", "workflows", "logging", "safety"});

  YAML::Node server = root["server"];
  if (r.ExpectMap(server, "server", true)) {
    r.ExpectKeys(
        server, "server",
        {"listen", "max_receive_message_bytes", "shutdown_grace", "tls"});
    c.server.listen = r.String(server, "server", "listen", c.server.listen);
    if (c.server.listen.find(':') == std::string::npos) {
      r.Error(server["listen"], "server.listen",
              "must be host:port, e.g. 127.0.0.1:50051");
    }
    c.server.max_receive_message_bytes =
        r.Int(server, "server", "max_receive_message_bytes",
              c.server.max_receive_message_bytes, 1024, int64_t{64} << 20);
    c.server.shutdown_grace =
        r.Duration(server, "server", "shutdown_grace", c.server.shutdown_grace);
    YAML::Node tls = server["tls"];
    if (r.ExpectMap(tls, "server.tls", true)) {
      const char* p = "server.tls";
      r.ExpectKeys(tls, p, {"cert_file", "key_file", "client_ca_file"});
      TlsConfig t;
      t.cert_file = Resolve(base_dir, r.String(tls, p, "cert_file", "", true));
      t.key_file = Resolve(base_dir, r.String(tls, p, "key_file", "", true));
      t.client_ca_file =
          Resolve(base_dir, r.String(tls, p, "client_ca_file", ""));
      c.server.tls = t;
    }
    if (!c.server.tls.has_value() && !IsLoopback(c.server.listen)) {
      r.Error(server["listen"], "server.listen",
              absl::StrCat("\"", c.server.listen,
                           "\" is not a loopback address; listening beyond "
                           "this machine needs server.tls"));
    }
  }

  YAML::Node store = root["store"];
  if (!store.IsDefined()) {
    r.Error(root, "store", "is required (store.sqlite.path at least)");
  } else if (r.ExpectMap(store, "store", false)) {
    r.ExpectKeys(store, "store", {"kind", "sqlite", "postgres"});
    c.store.kind = r.String(store, "store", "kind", c.store.kind);
    if (c.store.kind != "sqlite" && c.store.kind != "postgres") {
      r.Error(store["kind"], "store.kind",
              absl::StrCat("unsupported store kind \"", c.store.kind,
                           "\" (supported: sqlite, postgres)"));
    }
    ParsePostgres(r, store, c.store.kind == "postgres", base_dir,
                  c.store.postgres);
    YAML::Node sqlite = store["sqlite"];
    if (r.ExpectMap(sqlite, "store.sqlite", c.store.kind != "sqlite")) {
      const char* p = "store.sqlite";
      r.ExpectKeys(sqlite, p,
                   {"path", "synchronous", "busy_timeout", "max_batch",
                    "read_connections"});
      SqliteConfig& s = c.store.sqlite;
      s.path = Resolve(base_dir, r.String(sqlite, p, "path", "", true));
      s.synchronous = r.String(sqlite, p, "synchronous", s.synchronous);
      if (s.synchronous != "full" && s.synchronous != "extra") {
        r.Error(sqlite["synchronous"], "store.sqlite.synchronous",
                "must be \"full\" or \"extra\": weaker settings can lose "
                "acknowledged commits on power loss");
      }
      s.busy_timeout = r.Duration(sqlite, p, "busy_timeout", s.busy_timeout);
      s.max_batch = static_cast<int>(
          r.Int(sqlite, p, "max_batch", s.max_batch, 1, 10000));
      s.read_connections = static_cast<int>(
          r.Int(sqlite, p, "read_connections", s.read_connections, 1, 64));
    }
  }

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
    r.ExpectKeys(logging, "logging", {"level"});
    c.logging.level = r.String(logging, "logging", "level", c.logging.level);
    if (c.logging.level != "debug" && c.logging.level != "info" &&
        c.logging.level != "warning" && c.logging.level != "error") {
      r.Error(logging["level"], "logging.level",
              "must be debug, info, warning or error");
    }
  }
  YAML::Node safety = root["safety"];
  if (r.ExpectMap(safety, "safety", true)) {
    r.ExpectKeys(safety, "safety", {"crisis_resources"});
    c.safety.crisis_resources =
        r.StringList(safety, "safety", "crisis_resources");
  }
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

}  // namespace ipsrt
