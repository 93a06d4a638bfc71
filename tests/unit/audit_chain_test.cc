// The audit trail's hash chain on a real SQLite file: appended serially by
// the store's writer (also from concurrent commits), and every kind of
// tampering done to the file with the sqlite3 library is found at the first
// broken record.
#include "store/audit_chain.h"

#include <sqlite3.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "ipsrt/sqlite_store.h"
#include "tests/testing/temp_dir.h"

namespace ipsrt {
namespace {

AuditRecord Record(int i) {
  return AuditRecord{
      .tenant = i % 2 ? "clinic-a" : "clinic-b",
      .subject = absl::StrCat("user-", i % 3),
      .role = "clinician",
      .rpc = "/ipsrt.v1.EnrollmentService/GetEnrollment",
      .resource = absl::StrCat("tenants/clinic-a/enrollments/e", i),
      .outcome = "OK",
      .time = absl::FromUnixSeconds(1'800'000'000 + i),
      .request_id = absl::StrCat("r-", i)};
}

class AuditChainTest : public ::testing::Test {
 protected:
  std::string path() const { return dir_.File("ipsrt.db"); }

  std::unique_ptr<SqliteStore> Open() {
    SqliteStore::Options o;
    o.path = path();
    absl::StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  void AppendFive() {
    std::unique_ptr<SqliteStore> store = Open();
    for (int i = 1; i <= 5; ++i) {
      WriteBatch b;
      b.audit.push_back(Record(i));
      ASSERT_TRUE(store->Commit(std::move(b)).ok());
    }
  }

  // Tamper runs SQL on the closed database file, as an attacker with the
  // file would.
  void Tamper(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }

  AuditVerification Verify() {
    std::unique_ptr<SqliteStore> store = Open();
    absl::StatusOr<AuditVerification> v = VerifyAuditTrail(*store);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : AuditVerification{};
  }

  testing::TempDir dir_;
};

TEST_F(AuditChainTest, AnUntouchedChainVerifies) {
  AppendFive();
  AuditVerification v = Verify();
  EXPECT_TRUE(v.intact);
  EXPECT_EQ(v.records_verified, 5);
  EXPECT_EQ(v.head_seq, 5);
  EXPECT_EQ(v.head_hash.size(), 64u);
  std::unique_ptr<SqliteStore> store = Open();
  absl::StatusOr<std::vector<AuditRecord>> all =
      store->ListAudit(AuditFilter{}, 0, 10);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].prev_hash, "");
  EXPECT_EQ((*all)[1].prev_hash, (*all)[0].hash);
  EXPECT_EQ((*all)[4].hash, v.head_hash);
  EXPECT_EQ((*all)[2].request_id, "r-3");
}

TEST_F(AuditChainTest, ListFiltersByTenantSubjectRpcAndTime) {
  AppendFive();
  std::unique_ptr<SqliteStore> store = Open();
  auto seqs = [&](const AuditFilter& f, int64_t after = 0) {
    std::vector<int64_t> out;
    absl::StatusOr<std::vector<AuditRecord>> rows =
        store->ListAudit(f, after, 100);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return out;
    for (const AuditRecord& r : *rows) out.push_back(r.seq);
    return out;
  };
  EXPECT_EQ(seqs({.tenant = "clinic-a"}), (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(seqs({.subject = "user-0"}), (std::vector<int64_t>{3}));
  EXPECT_EQ(seqs({.rpc = "/ipsrt.v1.EnrollmentService/GetEnrollment"}, 3),
            (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(seqs({.from = absl::FromUnixSeconds(1'800'000'002),
                  .until = absl::FromUnixSeconds(1'800'000'004)}),
            (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(seqs({.rpc = "/nope"}), (std::vector<int64_t>{}));
}

TEST_F(AuditChainTest, AModifiedRecordIsFound) {
  AppendFive();
  Tamper("UPDATE audit SET subject = 'someone-else' WHERE seq = 3");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.broken_seq, 3);
  EXPECT_EQ(v.reason,
            "record 3 does not match its hash (modified or moved, or the "
            "record before it was replaced)");
  EXPECT_EQ(v.records_verified, 2);
}

TEST_F(AuditChainTest, AModifiedRecordWithARecomputedOwnHashIsFound) {
  AppendFive();
  // The attacker fixes record 3's own hash; record 4's hash, which covers
  // record 3's, no longer matches.
  std::unique_ptr<SqliteStore> store = Open();
  AuditRecord r3 = (*store->ListAudit(AuditFilter{}, 2, 1))[0];
  store.reset();
  r3.outcome = "PERMISSION_DENIED";
  std::string forged = AuditRecordHash(r3);
  Tamper(
      absl::StrCat("UPDATE audit SET outcome = 'PERMISSION_DENIED', hash = '",
                   forged, "' WHERE seq = 3"));
  AuditVerification v = Verify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.broken_seq, 4);
  EXPECT_EQ(v.reason,
            "record 4 does not match its hash (modified or moved, or the "
            "record before it was replaced)");
}

TEST_F(AuditChainTest, ADeletedRecordIsFound) {
  AppendFive();
  Tamper("DELETE FROM audit WHERE seq = 2");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.broken_seq, 2);
  EXPECT_EQ(v.reason, "record 2 is missing (deleted): the next record is 3");
}

TEST_F(AuditChainTest, ADeletedAndRenumberedRecordIsFound) {
  AppendFive();
  Tamper(
      "DELETE FROM audit WHERE seq = 2; "
      "UPDATE audit SET seq = seq - 1 WHERE seq > 2;");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.broken_seq, 2);
  EXPECT_EQ(v.reason,
            "record 2 does not match its hash (modified or moved, or the "
            "record before it was replaced)");
}

TEST_F(AuditChainTest, SwappedRecordsAreFound) {
  AppendFive();
  // Swap the positions (seq) of records 2 and 4.
  Tamper(
      "UPDATE audit SET seq = -2 WHERE seq = 2; "
      "UPDATE audit SET seq = 2 WHERE seq = 4; "
      "UPDATE audit SET seq = 4 WHERE seq = -2;");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.broken_seq, 2);
  EXPECT_EQ(v.reason,
            "record 2 does not match its hash (modified or moved, or the "
            "record before it was replaced)");
}

TEST_F(AuditChainTest, SwappedContentsAreFound) {
  AppendFive();
  // Swap everything but seq between records 2 and 3.
  Tamper(
      "UPDATE audit SET seq = -1 WHERE seq = 2; "
      "UPDATE audit SET seq = 2 WHERE seq = 3; "
      "UPDATE audit SET seq = 3 WHERE seq = -1;");
  AuditVerification v = Verify();
  EXPECT_FALSE(v.intact);
  EXPECT_EQ(v.broken_seq, 2);
}

TEST_F(AuditChainTest, ConcurrentCommitsNeverForkTheChain) {
  std::unique_ptr<SqliteStore> store = Open();
  constexpr int kThreads = 4, kEach = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        WriteBatch b;
        b.audit.push_back(Record(t * kEach + i));
        if (!store->Commit(std::move(b)).ok()) failures++;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  absl::StatusOr<AuditVerification> v = VerifyAuditTrail(*store);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->intact) << v->reason;
  EXPECT_EQ(v->records_verified, kThreads * kEach);
}

TEST_F(AuditChainTest, AChangeAndItsRecordCommitTogether) {
  std::unique_ptr<SqliteStore> store = Open();
  // A change batch that fails (missing enrollment) leaves no record.
  WriteBatch failing;
  failing.request = {.tenant = "clinic-a",
                     .request_id = "r-x",
                     .method = "UpdateEnrollment",
                     .payload_hash = "h",
                     .create_time = absl::UnixEpoch()};
  failing.update = EnrollmentUpdate{
      1, EnrollmentRow{.tenant = "clinic-a", .id = "missing", .revision = 2}};
  failing.audit.push_back(Record(1));
  EXPECT_EQ(store->Commit(std::move(failing)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->ListAudit(AuditFilter{}, 0, 10)->empty());
}

}  // namespace
}  // namespace ipsrt
