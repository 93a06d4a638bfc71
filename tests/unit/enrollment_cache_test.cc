#include "store/enrollment_cache.h"

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ipsrt {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1790000000);

EnrollmentRow Row(const std::string& id, int64_t revision,
                  size_t snapshot_bytes = 100) {
  EnrollmentRow r;
  r.tenant = "t1";
  r.id = id;
  r.patient_ref = "Patient/" + id;
  r.workflow_id = "ipsrt-standard";
  r.workflow_version = 1;
  r.stage = "initial";
  r.state = 1;
  r.revision = revision;
  r.snapshot = std::string(snapshot_bytes, 's');
  r.create_time = kT0;
  r.update_time = kT0 + absl::Seconds(revision);
  return r;
}

std::vector<EnrollmentCache::Written> Created(EnrollmentRow row) {
  return {EnrollmentCache::Written{std::move(row), /*created=*/true}};
}
std::vector<EnrollmentCache::Written> Updated(EnrollmentRow row) {
  return {EnrollmentCache::Written{std::move(row), /*created=*/false}};
}

TEST(EnrollmentCacheTest, PublishedRowsAreReadBack) {
  EnrollmentCache cache(1 << 20);
  EXPECT_FALSE(cache.Lookup("t1", "e1").has_value());
  cache.Publish(Created(Row("e1", 1)));
  std::optional<EnrollmentRow> row = cache.Lookup("t1", "e1");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->revision, 1);
  EXPECT_FALSE(cache.Lookup("t2", "e1").has_value());
  EXPECT_FALSE(cache.Lookup("t1", "e2").has_value());
  // Tenant and id are kept apart: "t1"+"1e" is not "t11"+"e".
  cache.Publish(Created(Row("1e", 1)));
  EXPECT_FALSE(cache.Lookup("t11", "e").has_value());
  EnrollmentCache::Counts c = cache.counts();
  EXPECT_EQ(c.hits, 1);
  EXPECT_EQ(c.misses, 4);
  EXPECT_EQ(c.rows, 2);
}

// A reader that read the database before a commit was published must not
// cache what it read: the commit may have written a newer row, possibly
// one the cache no longer holds.
TEST(EnrollmentCacheTest, AFillOlderThanAPublishedCommitIsDropped) {
  EnrollmentCache cache(1 << 20);
  uint64_t ticket = cache.Ticket();
  cache.Publish(Updated(Row("e1", 2)));  // not cached: nothing to update
  cache.Fill(Row("e1", 1), ticket);      // read before the commit
  EXPECT_FALSE(cache.Lookup("t1", "e1").has_value());

  ticket = cache.Ticket();
  cache.Fill(Row("e1", 2), ticket);
  ASSERT_TRUE(cache.Lookup("t1", "e1").has_value());
  EXPECT_EQ(cache.Lookup("t1", "e1")->revision, 2);

  // A commit of another enrollment ends the ticket too (one epoch).
  ticket = cache.Ticket();
  cache.Publish(Created(Row("e2", 1)));
  cache.Fill(Row("e3", 1), ticket);
  EXPECT_FALSE(cache.Lookup("t1", "e3").has_value());
}

TEST(EnrollmentCacheTest, UpdateKeepsCreateTimeAndTimesAreMicroseconds) {
  EnrollmentCache cache(1 << 20);
  EnrollmentRow created = Row("e1", 1);
  created.create_time = kT0 + absl::Nanoseconds(1500);
  created.update_time = kT0 + absl::Nanoseconds(2999);
  cache.Publish(Created(created));
  std::optional<EnrollmentRow> row = cache.Lookup("t1", "e1");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->create_time, kT0 + absl::Microseconds(1));
  EXPECT_EQ(row->update_time, kT0 + absl::Microseconds(2));

  // An update row's create_time is not what the database keeps.
  EnrollmentRow updated = Row("e1", 2);
  updated.create_time = absl::UnixEpoch();
  updated.stage = "intermediate";
  cache.Publish(Updated(updated));
  row = cache.Lookup("t1", "e1");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->revision, 2);
  EXPECT_EQ(row->stage, "intermediate");
  EXPECT_EQ(row->create_time, kT0 + absl::Microseconds(1));
}

TEST(EnrollmentCacheTest, EvictsTheLeastRecentlyUsedWithinItsBytes) {
  // Room for two rows of 1,000 snapshot bytes, not three.
  EnrollmentCache cache(3000);
  cache.Publish(Created(Row("e1", 1, 1000)));
  cache.Publish(Created(Row("e2", 1, 1000)));
  ASSERT_TRUE(cache.Lookup("t1", "e1").has_value());  // e2 is now oldest
  cache.Publish(Created(Row("e3", 1, 1000)));
  EXPECT_TRUE(cache.Lookup("t1", "e1").has_value());
  EXPECT_FALSE(cache.Lookup("t1", "e2").has_value());
  EXPECT_TRUE(cache.Lookup("t1", "e3").has_value());
  EXPECT_LE(cache.counts().bytes, 3000);
  EXPECT_EQ(cache.counts().rows, 2);
}

// A row that outgrew the cache leaves it: its older version must not stay.
TEST(EnrollmentCacheTest, ARowLargerThanTheCacheIsDroppedNotLeftStale) {
  EnrollmentCache cache(3000);
  cache.Publish(Created(Row("e1", 1, 100)));
  ASSERT_TRUE(cache.Lookup("t1", "e1").has_value());
  cache.Publish(Updated(Row("e1", 2, 10000)));
  EXPECT_FALSE(cache.Lookup("t1", "e1").has_value());
  EXPECT_EQ(cache.counts().bytes, 0);
}

TEST(EnrollmentCacheTest, ClearDropsRowsAndEndsTickets) {
  EnrollmentCache cache(1 << 20);
  cache.Publish(Created(Row("e1", 1)));
  uint64_t ticket = cache.Ticket();
  cache.Clear();
  EXPECT_FALSE(cache.Lookup("t1", "e1").has_value());
  cache.Fill(Row("e1", 1), ticket);
  EXPECT_FALSE(cache.Lookup("t1", "e1").has_value());
  EXPECT_EQ(cache.counts().rows, 0);
}

}  // namespace
}  // namespace ipsrt
