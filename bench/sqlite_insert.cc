// ipsrt_sqlite_insert_bench: SQLite's raw durable write rate for the rows a
// CreateEnrollment commits, without gRPC, validation or the writer queue.
//
// What it does, per enrollment, on one connection with cached prepared
// statements, against the schema SqliteStore builds (its migrations) and the
// connection settings ipsrtd uses (journal_mode=WAL, synchronous=FULL,
// foreign_keys=ON):
//   SAVEPOINT request                 (as the server's group commit does;
//                                      --savepoints=false drops it)
//   INSERT INTO requests ... ON CONFLICT DO NOTHING
//                                     (the idempotency record first, as
//                                      the shared SQL core writes it)
//   SELECT key FROM request_keys ...  (a request id seen before, whose
//                                      record was pruned, is refused)
//   INSERT INTO enrollments ...
//   INSERT INTO events ... SELECT key FROM enrollments ...
//   INSERT INTO outbox ...            (one row per reminder the runtime
//                                      planned, as the server writes them)
//   RELEASE request
// and --batch enrollments share one BEGIN IMMEDIATE ... COMMIT. --batch=1 is
// one fsync-bound transaction per enrollment (a store without group commit);
// a large --batch is the ceiling that group commit can approach.
//
// Row contents are made as engine/core/enrollments.cc makes them: ids from
// RandomIdGenerator (time-ordered, so inserts append to the B-trees), the
// enrollment's first event run through runtime::Step over the shipped
// ipsrt-standard template (--workflows), so the snapshot, event payload and
// outbox rows have the server's exact content and stored size.
//
// Output: enrollments (rows) per second and transactions per second over the
// time spent inside transactions (building the rows is excluded), and the
// latency of the COMMIT step alone (where WAL + synchronous=FULL waits for
// fsync) and of the whole transaction; exact nearest-rank percentiles over
// every timed transaction.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/hash.h"
#include "common/ids.h"
#include "core/enrollments.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "model/workflow.h"
#include "runtime/step.h"
#include "store/blob_codec.h"
#include "store/request_window.h"

ABSL_FLAG(std::string, dir, "",
          "Directory for the database file (required); use the filesystem "
          "the server's database lives on.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5),
          "Run for this long (ignored when --rows is set).");
ABSL_FLAG(int64_t, rows, 0,
          "When > 0, insert exactly this many enrollments instead of running "
          "for --duration.");
ABSL_FLAG(int, batch, 1, "Enrollments per transaction.");
ABSL_FLAG(bool, savepoints, true,
          "Wrap each enrollment in SAVEPOINT/RELEASE, as the server does.");
ABSL_FLAG(int, warmup_txns, 20,
          "Transactions run first and not counted (file growth, caches).");
ABSL_FLAG(bool, keep, false, "Keep the database file afterwards.");
ABSL_FLAG(bool, json, false, "Print one JSON line instead of text.");
ABSL_FLAG(std::string, workflows, "workflows",
          "Directory of workflow templates; ipsrt-standard is used.");

namespace ipsrt::bench {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(sqlite3* db, const std::string& what) {
  std::fprintf(stderr, "ipsrt_sqlite_insert_bench: %s: %s\n", what.c_str(),
               db ? sqlite3_errmsg(db) : "");
  std::exit(1);
}

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "";
    sqlite3_free(err);
    Die(db, absl::StrCat("exec ", sql.substr(0, 60), ": ", msg));
  }
}

sqlite3_stmt* Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) !=
      SQLITE_OK) {
    Die(db, absl::StrCat("prepare ", sql));
  }
  return s;
}

// Run steps a statement to completion, then resets it and clears binds.
void Run(sqlite3* db, sqlite3_stmt* s, const char* what) {
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) Die(db, what);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
}

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()),
                    SQLITE_TRANSIENT);
}
void BindBlob(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()),
                    SQLITE_TRANSIENT);
}

