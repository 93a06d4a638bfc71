#include "ipsrt/config.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;

constexpr char kMinimal[] = R"(server:
  listen: 127.0.0.1:50051
store:
  sqlite:
    path: data/ipsrt.db
)";

TEST(ConfigTest, ShippedDefaultConfigLoads) {
  absl::StatusOr<Config> c =
      LoadConfigFile(std::string(IPSRT_SOURCE_DIR) + "/config/ipsrtd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.listen, "127.0.0.1:50051");
  EXPECT_EQ(c->store.kind, StoreKind::kSqlite);
  EXPECT_EQ(c->store.sqlite.synchronous, SqliteSynchronous::kFull);
  EXPECT_EQ(c->store.sqlite.path,
            std::string(IPSRT_SOURCE_DIR) + "/var/ipsrtd/ipsrt.db");
  ASSERT_EQ(c->workflows.directories.size(), 1u);
  EXPECT_EQ(c->workflows.directories[0],
            std::string(IPSRT_SOURCE_DIR) + "/workflows");
  // The built-in instruments, by bare name from the engine's plugin
  // directory.
  // ... and the FHIR R4 exporter, with bulk exports under var/.
  ASSERT_EQ(c->plugins.size(), 2u);
  EXPECT_EQ(c->plugins[0].path, "libipsrt_core_instruments.so");
  EXPECT_EQ(c->plugins[0].transport, PluginTransportKind::kInProcess);
  EXPECT_EQ(c->plugins[1].path, "libipsrt_fhir_r4.so");
  EXPECT_EQ(c->plugins[1].transport, PluginTransportKind::kInProcess);
  EXPECT_EQ(c->export_.root,
            std::string(IPSRT_SOURCE_DIR) + "/var/ipsrtd/exports");
  EXPECT_TRUE(c->export_.targets.empty());
}

// docs/executable-plugins.md's configuration example uses the reader's own
// keys and values: it parses, and every documented setting lands.
TEST(ConfigTest, ExecutablePluginDocsExampleParses) {
  std::ifstream in(std::string(IPSRT_SOURCE_DIR) +
                   "/docs/executable-plugins.md");
  std::stringstream doc;
  doc << in.rdbuf();
  const std::string text = doc.str();
  const size_t begin = text.find("```yaml\nplugins:\n");
  ASSERT_NE(begin, std::string::npos);
  const size_t body = begin + std::string("```yaml\n").size();
  const size_t end = text.find("```", body);
  ASSERT_NE(end, std::string::npos);
  absl::StatusOr<Config> c =
      ParseConfig(absl::StrCat(kMinimal, text.substr(body, end - body)),
                  "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->plugins.size(), 1u);
  const PluginConfig& p = c->plugins[0];
  EXPECT_EQ(p.path, "/opt/plugins/sleep-check/run.sh");
  EXPECT_EQ(p.transport, PluginTransportKind::kOutOfProcess);
  EXPECT_EQ(p.args, std::vector<std::string>{"--verbose"});
  EXPECT_EQ(p.call_timeout, absl::Seconds(5));
  EXPECT_EQ(p.handshake_timeout, absl::Seconds(10));
  EXPECT_EQ(p.memory_limit_mb, 512);
  EXPECT_EQ(p.cpu_limit_seconds, 3600);
  EXPECT_THAT(p.config_json, HasSubstr("\"threshold\":3"));
}

TEST(ConfigTest, DefaultsAndRelativePaths) {
  absl::StatusOr<Config> c = ParseConfig(kMinimal, "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->store.sqlite.path, "/etc/ipsrtd/data/ipsrt.db");
  EXPECT_EQ(c->server.max_receive_message_bytes, 1 << 20);
  EXPECT_EQ(c->server.shutdown_grace, absl::Seconds(10));
  EXPECT_EQ(c->store.sqlite.max_batch, 256);
  EXPECT_EQ(c->logging.level, LogLevel::kInfo);
}

TEST(ConfigTest, UnknownKeyNamesFileLineColumnAndPath) {
  absl::StatusOr<Config> c = ParseConfig(R"(server:
  lisen: 127.0.0.1:1
store:
  sqlite:
    path: a.db
)",
                                         "ipsrtd.yaml", "/");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "ipsrtd.yaml:2:3: error: server.lisen: unknown key \"lisen\" "
            "(allowed: listen, max_receive_message_bytes, shutdown_grace, "
            "tls, max_metadata_bytes, umask)");
}

TEST(ConfigTest, SecuritySettingsDefaultsAndErrors) {
  absl::StatusOr<Config> c = ParseConfig(kMinimal, "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.max_metadata_bytes, 16 * 1024);
  EXPECT_EQ(c->server.umask, 077u);
  EXPECT_EQ(c->events.future_leeway, absl::Minutes(10));
  EXPECT_TRUE(c->auth.integration_clinical_tenants.empty());
  const char* store = "store:\n  sqlite:\n    path: a.db\n";
  c = ParseConfig(absl::StrCat("server:\n  umask: \"0027\"\n"
                               "  max_metadata_bytes: 65536\n",
                               store,
                               "events:\n  future_leeway: 2m\n"
                               "auth:\n  mode: none\n"
                               "  integration_clinical_tenants: [clinic-a]\n"),
                  "c.yaml", "/etc");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.umask, 027u);
  EXPECT_EQ(c->server.max_metadata_bytes, 65536);
  EXPECT_EQ(c->events.future_leeway, absl::Minutes(2));
  EXPECT_EQ(c->auth.integration_clinical_tenants,
            std::vector<std::string>{"clinic-a"});
  c = ParseConfig(absl::StrCat("server:\n  umask: u=rwx\n"
                               "  max_metadata_bytes: 100\n",
                               store, "events:\n  future_leeway: 48h\n"),
                  "c.yaml", "/etc");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(c.status().message()),
      ::testing::AllOf(::testing::HasSubstr("c.yaml:2:10: error: server.umask: "
                                            "must be an octal mask"),
                       ::testing::HasSubstr("server.max_metadata_bytes"),
                       ::testing::HasSubstr("events.future_leeway: must be "
                                            "between 0s and 24h")));
}

