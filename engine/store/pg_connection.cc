#include "store/pg_connection.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ipsrt {
namespace {

// Type OIDs of PostgreSQL's built-in types (pg_type.dat), stable across
// versions.
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;

std::string BigEndian(int64_t v) {
  std::string out(8, '\0');
  uint64_t u = static_cast<uint64_t>(v);
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(u & 0xff);
    u >>= 8;
  }
  return out;
}

int64_t FromBigEndian(const char* p, int n) {
  uint64_t u = 0;
  for (int i = 0; i < n; ++i) u = (u << 8) | static_cast<unsigned char>(p[i]);
  // Sign-extend values narrower than 64 bits.
  if (n < 8 && n > 0 && (static_cast<unsigned char>(p[0]) & 0x80)) {
    u |= ~uint64_t{0} << (8 * n);
  }
  return static_cast<int64_t>(u);
}

std::string TrimmedConnectionError(pg_conn* conn) {
  // libpq's message spans lines, its hints indented by tabs; a log line
  // takes it as words separated by single spaces.
  return absl::StrJoin(
      absl::StrSplit(conn ? PQerrorMessage(conn) : "out of memory",
                     absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty()),
      " ");
}

}  // namespace

absl::StatusCode PgErrorCode(absl::string_view sqlstate) {
  if (sqlstate.size() != 5) return absl::StatusCode::kUnavailable;
  if (absl::StartsWith(sqlstate, "08")) return absl::StatusCode::kUnavailable;
  if (sqlstate == "23505") return absl::StatusCode::kAlreadyExists;
  if (absl::StartsWith(sqlstate, "23")) {
    return absl::StatusCode::kFailedPrecondition;
  }
  if (sqlstate == "40001" || sqlstate == "40P01") {
    return absl::StatusCode::kAborted;
  }
  if (sqlstate == "53300") return absl::StatusCode::kUnavailable;
  if (absl::StartsWith(sqlstate, "53")) {
    return absl::StatusCode::kResourceExhausted;
  }
  // 57014 statement timeout; 57P01..57P03 shutdown, crash, cannot connect
  // now: all pass with a retry.
  if (sqlstate == "57014" || absl::StartsWith(sqlstate, "57P")) {
    return absl::StatusCode::kUnavailable;
  }
  if (sqlstate == "25006") return absl::StatusCode::kUnavailable;  // read-only
  // Class XX: data_corrupted, index_corrupted, internal errors of the
  // server (unreadable blocks among them).
  if (absl::StartsWith(sqlstate, "XX")) return absl::StatusCode::kDataLoss;
  return absl::StatusCode::kInternal;
}

PgParams& PgParams::Text(absl::string_view v) {
  values_.emplace_back(v);
  types_.push_back(kTextOid);
  null_.push_back(false);
  return *this;
}
PgParams& PgParams::Bytes(absl::string_view v) {
  values_.emplace_back(v);
  types_.push_back(kByteaOid);
  null_.push_back(false);
  return *this;
}
PgParams& PgParams::Int(int64_t v) {
  values_.push_back(BigEndian(v));
  types_.push_back(kInt8Oid);
  null_.push_back(false);
  return *this;
}
PgParams& PgParams::NullText() {
  values_.emplace_back();
  types_.push_back(kTextOid);
  null_.push_back(true);
  return *this;
}
PgParams& PgParams::NullInt() {
  values_.emplace_back();
  types_.push_back(kInt8Oid);
  null_.push_back(true);
  return *this;
}
std::vector<const char*> PgParams::values() const {
  std::vector<const char*> out;
  for (size_t i = 0; i < values_.size(); ++i) {
    out.push_back(null_[i] ? nullptr : values_[i].data());
  }
  return out;
}
std::vector<int> PgParams::lengths() const {
  std::vector<int> out;
  for (const std::string& v : values_)
    out.push_back(static_cast<int>(v.size()));
  return out;
}

PgResult::PgResult(pg_result* r) : r_(r) {}
PgResult::~PgResult() { PQclear(r_); }
PgResult::PgResult(PgResult&& other) noexcept : r_(other.r_) {
  other.r_ = nullptr;
}
int PgResult::rows() const { return PQntuples(r_); }
int64_t PgResult::affected() const {
  const char* n = PQcmdTuples(r_);
  return (n && *n) ? std::strtoll(n, nullptr, 10) : 0;
}
bool PgResult::IsNull(int row, int col) const {
  return PQgetisnull(r_, row, col) != 0;
}
std::string PgResult::Text(int row, int col) const {
  if (PQgetisnull(r_, row, col)) return std::string();
  return std::string(PQgetvalue(r_, row, col), PQgetlength(r_, row, col));
}
int64_t PgResult::Int(int row, int col) const {
  if (PQgetisnull(r_, row, col)) return 0;
  Oid type = PQftype(r_, col);
  int n = PQgetlength(r_, row, col);
  if (type != kInt8Oid && type != kInt4Oid && type != kInt2Oid) return 0;
  return FromBigEndian(PQgetvalue(r_, row, col), n);
}

