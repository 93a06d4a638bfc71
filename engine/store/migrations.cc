#include "store/migrations.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace ipsrt {
namespace {

enum class Dialect { kSqlite, kPostgres };

// The column lists of the tables that SQLite's migration 4 rebuilds, as
// migration 1 created them (the rebuild keeps every column).
constexpr char kEnrollmentColumns[] = R"sql(  tenant TEXT NOT NULL,
  id TEXT NOT NULL,
  patient_ref TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  workflow_version INTEGER NOT NULL,
  stage TEXT NOT NULL,
  clinician_ref TEXT NOT NULL,
  state INTEGER NOT NULL,
  revision {INT64} NOT NULL CHECK (revision >= 1),
  snapshot {BLOB} NOT NULL,
  create_time_us {INT64} NOT NULL,
  update_time_us {INT64} NOT NULL,
  PRIMARY KEY (tenant, id))sql";

constexpr char kEventColumns[] = R"sql(  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  sequence {INT64} NOT NULL CHECK (sequence >= 1),
  type TEXT NOT NULL,
  actor TEXT NOT NULL,
  request_id TEXT NOT NULL,
  record_time_us {INT64} NOT NULL,
  payload {BLOB} NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (tenant, enrollment_id, sequence),
  FOREIGN KEY (tenant, enrollment_id) REFERENCES enrollments (tenant, id))sql";

constexpr char kRequestColumns[] = R"sql(  tenant TEXT NOT NULL,
  request_id TEXT NOT NULL,
  method TEXT NOT NULL,
  payload_hash TEXT NOT NULL,
  response {BLOB} NOT NULL,
  create_time_us {INT64} NOT NULL,
  PRIMARY KEY (tenant, request_id))sql";

// Migrations 1 to 3, the same in both dialects but for type names. Times
// are microseconds since the Unix epoch, UTC. Every table carries the
// tenant so that isolation is a key prefix, not an afterthought.
constexpr char kMigration1[] = R"sql(
CREATE TABLE enrollments (
{ENROLLMENT_COLUMNS}
){WITHOUT_ROWID};
CREATE INDEX enrollments_by_create_time
  ON enrollments (tenant, create_time_us, id);
CREATE INDEX enrollments_by_patient ON enrollments (tenant, patient_ref);
CREATE INDEX enrollments_by_clinician ON enrollments (tenant, clinician_ref);

CREATE TABLE events (
{EVENT_COLUMNS}
){WITHOUT_ROWID};

-- Side effects to perform after commit (transactional outbox). status:
-- 0 scheduled, 1 claimed, 2 done, 3 cancelled, 4 failed.
CREATE TABLE outbox (
  id {AUTO_ID},
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  due_time_us {INT64} NOT NULL,
  payload {BLOB} NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  status INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  lease_owner TEXT,
  lease_expiry_us {INT64},
  create_time_us {INT64} NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, due_time_us);
CREATE INDEX outbox_by_enrollment ON outbox (tenant, enrollment_id);

-- Idempotency: the first response of every mutating request.
CREATE TABLE requests (
{REQUEST_COLUMNS}
){WITHOUT_ROWID};

-- Append-only, hash-chained record of who read or changed what.
CREATE TABLE audit (
  seq {INT64} PRIMARY KEY,
  tenant TEXT NOT NULL,
  subject TEXT NOT NULL,
  role TEXT NOT NULL,
  rpc TEXT NOT NULL,
  resource TEXT NOT NULL,
  outcome TEXT NOT NULL,
  time_us {INT64} NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_by_tenant_time ON audit (tenant, time_us);
)sql";

constexpr char kMigration2[] = R"sql(
-- Delivery of outbox rows (engine/reminders/dispatcher.h). Statuses beyond
-- those of migration 1: 5 retry wait (claimable again at lease_expiry_us),
-- 6 acknowledged. change_seq orders delivered, failed, cancelled-at-claim
-- and acknowledged rows for WatchReminders; outbox_feed holds the last
-- position handed out.
ALTER TABLE outbox ADD COLUMN change_seq {INT64};
ALTER TABLE outbox ADD COLUMN last_error TEXT;
-- Claimed rows whose lease expired and retries whose time came are found
-- by a range scan, like scheduled rows through outbox_due.
CREATE INDEX outbox_lease ON outbox (status, lease_expiry_us);
CREATE INDEX outbox_changes ON outbox (tenant, change_seq)
  WHERE change_seq IS NOT NULL;
CREATE INDEX outbox_by_tenant_due ON outbox (tenant, due_time_us, id);
CREATE TABLE outbox_feed (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_seq {INT64} NOT NULL
);
INSERT INTO outbox_feed VALUES (1, 0);
)sql";

constexpr char kMigration3[] = R"sql(
ALTER TABLE audit ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_by_subject ON audit (subject, seq);
)sql";