TEST(ConfigTest, ReportsEveryProblemAtOnce) {
  absl::StatusOr<Config> c = ParseConfig(R"(server:
  listen: nowhere
  shutdown_grace: soon
store:
  sqlite:
    path: a.db
    synchronous: normal
    max_batch: 0
logging:
  level: loud
extra: 1
)",
                                         "c.yaml", "/");
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  std::string m(c.status().message());
  EXPECT_THAT(m, HasSubstr("c.yaml:2:11: error: server.listen: must be "
                           "host:port"));
  EXPECT_THAT(m, HasSubstr("c.yaml:3:19: error: server.shutdown_grace: must "
                           "be a non-negative duration"));
  EXPECT_THAT(m, HasSubstr("c.yaml:7:18: error: store.sqlite.synchronous: "
                           "must be \"full\" or \"extra\""));
  EXPECT_THAT(m, HasSubstr("c.yaml:8:16: error: store.sqlite.max_batch: must "
                           "be between 1 and 10000, not 0"));
  EXPECT_THAT(m, HasSubstr("c.yaml:10:10: error: logging.level: must be "
                           "debug, info, warning or error"));
  EXPECT_THAT(m, HasSubstr("c.yaml:11:1: error: extra: unknown key"));
}

TEST(ConfigTest, MissingRequiredSectionsAndWrongTypes) {
  absl::StatusOr<Config> c = ParseConfig("store: [1, 2]\n", "c.yaml", "/");
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "c.yaml:1:8: error: store: must be a map, not a list");
  c = ParseConfig("server:\n  listen: 127.0.0.1:1\n", "c.yaml", "/");
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "c.yaml:1:1: error: store: is required (store.sqlite.path at "
            "least)");
  c = ParseConfig("store:\n  sqlite:\n    synchronous: full\n", "c.yaml", "/");
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "c.yaml:3:5: error: store.sqlite.path: is required");
}

