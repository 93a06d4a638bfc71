// ReportService: an enrollment's course report as one HTML page
// (report/course_report.h), rendered from the stored event log.
#ifndef IPSRT_SERVICE_REPORT_SERVICE_H_
#define IPSRT_SERVICE_REPORT_SERVICE_H_

#include <memory>

#include "grpcpp/grpcpp.h"
#include "service/guard.h"
#include "service/server.h"

namespace ipsrt {

// MakeReportService binds the service to `deps`. The report embeds the
// workflow's graph when Graphviz's `dot` program is installed, and leaves
// that section out otherwise.
std::unique_ptr<grpc::Service> MakeReportService(const ServerDeps& deps,
                                                 Guard& guard);

}  // namespace ipsrt

#endif  // IPSRT_SERVICE_REPORT_SERVICE_H_
