#include "cli/store_copy.h"

#include <openssl/evp.h>
#include <sqlite3.h>

#include <cstdio>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/store_check.h"
#include "cli/store_verify.h"
#include "core/enrollments.h"
#include "ipsrt/config.h"
#include "ipsrt/status_macros.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "store/audit_chain.h"
#include "store/blob_codec.h"
#include "store/migrations.h"
#include "store/pg_connection.h"

ABSL_FLAG(std::string, from, "",
          "Source store: sqlite:PATH (the SQLite database file).");
ABSL_FLAG(std::string, to, "",
          "Destination store: postgres:CONNINFO (a libpq connection string "
          "without password, of an empty database).");
ABSL_FLAG(std::string, password_env, "",
          "Environment variable holding the PostgreSQL password.");
ABSL_FLAG(std::string, password_file, "",
          "File holding the PostgreSQL password.");

namespace ipsrt::cli {
namespace {

// The copied tables are the schema's own list (store/migrations.h).
using Table = SchemaTable;
using Column = SchemaColumn;

bool IsInt(const Column& c) { return c.type == SchemaColumn::Type::kInt; }

const Table& TableNamed(absl::string_view name) {
  for (const Table& t : SchemaTables()) {
    if (t.name == name) return t;
  }
  std::abort();  // only called with names of the schema
}

std::string ColumnList(const Table& t) {
  std::vector<std::string> names;
  for (const Column& c : t.columns) names.push_back(c.name);
  return absl::StrJoin(names, ", ");
}

// OrderBy is the key order; PostgreSQL compares text keys in byte order,
// as SQLite does.
std::string OrderBy(const Table& t, bool postgres) {
  std::vector<std::string> keys;
  for (const char* key : t.key) {
    bool text = t.Column(key).type == SchemaColumn::Type::kText;
    keys.push_back(postgres && text ? absl::StrCat(key, " COLLATE \"C\"")
                                    : std::string(key));
  }
  return absl::StrJoin(keys, ", ");
}

// Value is one cell, in the form both sides agree on.
struct Value {
  bool null = false;
  std::string bytes;  // text and blobs
  int64_t number = 0;
};

// Digest hashes rows cell by cell with type tags and lengths, so that no
// two different tables of rows hash alike.
class Digest {
 public:
  Digest() : ctx_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  }
  ~Digest() { EVP_MD_CTX_free(ctx_); }
  void Add(const Column& c, const Value& v) {
    std::string cell;
    if (v.null) {
      cell = "N;";
    } else if (IsInt(c)) {
      cell = absl::StrCat("I", v.number, ";");
    } else {
      cell = absl::StrCat("S", v.bytes.size(), ":", v.bytes, ";");
    }
    EVP_DigestUpdate(ctx_, cell.data(), cell.size());
  }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 15]);
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("store copy: ", what, ": ", sqlite3_errmsg(db)));
}

// SqliteSource reads the source file in one read transaction.
class SqliteSource {
 public:
  ~SqliteSource() {
    if (db_ != nullptr) {
      sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
      sqlite3_close(db_);
    }
  }
  absl::Status Open(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) !=
        SQLITE_OK) {
      return SqliteError(db_, absl::StrCat("cannot open ", path));
    }
    if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return SqliteError(db_, "begin");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> Scalar(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      return SqliteError(db_, sql);
    }
    int64_t v = 0;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
  }
  // ForEachRow calls `fn` with each row of `t` in key order.
  absl::Status ForEachRow(
      const Table& t,
      const std::function<absl::Status(const std::vector<Value>&)>& fn) {
    std::string sql = absl::StrCat("SELECT ", ColumnList(t), " FROM ", t.name,
                                   " ORDER BY ", OrderBy(t, false));
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      return SqliteError(db_, absl::StrCat("read ", t.name));
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(
        s, sqlite3_finalize);
    std::vector<Value> row(t.columns.size());
    while (true) {
      int rc = sqlite3_step(s);
      if (rc == SQLITE_DONE) return absl::OkStatus();
      if (rc != SQLITE_ROW)
        return SqliteError(db_, absl::StrCat("read ", t.name));
      for (size_t i = 0; i < t.columns.size(); ++i) {
        int col = static_cast<int>(i);
        Value& v = row[i];
        v.null = sqlite3_column_type(s, col) == SQLITE_NULL;
        v.bytes.clear();
        v.number = 0;
        if (v.null) continue;
        if (IsInt(t.columns[i])) {
          v.number = sqlite3_column_int64(s, col);
        } else {
          const void* p = sqlite3_column_blob(s, col);
          int n = sqlite3_column_bytes(s, col);
          if (p != nullptr) v.bytes.assign(static_cast<const char*>(p), n);
        }
      }
      IPSRT_RETURN_IF_ERROR(fn(row));
    }
  }

 private:
  sqlite3* db_ = nullptr;
};

