#include "store/migrations.h"

namespace ipsrt {

const std::vector<Migration>& SqliteMigrations() {
  // Times are microseconds since the Unix epoch, UTC. Every table carries the
  // tenant so that isolation is a key prefix, not an afterthought.
  static const std::vector<Migration>* const kMigrations =
      new std::vector<Migration>{
          {1, "enrollments, events, outbox, requests, audit",
           R"sql(
CREATE TABLE enrollments (
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
  PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX enrollments_by_create_time
  ON enrollments (tenant, create_time_us, id);
CREATE INDEX enrollments_by_patient ON enrollments (tenant, patient_ref);
CREATE INDEX enrollments_by_clinician ON enrollments (tenant, clinician_ref);

CREATE TABLE events (
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  sequence INTEGER NOT NULL CHECK (sequence >= 1),
  type TEXT NOT NULL,
  actor TEXT NOT NULL,
  request_id TEXT NOT NULL,
  record_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (tenant, enrollment_id, sequence),
  FOREIGN KEY (tenant, enrollment_id) REFERENCES enrollments (tenant, id)
) WITHOUT ROWID;

-- Side effects to perform after commit (transactional outbox). status:
-- 0 scheduled, 1 claimed, 2 done, 3 cancelled, 4 failed.
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  due_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  status INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  lease_owner TEXT,
  lease_expiry_us INTEGER,
  create_time_us INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, due_time_us);
CREATE INDEX outbox_by_enrollment ON outbox (tenant, enrollment_id);

-- Idempotency: the first response of every mutating request.
CREATE TABLE requests (
  tenant TEXT NOT NULL,
  request_id TEXT NOT NULL,
  method TEXT NOT NULL,
  payload_hash TEXT NOT NULL,
  response BLOB NOT NULL,
  create_time_us INTEGER NOT NULL,
  PRIMARY KEY (tenant, request_id)
) WITHOUT ROWID;

-- Append-only, hash-chained record of who read or changed what.
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL,
  subject TEXT NOT NULL,
  role TEXT NOT NULL,
  rpc TEXT NOT NULL,
  resource TEXT NOT NULL,
  outcome TEXT NOT NULL,
  time_us INTEGER NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_by_tenant_time ON audit (tenant, time_us);
)sql"},
          {2, "outbox delivery: leases, retries, change feed",
           R"sql(
-- Delivery of outbox rows (engine/reminders/dispatcher.h). Statuses beyond
-- those of migration 1: 5 retry wait (claimable again at lease_expiry_us),
-- 6 acknowledged. change_seq orders delivered, failed, cancelled-at-claim
-- and acknowledged rows for WatchReminders; outbox_feed holds the last
-- position handed out.
ALTER TABLE outbox ADD COLUMN change_seq INTEGER;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
-- Claimed rows whose lease expired and retries whose time came are found
-- by a range scan, like scheduled rows through outbox_due.
CREATE INDEX outbox_lease ON outbox (status, lease_expiry_us);
CREATE INDEX outbox_changes ON outbox (tenant, change_seq)
  WHERE change_seq IS NOT NULL;
CREATE INDEX outbox_by_tenant_due ON outbox (tenant, due_time_us, id);
CREATE TABLE outbox_feed (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_seq INTEGER NOT NULL
);
INSERT INTO outbox_feed VALUES (1, 0);
)sql"},
          {3, "audit: request id",
           R"sql(
ALTER TABLE audit ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_by_subject ON audit (subject, seq);
)sql"},
          {4, "storage footprint: rowid tables, request keys, fewer indexes",
           R"sql(
-- Rows of a few KB (snapshots, first events, stored responses) in WITHOUT
-- ROWID tables spill into overflow pages of their own and pack badly
-- (SQLite keeps at most about 1 KB of such a row on a 4 KB page). These
-- three tables become rowid tables (up to about 4 KB on the page) with a
-- unique index on their natural key; the columns do not change. Each is
-- rebuilt in this migration's one transaction, so a crash leaves the old
-- layout or the new one, never a mix.
CREATE TABLE enrollments_v4 (
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
  PRIMARY KEY (tenant, id)
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
  tenant TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  sequence INTEGER NOT NULL CHECK (sequence >= 1),
  type TEXT NOT NULL,
  actor TEXT NOT NULL,
  request_id TEXT NOT NULL,
  record_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (tenant, enrollment_id, sequence),
  FOREIGN KEY (tenant, enrollment_id) REFERENCES enrollments (tenant, id)
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
  tenant TEXT NOT NULL,
  request_id TEXT NOT NULL,
  method TEXT NOT NULL,
  payload_hash TEXT NOT NULL,
  response BLOB NOT NULL,
  create_time_us INTEGER NOT NULL,
  PRIMARY KEY (tenant, request_id)
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

-- No query reads through these: outbox rows are never looked up by
-- enrollment, and ListAudit's optional filters scan audit in seq order.
DROP INDEX outbox_by_enrollment;
DROP INDEX audit_by_tenant_time;
DROP INDEX audit_by_subject;
)sql"},
      };
  return *kMigrations;
}

}  // namespace ipsrt