TEST(ConfigTest, SyntaxErrorHasLineAndColumn) {
  absl::StatusOr<Config> c =
      ParseConfig("server:\n  listen: [unclosed\n", "bad.yaml", "/");
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("bad.yaml:3:1: error: "));
}

TEST(ConfigTest, UnreadableFileIsNotFound) {
  absl::StatusOr<Config> c = LoadConfigFile("/nonexistent/ipsrtd.yaml");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.status().message(),
            "config: cannot read /nonexistent/ipsrtd.yaml");
}

}  // namespace
}  // namespace ipsrt

namespace ipsrt {
namespace {

TEST(ConfigTlsTest, ProductionExampleRequiresTls) {
  absl::StatusOr<Config> c = LoadConfigFile(std::string(IPSRT_SOURCE_DIR) +
                                            "/config/ipsrtd.production.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->server.tls.has_value());
  EXPECT_EQ(c->server.tls->cert_file, "/etc/ipsrtd/tls/server.crt");
  EXPECT_EQ(c->server.tls->client_ca_file, "/etc/ipsrtd/tls/clients-ca.crt");
}

TEST(ConfigTlsTest, PlaintextOnlyOnLoopback) {
  const char* store = "store:\n  sqlite:\n    path: a.db\n";
  absl::StatusOr<Config> c =
      ParseConfig(absl::StrCat("server:\n  listen: 10.1.2.3:50051\n", store),
                  "c.yaml", "/etc");
  EXPECT_EQ(c.status().message(),
            "c.yaml:2:11: error: server.listen: \"10.1.2.3:50051\" is not a "
            "loopback address; listening beyond this machine needs "
            "server.tls");
  for (const char* ok : {"127.0.0.1:1", "localhost:1", "[::1]:1"}) {
    EXPECT_TRUE(
        ParseConfig(absl::StrCat("server:\n  listen: \"", ok, "\"\n", store),
                    "c.yaml", "/etc")
            .ok())
        << ok;
  }
  c = ParseConfig(
      absl::StrCat("server:\n  listen: 0.0.0.0:1\n  tls:\n"
                   "    cert_file: tls/s.crt\n"
                   "    key_file: tls/s.key\n"
                   "auth:\n  api_tokens:\n"
                   "    - sha256: ",
                   std::string(64, 'a'),
                   "\n      subject: s\n      role: admin\n", store),
      "c.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.tls->key_file, "/etc/ipsrtd/tls/s.key");
  EXPECT_EQ(c->server.tls->client_ca_file, "");
  c = ParseConfig(absl::StrCat("server:\n  tls:\n    cert: x\n", store),
                  "c.yaml", "/");
  EXPECT_THAT(c.status().message(),
              HasSubstr("c.yaml:3:5: error: server.tls.cert: unknown key"));
}

TEST(ConfigAuthTest, DefaultIsNoneOnLoopbackOnly) {
  absl::StatusOr<Config> c = ParseConfig(kMinimal, "c.yaml", "/etc");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->auth.mode, AuthMode::kNone);
  c = ParseConfig(
      "server:\n  listen: 0.0.0.0:1\n  tls:\n    cert_file: a\n"
      "    key_file: b\nstore:\n  sqlite:\n    path: a.db\n",
      "c.yaml", "/etc");
  EXPECT_EQ(c.status().message(),
            "c.yaml:2:11: error: auth.mode: \"0.0.0.0:1\" is not a loopback "
            "address; a listener beyond this machine needs authentication (an "
            "auth section with jwt or api_tokens)");
}

TEST(ConfigAuthTest, JwtAndApiTokens) {
  absl::StatusOr<Config> c = ParseConfig(absl::StrCat(R"(auth:
  leeway: 10s
  jwt:
    issuer: https://idp.example
    audience: ipsrtd
    hs256_secret_file: keys/hs.secret
    rs256_public_key_file: /keys/rs.pem
  api_tokens:
    - sha256: )",
                                                      std::string(64, 'f'), R"(
      subject: ehr
      role: integration
      tenant: clinic-a
store:
  sqlite:
    path: a.db
)"),
                                         "c.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->auth.mode, AuthMode::kRequired);
  EXPECT_EQ(c->auth.leeway, absl::Seconds(10));
  ASSERT_TRUE(c->auth.jwt.has_value());
  EXPECT_EQ(c->auth.jwt->hs256_secret_file, "/etc/ipsrtd/keys/hs.secret");
  EXPECT_EQ(c->auth.jwt->rs256_public_key_file, "/keys/rs.pem");
  ASSERT_EQ(c->auth.api_tokens.size(), 1u);
  EXPECT_EQ(c->auth.api_tokens[0].tenant, "clinic-a");
}

TEST(ConfigAuthTest, ProblemsNameTheirPlace) {
  absl::StatusOr<Config> c = ParseConfig(R"(auth:
  mode: maybe
  jwt:
    issuer: i
  api_tokens:
    - sha256: my-plain-token
      subject: s
      role: patient
      tenant: t
    - sha256: 0000000000000000000000000000000000000000000000000000000000000000
      subject: s
      role: nurse
store:
  sqlite:
    path: a.db
)",
                                         "c.yaml", "/");
  EXPECT_EQ(
      c.status().message(),
      "c.yaml:2:9: error: auth.mode: must be \"required\" or \"none\"\n"
      "c.yaml:4:5: error: auth.jwt.audience: is required\n"
      "c.yaml:4:5: error: auth.jwt: needs hs256_secret_file or "
      "rs256_public_key_file (or both)\n"
      "c.yaml:6:7: error: auth.api_tokens[0].patient_ref: is required for "
      "role patient\n"
      "c.yaml:6:15: error: auth.api_tokens[0].sha256: must be 64 lowercase "
      "hex digits: the SHA-256 of the token (ipsrt token hash), never the "
      "token itself\n"
      "c.yaml:10:7: error: auth.api_tokens[1].tenant: is required for role "
      "nurse\n"
      "c.yaml:12:13: error: auth.api_tokens[1].role: must be admin, "
      "clinician, patient or integration");
}

TEST(ConfigAuthTest, ProductionExampleRequiresAuth) {
  absl::StatusOr<Config> c = LoadConfigFile(std::string(IPSRT_SOURCE_DIR) +
                                            "/config/ipsrtd.production.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->auth.mode, AuthMode::kRequired);
  ASSERT_TRUE(c->auth.jwt.has_value());
  EXPECT_EQ(c->auth.jwt->rs256_public_key_file, "/etc/ipsrtd/auth/idp.pem");
  EXPECT_EQ(c->auth.api_tokens.size(), 2u);
}

}  // namespace
}  // namespace ipsrt

namespace ipsrt {
namespace {

TEST(ConfigTest, RemindersSection) {
  absl::StatusOr<Config> c = ParseConfig(absl::StrCat(kMinimal, R"(reminders:
  poll_interval: 250ms
  lease: 30s
  batch_size: 50
  max_attempts: 5
  initial_backoff: 10s
  max_backoff: 10m
  jsonl:
    path: out/r.jsonl
    sync: false
)"),
                                         "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->reminders.enabled);
  EXPECT_EQ(c->reminders.poll_interval, absl::Milliseconds(250));
  EXPECT_EQ(c->reminders.lease, absl::Seconds(30));
  EXPECT_EQ(c->reminders.batch_size, 50);
  EXPECT_EQ(c->reminders.max_attempts, 5);
  EXPECT_EQ(c->reminders.initial_backoff, absl::Seconds(10));
  EXPECT_EQ(c->reminders.max_backoff, absl::Minutes(10));
  EXPECT_EQ(c->reminders.jsonl_path, "/etc/ipsrtd/out/r.jsonl");
  EXPECT_FALSE(c->reminders.jsonl_sync);

  absl::StatusOr<Config> defaults =
      ParseConfig(kMinimal, "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->reminders.lease, absl::Seconds(60));
  EXPECT_EQ(defaults->reminders.jsonl_path, "");
  EXPECT_TRUE(defaults->reminders.jsonl_sync);
}

TEST(ConfigTest, RemindersErrorsNameFileLineColumnAndPath) {
  absl::StatusOr<Config> c = ParseConfig(absl::StrCat(kMinimal, R"(reminders:
  lease: 0s
  batch_size: 0
  initial_backoff: 1m
  max_backoff: 10s
  sms: on
)"),
                                         "x.yaml", "/");
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "x.yaml:7:10: error: reminders.lease: must be positive\n"
            "x.yaml:8:15: error: reminders.batch_size: must be between 1 and "
            "10000, not 0\n"
            "x.yaml:10:16: error: reminders.max_backoff: must not be shorter "
            "than reminders.initial_backoff\n"
            "x.yaml:11:3: error: reminders.sms: unknown key \"sms\" "
            "(allowed: enabled, poll_interval, lease, batch_size, "
            "max_attempts, initial_backoff, max_backoff, jsonl, channel)");
}

TEST(ConfigTest, ExportSection) {
  absl::StatusOr<Config> c = ParseConfig(absl::StrCat(kMinimal, R"(export:
  root: exports
  default_target: ehr
  targets:
    ehr:
      deliverer: fhir-push
      deliverer_target: main
    files:
      deliverer: file-drop
      format: fhir-r4-collection
      renderer: fhir-r4
)"),
                                         "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->export_.root, "/etc/ipsrtd/exports");
  EXPECT_EQ(c->export_.default_target, "ehr");
  ASSERT_EQ(c->export_.targets.size(), 2u);
  const ExportTargetConfig& ehr = c->export_.targets[0];
  EXPECT_EQ(ehr.name, "ehr");
  EXPECT_EQ(ehr.format, "fhir-r4-transaction");
  EXPECT_EQ(ehr.renderer, "");
  EXPECT_EQ(ehr.deliverer, "fhir-push");
  EXPECT_EQ(ehr.deliverer_target, "main");
  EXPECT_EQ(ehr.location, "x.yaml:11:7");
  const ExportTargetConfig& files = c->export_.targets[1];
  EXPECT_EQ(files.format, "fhir-r4-collection");
  EXPECT_EQ(files.renderer, "fhir-r4");
  // Without the section: no root, no targets.
  absl::StatusOr<Config> none = ParseConfig(kMinimal, "x.yaml", "/");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->export_.root, "");
  EXPECT_TRUE(none->export_.targets.empty());
}

TEST(ConfigTest, ExportErrorsNameFileLineColumnAndPath) {
  absl::StatusOr<Config> c = ParseConfig(absl::StrCat(kMinimal, R"(export:
  default_target: nope
  targets:
    Bad Name:
      deliverer: x
    ehr:
      format: fhir
      colour: red
)"),
                                         "x.yaml", "/");
  ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "x.yaml:7:19: error: export.default_target: names no target "
            "under export.targets: \"nope\"\n"
            "x.yaml:9:5: error: export.targets.Bad Name: target names are "
            "1-63 characters of [a-z0-9_-]\n"
            "x.yaml:12:7: error: export.targets.ehr.deliverer: is required\n"
            "x.yaml:13:7: error: export.targets.ehr.colour: unknown key "
            "\"colour\" (allowed: format, renderer, deliverer, "
            "deliverer_target)");
}

TEST(ConfigTest, RemindersChannelNamesAPluginAndItsLocation) {
  absl::StatusOr<Config> c = ParseConfig(absl::StrCat(kMinimal, R"(reminders:
  channel: reminder-webhook
)"),
                                         "x.yaml", "/");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->reminders.channel, "reminder-webhook");
  EXPECT_EQ(c->reminders.channel_location, "x.yaml:7:12");

