// Tampering with stored events and audit records behind the store's back,
// on SQLite and PostgreSQL: VerifyStore (core/integrity.h) names the first
// broken record of each chain and why; what the chains alone cannot see
// (the newest rows deleted with the snapshot adjusted, a chain recomputed
// after an edit) is found against an HMAC-sealed anchor of the heads.
#include "core/integrity.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/enrollments.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "ipsrt/internal/state.pb.h"
#include "tests/store/store_backends.h"

namespace ipsrt {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1790000000);
constexpr char kKey[] = "0123456789abcdef0123456789abcdef-test-key";

// EventsOf is the condition on events' rows of enrollment t1/`id` (an
// event's row holds its enrollment's key, schema 8).
std::string EventsOf(const std::string& id) {
  return absl::StrCat(
      "enrollment_key = (SELECT key FROM enrollments WHERE tenant = 't1' AND "
      "id = '",
      id, "')");
}

// A sealed event as the engine stores it: a PHQ-9 response whose item 9 is
// `item9`, hashed onto `prev_hash`.
v1::Event SealedEvent(int64_t sequence, int item9,
                      const std::string& prev_hash) {
  v1::Event e;
  e.set_sequence(sequence);
  e.set_type("questionnaire_response");
  e.set_request_id(absl::StrCat("r-", sequence));
  *e.mutable_record_time() = TimeUtil::MicrosecondsToTimestamp(
      absl::ToUnixMicros(kT0 + absl::Minutes(sequence)));
  v1::QuestionnaireResponse* r =
      e.mutable_payload()->mutable_questionnaire_response();
  r->set_questionnaire_id("phq9");
  for (int i = 1; i <= 9; ++i) (*r->mutable_answers())[absl::StrCat(i)] = 2;
  (*r->mutable_answers())["9"] = item9;
  e.set_hash(EventHash(prev_hash, e));
  return e;
}

EventRow RowOf(const std::string& id, const v1::Event& e,
               const std::string& prev_hash) {
  EventRow row;
  row.tenant = "t1";
  row.enrollment_id = id;
  row.sequence = e.sequence();
  row.payload = DeterministicBytes(e);
  row.prev_hash = prev_hash;
  row.hash = e.hash();
  return row;
}

std::string Snapshot(int64_t revision, const std::string& last_hash) {
  internal::EnrollmentState state;
  state.mutable_enrollment()->set_revision(revision);
  state.set_last_event_hash(last_hash);
  return DeterministicBytes(state);
}

