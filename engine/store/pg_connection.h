// PgConnection: one libpq connection with typed parameters, binary results,
// statements prepared once per connection, and errors mapped to canonical
// codes. Used by PostgresStore and by `ipsrt store copy`.
//
// Error messages carry PostgreSQL's primary message and SQLSTATE only, never
// its DETAIL (which quotes key values, i.e. possibly patient data) and never
// the password.
//
// Not thread-safe: one user at a time.
#ifndef IPSRT_STORE_PG_CONNECTION_H_
#define IPSRT_STORE_PG_CONNECTION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

struct pg_conn;
struct pg_result;

namespace ipsrt {

// PgParams are the parameters $1, $2, ... of one statement, sent in binary.
class PgParams {
 public:
  PgParams& Text(absl::string_view v);
  PgParams& Bytes(absl::string_view v);
  PgParams& Int(int64_t v);
  // NullText and NullInt are SQL NULLs of type text and int8.
  PgParams& NullText();
  PgParams& NullInt();

  int size() const { return static_cast<int>(values_.size()); }
  const std::vector<unsigned int>& types() const { return types_; }
  std::vector<const char*> values() const;
  std::vector<int> lengths() const;

 private:
  std::vector<std::string> values_;
  std::vector<unsigned int> types_;
  std::vector<bool> null_;
};

// PgResult is the rows of one statement, in binary format. Columns must be
// text, bytea, int8, int4 or int2 (cast in SQL otherwise).
class PgResult {
 public:
  explicit PgResult(pg_result* r);
  ~PgResult();
  PgResult(PgResult&& other) noexcept;
  PgResult& operator=(PgResult&&) = delete;
  PgResult(const PgResult&) = delete;

  int rows() const;
  // Rows changed by INSERT/UPDATE/DELETE.
  int64_t affected() const;
  bool IsNull(int row, int col) const;
  std::string Text(int row, int col) const;
  int64_t Int(int row, int col) const;

 private:
  pg_result* r_;
};

struct PgConnectOptions {
  std::string conninfo;
  std::string password;
  absl::Duration connect_timeout = absl::Seconds(5);
  // Applied with SET on every new connection; zero: the server's default.
  absl::Duration statement_timeout = absl::ZeroDuration();
  std::string application_name = "ipsrtd";
};

class PgConnection {
 public:
  // Connect opens a connection with synchronous_commit=on (and the
  // statement timeout, when set). UNAVAILABLE when no connection results,
  // whatever the reason (unreachable, restarting, refused credentials,
  // missing database: libpq does not report these apart reliably); the
  // message is libpq's, which never contains the password.
  static absl::StatusOr<std::unique_ptr<PgConnection>> Connect(
      const PgConnectOptions& options);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Broken is true once the connection to the server is lost.
  bool Broken() const;

  // LastSqlstate is the SQLSTATE of the last statement that failed on this
  // connection ("57014": cancelled by statement_timeout), empty when it
  // failed without one (the connection was lost) or none has failed.
  const std::string& LastSqlstate() const { return last_sqlstate_; }

  // Exec runs one or more statements without parameters (simple protocol).
  absl::Status Exec(absl::string_view sql);

  // ExecRows runs one statement without parameters (simple protocol) and
  // returns its rows; text unless they come from a BINARY cursor.
  absl::StatusOr<PgResult> ExecRows(absl::string_view sql);

  // Query runs one statement, prepared on this connection on first use.
  absl::StatusOr<PgResult> Query(absl::string_view sql,
                                 const PgParams& params = PgParams());

 private:
  explicit PgConnection(pg_conn* conn) : conn_(conn) {}
  absl::Status ResultStatus(pg_result* r, absl::string_view what);

  pg_conn* conn_;
  std::string last_sqlstate_;
  // Prepared statement names by SQL text.
  std::map<std::string, std::string, std::less<>> prepared_;
};

// PgErrorCode maps an SQLSTATE to the most specific canonical code: class
// 08 and shutdowns UNAVAILABLE, 23505 ALREADY_EXISTS, 40001/40P01 ABORTED,
// 53xxx RESOURCE_EXHAUSTED (53300 too many connections: UNAVAILABLE), 57014
// (statement timeout) UNAVAILABLE, others INTERNAL.
absl::StatusCode PgErrorCode(absl::string_view sqlstate);

// PgTimeoutMillis is `d` as a value for statement_timeout and lock_timeout:
// 0 (no limit) for zero and infinite durations, otherwise milliseconds,
// at least 1 and at most PostgreSQL's largest (INT_MAX, about 24.8 days).
int64_t PgTimeoutMillis(absl::Duration d);

}  // namespace ipsrt

#endif  // IPSRT_STORE_PG_CONNECTION_H_
