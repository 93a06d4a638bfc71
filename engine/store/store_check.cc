#include "store/store_check.h"

#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "store/blob_codec.h"

namespace ipsrt {
namespace {

// Consecutive unreadable event sequences probed past a damaged page before
// the rest of a log is given up as unreadable.
constexpr int64_t kEventProbeLimit = 1000;

// Query is one prepared statement on the checked database.
class Query {
 public:
  Query(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Query() { sqlite3_finalize(stmt_); }
  bool prepared() const { return rc_ == SQLITE_OK; }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // Step: 1 a row, 0 done, -1 an error (see error()).
  int Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    error_ = sqlite3_errmsg(db_);
    return -1;
  }
  std::string Text(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), n) : std::string();
  }
  const std::string& error() const { return error_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_ERROR;
  std::string error_;
};

struct Key {
  std::string tenant;
  std::string id;
  std::string Name() const {
    return absl::StrCat("tenants/", tenant, "/enrollments/", id);
  }
};

// EnrollmentKeys lists enrollment keys from the create-time index; when
// that cannot be read whole, the keys the table itself still yields are
// added.
std::vector<Key> EnrollmentKeys(sqlite3* db, StoreCheckReport& report) {
  std::set<std::pair<std::string, std::string>> keys;
  for (const char* sql : {"SELECT tenant, id FROM enrollments INDEXED BY "
                          "enrollments_by_create_time",
                          "SELECT tenant, id FROM enrollments"}) {
    Query q(db, sql);
    if (!q.prepared()) continue;
    int step;
    size_t before = keys.size();
    while ((step = q.Step()) == 1) keys.emplace(q.Text(0), q.Text(1));
    if (step == 0) break;
    report.damaged_rows.push_back(
        absl::StrCat("enrollment keys: a listing stopped after ",
                     keys.size() - before, " (", q.error(), ")"));
  }
  std::vector<Key> out;
  for (const auto& [tenant, id] : keys) out.push_back({tenant, id});
  return out;
}

// CheckEvents reads the events of one enrollment one sequence at a time,
// so that a damaged page costs only the sequences stored on it. The log
// ends at the event whose hash is `last_hash` (from the enrollment's
// snapshot; empty when that cannot be read), or at the first sequence not
// found: a lookup past the end can land on a damaged page too, so without
// the hash an unreadable tail is reported as "and later".
void CheckEvents(Query& get, const Key& key, const std::string& last_hash,
                 StoreCheckReport& report) {
  int64_t first_bad = 0;
  std::string bad_error;
  auto flush = [&](int64_t end) {
    if (first_bad == 0) return;
    report.damaged_rows.push_back(
        absl::StrCat(key.Name(), "/events/", first_bad,
                     end > first_bad ? absl::StrCat("..", end) : "",
                     ": cannot be read (", bad_error, ")"));
    first_bad = 0;
  };
  for (int64_t seq = 1;; ++seq) {
    get.Reset();
    get.Bind(1, key.tenant);
    get.Bind(2, key.id);
    get.Bind(3, seq);
    int step = get.Step();
    if (step == 0) {
      flush(seq - 1);
      return;
    }
    if (step < 0) {
      if (first_bad == 0) {
        first_bad = seq;
        bad_error = get.error();
      }
      if (seq - first_bad + 1 >= kEventProbeLimit) {
        report.damaged_rows.push_back(
            absl::StrCat(key.Name(), "/events/", first_bad,
                         " and later: cannot be read (", bad_error, ")"));
        return;
      }
      continue;
    }
    flush(seq - 1);
    ++report.events_read;
    v1::Event event;
    const std::string hash = DigestFromStored(get.Text(1));
    absl::StatusOr<std::string> payload =
        EventPayloadFromStored(get.Text(0), hash);
    if (!payload.ok() || !event.ParseFromString(*payload)) {
      report.damaged_rows.push_back(absl::StrCat(
          key.Name(), "/events/", seq, ": payload cannot be decoded"));
    }
    if (!last_hash.empty() && hash == last_hash) return;
  }
}

}  // namespace

absl::StatusOr<StoreCheckReport> CheckSqliteFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
  if (rc != SQLITE_OK) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open ", path, ": ", raw ? sqlite3_errmsg(raw) : "no memory"));
  }
  StoreCheckReport report;
  {
    Query q(db.get(), "PRAGMA integrity_check(1000)");
    if (!q.prepared()) {
      return absl::DataLossError(absl::StrCat(
          path, " cannot be examined: ", sqlite3_errmsg(db.get())));
    }
    int step;
    while ((step = q.Step()) == 1) {
      std::string line = q.Text(0);
      if (line != "ok") report.integrity.push_back(std::move(line));
    }
    if (step < 0) report.integrity.push_back(q.error());
  }
  Query has_schema(db.get(),
                   "SELECT count(*) FROM sqlite_master WHERE name = "
                   "'schema_migrations'");
  if (!has_schema.prepared() || has_schema.Step() != 1 ||
      has_schema.Text(0) != "1") {
    report.integrity.push_back("no ipsrt schema (an empty or foreign file)");
    return report;
  }
  Query get_enrollment(
      db.get(), "SELECT snapshot FROM enrollments WHERE tenant = ? AND id = ?");
  // Events name their enrollment by its key from schema 8 on; a file not
  // yet migrated keeps the tenant and id in each row.
  Query keyed(db.get(),
              "SELECT count(*) FROM pragma_table_info('events') WHERE name = "
              "'enrollment_key'");
  const bool by_key =
      keyed.prepared() && keyed.Step() == 1 && keyed.Text(0) == "1";
  Query get_event(
      db.get(), by_key ? "SELECT payload, hash FROM events WHERE "
                         "enrollment_key = (SELECT key FROM enrollments WHERE "
                         "tenant = ? AND id = ?) AND sequence = ?"
                       : "SELECT payload, hash FROM events WHERE tenant = ? "
                         "AND enrollment_id = ? AND sequence = ?");
  for (const Key& key : EnrollmentKeys(db.get(), report)) {
    get_enrollment.Reset();
    get_enrollment.Bind(1, key.tenant);
    get_enrollment.Bind(2, key.id);
    int step = get_enrollment.Step();
    std::string last_hash;
    if (step < 0) {
      report.damaged_rows.push_back(absl::StrCat(
          key.Name(), ": cannot be read (", get_enrollment.error(), ")"));
    } else if (step == 0) {
      report.damaged_rows.push_back(
          absl::StrCat(key.Name(), ": in the index but not in the table"));
    } else {
      ++report.enrollments_read;
      internal::EnrollmentState state;
      absl::StatusOr<std::string> snapshot =
          UnpackBlob(get_enrollment.Text(0), "an enrollment snapshot");
      if (!snapshot.ok() || !state.ParseFromString(*snapshot)) {
        report.damaged_rows.push_back(
            absl::StrCat(key.Name(), ": snapshot cannot be decoded"));
      } else {
        last_hash = state.last_event_hash();
      }
    }
    CheckEvents(get_event, key, last_hash, report);
  }
  return report;
}

}  // namespace ipsrt
