// Exports: enrollments rendered by exporter plugins, pushed to configured
// EHR targets, and written in bulk as NDJSON files, below any transport.
//
// Rendering is deterministic: the plugin receives the enrollment, its
// events 1..revision in order, the instruments the events refer to, and an
// export_time fixed to the last event's record time, so the same events
// give the same bytes.
//
// Example:
//   Exports exports({.store = store, .plugins = plugins, ...});
//   absl::StatusOr<v1::ExportEnrollmentResponse> bundle =
//       exports.Export(request);
//
// Thread-safe: every method may be called from any thread at once.
#ifndef IPSRT_CORE_EXPORTS_H_
#define IPSRT_CORE_EXPORTS_H_

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/questionnaires.h"
#include "ipsrt/clock.h"
#include "ipsrt/config.h"
#include "ipsrt/plugin/v1/plugin.pb.h"
#include "ipsrt/store.h"
#include "ipsrt/v1/common.pb.h"
#include "ipsrt/v1/export.pb.h"
#include "plugin_host/registry.h"

namespace ipsrt {

// The format BulkExport renders when the request names none.
inline constexpr char kDefaultBulkFormat[] = "fhir-r4-resources";

// Progress of one bulk export.
struct BulkExportStatus {
  int64_t enrollments_done = 0;
  int64_t enrollments_total = 0;
  int64_t resources = 0;
  // Resource type -> path of its NDJSON file, relative to the export root
  // (under the final output_dir once published).
  std::map<std::string, std::string> files;
  // Resources per type.
  std::map<std::string, int64_t> counts;
};

struct BulkExportJob {
  std::string tenant;
  // Relative to the export root; validated by Bulk.
  std::string output_dir;
  std::string format;
  // Called on the exporting thread, after each enrollment; the caller
  // throttles.
  std::function<void(const BulkExportStatus&)> on_progress;
  // Polled between enrollments; true stops the export (CANCELLED).
  std::function<bool()> cancelled;
  // Called once every file is written and synced, before the directory is
  // renamed into place; a non-OK status abandons the export (the audit
  // record of the read is stored here).
  std::function<absl::Status()> before_publish;
};

class Exports {
 public:
  struct Deps {
    Store* store;
    const Clock* clock;
    // Null means none are loaded.
    const PluginRegistry* plugins = nullptr;
    const QuestionnaireCatalog* questionnaires = nullptr;
    ExportConfig config;
  };
  explicit Exports(Deps deps);

  // Export renders one enrollment in `format`. INVALID_ARGUMENT naming
  // `format` (with the formats available) when no loaded exporter renders
  // it; NOT_FOUND for a missing enrollment; FAILED_PRECONDITION when an
  // instrument the events refer to is not served; the plugin's own code
  // otherwise. A resource-wise format is answered as NDJSON.
  absl::StatusOr<v1::ExportEnrollmentResponse> Export(
      const v1::ExportEnrollmentRequest& request) const;

  // Push renders the enrollment for the configured target and delivers it
  // through the target's deliverer plugin. Idempotent by request_id; the
  // push is recorded (idempotency record with target, revision, receipt and
  // counts, and the audit record, in one commit) only after the delivery
  // succeeded. The delivery's idempotency key is derived from the
  // enrollment, its revision, the format and the target, so every retry of
  // the same export carries the same key. Errors name the target and keep
  // the plugin's code (UNAVAILABLE, RESOURCE_EXHAUSTED, ...).
  absl::StatusOr<v1::PushEnrollmentResponse> Push(
      const v1::PushEnrollmentRequest& request, const v1::Actor& actor) const;

  // ValidateOutputDir checks a BulkExport output_dir and returns the final
  // absolute directory under the export root. INVALID_ARGUMENT naming
  // `output_dir` for an empty, absolute or escaping path (`..`, a symlink
  // out of the root); ALREADY_EXISTS when the directory exists;
  // FAILED_PRECONDITION when no export root is configured.
  absl::StatusOr<std::string> ValidateOutputDir(
      absl::string_view output_dir) const;

  // Bulk renders every enrollment of the tenant (those existing when it
  // starts, in creation order) and appends each resource as one line to
  // <Type>.ndjson, plus manifest.json. The files are written to a hidden
  // temporary directory beside the output directory and renamed into place
  // at the end, so an export that fails or is cancelled leaves no files
  // that look complete. An enrollment that fails to render fails the whole
  // export with its name.
  absl::StatusOr<BulkExportStatus> Bulk(const BulkExportJob& job) const;

  // The export formats of the loaded exporter plugins, sorted.
  std::vector<std::string> Formats() const;

  // CheckTargets verifies the configured push targets against the loaded
  // plugins (start-up check): FAILED_PRECONDITION naming the entry's
  // location for a deliverer or renderer that is not a loaded exporter, or
  // a format no exporter renders.
  absl::Status CheckTargets() const;

 private:
  // The directory that will hold a bulk export's output directory, open
  // beneath the export root (see exports.cc).
  struct OutputParent {
    int fd = -1;           // owned by the caller; -1 when `missing`
    std::string name;      // the output directory's own name
    bool missing = false;  // a directory on the way does not exist yet
  };
  absl::StatusOr<OutputParent> OpenOutputParent(absl::string_view output_dir,
                                                bool create) const;
  absl::StatusOr<BulkExportStatus> BulkUnlogged(const BulkExportJob& job) const;
  absl::StatusOr<LoadedPlugin*> Renderer(absl::string_view format,
                                         absl::string_view plugin_name) const;
  absl::StatusOr<plugin::v1::RenderExportRequest> Collect(
      const std::string& tenant, const std::string& id,
      const std::string& format) const;
  absl::StatusOr<plugin::v1::RenderExportResponse> Render(
      LoadedPlugin* plugin, const plugin::v1::RenderExportRequest& request,
      const std::string& name) const;
  absl::StatusOr<const ExportTargetConfig*> Target(
      absl::string_view requested) const;

  Deps deps_;
  // Format -> exporters listing it, in load order.
  std::map<std::string, std::vector<LoadedPlugin*>> renderers_;
};

}  // namespace ipsrt

#endif  // IPSRT_CORE_EXPORTS_H_
