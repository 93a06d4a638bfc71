#include "ipsrt/config.h"

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
    r.ExpectKeys(auth, "auth", {"mode", "leeway", "jwt", "api_tokens"});
    a.mode = r.String(auth, "auth", "mode", "required");
    if (a.mode != "none" && a.mode != "required") {
      r.Error(auth["mode"], "auth.mode", "must be \"required\" or \"none\"");
    }
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
    if (a.mode == "required" && !a.jwt.has_value() && a.api_tokens.empty()) {
      r.Error(auth, "auth",
              "mode required needs auth.jwt or auth.api_tokens (or both)");
    }
  }
  // (Without TLS, server.listen is already reported.)
  if (a.mode == "none" && !IsLoopback(server.listen) &&
      server.tls.has_value()) {
    r.Error(present ? auth["mode"] : listen, "auth.mode",
            absl::StrCat("\"", server.listen,
                         "\" is not a loopback address; a listener beyond "
                         "this machine needs authentication (an auth section "
                         "with jwt or api_tokens)"));
  }
}

}  // namespace

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
  r.ExpectKeys(root, "",
               {"server", "auth", "store", "workflows", "logging", "safety"});

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

  ParseAuth(r, root["auth"], base_dir,
            root["server"].IsMap() ? root["server"]["listen"] : YAML::Node(),
            c.server, c.auth);

  YAML::Node store = root["store"];
  if (!store.IsDefined()) {
    r.Error(root, "store", "is required (store.sqlite.path at least)");
  } else if (r.ExpectMap(store, "store", false)) {
    r.ExpectKeys(store, "store", {"kind", "sqlite"});
    c.store.kind = r.String(store, "store", "kind", c.store.kind);
    if (c.store.kind != "sqlite") {
      r.Error(store["kind"], "store.kind",
              absl::StrCat("unsupported store kind \"", c.store.kind,
                           "\" (supported: sqlite)"));
    }
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
