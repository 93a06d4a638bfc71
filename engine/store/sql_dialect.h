// The small interface the shared SQL core (store/sql_core.h) runs over:
// statement parameters, result rows, one connection, and the few facts in
// which the SQL of two databases differs. SQLite and PostgreSQL implement
// SqlConnection (sqlite_store.cc, postgres_store.cc); a third backend
// implements it once more.
//
// Statements are written once, with PostgreSQL's numbered placeholders
// $1, $2, ...; a placeholder may appear several times. SQLite reads them as
// ?1, ?2, ... (its numbered form), so one text serves both.
//
// Example:
//   SqlParams p;
//   p.Text(tenant).Int(limit);
//   IPSRT_RETURN_IF_ERROR(c.Query(
//       "SELECT id FROM enrollments WHERE tenant = $1 LIMIT $2", p,
//       [&](const SqlRow& row) {
//         ids.push_back(row.Text(0));
//         return absl::OkStatus();
//       }));
#ifndef IPSRT_STORE_SQL_DIALECT_H_
#define IPSRT_STORE_SQL_DIALECT_H_

#include <cstdint>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ipsrt {

// SqlParams are the values of $1, $2, ... in order. Views passed in must
// outlive the statement's run; rvalue strings are kept by the params.
class SqlParams {
 public:
  enum class Type { kNullInt, kNullText, kInt, kText, kBytes };
  struct Value {
    Type type;
    int64_t number = 0;
    absl::string_view bytes;  // kText and kBytes
  };

  SqlParams& Int(int64_t v) {
    values_.push_back({Type::kInt, v, {}});
    return *this;
  }
  // Time is microseconds since the Unix epoch, the stored form of times.
  SqlParams& Time(absl::Time t) { return Int(absl::ToUnixMicros(t)); }
  SqlParams& Text(absl::string_view v) {
    values_.push_back({Type::kText, 0, v});
    return *this;
  }
  SqlParams& Text(std::string&& v) { return Text(Keep(std::move(v))); }
  // Bytes is a BLOB (SQLite) or BYTEA (PostgreSQL) value.
  SqlParams& Bytes(absl::string_view v) {
    values_.push_back({Type::kBytes, 0, v});
    return *this;
  }
  SqlParams& Bytes(std::string&& v) { return Bytes(Keep(std::move(v))); }
  // NullInt and NullText are SQL NULLs of an integer and a text column.
  SqlParams& NullInt() {
    values_.push_back({Type::kNullInt, 0, {}});
    return *this;
  }
  SqlParams& NullText() {
    values_.push_back({Type::kNullText, 0, {}});
    return *this;
  }

  int size() const { return static_cast<int>(values_.size()); }
  const absl::InlinedVector<Value, 12>& values() const { return values_; }

 private:
  absl::string_view Keep(std::string&& v) {
    owned_.push_back(std::move(v));  // a list never moves its elements
    return owned_.back();
  }
  // Inline: the statements of a commit take no allocation for their
  // parameters.
  absl::InlinedVector<Value, 12> values_;
  std::list<std::string> owned_;
};

// SqlRow is the current row of a result, columns 0-based. Text returns
// text and blob columns alike, as bytes.
class SqlRow {
 public:
  virtual bool IsNull(int col) const = 0;
  virtual int64_t Int(int col) const = 0;
  virtual std::string Text(int col) const = 0;
  absl::Time Time(int col) const { return absl::FromUnixMicros(Int(col)); }

 protected:
  ~SqlRow() = default;
};

using SqlRowFn = absl::FunctionRef<absl::Status(const SqlRow&)>;

// SqlConnection is one database connection (or one open transaction on
// it). Failures carry the most specific canonical code: ALREADY_EXISTS for
// a unique or primary key violation, RESOURCE_EXHAUSTED for a full disk,
// UNAVAILABLE for a lost connection or a busy database, DATA_LOSS for
// corruption. Not thread-safe: one user at a time.
class SqlConnection {
 public:
  virtual ~SqlConnection() = default;

  // Exec runs one statement and returns the number of rows it changed.
  virtual absl::StatusOr<int64_t> Exec(absl::string_view sql,
                                       const SqlParams& params) = 0;

  // Query runs one statement and calls `row` for each result row, in
  // order; the first error `row` returns ends the query and is returned.
  virtual absl::Status Query(absl::string_view sql, const SqlParams& params,
                             SqlRowFn row) = 0;
};

// SqlDialect is what the shared statements need to know of a database
// beyond standard SQL with $N placeholders, ON CONFLICT ... DO NOTHING and
// UPDATE ... RETURNING (both SQLite and PostgreSQL have these).
struct SqlDialect {
  // "sqlite" or "postgres" (metrics, messages).
  std::string name;
  // Row-value comparison `(a, b) > ($1, $2)` for keyset paging (the
  // PostgreSQL planner turns it into one index range; SQLite's plans are
  // asserted with the expanded form).
  bool row_value_keyset = false;
  // Appended to a SELECT whose rows the transaction then changes
  // (" FOR UPDATE"; "" where a transaction holds the whole database).
  std::string lock_selected_rows;
  // Run in the transaction before the audit chain's head is read, so that
  // two transactions never append to the same head ("" where the writing
  // transaction already excludes every other writer). Parameter: none.
  std::string audit_chain_lock;
  // Deletes request records created before $1 as part of each request
  // ("" where the backend prunes on its own schedule).
  std::string prune_requests;
  // Claims due outbox rows: $1 owner, $2 lease expiry (us), $3 now (us),
  // $4 limit; returns the claimed rows' OutboxColumns() (sql_core.h).
  std::string claim_outbox;
};

}  // namespace ipsrt

#endif  // IPSRT_STORE_SQL_DIALECT_H_
