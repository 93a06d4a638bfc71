#include "service/reminder_service.h"

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/page_token.h"
#include "common/thread_name.h"
#include "common/validation.h"
#include "core/enrollments.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/status_macros.h"
#include "ipsrt/v1/reminder.grpc.pb.h"
#include "runtime/step.h"
#include "service/status_mapping.h"

namespace ipsrt {
namespace {

using google::protobuf::util::TimeUtil;
using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

constexpr int kFeedBatch = 100;

v1::Reminder::Status PublicStatus(OutboxStatus s) {
  switch (s) {
    case OutboxStatus::kScheduled:
    case OutboxStatus::kClaimed:
    case OutboxStatus::kRetryWait:
      return v1::Reminder::SCHEDULED;
    case OutboxStatus::kDone:
      return v1::Reminder::SENT;
    case OutboxStatus::kAcknowledged:
      return v1::Reminder::ACKNOWLEDGED;
    case OutboxStatus::kCancelled:
      return v1::Reminder::CANCELLED;
    case OutboxStatus::kFailed:
      return v1::Reminder::FAILED;
  }
  return v1::Reminder::STATUS_UNSPECIFIED;
}

std::vector<OutboxStatus> StoreStatuses(v1::Reminder::Status s) {
  switch (s) {
    case v1::Reminder::SCHEDULED:
      return {OutboxStatus::kScheduled, OutboxStatus::kClaimed,
              OutboxStatus::kRetryWait};
    case v1::Reminder::SENT:
      return {OutboxStatus::kDone};
    case v1::Reminder::ACKNOWLEDGED:
      return {OutboxStatus::kAcknowledged};
    case v1::Reminder::CANCELLED:
      return {OutboxStatus::kCancelled};
    case v1::Reminder::FAILED:
      return {OutboxStatus::kFailed};
    default:
      return {};
  }
}

// ZoneCache reads each enrollment's zone once per call.
class ZoneCache {
 public:
  explicit ZoneCache(Store* store) : store_(store) {}
  std::string ZoneOf(const std::string& tenant, const std::string& id) {
    auto key = std::pair(tenant, id);
    auto it = zones_.find(key);
    if (it != zones_.end()) return it->second;
    std::string zone;
    absl::StatusOr<EnrollmentRow> row = store_->GetEnrollment(tenant, id);
    internal::EnrollmentState state;
    if (row.ok() && state.ParseFromString(row->snapshot)) {
      zone = state.enrollment().time_zone();
    }
    zones_.emplace(key, zone);
    return zone;
  }

 private:
  Store* store_;
  std::map<std::pair<std::string, std::string>, std::string> zones_;
};

v1::Reminder ToReminder(const OutboxEntry& e, ZoneCache& zones) {
  v1::Reminder r;
  r.set_name(absl::StrCat("tenants/", e.row.tenant, "/enrollments/",
                          e.row.enrollment_id, "/reminders/", e.id));
  r.set_enrollment(absl::StrCat("tenants/", e.row.tenant, "/enrollments/",
                                e.row.enrollment_id));
  r.set_task_id(e.row.payload);
  r.set_kind(e.row.kind);
  *r.mutable_due_time() =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(e.row.due_time));
  std::string zone_name = zones.ZoneOf(e.row.tenant, e.row.enrollment_id);
  absl::StatusOr<absl::TimeZone> zone = Enrollments::LoadZone(zone_name);
  if (zone.ok()) {
    r.set_local_due_time(runtime::FormatLocal(e.row.due_time, *zone));
    r.set_time_zone(zone_name);
  }
  r.set_status(PublicStatus(e.status));
  r.set_attempts(e.attempts);
  r.set_idempotency_key(e.row.idempotency_key);
  if (e.change_seq > 0) r.set_cursor(absl::StrCat(e.change_seq));
  return r;
}

// A reminder's name:
// "tenants/{tenant}/enrollments/{enrollment}/reminders/{id}". Reminders are
// named under their enrollment, so the same tenant and patient scope applies to
// them as to the enrollment itself.
struct ReminderName {
  std::string tenant;
  std::string enrollment_id;
  int64_t id = 0;
};

absl::StatusOr<ReminderName> ParseReminderName(absl::string_view field,
                                               absl::string_view name) {
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  ReminderName out;
  if (parts.size() != 6 || parts[0] != "tenants" || parts[1].empty() ||
      parts[2] != "enrollments" || parts[3].empty() ||
      parts[4] != "reminders" || !absl::SimpleAtoi(parts[5], &out.id) ||
      out.id < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        field,
        ": must be tenants/{tenant}/enrollments/{enrollment}/reminders/{id}, "
        "got \"",
        name, "\""));
  }
  out.tenant = std::string(parts[1]);
  out.enrollment_id = std::string(parts[3]);
  return out;
}