  absl::StatusOr<Config> both = ParseConfig(absl::StrCat(kMinimal, R"(reminders:
  channel: reminder-jsonl
  jsonl:
    path: r.jsonl
  )"),
                                            "x.yaml", "/");
  ASSERT_EQ(both.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(both.status().message(),
            "x.yaml:9:5: error: reminders.jsonl: configures the JSON Lines "
            "file, which reminders.channel replaces; remove one of them");

  absl::StatusOr<Config> empty = ParseConfig(
      absl::StrCat(kMinimal, "reminders:\n  channel: \"\"\n"), "x.yaml", "/");
  ASSERT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.status().message(),
            "x.yaml:7:12: error: reminders.channel: must name a loaded "
            "reminder plugin, e.g. reminder-jsonl");
}

}  // namespace
}  // namespace ipsrt

namespace ipsrt {
namespace {

TEST(ConfigPostgresTest, ReplicaExampleLoads) {
  absl::StatusOr<Config> c = LoadConfigFile(std::string(IPSRT_SOURCE_DIR) +
                                            "/config/ipsrtd.postgres.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->store.kind, StoreKind::kPostgres);
  EXPECT_EQ(c->store.postgres.password_file,
            "/etc/ipsrtd/secrets/postgres-password");
  EXPECT_EQ(c->store.postgres.pool_size, 8);
  // It listens on 0.0.0.0, which needs authentication.
  EXPECT_EQ(c->auth.mode, AuthMode::kRequired);
  // Replicas deliver reminders to one receiver that drops repeats by key.
  EXPECT_EQ(c->reminders.channel, "reminder-webhook");
  EXPECT_EQ(c->reminders.jsonl_path, "");
  EXPECT_EQ(c->reminders.lease, absl::Minutes(3));
  ASSERT_EQ(c->plugins.size(), 2u);
  EXPECT_EQ(c->plugins[0].path, "libipsrt_core_instruments.so");
  EXPECT_EQ(c->plugins[1].path, "libipsrt_reminder_webhook.so");
}

TEST(ConfigPostgresTest, PostgresStoreWithDefaults) {
  absl::StatusOr<Config> c = ParseConfig(R"(store:
  kind: postgres
  postgres:
    conninfo: host=db.internal dbname=ipsrt user=ipsrtd
    password_file: secrets/pg-password
)",
                                         "x.yaml", "/etc/ipsrtd");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->store.kind, StoreKind::kPostgres);
  EXPECT_EQ(c->store.postgres.conninfo,
            "host=db.internal dbname=ipsrt user=ipsrtd");
  EXPECT_EQ(c->store.postgres.password_file, "/etc/ipsrtd/secrets/pg-password");
  EXPECT_EQ(c->store.postgres.pool_size, 8);
  EXPECT_EQ(c->store.postgres.statement_timeout, absl::Seconds(5));
  EXPECT_EQ(c->store.postgres.connect_timeout, absl::Seconds(5));
  // Migrations rewrite whole tables: no limit unless one is set.
  EXPECT_EQ(c->store.postgres.migration_timeout, absl::ZeroDuration());
}

TEST(ConfigPostgresTest, ProblemsNameFileLineColumnAndNeverThePassword) {
  absl::StatusOr<Config> c = ParseConfig(R"(store:
  kind: postgres
  postgres:
    conninfo: "host=db password=hunter2-secret"
    password_env: PGPW
    password_file: pw
    pool_size: 0
    statement_timeout: 10ms
    migration_timeout: 500ms
)",
                                         "ipsrtd.yaml", "/");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(c.status().message()),
            "ipsrtd.yaml:4:15: error: store.postgres.conninfo: must not "
            "contain a password; use store.postgres.password_env or "
            "password_file\n"
            "ipsrtd.yaml:6:20: error: store.postgres.password_file: set "
            "password_env or password_file, not both\n"
            "ipsrtd.yaml:7:16: error: store.postgres.pool_size: must be "
            "between 1 and 256, not 0\n"
            "ipsrtd.yaml:8:24: error: store.postgres.statement_timeout: must "
            "be at least 1s\n"
            "ipsrtd.yaml:9:24: error: store.postgres.migration_timeout: must "
            "be 0s (no limit) or at least 1s");
}