// ReadPostgresRows calls `fn` with each row of `t` in key order. Rows come
// through a binary cursor a thousand at a time, so a large table is never
// in memory at once. Runs inside the caller's transaction.
absl::Status ReadPostgresRows(
    PgConnection& pg, const Table& t,
    const std::function<absl::Status(const std::vector<Value>&)>& fn) {
  IPSRT_RETURN_IF_ERROR(pg.Exec(absl::StrCat(
      "DECLARE ipsrt_copy_rows BINARY NO SCROLL CURSOR FOR "
      "SELECT ",
      ColumnList(t), " FROM ", t.name, " ORDER BY ", OrderBy(t, true))));
  std::vector<Value> row(t.columns.size());
  while (true) {
    IPSRT_ASSIGN_OR_RETURN(PgResult r,
                           pg.ExecRows("FETCH 1000 FROM ipsrt_copy_rows"));
    if (r.rows() == 0) break;
    for (int i = 0; i < r.rows(); ++i) {
      for (size_t c = 0; c < t.columns.size(); ++c) {
        int col = static_cast<int>(c);
        Value& v = row[c];
        v.null = r.IsNull(i, col);
        bool number = IsInt(t.columns[c]);
        v.number = number ? r.Int(i, col) : 0;
        v.bytes = number ? std::string() : r.Text(i, col);
      }
      IPSRT_RETURN_IF_ERROR(fn(row));
    }
  }
  return pg.Exec("CLOSE ipsrt_copy_rows");
}

// VerifyEventChains recomputes every event's hash from its payload and
// checks each event links to its predecessor in a dense sequence.
absl::Status VerifyEventChains(PgConnection& pg, StoreCopyReport& report) {
  const Table& events = TableNamed("events");
  int64_t enrollment = 0;
  std::string last_hash;
  int64_t last_sequence = 0;
  // Where names the enrollment of a broken event (events hold its key).
  auto where = [&pg](int64_t key, int64_t sequence) {
    std::string name = absl::StrCat("enrollment key ", key);
    absl::StatusOr<PgResult> r =
        pg.Query("SELECT tenant, id FROM enrollments WHERE key = $1",
                 PgParams().Int(key));
    if (r.ok() && r->rows() == 1) {
      name = absl::StrCat("tenants/", r->Text(0, 0), "/enrollments/",
                          r->Text(0, 1));
    }
    return absl::StrCat(name, " event ", sequence);
  };
  return ReadPostgresRows(
      pg, events, [&](const std::vector<Value>& row) -> absl::Status {
        const int64_t key = row[0].number;
        const int64_t sequence = row[1].number;
        const std::string hash = DigestFromStored(row[3].bytes);
        if (key != enrollment || report.chains_verified == 0) {
          enrollment = key;
          last_sequence = 0;
          last_hash.clear();
          ++report.chains_verified;
        }
        if (sequence != last_sequence + 1) {
          return absl::DataLossError(
              absl::StrCat("store copy: ", where(key, sequence),
                           ": sequence follows ", last_sequence));
        }
        v1::Event event;
        absl::StatusOr<std::string> payload =
            EventPayloadFromStored(row[2].bytes, hash);
        // Each event's hash covers the hash before it (schema 6 keeps no
        // prev_hash column): a deleted, replaced or reordered event breaks
        // the next one's hash.
        if (!payload.ok() || !event.ParseFromString(*payload) ||
            event.hash() != hash || EventHash(last_hash, event) != hash) {
          return absl::DataLossError(
              absl::StrCat("store copy: ", where(key, sequence),
                           ": hash does not match its content"));
        }
        last_sequence = sequence;
        last_hash = hash;
        ++report.events_verified;
        return absl::OkStatus();
      });
}