// Migration 4 differs in kind between the dialects; both end with the same
// columns, the request_keys table and the same indexes dropped.
constexpr char kMigration4Sqlite[] = R"sql(
-- Rows of a few KB (snapshots, first events, stored responses) in WITHOUT
-- ROWID tables spill into overflow pages of their own and pack badly
-- (SQLite keeps at most about 1 KB of such a row on a 4 KB page). These
-- three tables become rowid tables (up to about 4 KB on the page) with a
-- unique index on their natural key; the columns do not change. Each is
-- rebuilt in this migration's one transaction, so a crash leaves the old
-- layout or the new one, never a mix.
CREATE TABLE enrollments_v4 (
{ENROLLMENT_COLUMNS}
);
INSERT INTO enrollments_v4 (tenant, id, patient_ref, workflow_id,
    workflow_version, stage, clinician_ref, state, revision, snapshot,
    create_time_us, update_time_us)
  SELECT tenant, id, patient_ref, workflow_id, workflow_version, stage,
    clinician_ref, state, revision, snapshot, create_time_us, update_time_us
  FROM enrollments ORDER BY create_time_us, id;
DROP TABLE enrollments;
ALTER TABLE enrollments_v4 RENAME TO enrollments;
CREATE INDEX enrollments_by_create_time
  ON enrollments (tenant, create_time_us, id);
-- ListEnrollments filters on a patient or clinician and pages in
-- (create_time_us, id) order; with the order in these indexes SQLite
-- searches them (schema 3's two-column ones lost to the create-time index,
-- a scan of the tenant, so they held bytes that no query read).
CREATE INDEX enrollments_by_patient
  ON enrollments (tenant, patient_ref, create_time_us, id);
CREATE INDEX enrollments_by_clinician
  ON enrollments (tenant, clinician_ref, create_time_us, id);

CREATE TABLE events_v4 (
{EVENT_COLUMNS}
);
INSERT INTO events_v4 (tenant, enrollment_id, sequence, type, actor,
    request_id, record_time_us, payload, prev_hash, hash)
  SELECT tenant, enrollment_id, sequence, type, actor, request_id,
    record_time_us, payload, prev_hash, hash
  FROM events ORDER BY record_time_us, tenant, enrollment_id, sequence;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;

-- Kept for store.request_retention (default 7 days), oldest first in
-- rowid order, which is what the pruning at write reads.
CREATE TABLE requests_v4 (
{REQUEST_COLUMNS}
);
INSERT INTO requests_v4 (tenant, request_id, method, payload_hash,
    response, create_time_us)
  SELECT tenant, request_id, method, payload_hash, response, create_time_us
  FROM requests ORDER BY create_time_us;
DROP TABLE requests;
ALTER TABLE requests_v4 RENAME TO requests;

-- Every request id ever committed, as the first 8 bytes of
-- SHA-256(tenant "\n" request_id): a retry after its record was pruned is
-- refused, never applied again. About 13 bytes a request.
CREATE TABLE request_keys (
  key INTEGER PRIMARY KEY
);
INSERT OR IGNORE INTO request_keys (key)
  SELECT ipsrt_request_key(tenant, request_id) FROM requests;
{DROP_UNREAD_INDEXES})sql";

constexpr char kMigration4Postgres[] = R"sql(
-- Every event rewrites its enrollment's row. With room left on each page
-- (fillfactor) the new version goes on the same page as a HOT update (no
-- index column changes), and the old one is pruned there, instead of the
-- table growing by a row version per event until VACUUM. Applies to pages
-- written from now on.
ALTER TABLE enrollments SET (fillfactor = 80);
-- Snapshots and responses are written deflated from schema 4 on
-- (engine/store/blob_codec.h): PostgreSQL itself compresses only rows over
-- about 2 KB, which most of these are not.

-- Kept for store.request_retention (default 7 days); pruned oldest first.
CREATE INDEX requests_by_time ON requests (create_time_us);