TEST(ConfigPostgresTest, PostgresKindNeedsItsSection) {
  absl::StatusOr<Config> c =
      ParseConfig("store:\n  kind: postgres\n", "ipsrtd.yaml", "/");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(c.status().message()),
            "ipsrtd.yaml:2:9: error: store.postgres: is required when "
            "store.kind is postgres");
  c = ParseConfig("store:\n  kind: mysql\n  sqlite:\n    path: a.db\n",
                  "ipsrtd.yaml", "/");
  EXPECT_EQ(std::string(c.status().message()),
            "ipsrtd.yaml:2:9: error: store.kind: unsupported store kind "
            "\"mysql\" (supported: sqlite, postgres)");
}

TEST(ConfigPostgresTest, PasswordFromEnvironmentOrFile) {
  PostgresConfig pg;
  EXPECT_EQ(*ResolvePostgresPassword(pg), "");
  pg.password_env = "IPSRT_CONFIG_TEST_PW";
  unsetenv("IPSRT_CONFIG_TEST_PW");
  absl::StatusOr<std::string> pw = ResolvePostgresPassword(pg);
  EXPECT_EQ(pw.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pw.status().message(),
            "store.postgres.password_env: environment variable "
            "IPSRT_CONFIG_TEST_PW is not set or empty");
  setenv("IPSRT_CONFIG_TEST_PW", "from-env", 1);
  EXPECT_EQ(*ResolvePostgresPassword(pg), "from-env");
  unsetenv("IPSRT_CONFIG_TEST_PW");

  pg.password_env.clear();
  pg.password_file = "/nonexistent/pg-password";
  pw = ResolvePostgresPassword(pg);
  EXPECT_EQ(pw.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pw.status().message(),
            "store.postgres.password_file: cannot read "
            "/nonexistent/pg-password");
  std::string file = ::testing::TempDir() + "/ipsrt-config-test-pw";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("from-file\n", f);
  std::fclose(f);
  pg.password_file = file;
  EXPECT_EQ(*ResolvePostgresPassword(pg), "from-file");
  std::remove(file.c_str());
}