double PercentileMs(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(
      std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1e6;
}

// Rows is what one CreateEnrollment writes, built as the engine builds it.
struct Rows {
  std::string tenant = "bench";
  std::string id, request_id, patient_ref, payload_hash, snapshot, response,
      event_payload, hash;
  struct Outbox {
    std::string kind, payload, key;
    int64_t due_us;
  };
  std::vector<Outbox> outbox;
  int64_t now_us = 0;
};

const WorkflowTemplate* Standard() {
  static const WorkflowTemplate* const t = [] {
    absl::StatusOr<std::shared_ptr<const WorkflowCatalog>> c =
        WorkflowCatalog::LoadDirectories({absl::GetFlag(FLAGS_workflows)});
    if (!c.ok()) {
      std::fprintf(stderr, "ipsrt_sqlite_insert_bench: %s\n",
                   std::string(c.status().message()).c_str());
      std::exit(2);
    }
    static std::shared_ptr<const WorkflowCatalog> keep = *c;
    return keep->Find("ipsrt-standard", 0);
  }();
  return t;
}

Rows MakeRows(IdGenerator& ids, int64_t n) {
  Rows r;
  absl::Time now = absl::Now();
  r.now_us = absl::ToUnixMicros(now);
  r.id = ids.NewId(now);
  r.request_id = absl::StrCat("raw-bench-", getpid(), "-", n);
  r.payload_hash = Sha256Hex(absl::StrCat("CreateEnrollment\n", n));
  r.patient_ref = absl::StrCat("Patient/bench-", n);
  std::string name = absl::StrCat("tenants/bench/enrollments/", r.id);
  v1::Event ev;
  ev.set_sequence(1);
  ev.set_type("enrollment.created");
  ev.mutable_actor()->set_subject("anonymous");
  ev.mutable_actor()->set_role("anonymous");
  *ev.mutable_record_time() =
      google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(r.now_us);
  ev.set_request_id(r.request_id);
  v1::EnrollmentCreated* c = ev.mutable_payload()->mutable_enrollment_created();
  c->set_patient_ref(r.patient_ref);
  c->set_workflow_id("ipsrt-standard");
  c->set_workflow_version(1);
  c->set_time_zone("Europe/London");
  c->set_clinician_ref("Practitioner/bench");
  ev.set_summary("Enrolled in ipsrt-standard@1 at stage initial");
  internal::EnrollmentState initial;
  initial.mutable_enrollment()->set_name(name);
  absl::StatusOr<runtime::StepResult> stepped =
      runtime::Step(*Standard(), &Enrollments::LoadZone, initial, ev);
  if (!stepped.ok()) {
    std::fprintf(stderr, "ipsrt_sqlite_insert_bench: %s\n",
                 std::string(stepped.status().message()).c_str());
    std::exit(2);
  }
  for (const v1::Outcome& o : stepped->outcomes) *ev.add_outcomes() = o;
  r.hash = EventHash("", ev);
  ev.set_hash(r.hash);
  stepped->state.set_last_event_hash(r.hash);
  // Stored as the store keeps them (store/blob_codec.h); packing is part of
  // building the rows, outside the timed transactions.
  r.snapshot = PackBlob(DeterministicBytes(stepped->state));
  r.response = PackBlob(stepped->state.enrollment().SerializeAsString());
  r.event_payload = StoredEventPayload(DeterministicBytes(ev), r.hash);
  for (const runtime::Effect& e : stepped->effects) {
    if (runtime::OutboxKind(e.kind).empty()) continue;  // a cancellation
    r.outbox.push_back({std::string(runtime::OutboxKind(e.kind)), e.subject,
                        absl::StrCat(name, "/", e.key),
                        absl::ToUnixMicros(e.due)});
  }
  return r;
}

// OpenDatabase creates a fresh database at `path` with the server's schema
// (built by SqliteStore itself, then closed, so the bench never drifts from
// the migrations and the SQL functions they need) and opens it with the
// settings SqliteStore applies to its writer; dies on error.
sqlite3* OpenDatabase(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(path + suffix);
  }
  {
    SqliteStore::Options options;
    options.path = path;
    absl::StatusOr<std::unique_ptr<SqliteStore>> store =
        SqliteStore::Open(options);
    if (!store.ok()) {
      std::fprintf(stderr, "ipsrt_sqlite_insert_bench: schema: %s\n",
                   store.status().ToString().c_str());
      std::exit(1);
    }
    (*store)->Close();
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    Die(db, "open " + path);
  }
  Exec(db, "PRAGMA journal_mode=WAL");
  Exec(db, "PRAGMA synchronous=FULL");
  Exec(db, "PRAGMA foreign_keys=ON");
  return db;
}

