#include "common/ids.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace ipsrt {
namespace {

TEST(RandomIdGeneratorTest, ShapeUniquenessAndTimeOrder) {
  RandomIdGenerator ids;
  std::set<std::string> seen;
  absl::Time t = absl::FromUnixMillis(1790000000000);
  std::string previous;
  for (int i = 0; i < 2000; ++i) {
    std::string id = ids.NewId(t + absl::Milliseconds(i));
    ASSERT_EQ(id.size(), 26u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdefghjkmnpqrstvwxyz"),
              std::string::npos)
        << id;
    EXPECT_TRUE(seen.insert(id).second) << "duplicate " << id;
    // The first ten characters encode the time: later ids sort later.
    EXPECT_GT(id.substr(0, 10),
              previous.substr(0, std::min<size_t>(10, previous.size())));
    previous = id;
  }
}

TEST(RandomIdGeneratorTest, SameMillisecondStillUnique) {
  RandomIdGenerator ids;
  std::set<std::string> seen;
  absl::Time t = absl::FromUnixMillis(1790000000000);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(seen.insert(ids.NewId(t)).second);
}

}  // namespace
}  // namespace ipsrt
