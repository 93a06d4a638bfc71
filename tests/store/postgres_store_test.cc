// PostgresStore behaviour beyond the common contract: migrations under an
// advisory lock, refusing a newer schema, the password kept out of errors,
// and a server restart under a running store.
#include "ipsrt/postgres_store.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/migrations.h"
#include "store/request_window.h"
#include "tests/store/store_backends.h"

namespace ipsrt {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::SharedPostgres;

WriteBatch SmallCreate(const std::string& id) {
  WriteBatch b;
  absl::Time at = absl::FromUnixSeconds(1790000000);
  b.request =
      RequestRecord{"t1", "r-" + id, "CreateEnrollment", "h", "resp-" + id, at};
  EnrollmentRow e;
  e.tenant = "t1";
  e.id = id;
  e.patient_ref = "Patient/1";
  e.workflow_id = "w";
  e.workflow_version = 1;
  e.stage = "s";
  e.clinician_ref = "c";
  e.state = 1;
  e.revision = 1;
  e.snapshot = "x";
  e.create_time = at;
  e.update_time = at;
  b.create = e;
  return b;
}

PostgresStore::Options OptionsFor(const std::string& database) {
  PostgresStore::Options o;
  o.conninfo = SharedPostgres().Conninfo(database);
  o.pool_size = 2;
  return o;
}

TEST(PostgresStoreTest, ReplicasStartingTogetherMigrateOnce) {
  std::string db = testing::NewDatabaseName();
  ASSERT_TRUE(SharedPostgres().CreateDatabase(db).ok());
  constexpr int kReplicas = 6;
  std::vector<absl::Status> results(kReplicas);
  std::vector<std::unique_ptr<PostgresStore>> stores(kReplicas);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<std::unique_ptr<PostgresStore>> s =
          PostgresStore::Open(OptionsFor(db));
      results[i] = s.status();
      if (s.ok()) stores[i] = *std::move(s);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kReplicas; ++i) {
    EXPECT_TRUE(results[i].ok()) << "replica " << i << ": " << results[i];
    if (stores[i]) {
      EXPECT_EQ(stores[i]->SchemaVersion(), kSchemaVersion);
    }
  }
  EXPECT_EQ(*SharedPostgres().Psql(
                db,
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                "schema_migrations"),
            "1,2,3,4,5,6,7,8,9,10");
  EXPECT_EQ(*SharedPostgres().Psql(
                db,
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = "
                "'public'"),
            "8");
}

// A database of schema 3 (its migrations, which never change once
// released) moves to schema 4: the keys of its request ids are the ones the
// engine computes (RequestKey), so a late retry of an old request is
// recognised, and its records still replay.
TEST(PostgresStoreTest, MigratesASchema3Database) {
  std::string db = testing::NewDatabaseName();
  ASSERT_TRUE(SharedPostgres().CreateDatabase(db).ok());
  std::string sql =
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
      "description TEXT NOT NULL, applied_time_us BIGINT NOT NULL);";
  for (const Migration& m : PostgresMigrations()) {
    if (m.version > 3) break;
    absl::StrAppend(&sql, m.sql, "\nINSERT INTO schema_migrations VALUES (",
                    m.version, ", 'm', 1);\n");
  }
  absl::StrAppend(
      &sql,
      "INSERT INTO enrollments VALUES ('t1', 'e1', 'Patient/1', 'w', 1, 's', "
      "'c', 1, 1, '\\x0a01', 1, 1);"
      "INSERT INTO requests VALUES ('t1', 'r-e1', 'CreateEnrollment', 'h', "
      "'resp-e1', 1), ('t1', 'r-\u00e9', 'CreateEnrollment', 'h', 'x', 1);");
  ASSERT_TRUE(SharedPostgres().Psql(db, sql).ok());

  absl::StatusOr<std::unique_ptr<PostgresStore>> store =
      PostgresStore::Open(OptionsFor(db));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->SchemaVersion(), kSchemaVersion);
  EXPECT_EQ(
      *SharedPostgres().Psql(
          db,
          "SELECT string_agg(key::text, ',' ORDER BY key) FROM "
          "request_keys"),
      absl::StrCat(
          std::min(RequestKey("t1", "r-e1"), RequestKey("t1", "r-\u00e9")), ",",
          std::max(RequestKey("t1", "r-e1"), RequestKey("t1", "r-\u00e9"))));
  absl::StatusOr<CommitResult> retry = (*store)->Commit(SmallCreate("e1"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->replayed);
  EXPECT_EQ(retry->response, "resp-e1");
  absl::StatusOr<EnrollmentRow> row = (*store)->GetEnrollment("t1", "e1");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->snapshot, "\x0a\x01");
  EXPECT_EQ(*SharedPostgres().Psql(
                db,
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname IN "
                "('outbox_by_enrollment', 'audit_by_subject', "
                "'audit_by_tenant_time')"),
            "0");
}