// VerifyAuditChain recomputes every audit record's hash and checks that
// each links to its predecessor in a dense seq order (audit_chain.h).
absl::Status VerifyAuditChain(PgConnection& pg, StoreCopyReport& report) {
  const Table& audit = TableNamed("audit");
  AuditChainVerifier verifier;
  return ReadPostgresRows(
      pg, audit, [&](const std::vector<Value>& row) -> absl::Status {
        AuditRecord r;
        r.seq = row[0].number;
        r.tenant = row[1].bytes;
        r.subject = row[2].bytes;
        r.role = row[3].bytes;
        r.rpc = AuditRpcFromStored(row[4].bytes);
        r.resource = AuditResourceFromStored(r.tenant, row[5].bytes);
        r.outcome = row[6].bytes;
        r.time = absl::FromUnixMicros(row[7].number);
        r.request_id = row[8].bytes;
        // Rows come in seq order: the predecessor is the verifier's head.
        r.prev_hash = verifier.head_hash();
        r.hash = DigestFromStored(row[9].bytes);
        if (std::optional<AuditChainVerifier::Break> broken =
                verifier.Feed(r)) {
          return absl::DataLossError(
              absl::StrCat("store copy: audit ", broken->reason));
        }
        ++report.audit_rows_linked;
        return absl::OkStatus();
      });
}

int RunStore(const ParsedArgs& args) {
  if (args.positional[0] == "verify") return RunStoreVerify(args);
  if (args.positional[0] == "init") return RunStoreInit(args);
  if (args.positional[0] == "check") return RunStoreCheck(args);
  if (args.positional[0] != "copy") {
    std::fprintf(stderr,
                 "ipsrt store: unknown subcommand \"%s\" (known: copy, "
                 "verify, init, check)\n",
                 args.positional[0].c_str());
    return kExitUsage;
  }
  const std::string from = absl::GetFlag(FLAGS_from);
  const std::string to = absl::GetFlag(FLAGS_to);
  if (!absl::StartsWith(from, "sqlite:") || from.size() == 7) {
    std::fprintf(stderr, "ipsrt store copy: --from must be sqlite:PATH\n");
    return kExitUsage;
  }
  if (!absl::StartsWith(to, "postgres:") || to.size() == 9) {
    std::fprintf(stderr, "ipsrt store copy: --to must be postgres:CONNINFO\n");
    return kExitUsage;
  }
  PostgresConfig pg;
  pg.conninfo = to.substr(9);
  pg.password_env = absl::GetFlag(FLAGS_password_env);
  pg.password_file = absl::GetFlag(FLAGS_password_file);
  absl::StatusOr<std::string> password = ResolvePostgresPassword(pg);
  if (!password.ok()) {
    std::fprintf(stderr, "error: FAILED_PRECONDITION: %s\n",
                 std::string(password.status().message()).c_str());
    return kExitFailure;
  }
  PostgresStore::Options options;
  options.conninfo = pg.conninfo;
  options.password = *password;
  options.pool_size = 1;
  options.statement_timeout = absl::Minutes(10);
  absl::StatusOr<StoreCopyReport> report =
      CopySqliteToPostgres(from.substr(7), options);
  if (!report.ok()) {
    std::fprintf(stderr, "error: %s: %s\n",
                 absl::StatusCodeToString(report.status().code()).c_str(),
                 std::string(report.status().message()).c_str());
    return kExitFailure;
  }
  for (const TableCopy& t : report->tables) {
    std::printf("%-12s %lld rows copied, %lld in PostgreSQL, digest %s\n",
                t.table.c_str(), static_cast<long long>(t.source_rows),
                static_cast<long long>(t.destination_rows),
                t.destination_digest.substr(0, 16).c_str());
  }
  std::printf(
      "verified: row counts and content digests equal; %lld events in %lld "
      "hash chains recomputed and linked; %lld audit records recomputed and "
      "linked\n",
      static_cast<long long>(report->events_verified),
      static_cast<long long>(report->chains_verified),
      static_cast<long long>(report->audit_rows_linked));
  std::printf("ok: schema version %d\n", report->schema_version);
  return kExitOk;
}