TEST(ConfigTest, OperationsSections) {
  absl::StatusOr<Config> c = ParseConfig(absl::StrCat(kMinimal, R"(logging:
  format: json
  access_log: true
plugins:
  - path: a.so
    required: true
metrics:
  listen: 127.0.0.1:9464
  store_refresh: 30s
health:
  probe_interval: 500ms
)"),
                                         "ipsrtd.yaml", "/");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->logging.format, LogFormat::kJson);
  EXPECT_TRUE(c->logging.access_log);
  ASSERT_EQ(c->plugins.size(), 1u);
  EXPECT_TRUE(c->plugins[0].required);
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:9464");
  EXPECT_EQ(c->metrics.location, "ipsrtd.yaml:13:11");
  EXPECT_EQ(c->metrics.store_refresh, absl::Seconds(30));
  EXPECT_EQ(c->health.probe_interval, absl::Milliseconds(500));

  absl::StatusOr<Config> off = ParseConfig(kMinimal, "ipsrtd.yaml", "/");
  ASSERT_TRUE(off.ok());
  EXPECT_TRUE(off->metrics.listen.empty());
  EXPECT_EQ(off->logging.format, LogFormat::kText);
  EXPECT_FALSE(off->logging.access_log);
}

TEST(ConfigTest, OperationsSectionsReportEveryProblem) {
  absl::StatusOr<Config> c = ParseConfig(absl::StrCat(kMinimal, R"(logging:
  format: xml
metrics:
  listen: 9464
  store_refresh: 10ms
health:
  probe_interval: 1ms
  timeout: 1s
)"),
                                         "ipsrtd.yaml", "/");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(c.status().message()),
            "ipsrtd.yaml:7:11: error: logging.format: must be text or json\n"
            "ipsrtd.yaml:9:11: error: metrics.listen: must be host:port, "
            "e.g. 127.0.0.1:9464\n"
            "ipsrtd.yaml:10:18: error: metrics.store_refresh: must be at "
            "least 1s\n"
            "ipsrtd.yaml:12:19: error: health.probe_interval: must be at "
            "least 100ms\n"
            "ipsrtd.yaml:13:3: error: health.timeout: unknown key "
            "\"timeout\" (allowed: probe_interval)");
}

}  // namespace
}  // namespace ipsrt
