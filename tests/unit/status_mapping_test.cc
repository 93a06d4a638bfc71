#include "service/status_mapping.h"

#include "gtest/gtest.h"

namespace ipsrt {
namespace {

TEST(StatusMappingTest, EveryCanonicalCodeKeepsCodeAndMessage) {
  const std::pair<absl::StatusCode, grpc::StatusCode> pairs[] = {
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded,
       grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied,
       grpc::StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted,
       grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition,
       grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const auto& [absl_code, grpc_code] : pairs) {
    absl::Status s(absl_code, "field: message");
    grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(g.error_code(), grpc_code) << s;
    EXPECT_EQ(g.error_message(), "field: message");
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(StatusMappingTest, LongMessagesAreCutToTheTrailerBound) {
  // A message quoting a 100 KB request field once broke the connection
  // (the grpc-message trailer exceeded the client's metadata limit).
  const std::string huge(100 * 1024, 'x');
  grpc::Status g = ToGrpcStatus(absl::NotFoundError(huge));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), std::string(kMaxStatusMessageBytes, 'x') +
                                   "... (message truncated from 102400 bytes)");
  // A message exactly at the bound is kept whole.
  const std::string at_bound(kMaxStatusMessageBytes, 'y');
  EXPECT_EQ(ToGrpcStatus(absl::InternalError(at_bound)).error_message(),
            at_bound);
}

TEST(StatusMappingTest, TruncationNeverSplitsAUtf8Sequence) {
  // "é" is two bytes; put one across the cut.
  std::string message(kMaxStatusMessageBytes - 1, 'a');
  message += "\xC3\xA9";
  message += std::string(100, 'b');
  std::string cut = BoundedStatusMessage(message);
  EXPECT_EQ(cut, std::string(kMaxStatusMessageBytes - 1, 'a') +
                     "... (message truncated from " +
                     std::to_string(message.size()) + " bytes)");
}

}  // namespace
}  // namespace ipsrt