-- Every request id ever committed, as the first 8 bytes of
-- SHA-256(tenant "\n" request_id): a retry after its record was pruned is
-- refused, never applied again (SQLite's migration 4 computes the same).
CREATE TABLE request_keys (
  key BIGINT PRIMARY KEY
);
INSERT INTO request_keys (key)
  SELECT ('x' || substr(encode(sha256(convert_to(
      tenant || E'\n' || request_id, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint
  FROM requests
  ON CONFLICT (key) DO NOTHING;
{DROP_UNREAD_INDEXES})sql";

constexpr char kDropUnreadIndexes[] = R"sql(
-- No query reads through these: outbox rows are never looked up by
-- enrollment, and ListAudit's optional filters scan audit in seq order.
DROP INDEX outbox_by_enrollment;
DROP INDEX audit_by_tenant_time;
DROP INDEX audit_by_subject;
)sql";

// Migration 5: digests (event and audit hashes, request payload hashes)
// as their 32 bytes instead of 64 hex digits, and outbox idempotency keys
// without their enrollment's name, which the row's own columns hold
// (store/blob_codec.h). Keys are unique per enrollment as before. {DIGEST:c}
// converts column c: a digest in lowercase hex to its bytes, any other value
// to the bytes of its text; {OUTBOX_KEY} strips the enrollment's name from
// a key that starts with it.
constexpr char kMigration5Sqlite[] = R"sql(
-- SQLite cannot change a column's type or drop a UNIQUE column constraint
-- in place: the four tables are rebuilt in this migration's one
-- transaction, so a crash leaves the old layout or the new one.
CREATE TABLE events_v5 (
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  sequence INTEGER NOT NULL CHECK (sequence >= 1),
  type TEXT NOT NULL,
  actor TEXT NOT NULL,
  request_id TEXT NOT NULL,
  record_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (tenant, enrollment_id, sequence),
  FOREIGN KEY (tenant, enrollment_id) REFERENCES enrollments (tenant, id)
);
INSERT INTO events_v5 (tenant, enrollment_id, sequence, type, actor,
    request_id, record_time_us, payload, prev_hash, hash)
  SELECT tenant, enrollment_id, sequence, type, actor, request_id,
    record_time_us, payload, {DIGEST:prev_hash}, {DIGEST:hash}
  FROM events ORDER BY rowid;
DROP TABLE events;
ALTER TABLE events_v5 RENAME TO events;

CREATE TABLE requests_v5 (
  tenant TEXT NOT NULL,
  request_id TEXT NOT NULL,
  method TEXT NOT NULL,
  payload_hash BLOB NOT NULL,
  response BLOB NOT NULL,
  create_time_us INTEGER NOT NULL,
  PRIMARY KEY (tenant, request_id)
);
INSERT INTO requests_v5 (tenant, request_id, method, payload_hash, response,
    create_time_us)
  SELECT tenant, request_id, method, {DIGEST:payload_hash}, response,
    create_time_us
  FROM requests ORDER BY rowid;
DROP TABLE requests;
ALTER TABLE requests_v5 RENAME TO requests;

CREATE TABLE audit_v5 (
  seq INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL,
  subject TEXT NOT NULL,
  role TEXT NOT NULL,
  rpc TEXT NOT NULL,
  resource TEXT NOT NULL,
  outcome TEXT NOT NULL,
  time_us INTEGER NOT NULL,
  request_id TEXT NOT NULL DEFAULT '',
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL
);
INSERT INTO audit_v5 (seq, tenant, subject, role, rpc, resource, outcome,
    time_us, request_id, prev_hash, hash)
  SELECT seq, tenant, subject, role, rpc, resource, outcome, time_us,
    request_id, {DIGEST:prev_hash}, {DIGEST:hash}
  FROM audit ORDER BY seq;
DROP TABLE audit;
ALTER TABLE audit_v5 RENAME TO audit;

CREATE TABLE outbox_v5 (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  due_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL,
  idempotency_key TEXT NOT NULL,
  status INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  lease_owner TEXT,
  lease_expiry_us INTEGER,
  create_time_us INTEGER NOT NULL,
  change_seq INTEGER,
  last_error TEXT,
  UNIQUE (tenant, enrollment_id, idempotency_key)
);
INSERT INTO outbox_v5 (id, tenant, enrollment_id, kind, due_time_us, payload,
    idempotency_key, status, attempts, lease_owner, lease_expiry_us,
    create_time_us, change_seq, last_error)
  SELECT id, tenant, enrollment_id, kind, due_time_us, payload, {OUTBOX_KEY},
    status, attempts, lease_owner, lease_expiry_us, create_time_us,
    change_seq, last_error
  FROM outbox ORDER BY id;
DROP TABLE outbox;
ALTER TABLE outbox_v5 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, due_time_us);
CREATE INDEX outbox_lease ON outbox (status, lease_expiry_us);
CREATE INDEX outbox_changes ON outbox (tenant, change_seq)
  WHERE change_seq IS NOT NULL;
CREATE INDEX outbox_by_tenant_due ON outbox (tenant, due_time_us, id);
{STAGE_INDEX})sql";

constexpr char kMigration5Postgres[] = R"sql(
-- Each ALTER TABLE rewrites its table once, inside this migration's
-- transaction.
ALTER TABLE events
  ALTER COLUMN prev_hash TYPE BYTEA USING {DIGEST:prev_hash},
  ALTER COLUMN hash TYPE BYTEA USING {DIGEST:hash};
ALTER TABLE requests
  ALTER COLUMN payload_hash TYPE BYTEA USING {DIGEST:payload_hash};
ALTER TABLE audit
  ALTER COLUMN prev_hash TYPE BYTEA USING {DIGEST:prev_hash},
  ALTER COLUMN hash TYPE BYTEA USING {DIGEST:hash};
ALTER TABLE outbox DROP CONSTRAINT outbox_idempotency_key_key;
UPDATE outbox SET idempotency_key = {OUTBOX_KEY};
ALTER TABLE outbox ADD CONSTRAINT outbox_key
  UNIQUE (tenant, enrollment_id, idempotency_key);
{STAGE_INDEX})sql";

// The metrics' enrollment counts (SqlCore::Stats) group every enrollment
// by workflow, version and stage; with this index they read it instead of
// every row of the table (a million enrollments: about 40 MB instead of
// 2 GB).
constexpr char kStageIndex[] = R"sql(
CREATE INDEX enrollments_by_stage
  ON enrollments (workflow_id, workflow_version, stage);
)sql";

