// SQLite's table layout (schema 4): a database written by schema 3 moves to
// it with every row readable, and the store's queries are index searches.

#include <zdict.h>
#include <zlib.h>
#include <zstd.h>

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/hash.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "store/audit_chain.h"
#include "store/blob_codec.h"
#include "store/migrations.h"
#include "store/request_window.h"
#include "store/sql_core.h"
#include "tests/testing/sqlite_db.h"
#include "tests/testing/store_batches.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using Db = testing::SqliteDb;

// OpenIn opens a SqliteStore on dir/ipsrt.db with default options.
absl::StatusOr<std::unique_ptr<SqliteStore>> OpenIn(
    const testing::TempDir& dir) {
  SqliteStore::Options options;
  options.path = dir.File("ipsrt.db");
  return SqliteStore::Open(options);
}

// WriteSchema3Database creates `path` the way schema 3's ipsrtd did (its
// migrations 1-3, which never change once released) with two enrollments,
// their events, request records, an outbox row and an audit record.
void WriteSchema3Database(const std::string& path) {
  Db db(path);
  testing::LayOutSchema(db, 3);
  for (int i = 1; i <= 2; ++i) {
    std::string id = absl::StrCat("e", i);
    // A snapshot of 3000 bytes: an overflowing row in the old layout.
    db.Exec(absl::StrCat(
        "INSERT INTO enrollments VALUES ('t1', '", id, "', 'Patient/", i,
        "', 'ipsrt-standard', 1, 'initial', 'Practitioner/1', 1, 2, ",
        "CAST(replace(hex(zeroblob(1500)), '0', 'x') AS BLOB), ", 1000 + i,
        ", ", 2000 + i, ")"));
    for (int seq = 1; seq <= 2; ++seq) {
      db.Exec(absl::StrCat("INSERT INTO events VALUES ('t1', '", id, "', ", seq,
                           ", 'type', 'actor', 'r", i, "-", seq, "', ",
                           3000 + seq, ", x'0a0b0c', 'h", seq - 1, "', 'h", seq,
                           "')"));
    }
    db.Exec(absl::StrCat("INSERT INTO requests VALUES ('t1', 'r", i,
                         "-1', 'CreateEnrollment', 'hash-a', 'response-", id,
                         "', 1000)"));
  }
  db.Exec(
      "INSERT INTO outbox (tenant, enrollment_id, kind, due_time_us, payload, "
      "idempotency_key, status, attempts, create_time_us) VALUES ('t1', 'e1', "
      "'reminder', 5000, x'01', 'k1', 0, 0, 1000)");
  db.Exec(
      "INSERT INTO audit (seq, tenant, subject, role, rpc, resource, outcome, "
      "time_us, prev_hash, hash) VALUES (1, 't1', 's', 'clinician', '/x', "
      "'r', 'OK', 1000, '', 'a1')");
}

TEST(SqliteLayoutTest, MigratesASchema3DatabaseWithEveryRow) {
  testing::TempDir dir;
  const std::string path = dir.File("ipsrt.db");
  WriteSchema3Database(path);
  {
    Db db(path);
    EXPECT_THAT(db.Scalar("SELECT sql FROM sqlite_master WHERE name = "
                          "'enrollments'"),
                HasSubstr("WITHOUT ROWID"));
  }

  SqliteStore::Options options;
  options.path = path;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store =
      SqliteStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->SchemaVersion(), kSchemaVersion);

  absl::StatusOr<EnrollmentRow> row = (*store)->GetEnrollment("t1", "e2");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->patient_ref, "Patient/2");
  EXPECT_EQ(row->revision, 2);
  EXPECT_TRUE(row->snapshot == std::string(3000, 'x')) << row->snapshot.size();
  EXPECT_EQ(row->update_time, absl::FromUnixMicros(2002));
  absl::StatusOr<std::vector<EventRow>> events =
      (*store)->ListEvents("t1", "e1", 0, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1].payload, "\x0a\x0b\x0c");
  EXPECT_EQ((*events)[1].prev_hash, "h1");

  // A retry of a request committed under schema 3 replays its record, and
  // its key was recorded by the migration.
  absl::StatusOr<CommitResult> retry = (*store)->Commit(testing::CreateBatch(
      "t1", "e9", "r1-1", "hash-a", absl::FromUnixMicros(1000)));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->replayed);
  EXPECT_EQ(retry->response, "response-e1");
  (*store)->Close();

  Db db(path);
  EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM request_keys"), "2");
  EXPECT_EQ(db.Scalar(absl::StrCat("SELECT COUNT(*) FROM request_keys WHERE "
                                   "key = ",
                                   RequestKey("t1", "r2-1"))),
            "1");
  for (const char* table : {"enrollments", "events", "requests"}) {
    EXPECT_THAT(
        db.Scalar(absl::StrCat("SELECT sql FROM sqlite_master WHERE name = '",
                               table, "'")),
        Not(HasSubstr("WITHOUT ROWID")))
        << table;
  }
  EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM sqlite_master WHERE name IN "
                      "('outbox_by_enrollment', 'audit_by_tenant_time', "
                      "'audit_by_subject', 'enrollments_v4', 'events_v4', "
                      "'requests_v4')"),
            "0");
  EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM outbox"), "1");
  EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM audit"), "1");
  EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM pragma_foreign_key_check"), "0");
  EXPECT_EQ(db.Scalar("PRAGMA foreign_keys"), "0");  // this connection's
}

