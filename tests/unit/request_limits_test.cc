#include "service/request_limits.h"

#include <string>

#include "gtest/gtest.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "ipsrt/v1/questionnaire.pb.h"
#include "ipsrt/v1/workflow.pb.h"

namespace ipsrt {
namespace {

TEST(RequestLimitsTest, StringOverTheDefaultIsRefusedByFieldAndLimit) {
  v1::GetQuestionnaireRequest r;
  r.set_id(std::string(kMaxStringBytes, 'a'));
  EXPECT_TRUE(CheckRequestLimits(r).ok());
  r.set_id(std::string(102400, 'a'));
  absl::Status s = CheckRequestLimits(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "request field id is 102400 bytes; the limit is 1024 bytes");
}

TEST(RequestLimitsTest, NestedAndRepeatedFieldsNameTheirPath) {
  v1::ScoreResponseRequest r;
  for (int i = 0; i < 3; ++i) r.add_days();
  r.mutable_days(2)->add_activities()->set_activity(std::string(2000, 'x'));
  absl::Status s = CheckRequestLimits(r);
  EXPECT_EQ(s.message(),
            "request field days[2].activities[0].activity is 2000 bytes; the "
            "limit is 1024 bytes");

  v1::ScoreResponseRequest many;
  for (int i = 0; i < 367; ++i) many.add_days();
  EXPECT_EQ(CheckRequestLimits(many).message(),
            "request field days has 367 elements; the limit is 366");
}

TEST(RequestLimitsTest, MapsCountEntriesAndCheckKeys) {
  v1::CreateEnrollmentRequest r;
  for (int i = 0; i < 64; ++i) {
    (*r.mutable_labels())["k" + std::to_string(i)] = "v";
  }
  EXPECT_TRUE(CheckRequestLimits(r).ok());
  (*r.mutable_labels())["one-more"] = "v";
  EXPECT_EQ(CheckRequestLimits(r).message(),
            "request field labels has 65 elements; the limit is 64");

  v1::CreateEnrollmentRequest long_value;
  (*long_value.mutable_labels())["k"] = std::string(5000, 'v');
  EXPECT_EQ(CheckRequestLimits(long_value).message(),
            "request field labels[0].value is 5000 bytes; the limit is 1024 "
            "bytes");
}

TEST(RequestLimitsTest, OverriddenFieldsTakeTheirOwnLimit) {
  v1::ValidateWorkflowRequest r;
  r.set_yaml(std::string(500 * 1024, '#'));  // a large template is fine
  EXPECT_TRUE(CheckRequestLimits(r).ok());
  r.set_yaml(std::string((1 << 20) + 1, '#'));
  EXPECT_EQ(CheckRequestLimits(r).message(),
            "request field yaml is 1048577 bytes; the limit is 1048576 bytes");
}

}  // namespace
}  // namespace ipsrt