// CheckSourceVersion refuses a source that is not at the schema version
// this build copies.
absl::StatusOr<int> CheckSourceVersion(SqliteSource& source,
                                       const std::string& sqlite_path) {
  absl::StatusOr<int64_t> source_version =
      source.Scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!source_version.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store copy: ", sqlite_path, " is not an ipsrtd SQLite database"));
  }
  if (*source_version != kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store copy: source schema version ", *source_version,
        "; this ipsrt copies schema version ", kSchemaVersion,
        " (run the matching ipsrtd on the source once to upgrade it)"));
  }
  return kSchemaVersion;
}

// ConnectDestination creates (or checks) the destination's schema by
// opening the store there, then connects for the copy.
absl::StatusOr<std::unique_ptr<PgConnection>> ConnectDestination(
    const PostgresStore::Options& destination, int schema_version) {
  {
    IPSRT_ASSIGN_OR_RETURN(std::unique_ptr<PostgresStore> store,
                           PostgresStore::Open(destination));
    if (store->SchemaVersion() != schema_version) {
      return absl::FailedPreconditionError(
          absl::StrCat("store copy: destination schema version ",
                       store->SchemaVersion(), ", source ", schema_version));
    }
  }
  PgConnectOptions connect;
  connect.conninfo = destination.conninfo;
  connect.password = destination.password;
  connect.connect_timeout = destination.connect_timeout;
  connect.statement_timeout = destination.statement_timeout;
  connect.application_name = "ipsrt store copy";
  return PgConnection::Connect(connect);
}

// LockEmptyDestination locks every table against ipsrtd replicas and
// refuses a destination holding rows; outbox_feed's one row from the
// migration is deleted (SQLite's replaces it).
absl::Status LockEmptyDestination(PgConnection& pg) {
  std::vector<std::string> names;
  for (const Table& t : SchemaTables()) names.push_back(t.name);
  IPSRT_RETURN_IF_ERROR(pg.Exec(absl::StrCat(
      "LOCK TABLE ", absl::StrJoin(names, ", "), " IN EXCLUSIVE MODE")));
  for (const Table& t : SchemaTables()) {
    if (std::string(t.name) == "outbox_feed") continue;
    IPSRT_ASSIGN_OR_RETURN(
        PgResult n,
        pg.Query(absl::StrCat("SELECT COUNT(*)::int8 FROM ", t.name)));
    if (n.Int(0, 0) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store copy: the destination's ", t.name, " table holds ",
          n.Int(0, 0), " rows; copy only into an empty database"));
    }
  }
  return pg.Exec("DELETE FROM outbox_feed");
}

// InsertSql inserts `rows` rows of `t` in one statement.
std::string InsertSql(const Table& t, int rows) {
  std::vector<std::string> tuples;
  int n = 1;
  for (int r = 0; r < rows; ++r) {
    std::vector<std::string> placeholders;
    for (size_t i = 0; i < t.columns.size(); ++i) {
      placeholders.push_back(absl::StrCat("$", n++));
    }
    tuples.push_back(absl::StrCat("(", absl::StrJoin(placeholders, ", "), ")"));
  }
  return absl::StrCat(
      "INSERT INTO ", t.name, " (", ColumnList(t), ") ",
      std::string(t.name) == "outbox" ? "OVERRIDING SYSTEM VALUE " : "",
      "VALUES ", absl::StrJoin(tuples, ", "));
}

void AddParam(const Column& c, const Value& v, PgParams& params) {
  if (v.null && c.nullable) {
    if (IsInt(c)) {
      params.NullInt();
    } else {
      params.NullText();
    }
  } else if (IsInt(c)) {
    params.Int(v.number);
  } else if (c.type == SchemaColumn::Type::kBytes) {
    params.Bytes(v.bytes);
  } else {
    params.Text(v.bytes);
  }
}