class WatchHub;

// WatchReactor streams one tenant's change feed. The hub thread fills its
// queue; gRPC's OnWriteDone drains it one write at a time. Only the hub
// deletes a reactor (after OnDone), so a pointer the hub copied stays valid
// for the whole poll.
class WatchReactor final : public grpc::ServerWriteReactor<v1::Reminder> {
 public:
  WatchReactor(WatchHub* hub, std::string tenant, int64_t cursor)
      : hub_(hub), tenant_(std::move(tenant)), cursor_(cursor) {}

  const std::string& tenant() const { return tenant_; }

  // Wants tells the hub whether to fetch more (idle, nothing queued) and
  // from which position.
  bool Wants(int64_t* after) {
    absl::MutexLock lock(&mu_);
    if (finished_ || writing_ || !queue_.empty()) return false;
    *after = cursor_;
    return true;
  }

  void Push(std::vector<v1::Reminder> reminders, int64_t last) {
    const v1::Reminder* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      cursor_ = last;
      for (v1::Reminder& r : reminders) queue_.push_back(std::move(r));
      if (!writing_ && !queue_.empty()) {
        writing_ = true;
        next = &queue_.front();
      }
    }
    if (next != nullptr) StartWrite(next);
  }

  void FinishWith(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  void OnWriteDone(bool ok) override {
    const v1::Reminder* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      writing_ = false;
      if (ok && !finished_ && !queue_.empty()) {
        writing_ = true;
        next = &queue_.front();
      }
    }
    if (!ok) {
      FinishWith(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      return;
    }
    if (next != nullptr) StartWrite(next);
  }

  void OnCancel() override {
    FinishWith(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override;

 private:
  WatchHub* hub_;
  const std::string tenant_;
  absl::Mutex mu_;
  int64_t cursor_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::Reminder> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// WatchHub polls the change feed for every open stream on one thread.
class WatchHub {
 public:
  WatchHub(Store* store, absl::Duration poll) : store_(store), poll_(poll) {
    thread_ = std::thread([this] { Loop(); });
    NameThread(thread_, "reminder-watch");
  }
  ~WatchHub() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
    for (WatchReactor* r : done_) delete r;
    // Streams still open here were cancelled by the server's shutdown; gRPC
    // calls OnDone before the service is destroyed.
  }

  void Add(WatchReactor* r) {
    absl::MutexLock lock(&mu_);
    live_.push_back(r);
  }
  void Done(WatchReactor* r) {
    absl::MutexLock lock(&mu_);
    live_.erase(std::remove(live_.begin(), live_.end(), r), live_.end());
    done_.push_back(r);
  }

 private:
  void Loop() {
    while (true) {
      std::vector<WatchReactor*> live;
      {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), poll_);
        if (stopping_) return;
        for (WatchReactor* r : done_) delete r;
        done_.clear();
        live = live_;
      }
      // Reactors in `live` are deleted only by this thread, above.
      for (WatchReactor* r : live) {
        int64_t after = 0;
        if (!r->Wants(&after)) continue;
        absl::StatusOr<std::vector<OutboxEntry>> changes =
            store_->OutboxChanges(r->tenant(), after, kFeedBatch);
        if (!changes.ok()) {
          r->FinishWith(ToGrpcStatus(changes.status()));
          continue;
        }
        if (changes->empty()) continue;
        ZoneCache zones(store_);
        std::vector<v1::Reminder> out;
        for (const OutboxEntry& e : *changes) {
          out.push_back(ToReminder(e, zones));
        }
        r->Push(std::move(out), changes->back().change_seq);
      }
    }
  }

  Store* store_;
  absl::Duration poll_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<WatchReactor*> live_ ABSL_GUARDED_BY(mu_);
  std::vector<WatchReactor*> done_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

void WatchReactor::OnDone() { hub_->Done(this); }

class ReminderServiceImpl final : public v1::ReminderService::CallbackService {
 public:
  ReminderServiceImpl(const ServerDeps& deps, Guard& guard,
                      absl::Duration watch_poll)
      : deps_(deps),
        guard_(guard),
        enrollments_(
            {deps.store, deps.clock, deps.ids, deps.workflows, deps.safety}),
        hub_(deps.store, watch_poll) {}

  ServerUnaryReactor* ListDueReminders(
      CallbackServerContext* ctx, const v1::ListDueRemindersRequest* request,
      v1::ListDueRemindersResponse* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(ReminderService, ListDueReminders),
                        *request,
                        [=, this](const Admission&, Guard::Done done) {
                          done(List(*request, response));
                        });
  }

  grpc::ServerWriteReactor<v1::Reminder>* WatchReminders(
      CallbackServerContext* ctx,
      const v1::WatchRemindersRequest* request) override {
    // An admitted call is decided at once (inside Admit); a refusal only
    // after its audit record is stored, possibly after this returns, so a
    // late refusal is answered through a RefusingWriter returned now.
    struct Pending {
      absl::Mutex mu;
      bool returned ABSL_GUARDED_BY(mu) = false;
      std::optional<absl::StatusOr<Admission>> decided ABSL_GUARDED_BY(mu);
      RefusingWriter<v1::Reminder>* writer ABSL_GUARDED_BY(mu) = nullptr;
    };
    auto pending = std::make_shared<Pending>();
    guard_.Admit(
        ctx, IPSRT_METHOD(ReminderService, WatchReminders), *request,
        [pending](absl::StatusOr<Admission> a) {
          absl::MutexLock lock(&pending->mu);
          if (!pending->returned) {
            pending->decided = std::move(a);
            return;
          }
          pending->writer->Refuse(a.ok() ? absl::InternalError("late admission")
                                         : a.status());
        });
    {
      absl::MutexLock lock(&pending->mu);
      pending->returned = true;
      if (!pending->decided.has_value()) {
        pending->writer = new RefusingWriter<v1::Reminder>();
        return pending->writer;
      }
      if (!pending->decided->ok()) {
        auto* writer = new RefusingWriter<v1::Reminder>();
        writer->Refuse(pending->decided->status());
        return writer;
      }
    }
    absl::StatusOr<std::string> tenant =
        ParseParent("parent", request->parent());
    int64_t cursor = 0;
    absl::Status valid = tenant.status();
    if (valid.ok() && !request->cursor().empty() &&
        (!absl::SimpleAtoi(request->cursor(), &cursor) || cursor < 0)) {
      valid = absl::InvalidArgumentError(
          absl::StrCat("cursor: not a cursor returned by WatchReminders: \"",
                       request->cursor(), "\""));
    }
    auto* reactor = new WatchReactor(&hub_, tenant.ok() ? *tenant : "", cursor);
    if (valid.ok()) {
      hub_.Add(reactor);
    } else {
      // Never polled; OnDone hands it to the hub for deletion.
      reactor->FinishWith(ToGrpcStatus(valid));
    }
    return reactor;
  }

  ServerUnaryReactor* AckReminder(CallbackServerContext* ctx,
                                  const v1::AckReminderRequest* request,
                                  v1::Reminder* response) override {
    return guard_.Unary(ctx, IPSRT_METHOD(ReminderService, AckReminder),
                        *request,
                        [=, this](const Admission& a, Guard::Done done) {
                          Ack(*request, a.actor(), response, std::move(done));
                        });
  }

 private:
  void Ack(const v1::AckReminderRequest& request, const v1::Actor& actor,
           v1::Reminder* response, Guard::Done done) {
    absl::StatusOr<ReminderName> name =
        ParseReminderName("name", request.name());
    if (!name.ok()) return done(name.status());
    absl::StatusOr<OutboxEntry> entry =
        deps_.store->GetOutbox(name->tenant, name->id);
    if (entry.ok() && entry->row.enrollment_id != name->enrollment_id) {
      entry = absl::NotFoundError(
          absl::StrCat("reminder ", request.name(), " not found"));
    }
    if (entry.ok() && entry->status != OutboxStatus::kDone &&
        entry->status != OutboxStatus::kAcknowledged) {
      entry = absl::FailedPreconditionError(
          absl::StrCat("name: reminder ", request.name(), " is ",
                       v1::Reminder::Status_Name(PublicStatus(entry->status)),
                       "; only a sent reminder can be acknowledged"));
    }
    if (!entry.ok()) return done(entry.status());
    v1::ReminderAcknowledged ack;
    ack.set_reminder(request.name());
    ack.set_subject(entry->row.payload);
    ack.set_idempotency_key(entry->row.idempotency_key);
    Store* store = deps_.store;
    enrollments_.AcknowledgeReminder(
        absl::StrCat("tenants/", name->tenant, "/enrollments/",
                     entry->row.enrollment_id),
        request.request_id(), std::move(ack), actor,
        [done, response, store, tenant = name->tenant,
         id = name->id](absl::StatusOr<v1::SubmitEventResponse> r) {
          if (!r.ok()) return done(r.status());
          // The event is the record; the row's status follows it (and is
          // set again by a retry of the same request).
          absl::StatusOr<OutboxEntry> acked =
              store->AcknowledgeOutbox(tenant, id);
          if (acked.ok()) {
            ZoneCache zones(store);
            *response = ToReminder(*acked, zones);
          }
          done(acked.status());
        });
  }

  absl::Status List(const v1::ListDueRemindersRequest& request,
                    v1::ListDueRemindersResponse* response) {
    IPSRT_ASSIGN_OR_RETURN(std::string tenant,
                           ParseParent("parent", request.parent()));
    IPSRT_ASSIGN_OR_RETURN(int size,
                           ClampPageSize(request.page_size(), 100, 1000));
    OutboxQuery q;
    q.tenant = tenant;
    q.limit = size + 1;
    q.due_before = deps_.clock->Now();
    if (request.has_due_before()) {
      q.due_before = absl::FromUnixMicros(
          TimeUtil::TimestampToMicroseconds(request.due_before()));
    }
    std::string fingerprint = absl::StrCat("reminders|", tenant, "|",
                                           absl::ToUnixMicros(q.due_before));
    if (request.statuses().empty()) {
      q.statuses = StoreStatuses(v1::Reminder::SCHEDULED);
    }
    for (int i = 0; i < request.statuses_size(); ++i) {
      auto s = static_cast<v1::Reminder::Status>(request.statuses(i));
      std::vector<OutboxStatus> mapped = StoreStatuses(s);
      if (mapped.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("statuses[", i, "]: must be a reminder status"));
      }
      q.statuses.insert(q.statuses.end(), mapped.begin(), mapped.end());
      absl::StrAppend(&fingerprint, "|", static_cast<int>(s));
    }
    if (!request.page_token().empty()) {
      IPSRT_ASSIGN_OR_RETURN(
          PagePosition pos, DecodePageToken(request.page_token(), fingerprint));
      int64_t after_id = 0;
      if (!absl::SimpleAtoi(pos.key_text, &after_id)) {
        return absl::InvalidArgumentError(
            "page_token: not a token returned by this server");
      }
      q.after = std::pair(absl::FromUnixMicros(pos.key_int), after_id);
    }
    IPSRT_ASSIGN_OR_RETURN(std::vector<OutboxEntry> rows,
                           deps_.store->ListOutbox(q));
    bool more = static_cast<int>(rows.size()) > size;
    if (more) rows.resize(size);
    ZoneCache zones(deps_.store);
    for (const OutboxEntry& e : rows) {
      *response->add_reminders() = ToReminder(e, zones);
    }
    if (more) {
      PagePosition pos;
      pos.filter_fingerprint = fingerprint;
      pos.key_int = absl::ToUnixMicros(rows.back().row.due_time);
      pos.key_text = absl::StrCat(rows.back().id);
      response->set_next_page_token(EncodePageToken(pos));
    }
    return absl::OkStatus();
  }

  ServerDeps deps_;
  Guard& guard_;
  Enrollments enrollments_;
  WatchHub hub_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeReminderService(const ServerDeps& deps,
                                                   Guard& guard,
                                                   absl::Duration watch_poll) {
  return std::make_unique<ReminderServiceImpl>(deps, guard, watch_poll);
}

}  // namespace ipsrt