TEST(PostgresStoreTest, RefusesNewerSchema) {
  std::string db = testing::NewDatabaseName();
  ASSERT_TRUE(SharedPostgres().CreateDatabase(db).ok());
  { ASSERT_TRUE(PostgresStore::Open(OptionsFor(db)).ok()); }
  ASSERT_TRUE(SharedPostgres()
                  .Psql(db,
                        "INSERT INTO schema_migrations VALUES (999, 'future', "
                        "0)")
                  .ok());
  absl::StatusOr<std::unique_ptr<PostgresStore>> s =
      PostgresStore::Open(OptionsFor(db));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.status().message(),
            "store: database schema version 999 is newer than this ipsrtd "
            "supports (10); run a newer ipsrtd");
}

TEST(PostgresStoreTest, UnreachableServerIsUnavailableWithoutPassword) {
  PostgresStore::Options o;
  // A port nobody listens on (the test server's port plus one is not
  // guaranteed free, so use a closed, reserved one).
  o.conninfo = "host=127.0.0.1 port=1 dbname=x user=ipsrtd";
  o.password = "s3cret-pa55";
  absl::StatusOr<std::unique_ptr<PostgresStore>> s = PostgresStore::Open(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.status().message(),
              HasSubstr("store: cannot connect to PostgreSQL: "));
  EXPECT_THAT(s.status().message(), Not(HasSubstr("s3cret")));
  // libpq's lines and tab-indented hint become one line of single spaces.
  EXPECT_THAT(s.status().message(),
              HasSubstr("failed: Connection refused Is the server running"));
  EXPECT_THAT(s.status().message(), Not(HasSubstr("\t")));
  EXPECT_THAT(s.status().message(), Not(HasSubstr("\n")));
  EXPECT_THAT(s.status().message(), Not(HasSubstr("  ")));
}

TEST(PostgresStoreTest, PasswordAuthenticationWithoutEchoingThePassword) {
  std::string db = testing::NewDatabaseName();
  ASSERT_TRUE(SharedPostgres().CreateDatabase(db).ok());
  ASSERT_TRUE(SharedPostgres()
                  .Psql("postgres",
                        absl::StrCat("CREATE ROLE ", testing::kPasswordUser,
                                     " LOGIN PASSWORD 'right-one'; "
                                     "ALTER DATABASE ",
                                     db, " OWNER TO ", testing::kPasswordUser))
                  .ok());
  PostgresStore::Options o = OptionsFor(db);
  o.conninfo = absl::StrCat("host=127.0.0.1 port=", SharedPostgres().port(),
                            " dbname=", db, " user=", testing::kPasswordUser);
  o.password = "wrong-one-xyz";
  absl::StatusOr<std::unique_ptr<PostgresStore>> s = PostgresStore::Open(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.status().message(),
              HasSubstr("password authentication failed for user"));
  EXPECT_THAT(s.status().message(), Not(HasSubstr("wrong-one-xyz")));

  o.password = "right-one";
  s = PostgresStore::Open(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)->Commit(SmallCreate("e1")).ok());
}