// CopyTable copies the rows of `t` and digests them on the way.
absl::StatusOr<TableCopy> CopyTable(SqliteSource& source, PgConnection& pg,
                                    const Table& t) {
  TableCopy copy;
  copy.table = t.name;
  // Rows go in multi-row INSERTs of up to kRowsPerInsert rows, so that a
  // large table does not cost one round trip per row.
  constexpr int kRowsPerInsert = 200;
  const std::string full_insert = InsertSql(t, kRowsPerInsert);
  PgParams params;
  int pending = 0;
  auto flush = [&]() -> absl::Status {
    if (pending == 0) return absl::OkStatus();
    absl::Status s = pg.Query(pending == kRowsPerInsert ? full_insert
                                                        : InsertSql(t, pending),
                              params)
                         .status();
    params = PgParams();
    pending = 0;
    return s;
  };
  Digest digest;
  IPSRT_RETURN_IF_ERROR(
      source.ForEachRow(t, [&](const std::vector<Value>& row) -> absl::Status {
        for (size_t i = 0; i < row.size(); ++i) {
          digest.Add(t.columns[i], row[i]);
          AddParam(t.columns[i], row[i], params);
        }
        ++copy.source_rows;
        if (++pending == kRowsPerInsert) return flush();
        return absl::OkStatus();
      }));
  IPSRT_RETURN_IF_ERROR(flush());
  copy.source_digest = digest.Hex();
  return copy;
}

// VerifyTable reads `t` back from PostgreSQL (inside the copy's
// transaction) and compares its row count and digest with the source's.
absl::Status VerifyTable(SqliteSource& source, PgConnection& pg, const Table& t,
                         TableCopy& copy) {
  Digest digest;
  IPSRT_RETURN_IF_ERROR(ReadPostgresRows(
      pg, t, [&](const std::vector<Value>& row) -> absl::Status {
        for (size_t c = 0; c < row.size(); ++c)
          digest.Add(t.columns[c], row[c]);
        ++copy.destination_rows;
        return absl::OkStatus();
      }));
  copy.destination_digest = digest.Hex();
  IPSRT_ASSIGN_OR_RETURN(
      int64_t source_count,
      source.Scalar(absl::StrCat("SELECT COUNT(*) FROM ", t.name)));
  if (copy.destination_rows != copy.source_rows ||
      copy.source_rows != source_count) {
    return absl::DataLossError(absl::StrCat(
        "store copy: ", t.name, ": ", source_count, " rows in SQLite, ",
        copy.destination_rows, " in PostgreSQL"));
  }
  if (copy.destination_digest != copy.source_digest) {
    return absl::DataLossError(
        absl::StrCat("store copy: ", t.name,
                     ": the rows in PostgreSQL differ from SQLite's"));
  }
  return absl::OkStatus();
}

// CopyAndVerify copies every table, then verifies what PostgreSQL holds,
// inside the caller's transaction: a copy that does not verify is rolled
// back and leaves nothing.
absl::Status CopyAndVerify(SqliteSource& source, PgConnection& pg,
                           StoreCopyReport& report) {
  IPSRT_RETURN_IF_ERROR(LockEmptyDestination(pg));
  for (const Table& t : SchemaTables()) {
    IPSRT_ASSIGN_OR_RETURN(TableCopy copy, CopyTable(source, pg, t));
    report.tables.push_back(std::move(copy));
  }
  // Later outbox rows and enrollments continue after the copied numbers.
  IPSRT_RETURN_IF_ERROR(
      pg.Exec("SELECT setval(pg_get_serial_sequence('outbox', 'id'), "
              "COALESCE((SELECT MAX(id) FROM outbox), 0) + 1, false)"));
  IPSRT_RETURN_IF_ERROR(
      pg.Exec("SELECT setval(pg_get_serial_sequence('enrollments', 'key'), "
              "COALESCE((SELECT MAX(key) FROM enrollments), 0) + 1, false)"));
  for (size_t i = 0; i < SchemaTables().size(); ++i) {
    IPSRT_RETURN_IF_ERROR(
        VerifyTable(source, pg, SchemaTables()[i], report.tables[i]));
  }
  IPSRT_RETURN_IF_ERROR(VerifyEventChains(pg, report));
  return VerifyAuditChain(pg, report);
}

}  // namespace

