#include "cli/store_verify.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "common/files.h"
#include "core/integrity.h"
#include "ipsrt/config.h"
#include "ipsrt/postgres_store.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/audit.grpc.pb.h"

ABSL_FLAG(std::string, postgres, "",
          "store verify: check this PostgreSQL database directly (libpq "
          "connection string, no password; see --password_env).");
ABSL_FLAG(std::string, anchor, "",
          "store verify: also check the store against this integrity anchor "
          "file (written by ipsrtd, integrity.anchor_path).");
ABSL_FLAG(
    std::string, key, "",
    "store verify: the anchor's HMAC key file (integrity.anchor_key_file).");

ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::string, db);
ABSL_DECLARE_FLAG(std::string, password_env);
ABSL_DECLARE_FLAG(std::string, password_file);

namespace ipsrt::cli {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s: %s\n",
               absl::StatusCodeToString(s.code()).c_str(),
               std::string(s.message()).c_str());
  return kExitFailure;
}

int Print(const v1::VerifyStoreProgress& v) {
  if (absl::GetFlag(FLAGS_json)) {
    int rc = PrintJson(v);
    return rc != kExitOk ? rc : (v.intact() ? kExitOk : kExitFailure);
  }
  std::printf(
      "verified %lld enrollment(s), %lld event(s); audit trail %lld "
      "record(s), head seq %lld%s\n",
      static_cast<long long>(v.enrollments_verified()),
      static_cast<long long>(v.events_verified()),
      static_cast<long long>(v.audit_records_verified()),
      static_cast<long long>(v.audit_head_seq()),
      v.anchor_checked() ? "; checked against the anchor" : "");
  if (v.intact()) {
    std::printf("store intact\n");
    return kExitOk;
  }
  for (const v1::IntegrityProblem& p : v.problems()) {
    std::printf("BROKEN %s at %lld: %s\n", p.record().c_str(),
                static_cast<long long>(p.sequence()), p.reason().c_str());
  }
  if (v.problems_total() > v.problems_size()) {
    std::printf("... and %lld more\n",
                static_cast<long long>(v.problems_total() - v.problems_size()));
  }
  return kExitFailure;
}

absl::StatusOr<std::unique_ptr<Store>> OpenOffline() {
  const std::string db = absl::GetFlag(FLAGS_db);
  if (!db.empty()) {
    if (!std::filesystem::exists(db)) {
      return absl::NotFoundError(absl::StrCat("--db ", db, " does not exist"));
    }
    SqliteStore::Options options;
    options.path = db;
    options.read_connections = 1;
    absl::StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(options);
    if (!s.ok()) return s.status();
    return std::unique_ptr<Store>(*std::move(s));
  }
  PostgresConfig pg;
  pg.conninfo = absl::GetFlag(FLAGS_postgres);
  pg.password_env = absl::GetFlag(FLAGS_password_env);
  pg.password_file = absl::GetFlag(FLAGS_password_file);
  absl::StatusOr<std::string> password = ResolvePostgresPassword(pg);
  if (!password.ok()) return password.status();
  PostgresStore::Options options;
  options.conninfo = pg.conninfo;
  options.password = *password;
  options.pool_size = 1;
  options.statement_timeout = absl::Minutes(10);
  absl::StatusOr<std::unique_ptr<PostgresStore>> s =
      PostgresStore::Open(options);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Store>(*std::move(s));
}

int VerifyOffline() {
  const std::string anchor_path = absl::GetFlag(FLAGS_anchor);
  const std::string key_path = absl::GetFlag(FLAGS_key);
  if (anchor_path.empty() != key_path.empty()) {
    return UsageError("store verify", "--anchor and --key go together");
  }
  std::optional<Anchor> anchor;
  if (!anchor_path.empty()) {
    absl::StatusOr<std::string> key = ReadAnchorKey(key_path);
    if (!key.ok()) return Fail(key.status());
    absl::StatusOr<std::string> text = ReadFileToString(anchor_path);
    if (!text.ok()) {
      return Fail(absl::Status(text.status().code(),
                               absl::StrCat("--anchor ", anchor_path, ": ",
                                            text.status().message())));
    }
    absl::StatusOr<Anchor> parsed = ParseAnchor(*text, *key);
    if (!parsed.ok()) return Fail(parsed.status());
    anchor = *std::move(parsed);
  }
  absl::StatusOr<std::unique_ptr<Store>> store = OpenOffline();
  if (!store.ok()) return Fail(store.status());
  VerifyStoreOptions options;
  options.on_progress = [](const IntegrityProgress& p) {
    if (absl::GetFlag(FLAGS_json)) return;
    std::fprintf(stderr, "\rtenants %lld/%lld, enrollments %lld, events %lld",
                 static_cast<long long>(p.tenants_done),
                 static_cast<long long>(p.tenants_total),
                 static_cast<long long>(p.enrollments_verified),
                 static_cast<long long>(p.events_verified));
  };
  absl::StatusOr<IntegrityReport> report = VerifyStore(**store, options);
  if (!absl::GetFlag(FLAGS_json)) std::fprintf(stderr, "\n");
  if (!report.ok()) return Fail(report.status());
  if (anchor.has_value()) {
    absl::Status checked = CheckAnchor(**store, *anchor, *report);
    if (!checked.ok()) return Fail(checked);
  }
  return Print(ReportProto(*report, anchor.has_value()));
}

int VerifyOnline() {
  if (!absl::GetFlag(FLAGS_anchor).empty()) {
    return UsageError("store verify",
                      "--anchor needs --db or --postgres (the server checks "
                      "its own anchor)");
  }
  auto stub = v1::AuditService::NewStub(NewChannel());
  std::unique_ptr<grpc::ClientContext> ctx = NewContext();
  std::unique_ptr<grpc::ClientReader<v1::VerifyStoreProgress>> reader =
      stub->VerifyStore(ctx.get(), v1::VerifyStoreRequest());
  v1::VerifyStoreProgress p, last;
  while (reader->Read(&p)) {
    if (p.done()) {
      last = p;
    } else if (!absl::GetFlag(FLAGS_json)) {
      std::fprintf(stderr, "\rtenants %lld/%lld, enrollments %lld, events %lld",
                   static_cast<long long>(p.tenants_done()),
                   static_cast<long long>(p.tenants_total()),
                   static_cast<long long>(p.enrollments_verified()),
                   static_cast<long long>(p.events_verified()));
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return ReportRpcError(status);
  if (!last.done()) {
    return Fail(absl::UnavailableError("the server sent no final result"));
  }
  return Print(last);
}

}  // namespace

int RunStoreVerify(const ParsedArgs&) {
  const bool sqlite = !absl::GetFlag(FLAGS_db).empty();
  const bool postgres = !absl::GetFlag(FLAGS_postgres).empty();
  if (sqlite && postgres) {
    return UsageError("store verify", "give --db or --postgres, not both");
  }
  return sqlite || postgres ? VerifyOffline() : VerifyOnline();
}

std::vector<FlagSpec> StoreVerifyFlags() {
  return {{.name = "db", .value_name = "PATH"},
          {.name = "postgres", .value_name = "CONNINFO"},
          {.name = "anchor", .value_name = "FILE"},
          {.name = "key", .value_name = "FILE"}};
}

}  // namespace ipsrt::cli
