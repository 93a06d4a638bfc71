#include "store/sql_core.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ipsrt/status_macros.h"
#include "store/audit_chain.h"
#include "store/blob_codec.h"
#include "store/request_window.h"

namespace ipsrt {

std::string SqlStatus(OutboxStatus status) {
  return absl::StrCat(static_cast<int32_t>(status));
}

const char kEnrollmentColumns[] =
    "tenant, id, patient_ref, workflow_id, workflow_version, stage, "
    "clinician_ref, state, revision, snapshot, create_time_us, "
    "update_time_us";

const char kEnrollmentCountsSql[] =
    "SELECT workflow_id, workflow_version, stage, COUNT(*) FROM enrollments "
    "GROUP BY workflow_id, workflow_version, stage";

const char kOutboxColumns[] =
    "id, tenant, enrollment_id, kind, due_time_us, payload, idempotency_key, "
    "status, attempts, lease_owner, lease_expiry_us, change_seq, last_error";

namespace {

// IPSRT_SQL_ONCE is the text its arguments join to, built once on first
// use (statements are looked up by text on every run; no rebuilding).
#define IPSRT_SQL_ONCE(...)                         \
  ([]() -> const std::string& {                     \
    static const std::string* const text =          \
        new std::string(absl::StrCat(__VA_ARGS__)); \
    return *text;                                   \
  }())

// The audit row keeps no prev_hash (schema 6): a record's predecessor is
// the record whose seq is one less, and reads take its hash from there. Its
// rpc and resource are kept short (StoredAuditRpc, StoredAuditResource).
constexpr char kAuditColumns[] =
    "seq, tenant, subject, role, rpc, resource, outcome, time_us, request_id, "
    "hash";
constexpr char kAuditReadColumns[] =
    "a.seq, a.tenant, a.subject, a.role, a.rpc, a.resource, a.outcome, "
    "a.time_us, a.request_id, (SELECT p.hash FROM audit p WHERE p.seq = "
    "a.seq - 1), a.hash";

// Snapshots, responses and event payloads are stored packed
// (store/blob_codec.h).
absl::StatusOr<EnrollmentRow> ReadEnrollment(const SqlRow& s) {
  EnrollmentRow r;
  r.tenant = s.Text(0);
  r.id = s.Text(1);
  r.patient_ref = s.Text(2);
  r.workflow_id = s.Text(3);
  r.workflow_version = static_cast<int32_t>(s.Int(4));
  r.stage = s.Text(5);
  r.clinician_ref = s.Text(6);
  r.state = static_cast<int32_t>(s.Int(7));
  r.revision = s.Int(8);
  IPSRT_ASSIGN_OR_RETURN(r.snapshot,
                         UnpackBlob(s.Text(9), "an enrollment snapshot"));
  r.create_time = s.Time(10);
  r.update_time = s.Time(11);
  return r;
}

AuditRecord ReadAudit(const SqlRow& s) {
  AuditRecord r;
  r.seq = s.Int(0);
  r.tenant = s.Text(1);
  r.subject = s.Text(2);
  r.role = s.Text(3);
  r.rpc = AuditRpcFromStored(s.Text(4));
  r.resource = AuditResourceFromStored(r.tenant, s.Text(5));
  r.outcome = s.Text(6);
  r.time = s.Time(7);
  r.request_id = s.Text(8);
  r.prev_hash = DigestFromStored(s.Text(9));
  r.hash = DigestFromStored(s.Text(10));
  return r;
}

// EnrollmentValues appends the columns an enrollment's insert and update
// both write, from patient_ref to snapshot in kEnrollmentColumns' order.
SqlParams& EnrollmentValues(SqlParams& p, const EnrollmentRow& e,
                            const PackedBlobs& packed) {
  return p.Text(e.patient_ref)
      .Text(e.workflow_id)
      .Int(e.workflow_version)
      .Text(e.stage)
      .Text(e.clinician_ref)
      .Int(e.state)
      .Int(e.revision)
      .Bytes(packed.snapshot);
}
SqlParams& EnrollmentValues(SqlParams&& p, const EnrollmentRow& e,
                            const PackedBlobs& packed) {
  return EnrollmentValues(p, e, packed);
}

std::string ReminderName(absl::string_view tenant, int64_t id) {
  return absl::StrCat("reminder tenants/", tenant, "/reminders/", id);
}

OutboxEntry ReadOutboxRow(const SqlRow& row);

// FindOutbox reads one outbox row of `tenant`, with `lock` appended to the
// SELECT; NOT_FOUND naming the reminder when there is none.
absl::StatusOr<OutboxEntry> FindOutbox(SqlConnection& c,
                                       absl::string_view tenant, int64_t id,
                                       absl::string_view lock) {
  std::optional<OutboxEntry> entry;
  IPSRT_RETURN_IF_ERROR(
      c.Query(absl::StrCat("SELECT ", kOutboxColumns,
                           " FROM outbox WHERE id = $1 AND tenant = $2", lock),
              SqlParams().Int(id).Text(tenant), [&](const SqlRow& row) {
                entry = ReadOutboxRow(row);
                return absl::OkStatus();
              }));
  if (!entry.has_value()) {
    return absl::NotFoundError(
        absl::StrCat(ReminderName(tenant, id), " not found"));
  }
  return *std::move(entry);
}

// Collect appends each row, as `read` maps it, to `out` (cleared first, so
// that a backend may run a read again on a fresh connection).
template <typename T, typename Read>
absl::Status Collect(SqlConnection& c, absl::string_view sql,
                     const SqlParams& params, std::vector<T>* out, Read read) {
  out->clear();
  return c.Query(sql, params, [&](const SqlRow& row) -> absl::Status {
    if constexpr (std::is_same_v<decltype(read(row)), T>) {
      out->push_back(read(row));
    } else {
      IPSRT_ASSIGN_OR_RETURN(T value, read(row));
      out->push_back(std::move(value));
    }
    return absl::OkStatus();
  });
}

OutboxStatus StatusAfter(OutboxOutcome::Kind kind) {
  switch (kind) {
    case OutboxOutcome::Kind::kDone:
      return OutboxStatus::kDone;
    case OutboxOutcome::Kind::kRetry:
      return OutboxStatus::kRetryWait;
    case OutboxOutcome::Kind::kFailed:
      return OutboxStatus::kFailed;
    case OutboxOutcome::Kind::kCancelled:
      return OutboxStatus::kCancelled;
  }
  return OutboxStatus::kDone;
}

int64_t MicrosOrMax(absl::Time t) {
  return t == absl::InfiniteFuture() ? std::numeric_limits<int64_t>::max()
                                     : absl::ToUnixMicros(t);
}

OutboxEntry ReadOutboxRow(const SqlRow& s) {
  OutboxEntry e;
  e.id = s.Int(0);
  e.row.tenant = s.Text(1);
  e.row.enrollment_id = s.Text(2);
  e.row.kind = s.Text(3);
  e.row.due_time = s.Time(4);
  e.row.payload = s.Text(5);
  e.row.idempotency_key =
      OutboxKeyFromStored(e.row.tenant, e.row.enrollment_id, s.Text(6));
  e.status = static_cast<OutboxStatus>(s.Int(7));
  e.attempts = static_cast<int32_t>(s.Int(8));
  e.lease_owner = s.Text(9);
  e.lease_expiry = s.IsNull(10) ? absl::InfinitePast() : s.Time(10);
  e.change_seq = s.Int(11);
  e.last_error = s.Text(12);
  return e;
}

}  // namespace

OutboxEntry ReadOutbox(const SqlRow& row) { return ReadOutboxRow(row); }

PackedBlobs PackBatch(const WriteBatch& batch) {
  PackedBlobs packed;
  // A snapshot stays only until the enrollment's next event.
  if (batch.create.has_value()) {
    packed.snapshot =
        PackBlob(batch.create->snapshot, BlobLifetime::kOverwritten);
  }
  if (batch.update.has_value()) {
    packed.snapshot =
        PackBlob(batch.update->row.snapshot, BlobLifetime::kOverwritten);
  }
  packed.response = PackBlob(batch.request.response);
  packed.payloads.reserve(batch.events.size());
  for (const EventRow& ev : batch.events) {
    packed.payloads.push_back(StoredEventPayload(ev.payload, ev.hash));
  }
  return packed;
}

SqlCore::SqlCore(SqlDialect dialect, Options options)
    : dialect_(std::move(dialect)), options_(std::move(options)) {}

absl::Status SqlCore::Fault(absl::string_view step) const {
  if (options_.fault_hook) return options_.fault_hook(step);
  return absl::OkStatus();
}

absl::Status SqlCore::ValidateBatch(const WriteBatch& b) {
  if (!IsAuditOnly(b) &&
      (b.request.tenant.empty() || b.request.request_id.empty())) {
    return absl::InvalidArgumentError(
        "store: a write batch needs a tenant and a request id");
  }
  if (b.create.has_value() && b.update.has_value()) {
    return absl::InvalidArgumentError(
        "store: a write batch creates or updates one enrollment, not both");
  }
  // Values that the stored forms of schema 5 could not keep
  // (store/blob_codec.h).
  IPSRT_RETURN_IF_ERROR(CheckRequestHash(b.request.payload_hash));
  for (const EventRow& ev : b.events) {
    IPSRT_RETURN_IF_ERROR(CheckDigest(ev.prev_hash, "an event's prev_hash"));
    IPSRT_RETURN_IF_ERROR(CheckDigest(ev.hash, "an event's hash"));
  }
  for (const OutboxRow& o : b.outbox) {
    IPSRT_RETURN_IF_ERROR(
        StoredOutboxKey(o.tenant, o.enrollment_id, o.idempotency_key).status());
  }
  for (const std::string& key : b.cancel_outbox_keys) {
    IPSRT_RETURN_IF_ERROR(ParseOutboxKey(key).status());
  }
  return absl::OkStatus();
}

std::string SqlCore::KeysetAfter(absl::string_view a, absl::string_view b,
                                 int pa, int pb) const {
  if (dialect_.row_value_keyset) {
    return absl::StrCat("(", a, ", ", b, ") > ($", pa, ", $", pb, ")");
  }
  return absl::StrCat("(", a, " > $", pa, " OR (", a, " = $", pa, " AND ", b,
                      " > $", pb, "))");
}

// ---------------------------------------------------------------------------
// Writing a batch.

absl::StatusOr<CommitResult> SqlCore::ApplyBatch(
    SqlConnection& c, const WriteBatch& b, const PackedBlobs& packed) const {
  IPSRT_RETURN_IF_ERROR(ValidateBatch(b));
  if (IsAuditOnly(b)) {
    IPSRT_RETURN_IF_ERROR(AppendAudit(c, b.audit, ""));
    return CommitResult{};
  }
  std::optional<CommitResult> replay;
  IPSRT_RETURN_IF_ERROR(WriteRequest(c, b, packed, &replay));
  if (replay.has_value()) {
    IPSRT_RETURN_IF_ERROR(AppendAudit(c, b.audit, "OK (replayed)"));
    return *std::move(replay);
  }
  IPSRT_RETURN_IF_ERROR(WriteEnrollment(c, b, packed));
  for (size_t i = 0; i < b.events.size(); ++i) {
    const EventRow& ev = b.events[i];
    IPSRT_RETURN_IF_ERROR(Fault("event.insert"));
    // An event's row names its enrollment by the enrollment's key (schema
    // 8), read here from the row this batch has just written or locked.
    absl::StatusOr<int64_t> inserted = c.Exec(
        "INSERT INTO events (enrollment_key, sequence, payload, hash) SELECT "
        "key, $3, $4, $5 FROM enrollments WHERE tenant = $1 AND id = $2",
        SqlParams()
            .Text(ev.tenant)
            .Text(ev.enrollment_id)
            .Int(ev.sequence)
            .Bytes(packed.payloads[i])
            .Bytes(StoredDigest(ev.hash)));
    if (absl::IsAlreadyExists(inserted.status())) {
      return absl::AbortedError(absl::StrCat("enrollment ", ev.enrollment_id,
                                             " already has event ", ev.sequence,
                                             "; read it again and retry"));
    }
    IPSRT_RETURN_IF_ERROR(inserted.status());
    if (*inserted != 1) {
      return absl::NotFoundError(
          absl::StrCat("enrollment ", ev.enrollment_id, " not found"));
    }
  }
  static const std::string* const kInsertOutbox = new std::string(absl::StrCat(
      "INSERT INTO outbox (tenant, enrollment_id, kind, due_time_us, payload, "
      "idempotency_key, key_digest, status, attempts, create_time_us) VALUES "
      "($1, $2, $3, $4, $5, $6, $7, ",
      SqlStatus(OutboxStatus::kScheduled), ", 0, $8)"));
  for (const OutboxRow& o : b.outbox) {
    IPSRT_RETURN_IF_ERROR(Fault("outbox.insert"));
    const std::string stored =
        *StoredOutboxKey(o.tenant, o.enrollment_id, o.idempotency_key);
    IPSRT_RETURN_IF_ERROR(
        c.Exec(*kInsertOutbox,
               SqlParams()
                   .Text(o.tenant)
                   .Text(o.enrollment_id)
                   .Text(o.kind)
                   .Time(o.due_time)
                   .Bytes(o.payload)
                   .Text(stored)
                   .Bytes(OutboxKeyDigest(o.tenant, o.enrollment_id, stored))
                   .Time(b.request.create_time))
            .status());
  }
  // Scheduled and retry-waiting rows are cancelled; claimed and finished
  // ones are left as they are (see WriteBatch::cancel_outbox_keys).
  static const std::string* const kCancelOutbox = new std::string(absl::StrCat(
      "UPDATE outbox SET status = ", SqlStatus(OutboxStatus::kCancelled),
      ", lease_owner = NULL WHERE key_digest = $1 AND tenant = $2 AND "
      "enrollment_id = $3 AND idempotency_key = $4 AND status IN (",
      SqlStatus(OutboxStatus::kScheduled), ", ",
      SqlStatus(OutboxStatus::kRetryWait), ")"));
  for (const std::string& key : b.cancel_outbox_keys) {
    IPSRT_RETURN_IF_ERROR(Fault("outbox.cancel"));
    const OutboxKeyParts parts = *ParseOutboxKey(key);  // ValidateBatch
    IPSRT_RETURN_IF_ERROR(
        c.Exec(*kCancelOutbox,
               SqlParams()
                   .Bytes(OutboxKeyDigest(parts.tenant, parts.enrollment_id,
                                          parts.stored))
                   .Text(parts.tenant)
                   .Text(parts.enrollment_id)
                   .Text(parts.stored))
            .status());
  }
  IPSRT_RETURN_IF_ERROR(AppendAudit(c, b.audit, ""));
  return CommitResult{false, b.request.response};
}

// WriteRequest inserts the request record, or finds the one committed
// before and sets *replay (or refuses a different payload).
absl::Status SqlCore::WriteRequest(SqlConnection& c, const WriteBatch& b,
                                   const PackedBlobs& packed,
                                   std::optional<CommitResult>* replay) const {
  const RequestRecord& req = b.request;
  // The record goes first: a concurrent transaction with the same request
  // id (in any replica) makes this insert wait for its outcome, then either
  // this one proceeds (it rolled back) or replays it.
  // Records are found by the request id's key (schema 7); the tenant and
  // request id are compared too, so two ids that share a key are told apart.
  const int64_t key = RequestKey(req.tenant, req.request_id);
  IPSRT_RETURN_IF_ERROR(Fault("request.insert"));
  IPSRT_ASSIGN_OR_RETURN(
      int64_t inserted,
      c.Exec("INSERT INTO requests (key, tenant, request_id, method, "
             "payload_hash, response, create_time_us) VALUES ($1, $2, $3, $4, "
             "$5, $6, $7) ON CONFLICT (key) DO NOTHING",
             SqlParams()
                 .Int(key)
                 .Text(req.tenant)
                 .Text(req.request_id)
                 .Text(StoredRequestMethod(req.method))
                 .Bytes(StoredRequestHash(req.payload_hash))
                 .Bytes(packed.response)
                 .Time(req.create_time)));
  if (inserted == 0) {
    IPSRT_RETURN_IF_ERROR(Fault("request.lookup"));
    bool found = false;
    std::string tenant, request_id, method, payload_hash, response;
    IPSRT_RETURN_IF_ERROR(
        c.Query("SELECT tenant, request_id, method, payload_hash, response "
                "FROM requests WHERE key = $1",
                SqlParams().Int(key), [&](const SqlRow& row) {
                  found = true;
                  tenant = row.Text(0);
                  request_id = row.Text(1);
                  method = RequestMethodFromStored(row.Text(2));
                  payload_hash = RequestHashFromStored(row.Text(3));
                  response = row.Text(4);
                  return absl::OkStatus();
                }));
    if (!found) {
      return absl::UnavailableError(
          "store: a concurrent request with this request id vanished; retry");
    }
    if (tenant != req.tenant || request_id != req.request_id) {
      // About one in 2^64 per pair of request ids kept at once.
      return absl::FailedPreconditionError(absl::StrCat(
          "request_id: \"", req.request_id,
          "\" cannot be told apart from another recent request id (they "
          "share a key, store/request_window.h); use a new request id"));
    }
    if (method != req.method ||
        !SamePayloadHash(payload_hash, req.payload_hash)) {
      return absl::FailedPreconditionError(
          absl::StrCat("request_id: \"", req.request_id,
                       "\" was already used for a different ", method,
                       " request; use a new request id for a new request"));
    }
    IPSRT_ASSIGN_OR_RETURN(std::string first,
                           UnpackBlob(response, "a stored response"));
    *replay = CommitResult{true, std::move(first)};
    return absl::OkStatus();
  }
  // A new request id, or one whose record was pruned: the key that the
  // pruning left says (request_window.h).
  bool pruned = false;
  IPSRT_RETURN_IF_ERROR(c.Query("SELECT key FROM request_keys WHERE key = $1",
                                SqlParams().Int(key), [&](const SqlRow&) {
                                  pruned = true;
                                  return absl::OkStatus();
                                }));
  if (pruned) {
    return ExpiredRequestError(req.request_id, options_.request_retention);
  }
  if (!dialect_.prune_requests.empty()) {
    // Records older than the window at this request's time (the callers'
    // clock), a few per commit.
    absl::Time before =
        PruneBefore(req.create_time, options_.request_retention);
    if (before != absl::InfinitePast()) {
      IPSRT_RETURN_IF_ERROR(
          c.Exec(dialect_.prune_requests, SqlParams().Time(before)).status());
    }
  }
  return absl::OkStatus();
}

absl::Status SqlCore::WriteEnrollment(SqlConnection& c, const WriteBatch& b,
                                      const PackedBlobs& packed) const {
  if (b.create.has_value()) {
    const EnrollmentRow& e = *b.create;
    IPSRT_RETURN_IF_ERROR(Fault("enrollment.insert"));
    absl::Status st =
        c.Exec(
             IPSRT_SQL_ONCE("INSERT INTO enrollments (", kEnrollmentColumns,
                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                            "$10, $11, $12)"),
             EnrollmentValues(SqlParams().Text(e.tenant).Text(e.id), e, packed)
                 .Time(e.create_time)
                 .Time(e.update_time))
            .status();
    if (absl::IsAlreadyExists(st)) {
      return absl::AlreadyExistsError(
          absl::StrCat("enrollment ", e.id, " already exists"));
    }
    return st;
  }
  if (!b.update.has_value()) return absl::OkStatus();
  const EnrollmentRow& e = b.update->row;
  IPSRT_RETURN_IF_ERROR(Fault("enrollment.update"));
  // Most events change none of the columns the enrollments' indexes hold
  // (patient, workflow and version, stage, clinician). SQLite deletes and
  // reinserts a row's entry in every index one of whose columns an UPDATE
  // sets, even to the value it has: three index entries rewritten, and
  // their pages written to the WAL, for each event. So the unindexed
  // columns are set alone where the indexed ones already hold the new
  // values; otherwise (a changed stage or clinician, or a revision
  // conflict, which the full update below tells apart) nothing matched.
  IPSRT_ASSIGN_OR_RETURN(
      int64_t unindexed,
      c.Exec("UPDATE enrollments SET state = $1, revision = $2, snapshot = $3, "
             "update_time_us = $4 WHERE tenant = $5 AND id = $6 AND "
             "revision = $7 AND patient_ref = $8 AND workflow_id = $9 AND "
             "workflow_version = $10 AND stage = $11 AND clinician_ref = $12",
             SqlParams()
                 .Int(e.state)
                 .Int(e.revision)
                 .Bytes(packed.snapshot)
                 .Time(e.update_time)
                 .Text(e.tenant)
                 .Text(e.id)
                 .Int(b.update->expected_revision)
                 .Text(e.patient_ref)
                 .Text(e.workflow_id)
                 .Int(e.workflow_version)
                 .Text(e.stage)
                 .Text(e.clinician_ref)));
  if (unindexed > 0) return absl::OkStatus();
  IPSRT_ASSIGN_OR_RETURN(
      int64_t updated,
      c.Exec("UPDATE enrollments SET patient_ref = $1, workflow_id = $2, "
             "workflow_version = $3, stage = $4, clinician_ref = $5, "
             "state = $6, revision = $7, snapshot = $8, update_time_us = $9 "
             "WHERE tenant = $10 AND id = $11 AND revision = $12",
             EnrollmentValues(SqlParams(), e, packed)
                 .Time(e.update_time)
                 .Text(e.tenant)
                 .Text(e.id)
                 .Int(b.update->expected_revision)));
  if (updated > 0) return absl::OkStatus();
  std::optional<int64_t> current;
  IPSRT_RETURN_IF_ERROR(
      c.Query("SELECT revision FROM enrollments WHERE tenant = $1 AND id = $2",
              SqlParams().Text(e.tenant).Text(e.id), [&](const SqlRow& row) {
                current = row.Int(0);
                return absl::OkStatus();
              }));
  if (!current.has_value()) {
    return absl::NotFoundError(absl::StrCat("enrollment ", e.id, " not found"));
  }
  return absl::AbortedError(absl::StrCat(
      "expected_revision: enrollment ", e.id, " is at revision ", *current,
      ", not ", b.update->expected_revision, "; read it again and retry"));
}

// The head is read inside the caller's transaction, after the dialect's
// chain lock (if any): neither concurrent requests nor other processes can
// fork the chain, and a rolled-back transaction takes its records (and
// their seqs) with it.
absl::Status SqlCore::AppendAudit(SqlConnection& c,
                                  const std::vector<AuditRecord>& records,
                                  absl::string_view outcome_override) const {
  if (records.empty()) return absl::OkStatus();
  IPSRT_RETURN_IF_ERROR(Fault("audit.insert"));
  if (!dialect_.audit_chain_lock.empty()) {
    IPSRT_RETURN_IF_ERROR(
        c.Query(dialect_.audit_chain_lock, SqlParams(),
                [](const SqlRow&) { return absl::OkStatus(); }));
  }
  int64_t seq = 0;
  std::string prev_hash;
  IPSRT_RETURN_IF_ERROR(
      c.Query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
              SqlParams(), [&](const SqlRow& row) {
                seq = row.Int(0);
                prev_hash = DigestFromStored(row.Text(1));
                return absl::OkStatus();
              }));
  for (const AuditRecord& in : records) {
    AuditRecord r = in;
    if (!outcome_override.empty()) r.outcome = std::string(outcome_override);
    r.seq = ++seq;
    r.prev_hash = std::move(prev_hash);
    r.hash = AuditRecordHash(r);
    IPSRT_RETURN_IF_ERROR(
        c.Exec(IPSRT_SQL_ONCE("INSERT INTO audit (", kAuditColumns,
                              ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                              "$10)"),
               SqlParams()
                   .Int(r.seq)
                   .Text(r.tenant)
                   .Text(r.subject)
                   .Text(r.role)
                   .Text(StoredAuditRpc(r.rpc))
                   .Text(StoredAuditResource(r.tenant, r.resource))
                   .Text(r.outcome)
                   .Time(r.time)
                   .Text(r.request_id)
                   .Bytes(StoredDigest(r.hash)))
            .status());
    prev_hash = std::move(r.hash);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Outbox delivery. Change-feed positions come from the one outbox_feed row,
// whose row lock (held to commit) makes positions become visible in order.

absl::StatusOr<int64_t> SqlCore::NextChangeSeq(SqlConnection& c) const {
  std::optional<int64_t> seq;
  IPSRT_RETURN_IF_ERROR(
      c.Query("UPDATE outbox_feed SET last_seq = last_seq + 1 WHERE id = 1 "
              "RETURNING last_seq",
              SqlParams(), [&](const SqlRow& row) {
                seq = row.Int(0);
                return absl::OkStatus();
              }));
  if (!seq.has_value()) {
    return absl::InternalError("store: outbox_feed row missing");
  }
  return *seq;
}

absl::Status SqlCore::ValidateClaim(absl::string_view owner,
                                    absl::Duration lease, int limit) {
  if (owner.empty() || lease <= absl::ZeroDuration() || limit < 1) {
    return absl::InvalidArgumentError(
        "store: a claim needs an owner, a positive lease and a limit >= 1");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<OutboxEntry>> SqlCore::ClaimOutbox(
    SqlConnection& c, absl::Time now, absl::string_view owner,
    absl::Duration lease, int limit) const {
  IPSRT_RETURN_IF_ERROR(ValidateClaim(owner, lease, limit));
  std::vector<OutboxEntry> claimed;
  IPSRT_RETURN_IF_ERROR(
      Collect(c, dialect_.claim_outbox,
              SqlParams().Text(owner).Time(now + lease).Time(now).Int(limit),
              &claimed, ReadOutbox));
  std::sort(claimed.begin(), claimed.end(),
            [](const OutboxEntry& a, const OutboxEntry& b) {
              return std::pair(a.row.due_time, a.id) <
                     std::pair(b.row.due_time, b.id);
            });
  return claimed;
}

absl::StatusOr<std::vector<int64_t>> SqlCore::RecordOutboxOutcomes(
    SqlConnection& c, absl::string_view owner, absl::Time now,
    const std::vector<OutboxResult>& results) const {
  static const std::string* const kRecord = new std::string(absl::StrCat(
      "UPDATE outbox SET status = $1, lease_owner = NULL, lease_expiry_us = "
      "$2, last_error = $3 WHERE id = $4 AND status = ",
      SqlStatus(OutboxStatus::kClaimed),
      " AND lease_owner = $5 AND lease_expiry_us > $6"));
  std::vector<int64_t> lost;
  for (const OutboxResult& r : results) {
    OutboxStatus status = StatusAfter(r.outcome.kind);
    SqlParams params;
    params.Int(static_cast<int64_t>(status));
    if (status == OutboxStatus::kRetryWait) {
      params.Time(r.outcome.retry_at);
    } else {
      params.NullInt();
    }
    params.Text(r.outcome.error).Int(r.id).Text(owner).Time(now);
    IPSRT_ASSIGN_OR_RETURN(int64_t updated, c.Exec(*kRecord, params));
    if (updated == 0) {
      lost.push_back(r.id);
      continue;
    }
    if (status == OutboxStatus::kRetryWait) continue;
    IPSRT_ASSIGN_OR_RETURN(int64_t seq, NextChangeSeq(c));
    IPSRT_RETURN_IF_ERROR(
        c.Exec("UPDATE outbox SET change_seq = $1 WHERE id = $2",
               SqlParams().Int(seq).Int(r.id))
            .status());
  }
  return lost;
}

absl::StatusOr<OutboxEntry> SqlCore::AcknowledgeOutbox(SqlConnection& c,
                                                       absl::string_view tenant,
                                                       int64_t id) const {
  IPSRT_ASSIGN_OR_RETURN(
      OutboxEntry entry,
      FindOutbox(c, tenant, id, dialect_.lock_selected_rows));
  if (entry.status == OutboxStatus::kAcknowledged) return entry;
  if (entry.status != OutboxStatus::kDone) {
    return absl::FailedPreconditionError(
        absl::StrCat(ReminderName(tenant, id),
                     " has not been sent; only a sent reminder can be "
                     "acknowledged"));
  }
  IPSRT_ASSIGN_OR_RETURN(int64_t seq, NextChangeSeq(c));
  IPSRT_RETURN_IF_ERROR(
      c.Exec(IPSRT_SQL_ONCE("UPDATE outbox SET status = ",
                            SqlStatus(OutboxStatus::kAcknowledged),
                            ", change_seq = $1 WHERE id = $2"),
             SqlParams().Int(seq).Int(id))
          .status());
  entry.status = OutboxStatus::kAcknowledged;
  entry.change_seq = seq;
  return entry;
}

// ---------------------------------------------------------------------------
// Reads.

absl::StatusOr<std::optional<RequestRecord>> SqlCore::LookupRequest(
    SqlConnection& c, absl::string_view tenant,
    absl::string_view request_id) const {
  std::optional<RequestRecord> found;
  IPSRT_RETURN_IF_ERROR(c.Query(
      "SELECT method, payload_hash, response, create_time_us FROM requests "
      "WHERE key = $1 AND tenant = $2 AND request_id = $3",
      SqlParams()
          .Int(RequestKey(tenant, request_id))
          .Text(tenant)
          .Text(request_id),
      [&](const SqlRow& row) -> absl::Status {
        RequestRecord r;
        r.tenant = std::string(tenant);
        r.request_id = std::string(request_id);
        r.method = RequestMethodFromStored(row.Text(0));
        r.payload_hash = RequestHashFromStored(row.Text(1));
        IPSRT_ASSIGN_OR_RETURN(r.response,
                               UnpackBlob(row.Text(2), "a stored response"));
        r.create_time = row.Time(3);
        found = std::move(r);
        return absl::OkStatus();
      }));
  return found;
}

absl::StatusOr<EnrollmentRow> SqlCore::GetEnrollment(
    SqlConnection& c, absl::string_view tenant, absl::string_view id) const {
  std::vector<EnrollmentRow> rows;
  IPSRT_RETURN_IF_ERROR(
      Collect(c,
              IPSRT_SQL_ONCE("SELECT ", kEnrollmentColumns,
                             " FROM enrollments WHERE tenant = $1 AND id = $2"),
              SqlParams().Text(tenant).Text(id), &rows, ReadEnrollment));
  if (rows.empty()) {
    return absl::NotFoundError(absl::StrCat("enrollment tenants/", tenant,
                                            "/enrollments/", id, " not found"));
  }
  return std::move(rows.front());
}

SqlStatement SqlCore::ListEnrollmentsStatement(
    const EnrollmentFilter& filter,
    const std::optional<EnrollmentCursor>& after, int limit) const {
  SqlStatement s;
  std::vector<std::string> where = {"tenant = $1"};
  s.params.Text(filter.tenant);
  auto add_text = [&](const char* column, const std::string& value) {
    if (value.empty()) return;
    s.params.Text(value);
    where.push_back(absl::StrCat(column, " = $", s.params.size()));
  };
  add_text("workflow_id", filter.workflow_id);
  add_text("stage", filter.stage);
  add_text("patient_ref", filter.patient_ref);
  add_text("clinician_ref", filter.clinician_ref);
  if (filter.state != 0) {
    s.params.Int(filter.state);
    where.push_back(absl::StrCat("state = $", s.params.size()));
  }
  if (after.has_value()) {
    s.params.Time(after->create_time).Text(after->id);
    where.push_back(KeysetAfter("create_time_us", "id", s.params.size() - 1,
                                s.params.size()));
  }
  s.params.Int(limit);
  s.sql =
      absl::StrCat("SELECT ", kEnrollmentColumns, " FROM enrollments WHERE ",
                   absl::StrJoin(where, " AND "),
                   " ORDER BY create_time_us, id LIMIT $", s.params.size());
  return s;
}

absl::StatusOr<std::vector<EnrollmentRow>> SqlCore::ListEnrollments(
    SqlConnection& c, const EnrollmentFilter& filter,
    const std::optional<EnrollmentCursor>& after, int limit) const {
  SqlStatement s = ListEnrollmentsStatement(filter, after, limit);
  std::vector<EnrollmentRow> rows;
  IPSRT_RETURN_IF_ERROR(Collect(c, s.sql, s.params, &rows, ReadEnrollment));
  return rows;
}

absl::StatusOr<std::vector<EventRow>> SqlCore::ListEvents(
    SqlConnection& c, absl::string_view tenant, absl::string_view enrollment_id,
    int64_t after_sequence, int limit) const {
  // An event's row keeps no prev_hash (schema 6): it is the hash of the
  // event one sequence before, so the page starts at `after_sequence` itself
  // to learn it, and an event whose predecessor is missing gets "".
  std::vector<EventRow> rows;
  rows.reserve(static_cast<size_t>(std::clamp(limit, 0, 1024)));
  int64_t last_sequence = 0;
  std::string last_hash;
  IPSRT_RETURN_IF_ERROR(c.Query(
      "SELECT sequence, payload, hash FROM events WHERE enrollment_key = "
      "(SELECT key FROM enrollments WHERE tenant = $1 AND id = $2) AND "
      "sequence >= $3 ORDER BY sequence LIMIT $4",
      SqlParams()
          .Text(tenant)
          .Text(enrollment_id)
          .Int(after_sequence)
          .Int(after_sequence > 0 ? static_cast<int64_t>(limit) + 1 : limit),
      [&](const SqlRow& s) -> absl::Status {
        const int64_t sequence = s.Int(0);
        std::string hash = DigestFromStored(s.Text(2));
        if (sequence > after_sequence &&
            rows.size() < static_cast<size_t>(limit)) {
          EventRow e;
          e.tenant = std::string(tenant);
          e.enrollment_id = std::string(enrollment_id);
          e.sequence = sequence;
          IPSRT_ASSIGN_OR_RETURN(e.payload,
                                 EventPayloadFromStored(s.Text(1), hash));
          if (sequence == last_sequence + 1) e.prev_hash = last_hash;
          e.hash = hash;
          rows.push_back(std::move(e));
        }
        last_sequence = sequence;
        last_hash = std::move(hash);
        return absl::OkStatus();
      }));
  return rows;
}

absl::StatusOr<std::vector<std::string>> SqlCore::ListTenants(
    SqlConnection& c) const {
  std::vector<std::string> tenants;
  IPSRT_RETURN_IF_ERROR(Collect(
      c, "SELECT DISTINCT tenant FROM enrollments ORDER BY tenant", SqlParams(),
      &tenants, [](const SqlRow& s) { return s.Text(0); }));
  return tenants;
}

SqlStatement SqlCore::ListOutboxStatement(const OutboxQuery& q) const {
  SqlStatement s;
  s.params.Text(q.tenant).Int(MicrosOrMax(q.due_before));
  s.sql = absl::StrCat("SELECT ", kOutboxColumns,
                       " FROM outbox WHERE tenant = $1 AND due_time_us <= $2");
  if (!q.statuses.empty()) {
    std::vector<std::string> codes;
    for (OutboxStatus st : q.statuses) codes.push_back(SqlStatus(st));
    absl::StrAppend(&s.sql, " AND status IN (", absl::StrJoin(codes, ", "),
                    ")");
  }
  if (q.after.has_value()) {
    s.params.Time(q.after->first).Int(q.after->second);
    absl::StrAppend(&s.sql, " AND ", KeysetAfter("due_time_us", "id", 3, 4));
  }
  s.params.Int(q.limit);
  absl::StrAppend(&s.sql, " ORDER BY due_time_us, id LIMIT $", s.params.size());
  return s;
}

absl::StatusOr<std::vector<OutboxEntry>> SqlCore::ListOutbox(
    SqlConnection& c, const OutboxQuery& q) const {
  SqlStatement s = ListOutboxStatement(q);
  std::vector<OutboxEntry> rows;
  IPSRT_RETURN_IF_ERROR(Collect(c, s.sql, s.params, &rows, ReadOutbox));
  return rows;
}

absl::StatusOr<OutboxEntry> SqlCore::GetOutbox(SqlConnection& c,
                                               absl::string_view tenant,
                                               int64_t id) const {
  return FindOutbox(c, tenant, id, "");
}

absl::StatusOr<std::vector<OutboxEntry>> SqlCore::OutboxChanges(
    SqlConnection& c, absl::string_view tenant, int64_t after_seq,
    int limit) const {
  std::vector<OutboxEntry> rows;
  IPSRT_RETURN_IF_ERROR(Collect(
      c,
      IPSRT_SQL_ONCE("SELECT ", kOutboxColumns,
                     " FROM outbox WHERE tenant = $1 AND change_seq > $2 "
                     "ORDER BY change_seq LIMIT $3"),
      SqlParams().Text(tenant).Int(after_seq).Int(limit), &rows, ReadOutbox));
  return rows;
}

absl::StatusOr<std::vector<AuditRecord>> SqlCore::ListAudit(
    SqlConnection& c, const AuditFilter& filter, int64_t after_seq,
    int limit) const {
  std::vector<AuditRecord> rows;
  IPSRT_RETURN_IF_ERROR(Collect(
      c,
      IPSRT_SQL_ONCE(
          "SELECT ", kAuditReadColumns,
          " FROM audit a WHERE a.seq > $1 AND ($2 = '' OR a.tenant = $2) "
          "AND ($3 = '' OR a.subject = $3) AND ($4 = '' OR a.rpc IN ($4, "
          "$8)) AND a.time_us >= $5 AND a.time_us < $6 ORDER BY a.seq LIMIT "
          "$7"),
      SqlParams()
          .Int(after_seq)
          .Text(filter.tenant)
          .Text(filter.subject)
          .Text(filter.rpc.empty() ? "" : StoredAuditRpc(filter.rpc))
          .Int(filter.from.has_value() ? absl::ToUnixMicros(*filter.from)
                                       : std::numeric_limits<int64_t>::min())
          .Int(filter.until.has_value() ? absl::ToUnixMicros(*filter.until)
                                        : std::numeric_limits<int64_t>::max())
          .Int(limit)
          // Records written before schema 8 keep the rpc's older form.
          .Text(filter.rpc.empty() ? ""
                                   : StoredAuditRpcBeforeSchema8(filter.rpc)),
      &rows, ReadAudit));
  return rows;
}

absl::StatusOr<StoreStats> SqlCore::Stats(SqlConnection& c,
                                          absl::Time now) const {
  StoreStats stats;
  IPSRT_RETURN_IF_ERROR(Collect(c, kEnrollmentCountsSql, SqlParams(),
                                &stats.enrollments, [](const SqlRow& s) {
                                  return StoreStats::EnrollmentCount{
                                      .workflow_id = s.Text(0),
                                      .workflow_version =
                                          static_cast<int32_t>(s.Int(1)),
                                      .stage = s.Text(2),
                                      .count = s.Int(3)};
                                }));
  // Pending: scheduled, claimed or waiting to retry. Overdue: due and
  // unclaimed, or claimed under a lease that has run out.
  static const std::string* const kOutboxStats = new std::string(absl::StrCat(
      "SELECT (SELECT COUNT(*) FROM outbox WHERE status IN (",
      SqlStatus(OutboxStatus::kScheduled), ", ",
      SqlStatus(OutboxStatus::kClaimed), ", ",
      SqlStatus(OutboxStatus::kRetryWait),
      ")), (SELECT MIN(due_time_us) FROM outbox WHERE (status = ",
      SqlStatus(OutboxStatus::kScheduled),
      " AND due_time_us <= $1) OR (status = ",
      SqlStatus(OutboxStatus::kClaimed), " AND lease_expiry_us <= $1))"));
  IPSRT_RETURN_IF_ERROR(
      c.Query(*kOutboxStats, SqlParams().Time(now), [&](const SqlRow& s) {
        stats.outbox_pending = s.Int(0);
        if (!s.IsNull(1)) stats.oldest_due = s.Time(1);
        return absl::OkStatus();
      }));
  return stats;
}

}  // namespace ipsrt