absl::StatusOr<StoreCopyReport> CopySqliteToPostgres(
    const std::string& sqlite_path, const PostgresStore::Options& destination) {
  StoreCopyReport report;
  SqliteSource source;
  IPSRT_RETURN_IF_ERROR(source.Open(sqlite_path));
  IPSRT_ASSIGN_OR_RETURN(report.schema_version,
                         CheckSourceVersion(source, sqlite_path));
  IPSRT_ASSIGN_OR_RETURN(
      std::unique_ptr<PgConnection> pg,
      ConnectDestination(destination, report.schema_version));
  // All rows go in one transaction: a failed copy leaves the destination
  // empty. The table lock keeps ipsrtd replicas from writing meanwhile.
  IPSRT_RETURN_IF_ERROR(pg->Exec("BEGIN"));
  absl::Status copied = CopyAndVerify(source, *pg, report);
  if (copied.ok()) copied = pg->Exec("COMMIT");
  if (!copied.ok()) {
    if (!pg->Broken()) pg->Exec("ROLLBACK").IgnoreError();
    return copied;
  }
  return report;
}

std::vector<FlagSpec> StoreFlags() {
  std::vector<FlagSpec> flags = {
      {.name = "from", .value_name = "sqlite:PATH"},
      {.name = "to", .value_name = "postgres:CONNINFO"},
      {.name = "password_env", .value_name = "VAR"},
      {.name = "password_file", .value_name = "FILE"},
      {.name = "config", .value_name = "FILE"}};
  for (FlagSpec& f : StoreVerifyFlags()) flags.push_back(std::move(f));
  return flags;
}

std::vector<Command> StoreCommands() {
  return {
      {.spec = {.name = "store",
                .synopsis = "store copy --from=sqlite:PATH "
                            "--to=postgres:CONNINFO [--password_env=VAR | "
                            "--password_file=FILE]\n       store verify "
                            "[--db=PATH | --postgres=CONNINFO] "
                            "[--anchor=FILE --key=FILE]\n       store init "
                            "--config=FILE\n       store check (--db=PATH | "
                            "--config=FILE)",
                .description =
                    "Copy, verify, create or check the store's database.\n\n"
                    "store copy: copies every table of the schema "
                    "(enrollments, events,\noutbox, outbox_feed, requests, "
                    "request_keys, audit) into an empty\nPostgreSQL "
                    "database in one transaction, creating its schema, then\n"
                    "verifies: row counts and a SHA-256 content digest per "
                    "table,\nand every event's and every audit record's hash "
                    "recomputed and linked to\nits predecessor. Stop ipsrtd "
                    "before copying. Runs offline (no --server).\nThe "
                    "password comes from --password_env or --password_file, "
                    "never the\ncommand line. Exit status 0 when the copy "
                    "verifies, 1 otherwise.\n\n"
                    "store verify: check every enrollment's event hash "
                    "chain against its\nrevision and snapshot, and the audit "
                    "chain; with --anchor and --key, also\nthat every head "
                    "the anchor file recorded is still there (finds deleted\n"
                    "newest events and recomputed chains). Offline on --db or "
                    "--postgres, else\nover gRPC (deployment admin). Exit "
                    "status 1 naming the first broken record\nof each chain "
                    "and why. See docs/integrity.md.\n\n"
                    "store init: create the database (SQLite: and its "
                    "identity file) that\n--config names, or apply the "
                    "pending schema migrations of an existing\none (before "
                    "starting servers of a new release: a migration can "
                    "take\nminutes on a large store); safe on an up-to-date "
                    "one.\n"
                    "store check: offline, run the full integrity_check and "
                    "read every\nenrollment and event, listing the rows that "
                    "cannot be read or decoded\n(by id, never content); "
                    "`store verify` checks the hash chains. Exit\nstatus 0 "
                    "when intact, 1 otherwise (docs/durability.md).",
                .flags = StoreFlags(),
                .global_flags = GlobalFlags(),
                .min_positional = 1,
                .max_positional = 1},
       .run = RunStore},
  };
}

}  // namespace ipsrt::cli