// Statements are the prepared statements of the benchmark: transaction
// control and those SqliteStore::Impl::PrepareWriterStatements prepares.
struct Statements {
  explicit Statements(sqlite3* db)
      : db(db),
        begin(Prepare(db, "BEGIN IMMEDIATE")),
        commit(Prepare(db, "COMMIT")),
        savepoint(Prepare(db, "SAVEPOINT request")),
        release(Prepare(db, "RELEASE request")),
        ins_request(Prepare(
            db,
            "INSERT INTO requests (key, tenant, request_id, method, "
            "payload_hash, response, create_time_us) VALUES (?, ?, ?, ?, ?, "
            "?, ?) ON CONFLICT (key) DO NOTHING")),
        find_request_key(
            Prepare(db, "SELECT key FROM request_keys WHERE key = ?")),
        ins_enrollment(Prepare(
            db,
            "INSERT INTO enrollments (tenant, id, patient_ref, workflow_id, "
            "workflow_version, stage, clinician_ref, state, revision, "
            "snapshot, create_time_us, update_time_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")),
        ins_event(Prepare(
            db,
            "INSERT INTO events (enrollment_key, sequence, payload, hash) "
            "SELECT key, ?3, ?4, ?5 FROM enrollments WHERE tenant = ?1 AND "
            "id = ?2")),
        ins_outbox(Prepare(
            db,
            "INSERT INTO outbox (tenant, enrollment_id, kind, due_time_us, "
            "payload, idempotency_key, key_digest, status, attempts, "
            "create_time_us) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?)")) {}
  ~Statements() {
    for (sqlite3_stmt* s :
         {begin, commit, savepoint, release, ins_request, find_request_key,
          ins_enrollment, ins_event, ins_outbox}) {
      sqlite3_finalize(s);
    }
  }
  Statements(const Statements&) = delete;
  Statements& operator=(const Statements&) = delete;

  sqlite3* db;
  sqlite3_stmt* begin;
  sqlite3_stmt* commit;
  sqlite3_stmt* savepoint;
  sqlite3_stmt* release;
  sqlite3_stmt* ins_request;
  sqlite3_stmt* find_request_key;
  sqlite3_stmt* ins_enrollment;
  sqlite3_stmt* ins_event;
  sqlite3_stmt* ins_outbox;
};

// InsertEnrollment runs one enrollment's statements inside an open
// transaction, in a SAVEPOINT when `savepoints`.
void InsertEnrollment(Statements& st, const Rows& r, bool savepoints) {
  sqlite3* db = st.db;
  if (savepoints) Run(db, st.savepoint, "savepoint");
  const int64_t key = RequestKey(r.tenant, r.request_id);
  sqlite3_bind_int64(st.ins_request, 1, key);
  BindText(st.ins_request, 2, r.tenant);
  BindText(st.ins_request, 3, r.request_id);
  BindText(st.ins_request, 4, "CreateEnrollment");
  BindBlob(st.ins_request, 5, StoredDigest(r.payload_hash));
  BindBlob(st.ins_request, 6, r.response);
  sqlite3_bind_int64(st.ins_request, 7, r.now_us);
  Run(db, st.ins_request, "insert request");
  sqlite3_bind_int64(st.find_request_key, 1, key);
  Run(db, st.find_request_key, "look up request key");
  sqlite3_stmt* e = st.ins_enrollment;
  BindText(e, 1, r.tenant);
  BindText(e, 2, r.id);
  BindText(e, 3, r.patient_ref);
  BindText(e, 4, "ipsrt-standard");
  sqlite3_bind_int64(e, 5, 1);
  BindText(e, 6, "initial");
  BindText(e, 7, "Practitioner/bench");
  sqlite3_bind_int64(e, 8, 1);
  sqlite3_bind_int64(e, 9, 1);
  BindBlob(e, 10, r.snapshot);
  sqlite3_bind_int64(e, 11, r.now_us);
  sqlite3_bind_int64(e, 12, r.now_us);
  Run(db, e, "insert enrollment");
  sqlite3_stmt* ev = st.ins_event;
  BindText(ev, 1, r.tenant);
  BindText(ev, 2, r.id);
  sqlite3_bind_int64(ev, 3, 1);
  BindBlob(ev, 4, r.event_payload);
  BindBlob(ev, 5, StoredDigest(r.hash));
  Run(db, ev, "insert event");
  for (const Rows::Outbox& o : r.outbox) {
    BindText(st.ins_outbox, 1, r.tenant);
    BindText(st.ins_outbox, 2, r.id);
    BindText(st.ins_outbox, 3, o.kind);
    sqlite3_bind_int64(st.ins_outbox, 4, o.due_us);
    BindBlob(st.ins_outbox, 5, o.payload);
    const std::string stored = *StoredOutboxKey(r.tenant, r.id, o.key);
    BindText(st.ins_outbox, 6, stored);
    BindBlob(st.ins_outbox, 7, OutboxKeyDigest(r.tenant, r.id, stored));
    sqlite3_bind_int64(st.ins_outbox, 8, r.now_us);
    Run(db, st.ins_outbox, "insert outbox");
  }
  if (savepoints) Run(db, st.release, "release");
}

