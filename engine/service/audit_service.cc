#include "service/audit_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/hash.h"
#include "common/page_token.h"
#include "core/integrity.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/v1/audit.grpc.pb.h"
#include "service/progress_writer.h"
#include "store/audit_chain.h"

namespace ipsrt {
namespace {

using google::protobuf::util::TimeUtil;
using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

void Fill(const AuditRecord& r, v1::AuditRecord* out) {
  out->set_seq(r.seq);
  out->set_tenant(r.tenant);
  out->set_subject(r.subject);
  out->set_role(r.role);
  out->set_rpc(r.rpc);
  out->set_resource(r.resource);
  out->set_outcome(r.outcome);
  *out->mutable_time() =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(r.time));
  out->set_request_id(r.request_id);
  out->set_prev_hash(r.prev_hash);
  out->set_hash(r.hash);
}

absl::StatusOr<v1::ListAuditRecordsResponse> List(
    Store& store, const v1::ListAuditRecordsRequest& request) {
  absl::StatusOr<int> page_size = ClampPageSize(request.page_size(), 100, 1000);
  if (!page_size.ok()) return page_size.status();
  AuditFilter filter{.tenant = request.tenant(),
                     .subject = request.subject(),
                     .rpc = request.rpc()};
  if (request.has_start_time()) filter.from = FromProto(request.start_time());
  if (request.has_end_time()) filter.until = FromProto(request.end_time());
  v1::ListAuditRecordsRequest unpaged = request;
  unpaged.clear_page_token();
  unpaged.clear_page_size();
  std::string fingerprint = Sha256Hex(unpaged.SerializeAsString());
  int64_t after = 0;
  if (!request.page_token().empty()) {
    absl::StatusOr<PagePosition> pos =
        DecodePageToken(request.page_token(), fingerprint);
    if (!pos.ok()) return pos.status();
    after = pos->key_int;
  }
  absl::StatusOr<std::vector<AuditRecord>> rows =
      store.ListAudit(filter, after, *page_size + 1);
  if (!rows.ok()) return rows.status();
  v1::ListAuditRecordsResponse response;
  for (int i = 0; i < static_cast<int>(rows->size()) && i < *page_size; ++i) {
    Fill((*rows)[i], response.add_records());
  }
  if (static_cast<int>(rows->size()) > *page_size) {
    response.set_next_page_token(
        EncodePageToken(PagePosition{.filter_fingerprint = fingerprint,
                                     .key_int = (*rows)[*page_size - 1].seq}));
  }
  return response;
}

class AuditServiceImpl final : public v1::AuditService::CallbackService {
 public:
  AuditServiceImpl(const ServerDeps& deps, Guard& guard)
      : store_(deps.store),
        guard_(guard),
        anchor_(deps.anchor != nullptr
                    ? std::optional<AnchorWriter::Options>(*deps.anchor)
                    : std::nullopt) {}

  ServerUnaryReactor* ListAuditRecords(
      CallbackServerContext* ctx, const v1::ListAuditRecordsRequest* request,
      v1::ListAuditRecordsResponse* response) override {
    return guard_.Unary(ctx, "/ipsrt.v1.AuditService/ListAuditRecords",
                        *request,
                        [=, this](const Admission&, Guard::Done done) {
                          absl::StatusOr<v1::ListAuditRecordsResponse> r =
                              List(*store_, *request);
                          if (r.ok()) *response = *std::move(r);
                          done(r.status());
                        });
  }

  ServerUnaryReactor* VerifyAuditChain(
      CallbackServerContext* ctx, const v1::VerifyAuditChainRequest* request,
      v1::VerifyAuditChainResponse* response) override {
    return guard_.Unary(
        ctx, "/ipsrt.v1.AuditService/VerifyAuditChain", *request,
        [=, this](const Admission&, Guard::Done done) {
          absl::StatusOr<AuditVerification> v = VerifyAuditTrail(*store_);
          if (!v.ok()) return done(v.status());
          response->set_intact(v->intact);
          response->set_records_verified(v->records_verified);
          response->set_head_seq(v->head_seq);
          response->set_head_hash(v->head_hash);
          response->set_broken_seq(v->broken_seq);
          response->set_reason(v->reason);
          done(absl::OkStatus());
        });
  }

  grpc::ServerWriteReactor<v1::VerifyStoreProgress>* VerifyStore(
      CallbackServerContext* ctx,
      const v1::VerifyStoreRequest* request) override {
    auto* writer = new ProgressWriter<v1::VerifyStoreProgress>();
    guard_.Admit(ctx, "/ipsrt.v1.AuditService/VerifyStore", *request,
                 [this, writer](absl::StatusOr<Admission> a) {
                   if (!a.ok()) return writer->FinishWith(a.status());
                   writer->Run([this, admission = *std::move(a)](
                                   ProgressWriter<v1::VerifyStoreProgress>& w) {
                     absl::Status s = Verify(w);
                     guard_.Audit(admission, s,
                                  [&w](absl::Status st) { w.FinishWith(st); });
                   });
                 });
    return writer;
  }

 private:
  // Verify streams progress at most every half second and the findings
  // last; a broken chain is a finding (OK), not an error.
  absl::Status Verify(ProgressWriter<v1::VerifyStoreProgress>& w) {
    absl::Time last = absl::InfinitePast();
    VerifyStoreOptions options;
    options.on_progress = [&](const IntegrityProgress& p) {
      if (absl::Now() - last < absl::Milliseconds(500)) return;
      last = absl::Now();
      v1::VerifyStoreProgress out;
      out.set_tenants_done(p.tenants_done);
      out.set_tenants_total(p.tenants_total);
      out.set_enrollments_verified(p.enrollments_verified);
      out.set_events_verified(p.events_verified);
      w.Offer(std::move(out));
    };
    options.cancelled = [&w] { return w.cancelled(); };
    absl::StatusOr<IntegrityReport> report =
        ::ipsrt::VerifyStore(*store_, options);
    if (!report.ok()) return report.status();
    if (anchor_.has_value()) {
      absl::StatusOr<std::string> text = ReadFileToString(anchor_->path);
      absl::StatusOr<Anchor> anchor =
          text.ok() ? ParseAnchor(*text, anchor_->key)
                    : absl::StatusOr<Anchor>(text.status());
      if (!anchor.ok()) {
        ++report->problems_total;
        report->problems.push_back(
            {"anchor", 0, std::string(anchor.status().message())});
      } else {
        absl::Status checked = CheckAnchor(*store_, *anchor, *report);
        if (!checked.ok()) return checked;
      }
    }
    w.Offer(ReportProto(*report, anchor_.has_value()));
    return absl::OkStatus();
  }

  Store* store_;
  Guard& guard_;
  std::optional<AnchorWriter::Options> anchor_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeAuditService(const ServerDeps& deps,
                                                Guard& guard) {
  return std::make_unique<AuditServiceImpl>(deps, guard);
}

}  // namespace ipsrt