// Migration 6: an event's row and an audit record keep what only they
// hold. The event payload (the serialized ipsrt.v1.Event) already holds the
// event's type, actor, request id and record time, so their columns go; an
// event's and an audit record's prev_hash is the hash of the row one
// sequence before, which reads take from there, so it goes too. An audit
// record's rpc and resource lose the prefixes every API method and the
// row's own tenant give them (store/blob_codec.h, StoredAuditRpc and
// StoredAuditResource; the CASEs below are the same rules). Payloads
// written from now on leave out their own hash field, which the row's hash
// column holds (store/blob_codec.h, StoredEventPayload); older payloads
// keep it and read as they are. Both dialects rebuild the two tables in
// this migration's one transaction (a dropped column would otherwise stay
// in PostgreSQL's old rows and cost every new row a null bitmap), so a
// crash leaves the old layout or the new one.
constexpr char kMigration6[] = R"sql(
CREATE TABLE events_v6 (
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  sequence {INT64} NOT NULL CHECK (sequence >= 1),
  payload {BLOB} NOT NULL,
  hash {BLOB} NOT NULL,
  {EVENTS_KEY} PRIMARY KEY (tenant, enrollment_id, sequence),
  {EVENTS_FK} FOREIGN KEY (tenant, enrollment_id)
    REFERENCES enrollments (tenant, id)
);
INSERT INTO events_v6 (tenant, enrollment_id, sequence, payload, hash)
  SELECT tenant, enrollment_id, sequence, payload, hash
  FROM events ORDER BY {EVENTS_ORDER};
DROP TABLE events;
ALTER TABLE events_v6 RENAME TO events;

CREATE TABLE audit_v6 (
  seq {INT64} {AUDIT_KEY} PRIMARY KEY,
  tenant TEXT NOT NULL,
  subject TEXT NOT NULL,
  role TEXT NOT NULL,
  rpc TEXT NOT NULL,
  resource TEXT NOT NULL,
  outcome TEXT NOT NULL,
  time_us {INT64} NOT NULL,
  request_id TEXT NOT NULL DEFAULT '',
  hash {BLOB} NOT NULL
);
INSERT INTO audit_v6 (seq, tenant, subject, role, rpc, resource, outcome,
    time_us, request_id, hash)
  SELECT seq, tenant, subject, role,
    CASE WHEN substr(rpc, 1, 10) = '/ipsrt.v1.' AND (length(rpc) = 10 OR
        substr(rpc, 11, 1) NOT IN ('=', '/'))
      THEN substr(rpc, 11) ELSE '=' || rpc END,
    CASE WHEN tenant <> '' AND
        substr(resource, 1, length('tenants/' || tenant || '/')) =
          'tenants/' || tenant || '/' AND
        (length(resource) = length('tenants/' || tenant || '/') OR
          substr(resource, length('tenants/' || tenant || '/') + 1, 1)
            NOT IN ('=', '/'))
      THEN substr(resource, length('tenants/' || tenant || '/') + 1)
      ELSE '=' || resource END,
    outcome, time_us, request_id, hash
  FROM audit ORDER BY seq;
DROP TABLE audit;
ALTER TABLE audit_v6 RENAME TO audit;
)sql";

// Migration 7: an outbox row's key is kept unique by a 16-byte digest of
// the tenant, enrollment id and stored key that starts with the enrollment
// id's first 6 bytes (store/blob_codec.h, OutboxKeyDigest), in place of the
// unique index over those three texts, whose entries (about 70 bytes each, one
// more for every status change of a row in PostgreSQL) made it the outbox's
// largest index. A request record is found by its request id's key
// (store/request_window.h, RequestKey; an 8-byte integer) instead of a unique
// index over the tenant and the request id. SQLite keeps the rowid in insertion
// order (so the records stay packed in the order they are written and are
// pruned from the head, as before) with a unique index on the key; PostgreSQL
// makes the key its primary key and prunes through requests_by_time. SQLite
// rebuilds the two tables in this migration's one transaction (a UNIQUE
// constraint cannot be changed in place); PostgreSQL adds the columns and swaps
// the constraints.
constexpr char kMigration7Sqlite[] = R"sql(
CREATE TABLE requests_v7 (
  tenant TEXT NOT NULL,
  request_id TEXT NOT NULL,
  method TEXT NOT NULL,
  payload_hash BLOB NOT NULL,
  response BLOB NOT NULL,
  create_time_us INTEGER NOT NULL,
  key INTEGER NOT NULL UNIQUE
);
INSERT INTO requests_v7 (tenant, request_id, method, payload_hash, response,
    create_time_us, key)
  SELECT tenant, request_id, method, payload_hash, response, create_time_us,
    ipsrt_request_key(tenant, request_id)
  FROM requests ORDER BY rowid;