// Measured is what the timed transactions gave: rows and the time inside
// transactions, and per transaction the COMMIT step's and the whole
// transaction's latency (sorted, nanoseconds).
struct Measured {
  int64_t rows = 0;
  double busy_s = 0;  // sum of BEGIN..COMMIT times of counted transactions
  double elapsed_s = 0;
  std::vector<int64_t> commit_ns, txn_ns;
};

// MeasureInserts runs --warmup_txns uncounted transactions, then counted
// ones of `batch` enrollments until --rows enrollments (`max_rows` > 0) or
// the `duration` deadline.
Measured MeasureInserts(Statements& st, int batch, int64_t max_rows,
                        absl::Duration duration, bool savepoints) {
  RandomIdGenerator ids;
  int64_t seq = 0;
  Measured m;
  std::vector<Rows> batch_rows;
  Clock::time_point start;
  Clock::time_point end;
  const int warmup_txns = std::max(0, absl::GetFlag(FLAGS_warmup_txns));
  // Bounded: stops after --rows enrollments or at the --duration deadline.
  for (int64_t txn = 0;; ++txn) {
    const bool counted = txn >= warmup_txns;
    if (txn == warmup_txns) {
      start = Clock::now();
      end = start + absl::ToChronoNanoseconds(duration);
    }
    if (counted) {
      if (max_rows > 0 ? m.rows >= max_rows : Clock::now() >= end) break;
    }
    int n = batch;
    if (counted && max_rows > 0) {
      n = static_cast<int>(std::min<int64_t>(batch, max_rows - m.rows));
    }
    // Rows are built before BEGIN and outside the timing: in the server
    // that work (ids, SHA-256, protobuf) happens on RPC threads, not on the
    // writer thread that holds the transaction.
    batch_rows.clear();
    for (int i = 0; i < n; ++i) batch_rows.push_back(MakeRows(ids, seq++));
    Clock::time_point t0 = Clock::now();
    Run(st.db, st.begin, "begin");
    for (const Rows& r : batch_rows) InsertEnrollment(st, r, savepoints);
    Clock::time_point t1 = Clock::now();
    Run(st.db, st.commit, "commit");
    Clock::time_point t2 = Clock::now();
    if (counted) {
      m.rows += n;
      m.commit_ns.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(t2 - t1)
              .count());
      m.txn_ns.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(t2 - t0)
              .count());
      m.busy_s += std::chrono::duration<double>(t2 - t0).count();
    }
  }
  m.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(m.commit_ns.begin(), m.commit_ns.end());
  std::sort(m.txn_ns.begin(), m.txn_ns.end());
  return m;
}

