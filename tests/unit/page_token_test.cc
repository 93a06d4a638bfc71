#include "common/page_token.h"

#include "gtest/gtest.h"

namespace ipsrt {
namespace {

TEST(PageTokenTest, RoundTrip) {
  PagePosition p{"abc123", 1790000000123456, "01jabcdef"};
  std::string token = EncodePageToken(p);
  absl::StatusOr<PagePosition> back = DecodePageToken(token, "abc123");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key_int, p.key_int);
  EXPECT_EQ(back->key_text, p.key_text);
  EXPECT_EQ(token.find_first_of("+/"), std::string::npos);
}

TEST(PageTokenTest, OtherFiltersRefused) {
  std::string token = EncodePageToken(PagePosition{"abc", 1, "x"});
  absl::StatusOr<PagePosition> back = DecodePageToken(token, "def");
  EXPECT_EQ(back.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(back.status().message(),
            "page_token: was made for a listing with other filters; start "
            "again without a page token");
}

TEST(PageTokenTest, GarbageRefused) {
  for (const char* garbage : {"!!!", "bm90IGEgdG9rZW4", ""}) {
    absl::StatusOr<PagePosition> back = DecodePageToken(garbage, "abc");
    EXPECT_EQ(back.status().code(), absl::StatusCode::kInvalidArgument)
        << garbage;
    EXPECT_EQ(back.status().message(),
              "page_token: not a token returned by this server");
  }
}

TEST(PageTokenTest, ClampPageSize) {
  EXPECT_EQ(*ClampPageSize(0, 50, 500), 50);
  EXPECT_EQ(*ClampPageSize(7, 50, 500), 7);
  EXPECT_EQ(*ClampPageSize(5000, 50, 500), 500);
  EXPECT_EQ(ClampPageSize(-1, 50, 500).status().message(),
            "page_size: must not be negative");
}

}  // namespace
}  // namespace ipsrt
