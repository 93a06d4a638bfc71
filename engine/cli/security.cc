#include "cli/security.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "auth/authenticator.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/audit.grpc.pb.h"
#include "store/audit_chain.h"

ABSL_FLAG(std::string, audit_tenant, "",
          "audit list: only records of this tenant (tenant admins must set "
          "their own).");
ABSL_FLAG(std::string, subject, "", "audit list: only this caller subject.");
ABSL_FLAG(std::string, rpc, "",
          "audit list: only this method, e.g. "
          "/ipsrt.v1.EnrollmentService/GetEnrollment.");
ABSL_FLAG(std::string, since, "",
          "audit list: records at or after this RFC 3339 time.");
ABSL_FLAG(std::string, until, "",
          "audit list: records before this RFC 3339 time.");
ABSL_FLAG(std::string, db, "",
          "audit verify: check this SQLite database file directly (offline) "
          "instead of asking the server.");

ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(int32_t, page_size);
ABSL_DECLARE_FLAG(std::string, page_token);
ABSL_DECLARE_FLAG(bool, all);

namespace ipsrt::cli {
namespace {

using ::google::protobuf::util::TimeUtil;

int Usage(absl::string_view message) {
  std::fprintf(stderr, "ipsrt audit: %s\nRun 'ipsrt audit --help' for usage.\n",
               std::string(message).c_str());
  return kExitUsage;
}

bool ParseTime(const std::string& text, google::protobuf::Timestamp* out) {
  return TimeUtil::FromString(text, out);
}

int AuditList() {
  v1::ListAuditRecordsRequest request;
  request.set_tenant(absl::GetFlag(FLAGS_audit_tenant));
  request.set_subject(absl::GetFlag(FLAGS_subject));
  request.set_rpc(absl::GetFlag(FLAGS_rpc));
  if (!absl::GetFlag(FLAGS_since).empty() &&
      !ParseTime(absl::GetFlag(FLAGS_since), request.mutable_start_time())) {
    return Usage("--since: not an RFC 3339 time, e.g. 2026-03-01T00:00:00Z");
  }
  if (!absl::GetFlag(FLAGS_until).empty() &&
      !ParseTime(absl::GetFlag(FLAGS_until), request.mutable_end_time())) {
    return Usage("--until: not an RFC 3339 time, e.g. 2026-03-01T00:00:00Z");
  }
  request.set_page_size(absl::GetFlag(FLAGS_page_size));
  request.set_page_token(absl::GetFlag(FLAGS_page_token));
  auto stub = v1::AuditService::NewStub(NewChannel());
  v1::ListAuditRecordsResponse all;
  while (true) {
    v1::ListAuditRecordsResponse page;
    grpc::Status status =
        stub->ListAuditRecords(NewContext().get(), request, &page);
    if (!status.ok()) return ReportRpcError(status);
    for (const v1::AuditRecord& r : page.records()) {
      if (absl::GetFlag(FLAGS_json)) {
        *all.add_records() = r;
        continue;
      }
      std::printf("%lld %s %s %s/%s %s %s %s\n",
                  static_cast<long long>(r.seq()),
                  TimeUtil::ToString(r.time()).c_str(),
                  r.tenant().empty() ? "-" : r.tenant().c_str(),
                  r.subject().empty() ? "-" : r.subject().c_str(),
                  r.role().empty() ? "-" : r.role().c_str(), r.rpc().c_str(),
                  r.resource().empty() ? "-" : r.resource().c_str(),
                  r.outcome().c_str());
    }
    all.set_next_page_token(page.next_page_token());
    if (!absl::GetFlag(FLAGS_all) || page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  if (absl::GetFlag(FLAGS_json)) return PrintJson(all);
  if (!all.next_page_token().empty()) {
    std::fprintf(stderr, "next_page_token: %s\n",
                 all.next_page_token().c_str());
  }
  return kExitOk;
}

int PrintVerification(const v1::VerifyAuditChainResponse& v) {
  if (absl::GetFlag(FLAGS_json)) {
    int rc = PrintJson(v);
    return rc != kExitOk ? rc : (v.intact() ? kExitOk : kExitFailure);
  }
  if (v.intact()) {
    std::printf("audit chain intact: %lld record(s); head seq %lld hash %s\n",
                static_cast<long long>(v.records_verified()),
                static_cast<long long>(v.head_seq()), v.head_hash().c_str());
    return kExitOk;
  }
  std::printf(
      "audit chain BROKEN at seq %lld: %s\n(%lld record(s) verified "
      "before it)\n",
      static_cast<long long>(v.broken_seq()), v.reason().c_str(),
      static_cast<long long>(v.records_verified()));
  return kExitFailure;
}

int AuditVerify() {
  v1::VerifyAuditChainResponse response;
  const std::string db = absl::GetFlag(FLAGS_db);
  if (!db.empty()) {
    if (!std::filesystem::exists(db)) {
      std::fprintf(stderr, "error: NOT_FOUND: --db %s does not exist\n",
                   db.c_str());
      return kExitFailure;
    }
    SqliteStore::Options options;
    options.path = db;
    options.read_connections = 1;
    absl::StatusOr<std::unique_ptr<SqliteStore>> store =
        SqliteStore::Open(options);
    absl::StatusOr<AuditVerification> v =
        store.ok() ? VerifyAuditTrail(**store)
                   : absl::StatusOr<AuditVerification>(store.status());
    if (!v.ok()) {
      std::fprintf(stderr, "error: %s: %s\n",
                   absl::StatusCodeToString(v.status().code()).c_str(),
                   std::string(v.status().message()).c_str());
      return kExitFailure;
    }
    response.set_intact(v->intact);
    response.set_records_verified(v->records_verified);
    response.set_head_seq(v->head_seq);
    response.set_head_hash(v->head_hash);
    response.set_broken_seq(v->broken_seq);
    response.set_reason(v->reason);
    return PrintVerification(response);
  }
  auto stub = v1::AuditService::NewStub(NewChannel());
  grpc::Status status = stub->VerifyAuditChain(
      NewContext().get(), v1::VerifyAuditChainRequest(), &response);
  if (!status.ok()) return ReportRpcError(status);
  return PrintVerification(response);
}

int RunAudit(const ParsedArgs& args) {
  const std::string& verb = args.positional[0];
  if (verb == "list") return AuditList();
  if (verb == "verify") return AuditVerify();
  return Usage(
      absl::StrCat("unknown action \"", verb, "\" (expected list or verify)"));
}

int RunToken(const ParsedArgs& args) {
  if (args.positional[0] != "hash") {
    std::fprintf(stderr, "ipsrt token: unknown action \"%s\" (expected hash)\n",
                 args.positional[0].c_str());
    return kExitUsage;
  }
  // Read from stdin so the token stays out of shell history and ps.
  std::string line;
  std::getline(std::cin, line);
  std::string token(absl::StripAsciiWhitespace(line));
  if (token.empty()) {
    std::fprintf(stderr, "ipsrt token hash: no token on standard input\n");
    return kExitFailure;
  }
  std::printf("%s\n", HashApiToken(token).c_str());
  return kExitOk;
}

}  // namespace

std::vector<Command> SecurityCommands() {
  return {
      {.spec = {.name = "audit",
                .synopsis = "audit list|verify [flags]",
                .description =
                    "Read or check the audit trail (admin tokens only).\n\n"
                    "audit list: one record a line (seq, time, tenant, "
                    "subject/role, rpc,\nresource, outcome), filtered by "
                    "--audit_tenant, --subject, --rpc, --since\nand --until. "
                    "audit verify: recompute the hash chain; exit status 1 "
                    "and\nthe first broken record when it does not hold. With "
                    "--db, verify reads\nthat SQLite file directly (no server "
                    "needed).",
                .flags = {{.name = "audit_tenant", .value_name = "TENANT"},
                          {.name = "subject", .value_name = "SUBJECT"},
                          {.name = "rpc", .value_name = "METHOD"},
                          {.name = "since", .value_name = "TIME"},
                          {.name = "until", .value_name = "TIME"},
                          {.name = "page_size", .value_name = "N"},
                          {.name = "page_token", .value_name = "TOKEN"},
                          {.name = "all", .value_name = ""},
                          {.name = "db", .value_name = "PATH"}},
                .global_flags = GlobalFlags(),
                .min_positional = 1,
                .max_positional = 1},
       .run = RunAudit},
      {.spec = {.name = "token",
                .synopsis = "token hash < TOKEN",
                .description =
                    "Print the SHA-256 of the API token read from standard "
                    "input, the form\nauth.api_tokens[].sha256 stores (the "
                    "config never holds the token).",
                .flags = {},
                .global_flags = {},
                .min_positional = 1,
                .max_positional = 1},
       .run = RunToken},
  };
}

}  // namespace ipsrt::cli
