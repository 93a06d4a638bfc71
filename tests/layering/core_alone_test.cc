// Links ipsrt_core and what it needs (runtime, the Store contract without a
// backend, the plugin registry without its transports) and nothing else:
// events stepped, sealed into the hash chain and verified as the engine
// does, with no store backend, no plugin loader and no gRPC.
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/enrollments.h"
#include "core/event_chain.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "ipsrt/store.h"
#include "runtime/step.h"
#include "tests/layering/standard_workflow.h"

namespace ipsrt {
namespace {

using ::google::protobuf::util::TimeUtil;

constexpr char kName[] = "tenants/t/enrollments/e1";

// Steps and seals `payloads` from the empty state into stored rows.
std::vector<EventRow> SealedRows(const WorkflowTemplate& w,
                                 std::vector<v1::EventPayload> payloads,
                                 internal::EnrollmentState& state) {
  std::vector<EventRow> rows;
  absl::Time now = absl::FromUnixSeconds(1772442000);
  state.mutable_enrollment()->set_name(kName);
  for (v1::EventPayload& payload : payloads) {
    v1::Event event;
    event.set_sequence(state.enrollment().revision() + 1);
    event.set_type(runtime::EventTypeFor(payload));
    *event.mutable_record_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
    *event.mutable_payload() = std::move(payload);
    absl::StatusOr<runtime::StepResult> r =
        runtime::Step(w, &Enrollments::LoadZone, state, event);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return rows;
    std::string prev = state.last_event_hash();
    SealEvent(prev, *r, event);
    state = std::move(r->state);
    EventRow row;
    row.tenant = "t";
    row.enrollment_id = "e1";
    row.sequence = event.sequence();
    row.payload = DeterministicBytes(event);
    row.prev_hash = prev;
    row.hash = event.hash();
    rows.push_back(std::move(row));
    now += absl::Hours(24 * 7);
  }
  return rows;
}

TEST(CoreAloneTest, SealedEventsVerifyAndAnEditedOneBreaksTheChain) {
  const WorkflowTemplate* w = StandardWorkflow();
  ASSERT_NE(w, nullptr);

  std::vector<v1::EventPayload> payloads(3);
  v1::EnrollmentCreated* created = payloads[0].mutable_enrollment_created();
  created->set_patient_ref("Patient/1");
  created->set_workflow_id(w->id);
  created->set_workflow_version(w->version);
  created->set_time_zone("America/New_York");
  created->set_clinician_ref("Practitioner/1");
  payloads[1].mutable_session_held();
  payloads[2].mutable_session_held();
  internal::EnrollmentState state;
  std::vector<EventRow> rows = SealedRows(*w, std::move(payloads), state);
  ASSERT_EQ(rows.size(), 3u);

  EventChainVerifier chain(kName);
  for (const EventRow& row : rows) EXPECT_FALSE(chain.Feed(row).has_value());
  EXPECT_FALSE(
      chain.ExpectHead(state.enrollment().revision(), state.last_event_hash())
          .has_value());
  EXPECT_TRUE(chain.Error().ok());

  rows[1].payload.back() ^= 1;
  EventChainVerifier edited(kName);
  EXPECT_FALSE(edited.Feed(rows[0]).has_value());
  std::optional<EventChainVerifier::Break> broken = edited.Feed(rows[1]);
  ASSERT_TRUE(broken.has_value());
  EXPECT_EQ(broken->sequence, 2);
  EXPECT_EQ(edited.Error().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ipsrt
