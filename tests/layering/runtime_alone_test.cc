// Links ipsrt_runtime and what it needs (model, expr, instruments, the
// generated messages) and nothing else: no core, no store, no gRPC. A
// course of the shipped standard workflow through Step, then Replay of
// its events, proves the pure core works on its own (see CMakeLists.txt
// for the link-closure checks beside it).
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "instruments/fixed_instruments.h"
#include "runtime/step.h"
#include "tests/layering/standard_workflow.h"

namespace ipsrt {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::google::protobuf::util::TimeUtil;

absl::StatusOr<absl::TimeZone> LoadZone(const std::string& name) {
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(name, &zone)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown zone ", name));
  }
  return zone;
}

class Course {
 public:
  Course(const WorkflowTemplate& w, absl::Time start) : w_(w), now_(start) {
    state_.mutable_enrollment()->set_name(kName);
    v1::EventPayload p;
    v1::EnrollmentCreated* c = p.mutable_enrollment_created();
    c->set_patient_ref("Patient/1");
    c->set_workflow_id(w.id);
    c->set_workflow_version(w.version);
    c->set_time_zone("Europe/Berlin");
    c->set_clinician_ref("Practitioner/1");
    Submit(std::move(p));
  }

  // Submit steps one event at the current time, with the scores the engine
  // would have recorded on it.
  std::vector<v1::Outcome> Submit(
      v1::EventPayload payload,
      const std::map<std::string, double>& scores = {}) {
    v1::Event event;
    *event.mutable_payload() = std::move(payload);
    event.set_type(runtime::EventTypeFor(event.payload()));
    event.set_sequence(state_.enrollment().revision() + 1);
    *event.mutable_record_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now_));
    event.mutable_scores()->insert(scores.begin(), scores.end());
    absl::StatusOr<runtime::StepResult> r =
        runtime::Step(w_, &LoadZone, state_, event);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    state_ = std::move(r->state);
    events_.push_back(std::move(event));
    return r->outcomes;
  }

  void Answer(const std::string& instrument, const std::vector<int>& values) {
    v1::EventPayload p;
    v1::QuestionnaireResponse* r = p.mutable_questionnaire_response();
    r->set_questionnaire_id(instrument);
    for (size_t i = 0; i < values.size(); ++i) {
      (*r->mutable_answers())[absl::StrCat(i + 1)] = values[i];
    }
    absl::StatusOr<ScoredResponse> scored = ScoreFixedInstrument(*r, "event");
    ASSERT_TRUE(scored.ok()) << scored.status();
    Submit(std::move(p), {scored->scores.begin(), scored->scores.end()});
  }

  static constexpr char kName[] = "tenants/t/enrollments/e1";
  const WorkflowTemplate& w_;
  absl::Time now_;
  internal::EnrollmentState state_;
  std::vector<v1::Event> events_;
};

TEST(RuntimeAloneTest, StepsTheStandardWorkflowIntoItsSecondStage) {
  const WorkflowTemplate* w = StandardWorkflow();
  ASSERT_NE(w, nullptr);

  Course c(*w, absl::FromUnixSeconds(1772442000));  // 2026-03-02 09:00 UTC
  EXPECT_EQ(c.state_.enrollment().stage(), "initial");
  for (const char* task : {"history", "interpersonal-inventory", "life-chart",
                           "routines-review"}) {
    c.now_ += absl::Hours(1);
    v1::EventPayload done;
    done.mutable_task_completed()->set_task_id(task);
    c.Submit(std::move(done));
  }
  c.Answer("phq9", {1, 1, 0, 1, 0, 0, 1, 0, 0});
  c.Answer("gad7", {1, 0, 1, 0, 0, 1, 0});
  c.Answer("asrm", {0, 1, 0, 0, 1});
  std::vector<v1::Outcome> last;
  for (int i = 0; i < 3; ++i) {
    c.now_ += absl::Hours(24 * 7);
    v1::EventPayload session;
    session.mutable_session_held();
    last = c.Submit(std::move(session));
  }
  EXPECT_EQ(c.state_.enrollment().stage(), "intermediate");
  bool changed = false;
  for (const v1::Outcome& o : last) {
    changed |= o.kind() == v1::Outcome::STAGE_CHANGED;
  }
  EXPECT_TRUE(changed);
  EXPECT_EQ(c.state_.enrollment().revision(),
            static_cast<int64_t>(c.events_.size()));

  absl::StatusOr<internal::EnrollmentState> replayed =
      runtime::Replay(*w, &LoadZone, Course::kName, c.events_);
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*replayed, c.state_));
}

}  // namespace
}  // namespace ipsrt
