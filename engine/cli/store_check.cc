#include "cli/store_check.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "ipsrt/config.h"
#include "ipsrt/v1/store.grpc.pb.h"
#include "service/store_service.h"
#include "store/open_store.h"
#include "store/store_check.h"

// --config is defined with validate's (tools.cc): an ipsrtd configuration.
ABSL_DECLARE_FLAG(std::string, config);

ABSL_DECLARE_FLAG(std::string, db);

namespace ipsrt::cli {
namespace {

int PrintError(const absl::Status& status) {
  std::fprintf(stderr, "error: %s: %s\n",
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return kExitFailure;
}

// DatabaseFromFlags is --db, or the SQLite path of --config; empty when
// neither is given (the check then runs in --server).
absl::StatusOr<std::string> DatabaseFromFlags() {
  const std::string db = absl::GetFlag(FLAGS_db);
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (!db.empty() && !config_path.empty()) {
    return absl::InvalidArgumentError(
        "give --db=PATH or --config=FILE, not both");
  }
  if (config_path.empty()) return db;
  absl::StatusOr<Config> config = LoadConfigFile(config_path);
  if (!config.ok()) return config.status();
  if (config->store.kind != StoreKind::kSqlite) {
    return absl::FailedPreconditionError(absl::StrCat(
        config_path, ": store.kind is ", StoreKindName(config->store.kind),
        "; store check examines SQLite databases (check PostgreSQL with its "
        "own tools, e.g. pg_amcheck)"));
  }
  return config->store.sqlite.path;
}

// PrintReport prints a check's report; the exit status says whether the
// store is intact.
int PrintReport(const v1::CheckStoreResponse& r, const std::string& where) {
  std::printf("integrity_check: %s\n",
              r.integrity_findings().empty() ? "ok" : "DAMAGED");
  for (const std::string& line : r.integrity_findings()) {
    std::printf("  %s\n", line.c_str());
  }
  std::printf("read: %lld enrollments, %lld events\n",
              static_cast<long long>(r.enrollments_read()),
              static_cast<long long>(r.events_read()));
  std::printf("damaged rows: %d\n", r.damaged_rows_size());
  for (const std::string& line : r.damaged_rows()) {
    std::printf("  %s\n", line.c_str());
  }
  if (!r.write_state().empty()) {
    std::printf("changes: %s\n", r.write_state().c_str());
  }
  if (r.intact()) {
    std::printf(
        "ok: %s is intact; run `ipsrt store verify` for the hash chains\n",
        where.c_str());
    return kExitOk;
  }
  std::printf(
      "DAMAGED: stop ipsrtd and restore %s (with its .identity file) from "
      "the latest backup; the rows listed above cannot be served\n",
      where.c_str());
  return kExitFailure;
}

}  // namespace

int RunStoreCheck(const ParsedArgs&) {
  absl::StatusOr<std::string> path = DatabaseFromFlags();
  if (!path.ok()) return PrintError(path.status());
  v1::CheckStoreResponse response;
  if (path->empty()) {
    auto stub = v1::StoreService::NewStub(NewChannel());
    std::unique_ptr<grpc::ClientContext> ctx = NewContext();
    grpc::Status status =
        stub->CheckStore(ctx.get(), v1::CheckStoreRequest(), &response);
    if (!status.ok()) return ReportRpcError(status);
    return PrintReport(response, "the served database");
  }
  absl::StatusOr<StoreCheckReport> report = CheckSqliteFile(*path);
  if (!report.ok()) return PrintError(report.status());
  FillCheckResponse(*report, &response);
  return PrintReport(response, *path);
}

int RunStoreInit(const ParsedArgs&) {
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) {
    return PrintError(absl::InvalidArgumentError("store init needs --config"));
  }
  absl::StatusOr<Config> config = LoadConfigFile(config_path);
  if (!config.ok()) return PrintError(config.status());
  bool existed = false;
  if (config->store.kind == StoreKind::kSqlite) {
    std::error_code ec;
    existed = std::filesystem::exists(config->store.sqlite.path, ec) &&
              std::filesystem::file_size(config->store.sqlite.path, ec) > 0;
    config->store.sqlite.create = SqliteCreate::kAlways;
  }
  std::string description;
  int schema_found = 0;
  absl::StatusOr<std::unique_ptr<Store>> store =
      OpenStore(config->store, &description, &schema_found);
  if (!store.ok()) return PrintError(store.status());
  const int schema = (*store)->SchemaVersion();
  (*store)->Close();
  // Opening applies pending migrations: on a database of an older release
  // this command is the way to migrate it before any server starts (a
  // migration can take minutes, and a server serves only after it).
  const char* what = schema_found > 0 && schema_found < schema ? "migrated"
                     : existed || schema_found > 0 ? "already initialised"
                                                   : "initialised";
  std::printf("%s: %s\n", what, description.c_str());
  return kExitOk;
}

}  // namespace ipsrt::cli