DROP TABLE requests;
ALTER TABLE requests_v7 RENAME TO requests;

CREATE TABLE outbox_v7 (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  due_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL,
  idempotency_key TEXT NOT NULL,
  status INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  lease_owner TEXT,
  lease_expiry_us INTEGER,
  create_time_us INTEGER NOT NULL,
  change_seq INTEGER,
  last_error TEXT,
  key_digest BLOB NOT NULL UNIQUE
);
INSERT INTO outbox_v7 (id, tenant, enrollment_id, kind, due_time_us, payload,
    idempotency_key, status, attempts, lease_owner, lease_expiry_us,
    create_time_us, change_seq, last_error, key_digest)
  SELECT id, tenant, enrollment_id, kind, due_time_us, payload,
    idempotency_key, status, attempts, lease_owner, lease_expiry_us,
    create_time_us, change_seq, last_error,
    ipsrt_outbox_key_digest(tenant, enrollment_id, idempotency_key)
  FROM outbox ORDER BY id;
DROP TABLE outbox;
ALTER TABLE outbox_v7 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, due_time_us);
CREATE INDEX outbox_lease ON outbox (status, lease_expiry_us);
CREATE INDEX outbox_changes ON outbox (tenant, change_seq)
  WHERE change_seq IS NOT NULL;
CREATE INDEX outbox_by_tenant_due ON outbox (tenant, due_time_us, id);
)sql";