int64_t PgTimeoutMillis(absl::Duration d) {
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) return 0;
  return std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1,
                             std::numeric_limits<int>::max());
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgConnection::Connect(
    const PgConnectOptions& options) {
  std::string timeout = absl::StrCat(
      std::max<int64_t>(1, absl::ToInt64Seconds(options.connect_timeout)));
  // A server that vanishes without closing the connection (network loss)
  // must fail calls rather than hang them: TCP keepalives and a bound on
  // unacknowledged data, a little beyond the longest statement (counted as
  // 5 s when statements have no limit or a shorter one).
  const absl::Duration longest_statement =
      PgTimeoutMillis(options.statement_timeout) == 0
          ? absl::Seconds(5)
          : std::max(options.statement_timeout, absl::Seconds(5));
  std::string user_timeout = absl::StrCat(
      PgTimeoutMillis(longest_statement + options.connect_timeout));
  // Keywords after "dbname" override what the connection string says; these
  // come first so that the string may override them.
  const char* keywords[] = {"application_name",
                            "connect_timeout",
                            "keepalives",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "tcp_user_timeout",
                            "dbname",
                            options.password.empty() ? nullptr : "password",
                            nullptr};
  const char* values[] = {options.application_name.c_str(),
                          timeout.c_str(),
                          "1",
                          "5",
                          "2",
                          "3",
                          user_timeout.c_str(),
                          options.conninfo.c_str(),
                          options.password.c_str(),
                          nullptr};
  pg_conn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    absl::Status s = absl::UnavailableError(absl::StrCat(
        "store: cannot connect to PostgreSQL: ", TrimmedConnectionError(conn)));
    PQfinish(conn);
    return s;
  }
  // Notices (e.g. "relation already exists, skipping") are not errors and
  // would otherwise go to stderr unformatted.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  std::unique_ptr<PgConnection> c(new PgConnection(conn));
  std::string setup = "SET synchronous_commit = on";
  if (PgTimeoutMillis(options.statement_timeout) > 0) {
    absl::StrAppend(&setup, "; SET statement_timeout = ",
                    PgTimeoutMillis(options.statement_timeout));
  }
  absl::Status s = c->Exec(setup);
  if (!s.ok()) return s;
  return c;
}

PgConnection::~PgConnection() { PQfinish(conn_); }

bool PgConnection::Broken() const { return PQstatus(conn_) == CONNECTION_BAD; }

absl::Status PgConnection::ResultStatus(pg_result* r, absl::string_view what) {
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return absl::OkStatus();
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  last_sqlstate_ = state ? state : "";
  const char* primary =
      r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  std::string message;
  if (primary != nullptr) {
    message = primary;
  } else {
    // No server message: the connection itself failed.
    message = TrimmedConnectionError(conn_);
  }
  absl::StatusCode code =
      state ? PgErrorCode(state) : absl::StatusCode::kUnavailable;
  if (Broken()) code = absl::StatusCode::kUnavailable;
  return absl::Status(
      code, absl::StrCat("store: ", what, ": ", message, " (sqlstate ",
                         state ? state : "none", ")"));
}

absl::Status PgConnection::Exec(absl::string_view sql) {
  std::string text(sql);
  pg_result* r = PQexec(conn_, text.c_str());
  absl::Status s = ResultStatus(r, "exec");
  PQclear(r);
  return s;
}

absl::StatusOr<PgResult> PgConnection::ExecRows(absl::string_view sql) {
  std::string text(sql);
  pg_result* r = PQexec(conn_, text.c_str());
  absl::Status s = ResultStatus(r, "exec");
  if (!s.ok()) {
    PQclear(r);
    return s;
  }
  return PgResult(r);
}

absl::StatusOr<PgResult> PgConnection::Query(absl::string_view sql,
                                             const PgParams& params) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = absl::StrCat("ipsrt_", prepared_.size() + 1);
    std::string text(sql);
    pg_result* r = PQprepare(conn_, name.c_str(), text.c_str(), params.size(),
                             params.types().data());
    absl::Status s = ResultStatus(r, "prepare");
    PQclear(r);
    if (!s.ok()) return s;
    it = prepared_.emplace(std::move(text), std::move(name)).first;
  }
  std::vector<const char*> values = params.values();
  std::vector<int> lengths = params.lengths();
  std::vector<int> formats(params.size(), 1);
  pg_result* r = PQexecPrepared(conn_, it->second.c_str(), params.size(),
                                values.data(), lengths.data(), formats.data(),
                                /*resultFormat=*/1);
  absl::Status s = ResultStatus(r, "query");
  if (!s.ok()) {
    PQclear(r);
    return s;
  }
  return PgResult(r);
}

}  // namespace ipsrt