template <typename Backend>
class IntegrityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Store>> s = backend_.Open();
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    for (const std::string id : {"a", "b"}) AddEnrollment(id, 3);
    for (int i = 0; i < 3; ++i) {
      WriteBatch audit;
      audit.audit.push_back(AuditRecord{.tenant = "t1",
                                        .subject = "c1",
                                        .role = "clinician",
                                        .rpc = "/ipsrt.v1.X/Y",
                                        .outcome = "OK",
                                        .time = kT0});
      ASSERT_TRUE(store_->Commit(std::move(audit)).ok());
    }
  }

  // AddEnrollment commits `events` events one batch each, as the engine
  // does: created, then updated under the expected revision.
  void AddEnrollment(const std::string& id, int events) {
    std::string prev;
    for (int64_t seq = 1; seq <= events; ++seq) {
      v1::Event e = SealedEvent(seq, 1, prev);
      WriteBatch b;
      b.request = RequestRecord{
          "t1", absl::StrCat(id, "-r-", seq), "Submit", "fp", "", kT0};
      EnrollmentRow row;
      row.tenant = "t1";
      row.id = id;
      row.patient_ref = "Patient/" + id;
      row.workflow_id = "w";
      row.workflow_version = 1;
      row.stage = "initial";
      row.state = 1;
      row.revision = seq;
      row.snapshot = Snapshot(seq, e.hash());
      row.create_time = kT0;
      row.update_time = kT0 + absl::Minutes(seq);
      if (seq == 1) {
        b.create = row;
      } else {
        b.update = EnrollmentUpdate{seq - 1, row};
      }
      b.events.push_back(RowOf(id, e, prev));
      ASSERT_TRUE(store_->Commit(std::move(b)).ok());
      prev = e.hash();
    }
  }

  EventRow Stored(const std::string& id, int64_t seq) {
    absl::StatusOr<std::vector<EventRow>> rows =
        store_->ListEvents("t1", id, seq - 1, 1);
    EXPECT_TRUE(rows.ok() && rows->size() == 1);
    return rows.ok() && !rows->empty() ? rows->front() : EventRow();
  }

  void Exec(const std::string& sql) {
    absl::Status s = backend_.Exec(sql);
    ASSERT_TRUE(s.ok()) << s << "\n" << sql;
  }

  void SetPayload(const std::string& id, int64_t seq,
                  const std::string& payload) {
    Exec(absl::StrCat(
        "UPDATE events SET payload = ", Backend::BlobLiteral(payload),
        " WHERE ", EventsOf(id), " AND sequence = ", seq));
  }

  IntegrityReport Verify() {
    absl::StatusOr<IntegrityReport> r = VerifyStore(*store_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : IntegrityReport();
  }

  // AnchorNow seals the current heads, as ipsrtd's writer does, and reads
  // them back through the file format.
  Anchor AnchorNow() {
    absl::StatusOr<Anchor> heads = CurrentHeads(*store_, kT0);
    EXPECT_TRUE(heads.ok()) << heads.status();
    absl::StatusOr<Anchor> parsed = ParseAnchor(AnchorText(*heads, kKey), kKey);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return *parsed;
  }

  // RewriteFrom edits event `seq` of "a" (item 9 -> 0) and recomputes its
  // hash, every later hash and the snapshot's head, as an attacker with
  // the code could.
  void RewriteFrom(int64_t seq) {
    std::string prev = seq == 1 ? "" : Stored("a", seq - 1).hash;
    int64_t last = 3;
    for (int64_t s = seq; s <= last; ++s) {
      v1::Event e = SealedEvent(s, s == seq ? 0 : 1, prev);
      Exec(absl::StrCat("UPDATE events SET payload = ",
                        Backend::BlobLiteral(DeterministicBytes(e)),
                        ", hash = '", e.hash(), "' WHERE ", EventsOf("a"),
                        " AND sequence = ", s));
      prev = e.hash();
    }
    Exec(absl::StrCat("UPDATE enrollments SET snapshot = ",
                      Backend::BlobLiteral(Snapshot(last, prev)),
                      " WHERE tenant = 't1' AND id = 'a'"));
  }

  Backend backend_;
  std::unique_ptr<Store> store_;
};

TYPED_TEST_SUITE(IntegrityTest, testing::StoreBackends,
                 testing::StoreBackendName);

TYPED_TEST(IntegrityTest, UntouchedStoreIsIntact) {
  IntegrityReport r = this->Verify();
  EXPECT_TRUE(r.intact());
  EXPECT_EQ(r.enrollments_verified, 2);
  EXPECT_EQ(r.events_verified, 6);
  EXPECT_EQ(r.audit.records_verified, 3);
  Anchor anchor = this->AnchorNow();
  ASSERT_TRUE(CheckAnchor(*this->store_, anchor, r).ok());
  EXPECT_TRUE(r.intact());
  // Later events extend the anchored heads: still intact.
  this->AddEnrollment("c", 2);
  IntegrityReport later = this->Verify();
  ASSERT_TRUE(CheckAnchor(*this->store_, anchor, later).ok());
  EXPECT_TRUE(later.intact()) << later.problems.front().reason;
}

TYPED_TEST(IntegrityTest, OneEditedPayloadByteNamesTheEvent) {
  // PHQ-9 item 9 from 1 to 0: the map entry {"9": 1} is 0a 01 39 10 01.
  std::string payload = this->Stored("a", 2).payload;
  const std::string entry("\x0a\x01\x39\x10\x01", 5);
  size_t at = payload.find(entry);
  ASSERT_NE(at, std::string::npos);
  payload[at + 4] = '\0';
  this->SetPayload("a", 2, payload);

  IntegrityReport r = this->Verify();
  ASSERT_EQ(r.problems_total, 1);
  EXPECT_EQ(r.problems[0].record, "tenants/t1/enrollments/a");
  EXPECT_EQ(r.problems[0].sequence, 2);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("does not match its hash"));
}

TYPED_TEST(IntegrityTest, DeletedMiddleAndNewestRowsAreNamed) {
  this->Exec(absl::StrCat("DELETE FROM events WHERE ", EventsOf("a"),
                          " AND sequence = 2"));
  this->Exec(absl::StrCat("DELETE FROM events WHERE ", EventsOf("b"),
                          " AND sequence = 3"));
  IntegrityReport r = this->Verify();
  ASSERT_EQ(r.problems_total, 2);
  EXPECT_EQ(r.problems[0].record, "tenants/t1/enrollments/a");
  EXPECT_EQ(r.problems[0].sequence, 2);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("missing (deleted)"));
  EXPECT_EQ(r.problems[1].record, "tenants/t1/enrollments/b");
  EXPECT_EQ(r.problems[1].sequence, 3);
  EXPECT_THAT(r.problems[1].reason, HasSubstr("revision 3"));
}