constexpr char kMigration7Postgres[] = R"sql(
ALTER TABLE requests ADD COLUMN key BIGINT;
UPDATE requests SET key = ('x' || substr(encode(sha256(convert_to(
    tenant || E'\n' || request_id, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint;
ALTER TABLE requests ALTER COLUMN key SET NOT NULL;
ALTER TABLE requests DROP CONSTRAINT requests_pkey;
ALTER TABLE requests ADD CONSTRAINT requests_pkey PRIMARY KEY (key);
ALTER TABLE outbox ADD COLUMN key_digest BYTEA;
UPDATE outbox SET key_digest = convert_to(substr(enrollment_id, 1, 6), 'UTF8')
  || substr(sha256(convert_to(
    tenant || E'\n' || enrollment_id || E'\n' || idempotency_key, 'UTF8')),
  1, 10);
ALTER TABLE outbox ALTER COLUMN key_digest SET NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT outbox_key;
ALTER TABLE outbox ADD CONSTRAINT outbox_key UNIQUE (key_digest);
)sql";

// Migration 8: events name their enrollment by a number. Every enrollment
// gets `key`, an integer unique across the store (assigned at insert and
// never changed), and an event's row holds that key instead of the tenant
// and the enrollment id: about 33 bytes fewer per row, and an events index
// entry of two integers instead of two texts and an integer (on PostgreSQL
// about 28 bytes instead of 60, and entries are inserted all over the index
// as every enrollment's log grows, which leaves its pages about two thirds
// full). In SQLite `key` is the rowid (INTEGER PRIMARY KEY, so VACUUM keeps
// it) with the tenant and id unique; PostgreSQL adds an identity column. Both
// rebuild events in this migration's one transaction, so a crash leaves the
// old layout or the new one.
constexpr char kMigration8Sqlite[] = R"sql(
CREATE TABLE enrollments_v8 (
  tenant TEXT NOT NULL,
  id TEXT NOT NULL,
  patient_ref TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  workflow_version INTEGER NOT NULL,
  stage TEXT NOT NULL,
  clinician_ref TEXT NOT NULL,
  state INTEGER NOT NULL,
  revision INTEGER NOT NULL CHECK (revision >= 1),
  snapshot BLOB NOT NULL,
  create_time_us INTEGER NOT NULL,
  update_time_us INTEGER NOT NULL,
  key INTEGER PRIMARY KEY,
  UNIQUE (tenant, id)
);
INSERT INTO enrollments_v8 (tenant, id, patient_ref, workflow_id,
    workflow_version, stage, clinician_ref, state, revision, snapshot,
    create_time_us, update_time_us, key)
  SELECT tenant, id, patient_ref, workflow_id, workflow_version, stage,
    clinician_ref, state, revision, snapshot, create_time_us, update_time_us,
    rowid
  FROM enrollments ORDER BY rowid;

CREATE TABLE events_v8 (
  enrollment_key INTEGER NOT NULL REFERENCES enrollments_v8 (key),
  sequence INTEGER NOT NULL CHECK (sequence >= 1),
  payload BLOB NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (enrollment_key, sequence)
);
INSERT INTO events_v8 (enrollment_key, sequence, payload, hash)
  SELECT e.key, v.sequence, v.payload, v.hash
  FROM events v JOIN enrollments_v8 e
    ON e.tenant = v.tenant AND e.id = v.enrollment_id
  ORDER BY v.rowid;
DROP TABLE events;
DROP TABLE enrollments;
ALTER TABLE enrollments_v8 RENAME TO enrollments;
ALTER TABLE events_v8 RENAME TO events;
CREATE INDEX enrollments_by_create_time
  ON enrollments (tenant, create_time_us, id);
CREATE INDEX enrollments_by_patient
  ON enrollments (tenant, patient_ref, create_time_us, id);
CREATE INDEX enrollments_by_clinician
  ON enrollments (tenant, clinician_ref, create_time_us, id);
CREATE INDEX enrollments_by_stage
  ON enrollments (workflow_id, workflow_version, stage);
)sql";

constexpr char kMigration8Postgres[] = R"sql(
ALTER TABLE enrollments ADD COLUMN key BIGINT GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE enrollments ADD CONSTRAINT enrollments_key UNIQUE (key);
CREATE TABLE events_v8 (
  enrollment_key BIGINT NOT NULL,
  sequence BIGINT NOT NULL CONSTRAINT events_v8_sequence_check
    CHECK (sequence >= 1),
  payload BYTEA NOT NULL,
  hash BYTEA NOT NULL,
  CONSTRAINT events_v8_pkey PRIMARY KEY (enrollment_key, sequence),
  CONSTRAINT events_v8_enrollment_key_fkey FOREIGN KEY (enrollment_key)
    REFERENCES enrollments (key)
);
INSERT INTO events_v8 (enrollment_key, sequence, payload, hash)
  SELECT e.key, v.sequence, v.payload, v.hash
  FROM events v JOIN enrollments e
    ON e.tenant = v.tenant AND e.id = v.enrollment_id
  ORDER BY e.key, v.sequence;
DROP TABLE events;
ALTER TABLE events_v8 RENAME TO events;
ALTER TABLE events RENAME CONSTRAINT events_v8_pkey TO events_pkey;
ALTER TABLE events RENAME CONSTRAINT events_v8_sequence_check
  TO events_sequence_check;
ALTER TABLE events RENAME CONSTRAINT events_v8_enrollment_key_fkey
  TO events_enrollment_key_fkey;
)sql";

std::string Render(Dialect dialect, const char* text);

// Render6 spells migration 6 in `dialect`. PostgreSQL names constraints
// after their table when they are made; the new tables' ones take the old
// names, which the dropped tables freed.
std::string Render6(Dialect dialect) {
  const bool sqlite = dialect == Dialect::kSqlite;
  return Render(
             dialect,
             absl::StrReplaceAll(
                 kMigration6,
                 {{"{EVENTS_KEY}", sqlite ? "" : "CONSTRAINT events_v6_pkey"},
                  {"{EVENTS_FK}",
                   sqlite ? "" : "CONSTRAINT events_v6_enrollment_fkey"},
                  {"{EVENTS_ORDER}",
                   sqlite ? "rowid" : "tenant, enrollment_id, sequence"},
                  {"{AUDIT_KEY}", sqlite ? "" : "CONSTRAINT audit_v6_pkey"}})
                 .c_str()) +
         (sqlite ? ""
                 : "ALTER TABLE events RENAME CONSTRAINT events_v6_pkey TO "
                   "events_pkey;\n"
                   "ALTER TABLE events RENAME CONSTRAINT "
                   "events_v6_enrollment_fkey TO "
                   "events_tenant_enrollment_id_fkey;\n"
                   "ALTER TABLE events RENAME CONSTRAINT "
                   "events_v6_sequence_check TO events_sequence_check;\n"
                   "ALTER TABLE audit RENAME CONSTRAINT audit_v6_pkey TO "
                   "audit_pkey;\n");
}

// Render5 spells migration 5's conversions in `dialect`.
std::string Render5(Dialect dialect, const char* text) {
  const bool sqlite = dialect == Dialect::kSqlite;
  std::string out = absl::StrReplaceAll(
      text,
      {{"{STAGE_INDEX}", kStageIndex},
       {"{OUTBOX_KEY}",
        "CASE WHEN substr(idempotency_key, 1, length('tenants/' || tenant || "
        "'/enrollments/' || enrollment_id || '/')) = 'tenants/' || tenant || "
        "'/enrollments/' || enrollment_id || '/' THEN substr(idempotency_key, "
        "length('tenants/' || tenant || '/enrollments/' || enrollment_id || "
        "'/') + 1) ELSE idempotency_key END"}});
  // {DIGEST:c} for each column c named in the text.
  for (size_t at; (at = out.find("{DIGEST:")) != std::string::npos;) {
    size_t end = out.find('}', at);
    std::string c = out.substr(at + 8, end - at - 8);
    out.replace(
        at, end - at + 1,
        sqlite
            ? absl::StrCat("ipsrt_digest(", c, ")")
            : absl::StrCat("CASE WHEN ", c, " ~ '^[0-9a-f]{64}$' THEN decode(",
                           c, ", 'hex') ELSE convert_to(", c, ", 'UTF8') END"));
  }
  return out;
}

// Render spells `text` in `dialect`: column blocks first, then type tokens.
std::string Render(Dialect dialect, const char* text) {
  const bool sqlite = dialect == Dialect::kSqlite;
  std::string blocks = absl::StrReplaceAll(
      text, {{"{ENROLLMENT_COLUMNS}", kEnrollmentColumns},
             {"{EVENT_COLUMNS}", kEventColumns},
             {"{REQUEST_COLUMNS}", kRequestColumns},
             {"{DROP_UNREAD_INDEXES}", kDropUnreadIndexes}});
  return absl::StrReplaceAll(
      blocks, {{"{INT64}", sqlite ? "INTEGER" : "BIGINT"},
               {"{BLOB}", sqlite ? "BLOB" : "BYTEA"},
               {"{AUTO_ID}", sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT"
                                    : "BIGINT GENERATED BY DEFAULT AS IDENTITY "
                                      "PRIMARY KEY"},
               // Rowid tables from migration 4 on (see its text).
               {"{WITHOUT_ROWID}", sqlite ? " WITHOUT ROWID" : ""}});
}

// Migration 9 changes no table: from it on, stored values are compressed
// with zstd (store/blob_codec.h), which an ipsrtd of schema 8 cannot read;
// the version it records makes such a binary refuse the database
// (RefuseNewerSchema) rather than report its new values as damaged.
constexpr char kMigration9[] = R"sql(
SELECT 9;
)sql";

// Migration 10: an outbox key's digest is led by the whole time part of its
// enrollment id (10 bytes, milliseconds) instead of its first 6 (a time that
// changes every 17 minutes), so a new enrollment's rows are appended to the
// unique index rather than written to random pages of it (OutboxKeyDigest,
// store/blob_codec.h): about 20 fewer pages in a group commit of 13
// creates. Every row's digest is recomputed.
//
// SQLite rebuilds the table (as migration 7 did) with the store's function:
// a rebuild writes new pages only, where an UPDATE of every row in place
// journals the old contents of every outbox page. It keeps the
// AUTOINCREMENT position, so no outbox id is ever handed out twice.
//
// PostgreSQL updates the rows in place, computing the same bytes in SQL
// (enrollment ids are ASCII, so substr's characters are bytes). The unique
// constraint holds throughout: a digest of one form never equals one of the
// other for a different row (their lengths differ unless the id is 6 bytes
// or shorter, when the two forms are the same). It then rebuilds the
// constraint's index with fillfactor 70: appended entries would otherwise
// fill its pages to 90 %, and the entries an enrollment's later events add
// under its prefix (new rows, and a new entry for every status change of a
// row) would split them (measured in bench/footprint.sh: 82 index bytes per
// event at 90 %, 27 at 70 %, against 41 under schema 9).
constexpr char kMigration10Sqlite[] = R"sql(
CREATE TABLE outbox_v10 (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  due_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL,
  idempotency_key TEXT NOT NULL,
  status INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  lease_owner TEXT,
  lease_expiry_us INTEGER,
  create_time_us INTEGER NOT NULL,
  change_seq INTEGER,
  last_error TEXT,
  key_digest BLOB NOT NULL UNIQUE
);
INSERT INTO outbox_v10 (id, tenant, enrollment_id, kind, due_time_us, payload,
    idempotency_key, status, attempts, lease_owner, lease_expiry_us,
    create_time_us, change_seq, last_error, key_digest)
  SELECT id, tenant, enrollment_id, kind, due_time_us, payload,
    idempotency_key, status, attempts, lease_owner, lease_expiry_us,
    create_time_us, change_seq, last_error,
    ipsrt_outbox_key_digest(tenant, enrollment_id, idempotency_key, 10)
  FROM outbox ORDER BY id;
UPDATE sqlite_sequence SET seq = max(seq,
    (SELECT seq FROM sqlite_sequence WHERE name = 'outbox'))
  WHERE name = 'outbox_v10'
    AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox');
DROP TABLE outbox;
ALTER TABLE outbox_v10 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, due_time_us);
CREATE INDEX outbox_lease ON outbox (status, lease_expiry_us);
CREATE INDEX outbox_changes ON outbox (tenant, change_seq)
  WHERE change_seq IS NOT NULL;
