#include "service/store_service.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ipsrt/sqlite_store.h"
#include "ipsrt/v1/store.grpc.pb.h"

namespace ipsrt {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

class StoreServiceImpl final : public v1::StoreService::CallbackService {
 public:
  StoreServiceImpl(const ServerDeps& deps, Guard& guard)
      : store_(deps.store), guard_(guard) {}

  // The check runs on the calling gRPC thread: it is rare, admin-only and
  // bounded by the time to read the file once.
  ServerUnaryReactor* CheckStore(CallbackServerContext* ctx,
                                 const v1::CheckStoreRequest* request,
                                 v1::CheckStoreResponse* response) override {
    return guard_.Unary(
        ctx, "/ipsrt.v1.StoreService/CheckStore", *request,
        [=, this](const Admission&, Guard::Done done) {
          if (store_->Kind() != "sqlite") {
            return done(absl::FailedPreconditionError(absl::StrCat(
                "store: CheckStore examines SQLite databases; check ",
                store_->Kind(), " with its own tools (e.g. pg_amcheck)")));
          }
          absl::StatusOr<StoreCheckReport> report = CheckSqliteFile(
              static_cast<SqliteStore*>(store_)->DatabasePath());
          if (!report.ok()) return done(report.status());
          FillCheckResponse(*report, response);
          absl::Status probe = store_->Probe();
          response->set_write_state(
              probe.ok() ? "OK"
                         : absl::StrCat(absl::StatusCodeToString(probe.code()),
                                        ": ", probe.message()));
          done(absl::OkStatus());
        });
  }

 private:
  Store* store_;
  Guard& guard_;
};

}  // namespace

void FillCheckResponse(const StoreCheckReport& report,
                       v1::CheckStoreResponse* response) {
  response->set_intact(report.ok());
  for (const std::string& line : report.integrity) {
    response->add_integrity_findings(line);
  }
  response->set_enrollments_read(report.enrollments_read);
  response->set_events_read(report.events_read);
  for (const std::string& line : report.damaged_rows) {
    response->add_damaged_rows(line);
  }
}

std::unique_ptr<grpc::Service> MakeStoreService(const ServerDeps& deps,
                                                Guard& guard) {
  return std::make_unique<StoreServiceImpl>(deps, guard);
}

}  // namespace ipsrt