TYPED_TEST(IntegrityTest, ReorderedRowsAreNamed) {
  // Swap events 2 and 3 of "a" (their rows keep their own content).
  this->Exec(absl::StrCat("UPDATE events SET sequence = 100 WHERE ",
                          EventsOf("a"), " AND sequence = 2"));
  this->Exec(absl::StrCat("UPDATE events SET sequence = 2 WHERE ",
                          EventsOf("a"), " AND sequence = 3"));
  this->Exec(absl::StrCat("UPDATE events SET sequence = 3 WHERE ",
                          EventsOf("a"), " AND sequence = 100"));
  IntegrityReport r = this->Verify();
  ASSERT_EQ(r.problems_total, 1);
  EXPECT_EQ(r.problems[0].sequence, 2);
  EXPECT_THAT(r.problems[0].reason,
              HasSubstr("holds the event recorded as 3 (rows were moved"));
}

TYPED_TEST(IntegrityTest, RecomputedChainIsFoundOnlyAgainstTheAnchor) {
  Anchor anchor = this->AnchorNow();
  this->RewriteFrom(2);
  // The chain and the snapshot hold after a full recompute...
  IntegrityReport r = this->Verify();
  EXPECT_TRUE(r.intact());
  // ...but the anchored head is gone.
  ASSERT_TRUE(CheckAnchor(*this->store_, anchor, r).ok());
  ASSERT_EQ(r.problems_total, 1);
  EXPECT_EQ(r.problems[0].record, "tenants/t1/enrollments/a");
  EXPECT_EQ(r.problems[0].sequence, 3);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("recomputed"));
}

TYPED_TEST(IntegrityTest, TruncationIsFoundAgainstTheAnchor) {
  Anchor anchor = this->AnchorNow();
  // The newest event of "b" and the newest audit record deleted, and the
  // enrollment's revision and snapshot set back to match.
  const std::string head2 = this->Stored("b", 2).hash;
  this->Exec(absl::StrCat("DELETE FROM events WHERE ", EventsOf("b"),
                          " AND sequence = 3"));
  this->Exec(absl::StrCat("UPDATE enrollments SET revision = 2, snapshot = ",
                          TypeParam::BlobLiteral(Snapshot(2, head2)),
                          " WHERE tenant = 't1' AND id = 'b'"));
  this->Exec("DELETE FROM audit WHERE seq = 3");
  IntegrityReport r = this->Verify();
  EXPECT_TRUE(r.intact());
  ASSERT_TRUE(CheckAnchor(*this->store_, anchor, r).ok());
  ASSERT_EQ(r.problems_total, 2);
  EXPECT_EQ(r.problems[0].record, "tenants/t1/enrollments/b");
  EXPECT_EQ(r.problems[0].sequence, 3);
  EXPECT_THAT(r.problems[0].reason, HasSubstr("newest events were deleted"));
  EXPECT_EQ(r.problems[1].record, "audit");
  EXPECT_EQ(r.problems[1].sequence, 3);
}

TYPED_TEST(IntegrityTest, EditedAuditRecordIsNamed) {
  this->Exec("UPDATE audit SET outcome = 'PERMISSION_DENIED' WHERE seq = 2");
  IntegrityReport r = this->Verify();
  ASSERT_EQ(r.problems_total, 1);
  EXPECT_EQ(r.problems[0].record, "audit");
  EXPECT_EQ(r.problems[0].sequence, 2);
}

TEST(AnchorFile, EditedFileOrOtherKeyIsRefused) {
  Anchor a;
  a.time = kT0;
  a.audit_seq = 7;
  a.audit_hash = "ab";
  a.events.push_back({"t1", "e1", 4, "cd"});
  std::string text = AnchorText(a, kKey);
  absl::StatusOr<Anchor> back = ParseAnchor(text, kKey);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->audit_seq, 7);
  ASSERT_EQ(back->events.size(), 1u);
  EXPECT_EQ(back->events[0].sequence, 4);
  std::string edited = text;
  edited.replace(edited.find("e1 4"), 4, "e1 3");
  EXPECT_EQ(ParseAnchor(edited, kKey).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(
      ParseAnchor(text, "another-key-another-key-another-key").status().code(),
      absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ipsrt