CREATE INDEX outbox_by_tenant_due ON outbox (tenant, due_time_us, id);
)sql";

constexpr char kMigration10Postgres[] = R"sql(
UPDATE outbox SET key_digest = convert_to(substr(enrollment_id, 1, 10), 'UTF8')
  || substr(sha256(convert_to(
    tenant || E'\n' || enrollment_id || E'\n' || idempotency_key, 'UTF8')),
  1, 10);
ALTER TABLE outbox DROP CONSTRAINT outbox_key;
ALTER TABLE outbox ADD CONSTRAINT outbox_key UNIQUE (key_digest)
  WITH (fillfactor = 70);
)sql";

std::vector<Migration>* MigrationsOf(Dialect d) {
  const bool sqlite = d == Dialect::kSqlite;
  return new std::vector<Migration>{
      {1, "enrollments, events, outbox, requests, audit",
       Render(d, kMigration1)},
      {2, "outbox delivery: leases, retries, change feed",
       Render(d, kMigration2)},
      {3, "audit: request id", Render(d, kMigration3)},
      {4,
       sqlite ? "storage footprint: rowid tables, request keys, fewer indexes"
              : "storage footprint: fillfactor, request keys, fewer indexes",
       Render(d, sqlite ? kMigration4Sqlite : kMigration4Postgres)},
      {5,
       "storage footprint: digests as bytes, outbox keys per enrollment; "
       "enrollments by stage",
       Render5(d, sqlite ? kMigration5Sqlite : kMigration5Postgres)},
      {6,
       "storage footprint: event and audit rows without what the payload or "
       "the row before holds",
       Render6(d)},
      {7, "storage footprint: outbox keys unique by digest, requests by key",
       Render(d, sqlite ? kMigration7Sqlite : kMigration7Postgres)},
      {8, "storage footprint: events keyed by an enrollment number",
       sqlite ? kMigration8Sqlite : kMigration8Postgres},
      {9, "stored values compressed with zstd (no change of tables)",
       kMigration9},
      {10, "outbox key digests led by their enrollment's creation time",
       sqlite ? kMigration10Sqlite : kMigration10Postgres},
  };
}

}  // namespace