// The server restarts under a running store: calls fail UNAVAILABLE while
// it is down, nothing half-written remains, and the store reconnects by
// itself once it is back.
TEST(PostgresStoreTest, ServerRestartUnderTheStore) {
  std::string db = testing::NewDatabaseName();
  ASSERT_TRUE(SharedPostgres().CreateDatabase(db).ok());
  PostgresStore::Options o = OptionsFor(db);
  o.pool_size = 3;
  o.connect_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<PostgresStore>> opened =
      PostgresStore::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<PostgresStore> store = *std::move(opened);
  // Concurrent commits open every pooled connection, so that each has to
  // notice the restart.
  {
    absl::BlockingCounter pending(6);
    std::atomic<int> ok{0};
    for (int i = 0; i < 6; ++i) {
      store->CommitAsync(SmallCreate(absl::StrCat("before", i)),
                         [&](absl::StatusOr<CommitResult> r) {
                           if (r.ok()) ++ok;
                           pending.DecrementCount();
                         });
    }
    pending.Wait();
    ASSERT_EQ(ok, 6);
  }
  ASSERT_GE(std::stoi(*SharedPostgres().Psql(
                "postgres",
                absl::StrCat("SELECT COUNT(*) FROM pg_stat_activity WHERE "
                             "datname = '",
                             db, "'"))),
            2);

  // A quick restart that no call sees: every pooled connection is stale
  // afterwards, yet the next calls succeed at once.
  ASSERT_TRUE(SharedPostgres().Stop().ok());
  ASSERT_TRUE(SharedPostgres().StartAgain().ok());
  EXPECT_TRUE(store->GetEnrollment("t1", "before1").ok());
  absl::StatusOr<CommitResult> quick = store->Commit(SmallCreate("quick"));
  EXPECT_TRUE(quick.ok()) << quick.status();

  ASSERT_TRUE(SharedPostgres().Stop().ok());
  absl::StatusOr<CommitResult> down = store->Commit(SmallCreate("down"));
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable)
      << down.status();
  EXPECT_EQ(store->GetEnrollment("t1", "before0").status().code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(SharedPostgres().StartAgain().ok());

  // Back: every call succeeds at once, on re-opened connections.
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<CommitResult> r =
        store->Commit(SmallCreate(absl::StrCat("after", i)));
    EXPECT_TRUE(r.ok()) << r.status();
  }
  EXPECT_TRUE(store->GetEnrollment("t1", "before5").ok());
  EXPECT_EQ(store->GetEnrollment("t1", "down").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(store->LookupRequest("t1", "r-down")->has_value());
  EXPECT_EQ(*SharedPostgres().Psql(db, "SELECT COUNT(*) FROM enrollments"),
            "13");
  EXPECT_EQ(*SharedPostgres().Psql(db, "SELECT COUNT(*) FROM requests"), "13");
}

// A restart in the middle of a stream of commits: every commit either
// succeeded (and is stored once) or failed UNAVAILABLE (and left nothing,
// or - when only the COMMIT's answer was lost - is replayed by a retry).
TEST(PostgresStoreTest, RestartDuringLoadLosesNothingAcknowledged) {
  std::string db = testing::NewDatabaseName();
  ASSERT_TRUE(SharedPostgres().CreateDatabase(db).ok());
  PostgresStore::Options o = OptionsFor(db);
  o.pool_size = 4;
  o.connect_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<PostgresStore>> opened =
      PostgresStore::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<PostgresStore> store = *std::move(opened);

  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged{0}, unavailable{0}, other{0};
  std::vector<std::string> failed_ids[4];
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop; ++i) {
        std::string id = absl::StrCat("w", w, "-", i);
        absl::StatusOr<CommitResult> r = store->Commit(SmallCreate(id));
        if (r.ok()) {
          ++acknowledged;
        } else if (absl::IsUnavailable(r.status())) {
          ++unavailable;
          failed_ids[w].push_back(id);
          absl::SleepFor(absl::Milliseconds(20));
        } else {
          ++other;
          ADD_FAILURE() << r.status();
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE(SharedPostgres().Stop().ok());
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_TRUE(SharedPostgres().StartAgain().ok());
  absl::SleepFor(absl::Milliseconds(300));
  stop = true;
  for (std::thread& t : writers) t.join();
  EXPECT_GT(unavailable, 0);
  EXPECT_EQ(other, 0);

  // Retrying every failed request with its request id settles each one:
  // applied now, or replayed because its COMMIT had gone through.
  for (auto& ids : failed_ids) {
    for (const std::string& id : ids) {
      absl::StatusOr<CommitResult> r = store->Commit(SmallCreate(id));
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->response, "resp-" + id);
      ++acknowledged;
    }
  }
  std::string stored =
      *SharedPostgres().Psql(db, "SELECT COUNT(*) FROM enrollments");
  EXPECT_EQ(std::stoi(stored), acknowledged.load());
  EXPECT_EQ(*SharedPostgres().Psql(db, "SELECT COUNT(*) FROM requests"),
            stored);
}

}  // namespace
}  // namespace ipsrt