// The statements of the store's hot paths search an index; none scans a
// table (the plans of sqlite_store.cc's statements, by their SQL).
constexpr char kListAudit[] =
    "SELECT a.seq, (SELECT p.hash FROM audit p WHERE p.seq = a.seq - 1), "
    "a.hash FROM audit a WHERE a.seq > ?1 AND (?2 = '' OR a.tenant = ?2) AND "
    "(?3 = '' OR a.subject = ?3) ORDER BY a.seq LIMIT ?4";

constexpr char kListEvents[] =
    "SELECT sequence, payload, hash FROM events WHERE enrollment_key = "
    "(SELECT key FROM enrollments WHERE tenant = ? AND id = ?) AND sequence "
    ">= ? ORDER BY sequence LIMIT ?";

TEST(SqliteLayoutTest, QueriesSearchIndexes) {
  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = OpenIn(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  struct Case {
    const char* sql;
    const char* plan;
  } const cases[] = {
      {"SELECT snapshot FROM enrollments WHERE tenant = ? AND id = ?",
       "SEARCH enrollments USING INDEX sqlite_autoindex_enrollments_1 "
       "(tenant=? AND id=?)"},
      // ListEvents (schema 6: from the row before the page, whose hash is
      // the first event's prev_hash; schema 8: by the enrollment's key).
      {kListEvents,
       "SEARCH events USING INDEX sqlite_autoindex_events_1 (enrollment_key=? "
       "AND sequence>?)"},
      {kListEvents,
       "SEARCH enrollments USING COVERING INDEX sqlite_autoindex_enrollments_1 "
       "(tenant=? AND id=?)"},
      // Appending an event: its enrollment's key from the row just written.
      {"INSERT INTO events (enrollment_key, sequence, payload, hash) SELECT "
       "key, ?, ?, ? FROM enrollments WHERE tenant = ? AND id = ?",
       "SEARCH enrollments USING COVERING INDEX sqlite_autoindex_enrollments_1 "
       "(tenant=? AND id=?)"},
      // A request record by its request id's key (schema 7).
      {"SELECT method, payload_hash, response, create_time_us FROM requests "
       "WHERE key = ? AND tenant = ? AND request_id = ?",
       "SEARCH requests USING INDEX sqlite_autoindex_requests_1 (key=?)"},
      {"SELECT key FROM request_keys WHERE key = ?",
       "SEARCH request_keys USING INTEGER PRIMARY KEY (rowid=?)"},
      // Pruning: the oldest records (the head of the table in rowid
      // order), each leaving its key.
      {"DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests "
       "ORDER BY rowid LIMIT ?2) AND create_time_us < ?1",
       "SEARCH requests USING INTEGER PRIMARY KEY (rowid=?)"},
      {"INSERT OR IGNORE INTO request_keys (key) SELECT key FROM requests "
       "WHERE rowid IN (SELECT rowid FROM requests ORDER BY rowid LIMIT ?2) "
       "AND create_time_us < ?1",
       "SEARCH requests USING INTEGER PRIMARY KEY (rowid=?)"},
      // A cancelled outbox row is found by its key's digest (schema 7).
      {"UPDATE outbox SET status = 3, lease_owner = NULL WHERE key_digest = ? "
       "AND tenant = ? AND enrollment_id = ? AND idempotency_key = ? AND "
       "status IN (0, 5)",
       "SEARCH outbox USING INDEX sqlite_autoindex_outbox_1 (key_digest=?)"},
      {"SELECT revision FROM enrollments WHERE tenant = ? AND id = ?",
       "SEARCH enrollments USING INDEX sqlite_autoindex_enrollments_1 "
       "(tenant=? AND id=?)"},
      {"SELECT id FROM enrollments WHERE tenant = ? ORDER BY create_time_us, "
       "id LIMIT ?",
       "SEARCH enrollments USING COVERING INDEX enrollments_by_create_time "
       "(tenant=?)"},
      {"SELECT snapshot FROM enrollments WHERE tenant = ? AND patient_ref = ? "
       "ORDER BY create_time_us, id LIMIT ?",
       "SEARCH enrollments USING INDEX enrollments_by_patient (tenant=? AND "
       "patient_ref=?)"},
      {"SELECT snapshot FROM enrollments WHERE tenant = ? AND clinician_ref = "
       "? "
       "ORDER BY create_time_us, id LIMIT ?",
       "SEARCH enrollments USING INDEX enrollments_by_clinician (tenant=? "
       "AND clinician_ref=?)"},
      // ListAudit: optional filters, read in seq order from a position;
      // each record's prev_hash is its predecessor's hash, found by key.
      {kListAudit, "SEARCH a USING INTEGER PRIMARY KEY (rowid>?)"},
      {kListAudit, "SEARCH p USING INTEGER PRIMARY KEY (rowid=?)"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> plan = (*store)->QueryPlan(c.sql);
    ASSERT_TRUE(plan.ok()) << plan.status() << " " << c.sql;
    EXPECT_THAT(*plan, HasSubstr(c.plan)) << c.sql;
    EXPECT_THAT(*plan, Not(HasSubstr("SCAN enrollments"))) << c.sql;
    EXPECT_THAT(*plan, Not(HasSubstr("SCAN events"))) << c.sql;
    EXPECT_THAT(*plan, Not(HasSubstr("SCAN audit"))) << c.sql;
    EXPECT_THAT(*plan, Not(HasSubstr("SCAN outbox"))) << c.sql;
    EXPECT_THAT(*plan, Not(HasSubstr("SCAN a"))) << c.sql;
    EXPECT_THAT(*plan, Not(HasSubstr("SCAN p"))) << c.sql;
  }
}

// The metrics' enrollment counts read the covering index, not every row
// of the table, and need no sort.
TEST(SqliteLayoutTest, EnrollmentCountsReadTheStageIndex) {
  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = OpenIn(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<std::string> plan = (*store)->QueryPlan(kEnrollmentCountsSql);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(*plan, HasSubstr("SCAN enrollments USING COVERING INDEX "
                               "enrollments_by_stage"));
  EXPECT_THAT(*plan, Not(HasSubstr("TEMP B-TREE")));
}

// Stored forms: large values are deflated, small ones kept, values that
// start with a zero byte escaped; every form reads back to the value, and a
// damaged deflated form is DATA_LOSS, never other bytes.
TEST(BlobCodecTest, EveryValueReadsBack) {
  const std::string text(2000, 'a');
  const std::string zeros(3000, '\0');
  for (const std::string& value :
       {std::string(), std::string("\x0a\x01x", 3), text, zeros,
        std::string("\0\x01short", 7), std::string(1, '\0')}) {
    std::string stored = PackBlob(value);
    absl::StatusOr<std::string> back = UnpackBlob(stored, "a value");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == value) << value.size();
  }
  EXPECT_LT(PackBlob(text).size(), 100u);
  EXPECT_EQ(PackBlob("\x0a\x01x"), "\x0a\x01x");
  std::string damaged = PackBlob(text);
  damaged[damaged.size() / 2] ^= 0x55;
  EXPECT_EQ(UnpackBlob(damaged, "a snapshot").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(UnpackBlob(std::string("\0\x01", 2), "a snapshot").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(
      UnpackBlob(std::string("\0\x03\x05", 3), "a snapshot").status().code(),
      absl::StatusCode::kDataLoss);
}

// Values are written with zstd and dictionary 2 (schema 9): the stored
// frame, with zstd's magic number put back, decompresses with the
// dictionary through zstd itself and not without it, whichever level wrote
// it. Both dictionaries are frozen (a changed byte would make every value
// stored with it unreadable), so they are pinned here: dictionary 1 by its
// Adler-32 (the id zlib writes), dictionary 2 by its SHA-256, its zstd id,
// and its content, which is dictionary 1. The older forms still read:
// deflated with dictionary 1 (schemas 5 to 8), deflated without one
// (schema 4's snapshots and responses); a stream that names another
// dictionary is DATA_LOSS.
TEST(BlobCodecTest, DictionaryIsPinnedAndOlderFormsRead) {
  EXPECT_EQ(BlobDictionaryId(), 0x6c9a11f0u);
  EXPECT_EQ(adler32(adler32(0, nullptr, 0),
                    reinterpret_cast<const Bytef*>(BlobDictionary().data()),
                    BlobDictionary().size()),
            0x6c9a11f0u);
  const absl::string_view zstd_dictionary = BlobZstdDictionary();
  EXPECT_EQ(Sha256Hex(zstd_dictionary),
            "523be60a6d4a4faff87bc668090bbe0fef37dce4774b79810f767cc05ff0ceae");
  EXPECT_EQ(ZDICT_getDictID(zstd_dictionary.data(), zstd_dictionary.size()),
            2u);
  const size_t header =
      ZDICT_getDictHeaderSize(zstd_dictionary.data(), zstd_dictionary.size());
  ASSERT_FALSE(ZDICT_isError(header));
  EXPECT_TRUE(zstd_dictionary.substr(header) == BlobDictionary());

  std::string value;
  for (int i = 0; i < 40; ++i) {
    absl::StrAppend(&value, "initial.srm-diary#", i, " clinician_form ");
  }
  for (BlobLifetime lifetime :
       {BlobLifetime::kKept, BlobLifetime::kOverwritten}) {
    const std::string stored = PackBlob(value, lifetime);
    ASSERT_EQ(stored.substr(0, 2), std::string("\0\x03", 2));
    EXPECT_EQ(*UnpackBlob(stored, "a value"), value);
    // 0x00 0x03, the size as a varint (2 bytes here), then the frame.
    ASSERT_EQ(static_cast<unsigned char>(stored[2]),
              (value.size() & 0x7f) | 0x80);
    ASSERT_EQ(static_cast<size_t>(stored[3]), value.size() >> 7);
    const std::string frame =
        absl::StrCat(std::string("\x28\xb5\x2f\xfd", 4), stored.substr(4));
    std::string out(value.size() + 16, '\0');
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    const size_t n = ZSTD_decompress_usingDict(
        dctx, out.data(), out.size(), frame.data(), frame.size(),
        zstd_dictionary.data(), zstd_dictionary.size());
    ASSERT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
    EXPECT_EQ(out.substr(0, n), value);
    EXPECT_TRUE(ZSTD_isError(ZSTD_decompress_usingDict(
        dctx, out.data(), out.size(), frame.data(), frame.size(), nullptr, 0)));
    ZSTD_freeDCtx(dctx);
  }

  // Deflates `value` in zlib's format: with `dictionary` unless empty.
  auto deflated = [&](absl::string_view dictionary) {
    z_stream z{};
    EXPECT_EQ(deflateInit(&z, Z_DEFAULT_COMPRESSION), Z_OK);
    if (!dictionary.empty()) {
      EXPECT_EQ(deflateSetDictionary(
                    &z, reinterpret_cast<const Bytef*>(dictionary.data()),
                    dictionary.size()),
                Z_OK);
    }
    std::string form("\0\x01", 2);
    form.push_back(static_cast<char>((value.size() & 0x7f) | 0x80));
    form.push_back(static_cast<char>(value.size() >> 7));
    std::string stream(deflateBound(&z, value.size()), '\0');
    z.next_in = reinterpret_cast<Bytef*>(value.data());
    z.avail_in = value.size();
    z.next_out = reinterpret_cast<Bytef*>(stream.data());
    z.avail_out = stream.size();
    EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
    stream.resize(z.total_out);
    deflateEnd(&z);
    return absl::StrCat(form, stream);
  };
  // Schemas 5 to 8: zlib with the dictionary, named in its header (CMF, FLG
  // with FDICT set, the dictionary's Adler-32).
  const std::string schema8 = deflated(BlobDictionary());
  EXPECT_NE(schema8[5] & 0x20, 0);
  EXPECT_EQ(absl::BytesToHexString(schema8.substr(6, 4)), "6c9a11f0");
  // Schema 4: no dictionary.
  for (const std::string& old_form : {schema8, deflated("")}) {
    absl::StatusOr<std::string> back = UnpackBlob(old_form, "an old snapshot");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, value);
  }
  // Deflated with a dictionary this build does not have.
  absl::StatusOr<std::string> refused =
      UnpackBlob(deflated("some other dictionary"), "a snapshot");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
}

// A damaged compressed value never reads as other bytes, wherever the
// damage is: in the recorded size, the frame's header, its compressed
// blocks or its checksum (without which a changed literal would decompress
// to other bytes of the same size), or a cut-off frame. It is DATA_LOSS,
// or, where the changed bit carries no information the decoder needs (a
// larger window than the value uses, an unused bit of a table's
// description), the value itself.
TEST(BlobCodecTest, DamageToACompressedValueNeverReadsAsOtherBytes) {
  std::string value;
  for (int i = 0; i < 30; ++i) {
    absl::StrAppend(&value, "session_held at stage maintenance ", i * 7919,
                    " ");
  }
  const std::string stored = PackBlob(value);
  ASSERT_EQ(stored.substr(0, 2), std::string("\0\x03", 2));
  ASSERT_EQ(*UnpackBlob(stored, "a value"), value);
  int refused = 0, same = 0;
  for (size_t i = 2; i < stored.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80}) {
      std::string damaged = stored;
      damaged[i] = static_cast<char>(damaged[i] ^ flip);
      absl::StatusOr<std::string> back = UnpackBlob(damaged, "a snapshot");
      if (back.ok()) {
        EXPECT_TRUE(*back == value)
            << "byte " << i << " ^ " << int{flip} << " read as other bytes";
        ++same;
        continue;
      }
      EXPECT_EQ(back.status().code(), absl::StatusCode::kDataLoss);
      EXPECT_THAT(back.status().message(), HasSubstr("a snapshot is damaged"));
      ++refused;
    }
  }
  // Most changes are refused outright.
  EXPECT_GT(refused, 10 * same) << refused << " refused, " << same << " same";
  EXPECT_EQ(UnpackBlob(stored.substr(0, stored.size() - 1), "a snapshot")
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

// CommitOneEvent creates enrollment t1/a with one event of `payload` (and
// `hash`, unless empty) in a store on dir/ipsrt.db, reads the event back
// into *read and closes the store.
void CommitOneEvent(const testing::TempDir& dir, const std::string& payload,
                    const std::string& hash, EventRow* read) {
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = OpenIn(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  WriteBatch batch = testing::CreateBatch("t1", "a", "r1");
  batch.events[0].payload = payload;
  if (!hash.empty()) batch.events[0].hash = hash;
  ASSERT_TRUE((*store)->Commit(std::move(batch)).ok());
  absl::StatusOr<std::vector<EventRow>> events =
      (*store)->ListEvents("t1", "a", 0, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  *read = events->front();
  (*store)->Close();
}

// Event payloads are kept packed in the table, and the store reads them
// back as the bytes that were hashed.
TEST(BlobCodecTest, EventPayloadsAreStoredPackedAndReadBack) {
  testing::TempDir dir;
  std::string payload;
  for (int i = 0; i < 30; ++i) {
    absl::StrAppend(&payload, "TASK_OPENED initial.baseline-phq9#", i, " ");
  }
  EventRow read;
  ASSERT_NO_FATAL_FAILURE(CommitOneEvent(dir, payload, "", &read));
  EXPECT_EQ(read.payload, payload);
  Db db(dir.File("ipsrt.db"));
  EXPECT_EQ(db.Scalar("SELECT hex(substr(payload, 1, 2)) FROM events"), "0003");
  EXPECT_LT(std::stoi(db.Scalar("SELECT length(payload) FROM events")),
            static_cast<int>(payload.size()) / 4);
}

// DeterministicBytesForTest is how the engine serializes an event: map
// entries in key order (the store itself does not depend on the core).
std::string DeterministicBytesForTest(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// An event payload is stored without its own hash field, which the row's
// hash column holds, whenever putting it back gives the same bytes; any
// other payload is stored whole, and both read back byte for byte.
TEST(BlobCodecTest, EventPayloadsLeaveOutTheirHashField) {
  v1::Event event;
  event.set_sequence(7);
  event.set_type("srm_diary_day");
  event.mutable_actor()->set_subject("patient-1");
  event.mutable_record_time()->set_seconds(1790000000);
  event.set_request_id("r7");
  event.set_summary("diary day");
  const std::string hash(
      "5f2a9c0d8e7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877");
  event.set_hash(hash);
  (*event.mutable_scores())["srm.score"] = 4.2;
  event.add_flags("late");
  const std::string payload = DeterministicBytesForTest(event);

  const std::string stored = StoredEventPayload(payload, hash);
  EXPECT_EQ(absl::BytesToHexString(stored.substr(0, 2)), "0002");
  absl::StatusOr<std::string> inner = UnpackBlob(stored.substr(2), "inner");
  ASSERT_TRUE(inner.ok()) << inner.status();
  EXPECT_THAT(*inner, Not(HasSubstr(hash)));
  EXPECT_EQ(inner->size(), payload.size() - hash.size() - 2);
  absl::StatusOr<std::string> back = EventPayloadFromStored(stored, hash);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, payload);

  // Stored whole: a hash field that is not the row's hash, one that comes
  // before a lower-numbered field, one given twice, and bytes that are not
  // a message.
  v1::Event other = event;
  other.set_hash(std::string(64, 'a'));
  const std::string moved =
      absl::StrCat(std::string("\x42\x40", 2), hash, payload.substr(0, 2));
  const std::string twice =
      absl::StrCat(payload, std::string("\x42\x40", 2), hash);
  for (const std::string& whole :
       {DeterministicBytesForTest(other), moved, twice,
        absl::StrCat("\x42\xff\x01", " not a message")}) {
    const std::string kept = StoredEventPayload(whole, hash);
    EXPECT_NE(absl::BytesToHexString(kept.substr(0, 2)), "0002");
    absl::StatusOr<std::string> read = EventPayloadFromStored(kept, hash);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(*read, whole);
  }

  // A stored form cut short is DATA_LOSS, never another event.
  EXPECT_EQ(EventPayloadFromStored(stored.substr(0, stored.size() / 2), hash)
                .status()
                .code(),
            absl::StatusCode::kDataLoss);

  // Through the store: the column holds the short form, reads give the
  // payload.
  testing::TempDir dir;
  EventRow read;
  ASSERT_NO_FATAL_FAILURE(CommitOneEvent(dir, payload, hash, &read));
  EXPECT_EQ(read.payload, payload);
  EXPECT_EQ(read.hash, hash);
  Db db(dir.File("ipsrt.db"));
  EXPECT_EQ(db.Scalar("SELECT hex(substr(payload, 1, 2)) FROM events"), "0002");
  EXPECT_EQ(db.Scalar("SELECT length(hash) FROM events"), "32");
}

// A request record's method (schema 8): the methods that write records as
// a two-letter code, any other kept as it is (marked when it could be
// mistaken for a code), and every form reads back as the value given,
// including the whole names of records written before.
TEST(BlobCodecTest, RequestMethodsAreStoredAsCodes) {
  EXPECT_EQ(StoredRequestMethod("SubmitEvent"), "/s");
  EXPECT_EQ(StoredRequestMethod("CreateEnrollment"), "/c");
  EXPECT_EQ(RequestMethodFromStored("SubmitEvent"), "SubmitEvent");
  for (const char* method :
       {"CreateEnrollment", "SubmitEvent", "AckReminder", "UpdateEnrollment",
        "MigrateEnrollments", "PushEnrollment", "SubmitEvents", "/s", "=x", "/",
        "=", "", "Other"}) {
    EXPECT_EQ(RequestMethodFromStored(StoredRequestMethod(method)), method)
        << method;
  }
}

// An audit record's rpc and resource are stored without the prefixes the
// API and the row's tenant give them, and (schema 8) with the API's service
// or the enrollments collection as a two-letter code; every other value is
// kept whole, and every stored form reads back as the value given. The
// forms of schemas 6 and 7 still read as they did.
TEST(BlobCodecTest, AuditRpcAndResourceAreStoredShort) {
  EXPECT_EQ(StoredAuditRpc("/ipsrt.v1.EnrollmentService/SubmitEvent"),
            "/eSubmitEvent");
  EXPECT_EQ(StoredAuditRpc("/ipsrt.v1.AuditService/ListAudit"), "/aListAudit");
  EXPECT_EQ(
      StoredAuditRpcBeforeSchema8("/ipsrt.v1.EnrollmentService/SubmitEvent"),
      "EnrollmentService/SubmitEvent");
  EXPECT_EQ(StoredAuditResource("t1", "tenants/t1/enrollments/e1"), "/ee1");
  EXPECT_EQ(AuditRpcFromStored("EnrollmentService/SubmitEvent"),
            "/ipsrt.v1.EnrollmentService/SubmitEvent");
  EXPECT_EQ(AuditResourceFromStored("t1", "enrollments/e1"),
            "tenants/t1/enrollments/e1");
  for (const char* rpc :
       {"/ipsrt.v1.EnrollmentService/SubmitEvent", "/ipsrt.v1.", "/ipsrt.v1./x",
        "/ipsrt.v1.=x", "/grpc.health.v1.Health/Check", "GetEnrollment",
        "=already marked", "", "/ipsrt.v10.X/Y", "/ipsrt.v1.EnrollmentService/",
        "/ipsrt.v1.EnrollmentServiceX/Y",
        "/ipsrt.v1.WorkflowService/ValidateWorkflow", "/ipsrt.v1./eX",
        "/eSubmitEvent"}) {
    EXPECT_EQ(AuditRpcFromStored(StoredAuditRpc(rpc)), rpc) << rpc;
  }
  for (const char* tenant : {"t1", "", "t"}) {
    for (const char* resource :
         {"tenants/t1/enrollments/e1", "tenants/t1/", "tenants/t1//x",
          "tenants/t1/=x", "tenants/t10/enrollments/e1", "workflows/x", "",
          "=x", "tenants/t", "tenants/t1/enrollments/",
          "tenants/t1/enrollmentsX", "tenants/t1//ee1", "/ee1"}) {
      EXPECT_EQ(AuditResourceFromStored(tenant,
                                        StoredAuditResource(tenant, resource)),
                resource)
          << tenant << " " << resource;
    }
  }

  // Through the store, and a filter on the rpc finds the stored form.
  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = OpenIn(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  WriteBatch read;
  read.audit.push_back(
      AuditRecord{.tenant = "t1",
                  .subject = "alice",
                  .role = "clinician",
                  .rpc = "/ipsrt.v1.EnrollmentService/GetEnrollment",
                  .resource = "tenants/t1/enrollments/e1",
                  .outcome = "OK",
                  .time = absl::FromUnixSeconds(1790000000)});
  ASSERT_TRUE((*store)->Commit(read).ok());
  // The filter finds the one record, read back as written.
  auto expect_found = [&store] {
    absl::StatusOr<std::vector<AuditRecord>> all = (*store)->ListAudit(
        AuditFilter{.rpc = "/ipsrt.v1.EnrollmentService/GetEnrollment"}, 0, 10);
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->size(), 1u);
    EXPECT_EQ(all->front().rpc, "/ipsrt.v1.EnrollmentService/GetEnrollment");
    EXPECT_EQ(all->front().resource, "tenants/t1/enrollments/e1");
    EXPECT_EQ(all->front().hash, AuditRecordHash(all->front()));
    (*store)->Close();
  };
  ASSERT_NO_FATAL_FAILURE(expect_found());
  {
    Db db(dir.File("ipsrt.db"));
    EXPECT_EQ(db.Scalar("SELECT rpc || ' ' || resource FROM audit"),
              "/eGetEnrollment /ee1");
    // The record as a schema-7 ipsrtd stored it.
    db.Exec(
        "UPDATE audit SET rpc = 'EnrollmentService/GetEnrollment', resource "
        "= 'enrollments/e1'");
  }
  store = OpenIn(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_NO_FATAL_FAILURE(expect_found());
}

}  // namespace
}  // namespace ipsrt
