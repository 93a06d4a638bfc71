// ExportService: exports enrollments through exporter plugins
// (core/exports.h): one enrollment as bytes, a push to a configured EHR
// target, and a bulk NDJSON export of a tenant with streamed progress.
#ifndef IPSRT_SERVICE_EXPORT_SERVICE_H_
#define IPSRT_SERVICE_EXPORT_SERVICE_H_

#include <memory>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "service/guard.h"
#include "service/server.h"

namespace ipsrt {

// MakeExportService binds the service to `deps`. BulkExport sends a
// progress message at most every `progress_interval` or whenever another
// whole percent of the enrollments is done, and a last one with
// finished=true once the files are in place.
std::unique_ptr<grpc::Service> MakeExportService(
    const ServerDeps& deps, Guard& guard,
    absl::Duration progress_interval = absl::Milliseconds(100));

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_EXPORT_SERVICE_H_