// PrintResults prints the rates (over time inside transactions, row
// building excluded) and latencies, as one JSON line with --json.
void PrintResults(const Measured& m, const std::string& path, int batch,
                  bool savepoints) {
  const std::vector<int64_t>& commit_ns = m.commit_ns;
  const std::vector<int64_t>& txn_ns = m.txn_ns;
  const int64_t rows = m.rows;
  const double busy_s = m.busy_s, elapsed_s = m.elapsed_s;
  const int64_t txns = static_cast<int64_t>(commit_ns.size());
  const double rows_per_s = busy_s > 0 ? rows / busy_s : 0;
  const double txn_per_s = busy_s > 0 ? txns / busy_s : 0;
  if (absl::GetFlag(FLAGS_json)) {
    std::printf(
        "{\"bench\":\"sqlite_insert\",\"batch\":%d,\"savepoints\":%s,"
        "\"rows\":%" PRId64 ",\"transactions\":%" PRId64
        ",\"elapsed_s\":%.3f,\"in_txn_s\":%.3f,"
        "\"rows_per_s\":%.1f,\"txn_per_s\":%.1f,"
        "\"commit_p50_ms\":%.3f,\"commit_p90_ms\":%.3f,"
        "\"commit_p99_ms\":%.3f,\"commit_max_ms\":%.3f,"
        "\"txn_p50_ms\":%.3f,\"txn_p99_ms\":%.3f,"
        "\"latency_method\":\"full-sample-nearest-rank\"}\n",
        batch, savepoints ? "true" : "false", rows, txns, elapsed_s, busy_s,
        rows_per_s, txn_per_s, PercentileMs(commit_ns, 50),
        PercentileMs(commit_ns, 90), PercentileMs(commit_ns, 99),
        PercentileMs(commit_ns, 100), PercentileMs(txn_ns, 50),
        PercentileMs(txn_ns, 99));
  } else {
    std::printf("database:     %s (WAL, synchronous=FULL)\n", path.c_str());
    std::printf("batch:        %d enrollment(s) per transaction%s\n", batch,
                savepoints ? ", one SAVEPOINT each" : "");
    std::printf("rows:         %" PRId64 " enrollments in %" PRId64
                " transactions, %.2f s wall, %.2f s inside transactions\n",
                rows, txns, elapsed_s, busy_s);
    std::printf(
        "throughput:   %.1f enrollments/s, %.1f commits/s (over time inside "
        "transactions)\n",
        rows_per_s, txn_per_s);
    std::printf("COMMIT (ms):  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n",
                PercentileMs(commit_ns, 50), PercentileMs(commit_ns, 90),
                PercentileMs(commit_ns, 99), PercentileMs(commit_ns, 100));
    std::printf("txn (ms):     p50 %.3f  p99 %.3f  (BEGIN to COMMIT done)\n",
                PercentileMs(txn_ns, 50), PercentileMs(txn_ns, 99));
  }
}

int Main() {
  const std::string dir = absl::GetFlag(FLAGS_dir);
  const int batch = absl::GetFlag(FLAGS_batch);
  const int64_t max_rows = absl::GetFlag(FLAGS_rows);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const bool savepoints = absl::GetFlag(FLAGS_savepoints);
  if (dir.empty() || !std::filesystem::is_directory(dir)) {
    std::fprintf(stderr,
                 "ipsrt_sqlite_insert_bench: --dir must name an existing "
                 "directory\n");
    return 2;
  }
  if (batch < 1 || batch > 100000 || max_rows < 0 ||
      (max_rows == 0 &&
       (duration <= absl::ZeroDuration() || duration > absl::Hours(1)))) {
    std::fprintf(stderr,
                 "ipsrt_sqlite_insert_bench: --batch in [1, 100000]; "
                 "--rows >= 0; --duration in (0, 1h]\n");
    return 2;
  }

  const std::string path =
      (std::filesystem::path(dir) /
       absl::StrCat("sqlite_insert_bench-", getpid(), ".db"))
          .string();
  sqlite3* db = OpenDatabase(path);
  Measured m;
  {
    Statements statements(db);
    m = MeasureInserts(statements, batch, max_rows, duration, savepoints);
  }
  sqlite3_close_v2(db);
  if (!absl::GetFlag(FLAGS_keep)) {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::filesystem::remove(path + suffix);
    }
  }
  PrintResults(m, path, batch, savepoints);
  return m.rows > 0 ? 0 : 1;
}

}  // namespace
}  // namespace ipsrt::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ipsrt_sqlite_insert_bench --dir=DIR [--batch=N] [--duration=5s | "
      "--rows=N]: raw SQLite durable insert rate for CreateEnrollment's rows");
  absl::ParseCommandLine(argc, argv);
  return ipsrt::bench::Main();
}