const std::vector<Migration>& SqliteMigrations() {
  static const std::vector<Migration>* const kMigrations =
      MigrationsOf(Dialect::kSqlite);
  return *kMigrations;
}

const std::vector<Migration>& PostgresMigrations() {
  static const std::vector<Migration>* const kMigrations =
      MigrationsOf(Dialect::kPostgres);
  return *kMigrations;
}

absl::Status RefuseNewerSchema(int version) {
  if (version <= kSchemaVersion) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("store: database schema version ", version,
                   " is newer than this ipsrtd supports (", kSchemaVersion,
                   "); run a newer ipsrtd"));
}

void LogMigrationStart(int found, const Migration& m) {
  if (found == 0) return;
  IPSRT_LOG(INFO) << "store: applying migration " << m.version << " ("
                  << m.description << ")";
}

void LogMigrationsDone(int found, int now, absl::Time started) {
  if (found == 0 || found == now) return;
  IPSRT_LOG(INFO) << "store: schema " << found << " -> " << now << " in "
                  << absl::FormatDuration(absl::Trunc(absl::Now() - started,
                                                      absl::Milliseconds(1)));
}

const SchemaColumn& SchemaTable::Column(const char* column) const {
  for (const SchemaColumn& c : columns) {
    if (std::strcmp(c.name, column) == 0) return c;
  }
  std::abort();  // called with the names listed below only
}

const std::vector<SchemaTable>& SchemaTables() {
  using T = SchemaColumn::Type;
  static const auto* const kTables = new std::vector<SchemaTable>{
      {"enrollments",
       {{"tenant", T::kText},
        {"id", T::kText},
        {"patient_ref", T::kText},
        {"workflow_id", T::kText},
        {"workflow_version", T::kInt},
        {"stage", T::kText},
        {"clinician_ref", T::kText},
        {"state", T::kInt},
        {"revision", T::kInt},
        {"snapshot", T::kBytes},
        {"create_time_us", T::kInt},
        {"update_time_us", T::kInt},
        {"key", T::kInt}},
       {"tenant", "id"}},
      {"events",
       {{"enrollment_key", T::kInt},
        {"sequence", T::kInt},
        {"payload", T::kBytes},
        {"hash", T::kBytes}},
       {"enrollment_key", "sequence"}},
      {"outbox",
       {{"id", T::kInt},
        {"tenant", T::kText},
        {"enrollment_id", T::kText},
        {"kind", T::kText},
        {"due_time_us", T::kInt},
        {"payload", T::kBytes},
        {"idempotency_key", T::kText},
        {"status", T::kInt},
        {"attempts", T::kInt},
        {"lease_owner", T::kText, true},
        {"lease_expiry_us", T::kInt, true},
        {"create_time_us", T::kInt},
        {"change_seq", T::kInt, true},
        {"last_error", T::kText, true},
        {"key_digest", T::kBytes}},
       {"id"}},
      // One row (id 1): the last change-feed position handed out.
      {"outbox_feed", {{"id", T::kInt}, {"last_seq", T::kInt}}, {"id"}},
      {"requests",
       {{"tenant", T::kText},
        {"request_id", T::kText},
        {"method", T::kText},
        {"payload_hash", T::kBytes},
        {"response", T::kBytes},
        {"create_time_us", T::kInt},
        {"key", T::kInt}},
       {"key"}},
      // Keys of every request id committed (store/request_window.h).
      {"request_keys", {{"key", T::kInt}}, {"key"}},
      {"audit",
       {{"seq", T::kInt},
        {"tenant", T::kText},
        {"subject", T::kText},
        {"role", T::kText},
        {"rpc", T::kText},
        {"resource", T::kText},
        {"outcome", T::kText},
        {"time_us", T::kInt},
        {"request_id", T::kText},
        {"hash", T::kBytes}},
       {"seq"}},
  };
  return *kTables;
}

}  // namespace ipsrt
