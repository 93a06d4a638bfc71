#include "core/exports.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/validation.h"
#include "core/enrollments.h"
#include "core/event_chain.h"
#include "google/protobuf/util/time_util.h"
#include "ipsrt/internal/export.pb.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/status_macros.h"
#include "nlohmann/json.hpp"

namespace ipsrt {
namespace {

namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

constexpr absl::string_view kPushMethod = "PushEnrollment";
constexpr int kEventPage = 1000;
constexpr int kEnrollmentPage = 500;

std::string Available(const std::vector<std::string>& formats) {
  if (formats.empty()) return "no exporter plugin is loaded";
  return absl::StrCat("available: ", absl::StrJoin(formats, ", "));
}

// PluginError keeps a plugin's code, except INVALID_ARGUMENT: the caller's
// request was valid, so a plugin refusing what the engine sent it is a
// state to fix (FAILED_PRECONDITION), not a field to correct.
absl::Status PluginError(const absl::Status& s, absl::string_view context) {
  absl::StatusCode code = s.code() == absl::StatusCode::kInvalidArgument
                              ? absl::StatusCode::kFailedPrecondition
                              : s.code();
  return absl::Status(code, absl::StrCat(context, ": ", s.message()));
}

// A resource type names a file: letters and digits only, e.g. "Observation".
bool IsResourceType(absl::string_view type) {
  if (type.empty() || type.size() > 64) return false;
  if (!((type[0] >= 'A' && type[0] <= 'Z') ||
        (type[0] >= 'a' && type[0] <= 'z')))
    return false;
  for (char ch : type) {
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
          (ch >= '0' && ch <= '9'))) {
      return false;
    }
  }
  return true;
}

bool IsPathComponent(absl::string_view c) {
  if (c.empty() || c.size() > 128 || c[0] == '.') return false;
  for (char ch : c) {
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
          (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.')) {
      return false;
    }
  }
  return true;
}

// AsNdjson turns a resource-wise rendering into one document.
void FoldResources(plugin::v1::RenderExportResponse& r) {
  if (!r.content().empty() || r.resources().empty()) return;
  std::string out;
  for (const plugin::v1::ExportedResource& res : r.resources()) {
    absl::StrAppend(&out, res.content(), "\n");
  }
  r.set_content(std::move(out));
  r.set_content_type("application/fhir+ndjson");
}

// Fd owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

absl::Status SyncFd(int fd, absl::string_view what) {
  if (::fsync(fd) != 0) {
    return absl::InternalError(
        absl::StrCat("export: cannot sync ", what, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// OpenDirBeneath opens the directory `name` in `dir` without following a
// symbolic link, creating it first when `create`. NOT_FOUND when it does
// not exist (and !create); INVALID_ARGUMENT naming `output_dir` when it is
// a symbolic link or not a directory.
absl::StatusOr<Fd> OpenDirBeneath(int dir, const std::string& name, bool create,
                                  absl::string_view output_dir) {
  if (create && ::mkdirat(dir, name.c_str(), 0777) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("output_dir: cannot create \"", name,
                     "\" under the export root: ", std::strerror(errno)));
  }
  int fd = ::openat(dir, name.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return Fd(fd);
  if (errno == ENOENT) {
    return absl::NotFoundError(absl::StrCat("\"", name, "\" does not exist"));
  }
  // O_DIRECTORY with O_NOFOLLOW answers ENOTDIR (or ELOOP) for a link.
  struct stat st;
  if (errno == ELOOP ||
      (errno == ENOTDIR &&
       ::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
       S_ISLNK(st.st_mode))) {
    return absl::InvalidArgumentError(
        absl::StrCat("output_dir: \"", output_dir,
                     "\" leaves the export root through a symbolic link"));
  }
  if (errno == ENOTDIR) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output_dir: \"", output_dir, "\": \"", name, "\" is not a directory"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "output_dir: cannot open \"", name, "\": ", std::strerror(errno)));
}

// NdjsonFile appends lines through a large buffer; Close syncs it.
class NdjsonFile {
 public:
  // Create makes the new file `name` in the directory `dir` (never through
  // a symbolic link); `path` names it in errors.
  static absl::StatusOr<std::unique_ptr<NdjsonFile>> Create(
      int dir, const std::string& name, const std::string& path) {
    int fd =
        ::openat(dir, name.c_str(),
                 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    FILE* f = fd >= 0 ? ::fdopen(fd, "w") : nullptr;
    if (f == nullptr) {
      if (fd >= 0) ::close(fd);
      return absl::InternalError(absl::StrCat("export: cannot create ", path,
                                              ": ", std::strerror(errno)));
    }
    auto file = std::unique_ptr<NdjsonFile>(new NdjsonFile(f, path));
    std::setvbuf(f, file->buffer_.get(), _IOFBF, kBuffer);
    return file;
  }
  ~NdjsonFile() {
    if (file_ != nullptr) std::fclose(file_);
  }
  absl::Status Append(absl::string_view line) {
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() ||
        std::fputc('\n', file_) == EOF) {
      return absl::ResourceExhaustedError(
          absl::StrCat("export: cannot write ", path_, " (disk full?)"));
    }
    return absl::OkStatus();
  }
  absl::Status Close() {
    FILE* f = std::exchange(file_, nullptr);
    bool ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    ok = std::fclose(f) == 0 && ok;
    if (!ok) {
      return absl::ResourceExhaustedError(
          absl::StrCat("export: cannot write ", path_, " (disk full?)"));
    }
    return absl::OkStatus();
  }

 private:
  static constexpr size_t kBuffer = 1 << 20;
  NdjsonFile(FILE* f, std::string path)
      : file_(f), path_(std::move(path)), buffer_(new char[kBuffer]) {}
  FILE* file_;
  std::string path_;
  std::unique_ptr<char[]> buffer_;
};

std::string RandomSuffix() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

}  // namespace

Exports::Exports(Deps deps) : deps_(std::move(deps)) {
  if (deps_.plugins == nullptr) return;
  for (LoadedPlugin* p : deps_.plugins->WithKind(plugin::v1::EXPORTER)) {
    for (const std::string& format : p->description().export_formats()) {
      renderers_[format].push_back(p);
    }
  }
}

std::vector<std::string> Exports::Formats() const {
  std::vector<std::string> out;
  for (const auto& [format, plugins] : renderers_) out.push_back(format);
  return out;
}

absl::StatusOr<LoadedPlugin*> Exports::Renderer(
    absl::string_view format, absl::string_view plugin_name) const {
  if (format.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("format: must not be empty (", Available(Formats()), ")"));
  }
  auto it = renderers_.find(std::string(format));
  if (it == renderers_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("format: no loaded exporter plugin renders \"", format,
                     "\" (", Available(Formats()), ")"));
  }
  if (!plugin_name.empty()) {
    for (LoadedPlugin* p : it->second) {
      if (p->name() == plugin_name) return p;
    }
    return absl::FailedPreconditionError(
        absl::StrCat("renderer plugin \"", plugin_name, "\" does not render \"",
                     format, "\""));
  }
  if (it->second.size() > 1) {
    std::vector<std::string> names;
    for (LoadedPlugin* p : it->second) names.push_back(p->name());
    return absl::FailedPreconditionError(absl::StrCat(
        "format: \"", format, "\" is rendered by several loaded plugins (",
        absl::StrJoin(names, ", "),
        "); name the renderer in an export target"));
  }
  return it->second.front();
}

absl::StatusOr<plugin::v1::RenderExportRequest> Exports::Collect(
    const std::string& tenant, const std::string& id,
    const std::string& format) const {
  IPSRT_ASSIGN_OR_RETURN(EnrollmentRow row,
                         deps_.store->GetEnrollment(tenant, id));
  internal::EnrollmentState state;
  if (!state.ParseFromString(row.snapshot)) {
    return absl::DataLossError(absl::StrCat("store: snapshot of enrollment ",
                                            id, " cannot be parsed"));
  }
  plugin::v1::RenderExportRequest request;
  request.set_format(format);
  *request.mutable_enrollment() = state.enrollment();
  const int64_t revision = state.enrollment().revision();
  // Events 1..revision: the ones the snapshot folds, even when a writer
  // appends more meanwhile.
  // Every event is checked against the hash chain and the chain's head
  // against the snapshot: an edited, deleted or reordered row fails the
  // export with DATA_LOSS instead of leaving the engine.
  EventChainVerifier chain(
      absl::StrCat("tenants/", tenant, "/enrollments/", id));
  int64_t after = 0;
  while (after < revision) {
    IPSRT_ASSIGN_OR_RETURN(
        std::vector<EventRow> rows,
        deps_.store->ListEvents(tenant, id, after, kEventPage));
    if (rows.empty()) break;
    for (const EventRow& e : rows) {
      if (e.sequence > revision) break;
      if (chain.Feed(e, request.add_events()).has_value()) {
        return chain.Error();
      }
      after = e.sequence;
    }
    if (static_cast<int>(rows.size()) < kEventPage) break;
  }
  if (chain.ExpectHead(revision, state.last_event_hash()).has_value()) {
    return chain.Error();
  }
  if (request.events_size() != revision || revision == 0) {
    return absl::DataLossError(
        absl::StrCat("store: enrollment ", id, " is at revision ", revision,
                     " but has ", request.events_size(), " events"));
  }
  *request.mutable_export_time() =
      request.events(request.events_size() - 1).record_time();

  // The instruments the responses and diary days refer to, in (id,
  // version) order.
  std::map<std::pair<std::string, int>, const v1::Questionnaire*> used;
  for (const v1::Event& e : request.events()) {
    std::string instrument;
    int version = 0;
    if (e.payload().has_questionnaire_response()) {
      instrument = e.payload().questionnaire_response().questionnaire_id();
      version = e.payload().questionnaire_response().questionnaire_version();
    } else if (e.payload().has_srm_diary_day()) {
      instrument = e.payload().srm_diary_day().instrument();
    }
    if (instrument.empty()) continue;
    absl::StatusOr<const v1::Questionnaire*> q =
        deps_.questionnaires == nullptr
            ? absl::NotFoundError("no questionnaire plugin is loaded")
            : deps_.questionnaires->Get(instrument, version);
    if (!q.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("enrollment tenants/", tenant, "/enrollments/", id,
                       " event ", e.sequence(), " refers to instrument ",
                       instrument, version ? absl::StrCat("@", version) : "",
                       ", which no loaded questionnaire plugin serves"));
    }
    used.emplace(std::pair((*q)->id(), (*q)->version()), *q);
  }
  for (const auto& [key, q] : used) *request.add_instruments() = *q;
  return request;
}

absl::StatusOr<plugin::v1::RenderExportResponse> Exports::Render(
    LoadedPlugin* plugin, const plugin::v1::RenderExportRequest& request,
    const std::string& name) const {
  absl::StatusOr<plugin::v1::RenderExportResponse> r =
      plugin->RenderExport(request);
  if (!r.ok()) {
    return PluginError(r.status(),
                       absl::StrCat("exporter plugin \"", plugin->name(),
                                    "\" could not render ", name));
  }
  return r;
}

absl::StatusOr<v1::ExportEnrollmentResponse> Exports::Export(
    const v1::ExportEnrollmentRequest& request) const {
  IPSRT_ASSIGN_OR_RETURN(EnrollmentName name,
                         ParseEnrollmentName("name", request.name()));
  IPSRT_ASSIGN_OR_RETURN(LoadedPlugin * plugin, Renderer(request.format(), ""));
  IPSRT_ASSIGN_OR_RETURN(plugin::v1::RenderExportRequest render,
                         Collect(name.tenant, name.id, request.format()));
  IPSRT_ASSIGN_OR_RETURN(plugin::v1::RenderExportResponse rendered,
                         Render(plugin, render, name.Format()));
  FoldResources(rendered);
  v1::ExportEnrollmentResponse response;
  response.set_content_type(rendered.content_type());
  response.set_content(std::move(*rendered.mutable_content()));
  return response;
}

absl::StatusOr<const ExportTargetConfig*> Exports::Target(
    absl::string_view requested) const {
  const std::vector<ExportTargetConfig>& targets = deps_.config.targets;
  std::vector<std::string> names;
  for (const ExportTargetConfig& t : targets) names.push_back(t.name);
  if (targets.empty()) {
    return absl::FailedPreconditionError(
        "target: no export targets are configured (export.targets in the "
        "server's configuration)");
  }
  std::string name(requested);
  if (name.empty()) name = deps_.config.default_target;
  if (name.empty() && targets.size() == 1) name = targets.front().name;
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("target: must name one of ", absl::StrJoin(names, ", "),
                     " (no export.default_target is configured)"));
  }
  for (const ExportTargetConfig& t : targets) {
    if (t.name == name) return &t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("target: no export target \"", name,
                   "\" (configured: ", absl::StrJoin(names, ", "), ")"));
}

absl::Status Exports::CheckTargets() const {
  for (const ExportTargetConfig& t : deps_.config.targets) {
    const std::string where =
        absl::StrCat(t.location, ": export.targets.", t.name);
    LoadedPlugin* d =
        deps_.plugins == nullptr ? nullptr : deps_.plugins->Find(t.deliverer);
    if (d == nullptr || !d->HasKind(plugin::v1::EXPORTER)) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ".deliverer: \"", t.deliverer,
                       "\" is not a loaded exporter plugin"));
    }
    absl::StatusOr<LoadedPlugin*> r = Renderer(t.format, t.renderer);
    if (!r.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": ", r.status().message()));
    }
  }
  return absl::OkStatus();
}

namespace {

// StoredPushResponse reads the answer of a recorded push (an ExportPushed
// record); DATA_LOSS when the record does not parse.
absl::StatusOr<v1::PushEnrollmentResponse> StoredPushResponse(
    const std::string& record_bytes) {
  internal::ExportPushed first;
  if (!first.ParseFromString(record_bytes)) {
    return absl::DataLossError("store: stored push record is corrupt");
  }
  return first.response();
}

// CheckSameRequest refuses, with FAILED_PRECONDITION, a request id already
// recorded for a different push (another method or other content).
absl::Status CheckSameRequest(const RequestRecord& seen,
                              const std::string& request_id,
                              const std::string& fingerprint) {
  if (seen.method != kPushMethod ||
      !SamePayloadHash(seen.payload_hash, fingerprint)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request_id: \"", request_id, "\" was already used for a different ",
        seen.method, " request; use a new request id for a new request"));
  }
  return absl::OkStatus();
}

// PushIdempotencyKey is the key a delivery carries: the same export
// (enrollment at a revision, format, target) always carries the same key,
// whichever request id retries it.
std::string PushIdempotencyKey(const EnrollmentName& name, int64_t revision,
                               const ExportTargetConfig& target) {
  return absl::StrCat(
      "ipsrt-push-", Sha256Hex(absl::StrCat(name.Format(), "\n", revision, "\n",
                                            target.format, "\n", target.name))
                         .substr(0, 32));
}

// PushRecord is what a delivered push records under its request id.
internal::ExportPushed PushRecord(
    const plugin::v1::DeliverExportResponse& delivered,
    const ExportTargetConfig& target, int64_t revision,
    const std::string& idempotency_key, absl::Time now) {
  internal::ExportPushed record;
  record.mutable_response()->set_created(delivered.created());
  record.mutable_response()->set_unchanged(delivered.unchanged());
  record.set_target(target.name);
  record.set_format(target.format);
  record.set_revision(revision);
  record.set_receipt(delivered.receipt());
  record.set_idempotency_key(idempotency_key);
  record.set_push_time_us(absl::ToUnixMicros(now));
  return record;
}

}  // namespace

absl::StatusOr<v1::PushEnrollmentResponse> Exports::Push(
    const v1::PushEnrollmentRequest& request, const v1::Actor& actor) const {
  IPSRT_ASSIGN_OR_RETURN(EnrollmentName name,
                         ParseEnrollmentName("name", request.name()));
  IPSRT_RETURN_IF_ERROR(CheckRequestId("request_id", request.request_id()));
  IPSRT_ASSIGN_OR_RETURN(const ExportTargetConfig* target,
                         Target(request.target()));
  v1::PushEnrollmentRequest unkeyed = request;
  unkeyed.clear_request_id();
  unkeyed.set_target(target->name);
  const std::string fingerprint = RequestFingerprint(kPushMethod, unkeyed);
  const absl::Time now = deps_.clock->Now();
  AuditRecord audit{.tenant = name.tenant,
                    .subject = actor.subject(),
                    .role = actor.role(),
                    .rpc = "/ipsrt.v1.ExportService/PushEnrollment",
                    .resource = name.Format(),
                    .outcome = "OK",
                    .time = now,
                    .request_id = request.request_id()};

  // A retry of a recorded push is answered from its record, delivering
  // nothing again.
  IPSRT_ASSIGN_OR_RETURN(
      std::optional<RequestRecord> seen,
      deps_.store->LookupRequest(name.tenant, request.request_id()));
  if (seen.has_value()) {
    IPSRT_RETURN_IF_ERROR(
        CheckSameRequest(*seen, request.request_id(), fingerprint));
    IPSRT_ASSIGN_OR_RETURN(v1::PushEnrollmentResponse first,
                           StoredPushResponse(seen->response));
    WriteBatch replay;
    audit.outcome = "OK (replayed)";
    replay.audit.push_back(audit);
    IPSRT_RETURN_IF_ERROR(deps_.store->Commit(std::move(replay)).status());
    return first;
  }

  const std::string where =
      absl::StrCat("export target \"", target->name, "\"");
  absl::StatusOr<LoadedPlugin*> renderer =
      Renderer(target->format, target->renderer);
  if (!renderer.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": ", renderer.status().message()));
  }
  LoadedPlugin* deliverer = deps_.plugins == nullptr
                                ? nullptr
                                : deps_.plugins->Find(target->deliverer);
  if (deliverer == nullptr || !deliverer->HasKind(plugin::v1::EXPORTER)) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": deliverer \"", target->deliverer,
                     "\" is not a loaded exporter plugin"));
  }
  IPSRT_ASSIGN_OR_RETURN(plugin::v1::RenderExportRequest render,
                         Collect(name.tenant, name.id, target->format));
  const int64_t revision = render.enrollment().revision();
  IPSRT_ASSIGN_OR_RETURN(plugin::v1::RenderExportResponse rendered,
                         Render(*renderer, render, name.Format()));
  FoldResources(rendered);

  plugin::v1::DeliverExportRequest deliver;
  deliver.set_format(target->format);
  deliver.set_content_type(rendered.content_type());
  deliver.set_content(std::move(*rendered.mutable_content()));
  deliver.set_idempotency_key(PushIdempotencyKey(name, revision, *target));
  deliver.set_target(target->deliverer_target);
  absl::StatusOr<plugin::v1::DeliverExportResponse> delivered =
      deliverer->DeliverExport(deliver);
  if (!delivered.ok()) {
    return PluginError(delivered.status(),
                       absl::StrCat(where, " (plugin ", deliverer->name(),
                                    ") refused ", name.Format()));
  }

  internal::ExportPushed record =
      PushRecord(*delivered, *target, revision, deliver.idempotency_key(), now);
  WriteBatch batch;
  batch.request = RequestRecord{.tenant = name.tenant,
                                .request_id = request.request_id(),
                                .method = std::string(kPushMethod),
                                .payload_hash = fingerprint,
                                .response = DeterministicBytes(record),
                                .create_time = now};
  batch.audit.push_back(audit);
  absl::StatusOr<CommitResult> committed =
      deps_.store->Commit(std::move(batch));
  if (!committed.ok()) {
    return absl::Status(
        committed.status().code(),
        absl::StrCat(where, " received ", name.Format(),
                     " but the push could not be recorded (",
                     committed.status().message(),
                     "); retry with the same request_id: the delivery "
                     "carries the same idempotency key"));
  }
  if (committed->replayed) return StoredPushResponse(committed->response);
  return record.response();
}

namespace {

// OutputComponents checks a BulkExport output_dir lexically and returns its
// directory names, root first.
absl::StatusOr<std::vector<std::string>> OutputComponents(
    absl::string_view output_dir) {
  if (output_dir.empty()) {
    return absl::InvalidArgumentError(
        "output_dir: must not be empty (a directory under the server's "
        "export root)");
  }
  fs::path relative{std::string(output_dir)};
  if (relative.is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output_dir: must be relative to the server's export root, not "
        "absolute: \"",
        output_dir, "\""));
  }
  std::vector<std::string> parts;
  for (const fs::path& part : relative) {
    const std::string c = part.string();
    if (c == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("output_dir: must stay under the export root (\"..\" "
                       "in \"",
                       output_dir, "\")"));
    }
    if (c.empty() || c == ".") continue;
    if (!IsPathComponent(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output_dir: \"", c,
          "\" is not a directory name of [A-Za-z0-9._-] that does not start "
          "with \".\""));
    }
    parts.push_back(c);
  }
  if (parts.empty()) {
    return absl::InvalidArgumentError(
        "output_dir: must name a directory under the export root, not the "
        "root itself");
  }
  return parts;
}

}  // namespace

// Every path below the export root is resolved one directory at a time
// from a descriptor of the root opened once, with O_NOFOLLOW: a directory
// swapped for a symbolic link meanwhile fails the open (ELOOP) instead of
// leading out of the root, and a directory renamed meanwhile is still the
// one its descriptor holds, inside the root.
absl::StatusOr<Exports::OutputParent> Exports::OpenOutputParent(
    absl::string_view output_dir, bool create) const {
  if (deps_.config.root.empty()) {
    return absl::FailedPreconditionError(
        "output_dir: bulk export needs export.root in the server's "
        "configuration");
  }
  IPSRT_ASSIGN_OR_RETURN(std::vector<std::string> parts,
                         OutputComponents(output_dir));
  std::error_code ec;
  fs::create_directories(deps_.config.root, ec);
  OutputParent out;
  out.name = parts.back();
  int root =
      ::open(deps_.config.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("export.root cannot be opened: ", std::strerror(errno)));
  }
  out.fd = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    absl::StatusOr<Fd> next =
        OpenDirBeneath(out.fd, parts[i], create, output_dir);
    if (!next.ok()) {
      ::close(out.fd);
      out.fd = -1;
      if (absl::IsNotFound(next.status())) {
        out.missing = true;
        return out;
      }
      return next.status();
    }
    ::close(out.fd);
    out.fd = ::dup(next->get());
  }
  struct stat st;
  if (::fstatat(out.fd, out.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    ::close(out.fd);
    return absl::AlreadyExistsError(absl::StrCat(
        "output_dir: \"", absl::StrJoin(parts, "/"),
        "\" already exists under the export root; bulk exports never "
        "overwrite, choose a new directory"));
  }
  return out;
}

absl::StatusOr<std::string> Exports::ValidateOutputDir(
    absl::string_view output_dir) const {
  IPSRT_ASSIGN_OR_RETURN(OutputParent parent,
                         OpenOutputParent(output_dir, /*create=*/false));
  if (parent.fd >= 0) ::close(parent.fd);
  return (fs::path(deps_.config.root) /
          fs::path(std::string(output_dir)).lexically_normal())
      .string();
}

absl::StatusOr<BulkExportStatus> Exports::Bulk(const BulkExportJob& job) const {
  absl::StatusOr<BulkExportStatus> done = BulkUnlogged(job);
  if (absl::IsInternal(done.status())) {
    // The message names files and codes, never patient data.
    IPSRT_LOG(ERROR) << "bulk export of tenants/" << job.tenant << " into \""
                     << job.output_dir << "\" failed: " << done.status();
  }
  return done;
}

namespace {

// EnrollmentIds lists the ids of the enrollments `tenant` has now, in
// creation order; `cancelled` is asked before each page.
absl::StatusOr<std::vector<std::string>> EnrollmentIds(
    Store& store, const std::string& tenant,
    const std::function<absl::Status()>& cancelled) {
  std::vector<std::string> ids;
  std::optional<EnrollmentCursor> cursor;
  while (true) {
    IPSRT_RETURN_IF_ERROR(cancelled());
    EnrollmentFilter filter;
    filter.tenant = tenant;
    IPSRT_ASSIGN_OR_RETURN(
        std::vector<EnrollmentRow> rows,
        store.ListEnrollments(filter, cursor, kEnrollmentPage));
    for (const EnrollmentRow& r : rows) ids.push_back(r.id);
    if (static_cast<int>(rows.size()) < kEnrollmentPage) break;
    cursor = EnrollmentCursor{rows.back().create_time, rows.back().id};
  }
  return ids;
}

// BulkStaging is a bulk export's output while it is written: one NDJSON
// file per resource type in the staging directory `dir` (shown to users as
// `relative`), and the names of the files created there (`created`, for
// the clean-up on failure).
struct BulkStaging {
  int dir;
  std::string relative;
  std::vector<std::string>* created;
  std::map<std::string, std::unique_ptr<NdjsonFile>> files;
};

// AppendResources appends each resource one enrollment (`name`) rendered
// as one line of <type>.ndjson and counts it in `status`.
// FAILED_PRECONDITION when the format renders a document rather than
// resources, or a resource is not one non-empty line of a named type.
absl::Status AppendResources(const plugin::v1::RenderExportResponse& rendered,
                             absl::string_view format,
                             absl::string_view plugin_name,
                             const std::string& name, BulkStaging& staging,
                             BulkExportStatus& status) {
  if (rendered.resources().empty() && !rendered.content().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "format: \"", format,
        "\" renders one document per enrollment, "
        "not resources; bulk export needs a resource-wise format such as ",
        kDefaultBulkFormat));
  }
  for (const plugin::v1::ExportedResource& res : rendered.resources()) {
    if (!IsResourceType(res.resource_type()) ||
        res.content().find('\n') != std::string::npos ||
        res.content().empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "exporter plugin \"", plugin_name, "\" rendered ", name,
          " with a resource that is not one line of a named type"));
    }
    auto it = staging.files.find(res.resource_type());
    if (it == staging.files.end()) {
      const std::string file_name =
          absl::StrCat(res.resource_type(), ".ndjson");
      staging.created->push_back(file_name);
      IPSRT_ASSIGN_OR_RETURN(
          std::unique_ptr<NdjsonFile> f,
          NdjsonFile::Create(
              staging.dir, file_name,
              (fs::path(staging.relative) / file_name).string()));
      it = staging.files.emplace(res.resource_type(), std::move(f)).first;
      status.files[res.resource_type()] =
          (fs::path(staging.relative) / file_name).string();
    }
    IPSRT_RETURN_IF_ERROR(it->second->Append(res.content()));
    ++status.counts[res.resource_type()];
    ++status.resources;
  }
  return absl::OkStatus();
}

// BulkManifest is manifest.json, after FHIR Bulk Data's $export output
// manifest: one output entry per resource type written.
nlohmann::ordered_json BulkManifest(const BulkExportJob& job,
                                    const std::string& format,
                                    const LoadedPlugin& plugin,
                                    const BulkExportStatus& status,
                                    absl::Time now) {
  nlohmann::ordered_json manifest;
  manifest["transactionTime"] =
      absl::FormatTime(absl::RFC3339_full, now, absl::UTCTimeZone());
  manifest["request"] =
      absl::StrCat("BulkExport tenants/", job.tenant, " format ", format);
  manifest["requiresAccessToken"] = false;
  manifest["format"] = format;
  manifest["exporter"] =
      absl::StrCat(plugin.name(), " ", plugin.description().version());
  manifest["enrollments"] = status.enrollments_done;
  manifest["output"] = nlohmann::ordered_json::array();
  for (const auto& [type, count] : status.counts) {
    manifest["output"].push_back({{"type", type},
                                  {"url", absl::StrCat(type, ".ndjson")},
                                  {"count", count}});
  }
  manifest["error"] = nlohmann::ordered_json::array();
  return manifest;
}

// PublishStaging renames the finished staging directory to its final
// name in `parent`; ALREADY_EXISTS when someone else created that name in
// the meantime (nothing is replaced).
absl::Status PublishStaging(int parent, const std::string& staging_name,
                            const std::string& final_name,
                            const std::string& relative) {
  if (::renameat2(parent, staging_name.c_str(), parent, final_name.c_str(),
                  RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "output_dir: \"", relative,
          "\" was created by someone else during the export; nothing was "
          "published"));
    }
    return absl::InternalError(absl::StrCat("export: cannot publish ", relative,
                                            ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BulkExportStatus> Exports::BulkUnlogged(
    const BulkExportJob& job) const {
  const std::string format =
      job.format.empty() ? std::string(kDefaultBulkFormat) : job.format;
  IPSRT_ASSIGN_OR_RETURN(LoadedPlugin * plugin, Renderer(format, ""));
  IPSRT_ASSIGN_OR_RETURN(OutputParent opened,
                         OpenOutputParent(job.output_dir, /*create=*/true));
  const Fd parent(opened.fd);
  const std::string relative =
      fs::path(job.output_dir).lexically_normal().string();
  // Hidden and named partial: never mistaken for a finished export.
  const std::string staging_name =
      absl::StrCat(".", opened.name, ".partial-", RandomSuffix());
  if (::mkdirat(parent.get(), staging_name.c_str(), 0777) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("output_dir: cannot create a staging directory: ",
                     std::strerror(errno)));
  }
  absl::StatusOr<Fd> staging_fd =
      OpenDirBeneath(parent.get(), staging_name, false, job.output_dir);
  if (!staging_fd.ok()) {
    ::unlinkat(parent.get(), staging_name.c_str(), AT_REMOVEDIR);
    return staging_fd.status();
  }
  const Fd staging = *std::move(staging_fd);
  // Removes the staging directory and what it holds on every way out but
  // publication, through the descriptors (never a path that could lead
  // elsewhere by now).
  struct Cleanup {
    int parent;
    int staging;
    std::string name;
    std::vector<std::string> files;
    bool keep = false;
    ~Cleanup() {
      if (keep) return;
      for (const std::string& f : files) ::unlinkat(staging, f.c_str(), 0);
      ::unlinkat(parent, name.c_str(), AT_REMOVEDIR);
    }
  } cleanup{parent.get(), staging.get(), staging_name};
  const std::function<absl::Status()> cancelled = [&]() -> absl::Status {
    if (job.cancelled && job.cancelled()) {
      return absl::CancelledError(
          "bulk export cancelled; nothing was published");
    }
    return absl::OkStatus();
  };

  IPSRT_ASSIGN_OR_RETURN(std::vector<std::string> ids,
                         EnrollmentIds(*deps_.store, job.tenant, cancelled));
  BulkExportStatus status;
  status.enrollments_total = static_cast<int64_t>(ids.size());
  if (job.on_progress) job.on_progress(status);
  BulkStaging output{staging.get(), relative, &cleanup.files, {}};
  for (const std::string& id : ids) {
    IPSRT_RETURN_IF_ERROR(cancelled());
    const std::string name =
        absl::StrCat("tenants/", job.tenant, "/enrollments/", id);
    absl::StatusOr<plugin::v1::RenderExportRequest> render =
        Collect(job.tenant, id, format);
    if (absl::IsNotFound(render.status())) {
      // Deleted since the listing: nothing to export.
      ++status.enrollments_done;
      continue;
    }
    if (!render.ok()) return render.status();
    IPSRT_ASSIGN_OR_RETURN(plugin::v1::RenderExportResponse rendered,
                           Render(plugin, *render, name));
    IPSRT_RETURN_IF_ERROR(AppendResources(rendered, format, plugin->name(),
                                          name, output, status));
    ++status.enrollments_done;
    if (job.on_progress) job.on_progress(status);
  }
  IPSRT_RETURN_IF_ERROR(cancelled());
  for (auto& [type, f] : output.files) IPSRT_RETURN_IF_ERROR(f->Close());

  {
    cleanup.files.push_back("manifest.json");
    IPSRT_ASSIGN_OR_RETURN(
        std::unique_ptr<NdjsonFile> f,
        NdjsonFile::Create(staging.get(), "manifest.json",
                           (fs::path(relative) / "manifest.json").string()));
    IPSRT_RETURN_IF_ERROR(
        f->Append(BulkManifest(job, format, *plugin, status, deps_.clock->Now())
                      .dump(2)));
    IPSRT_RETURN_IF_ERROR(f->Close());
  }
  IPSRT_RETURN_IF_ERROR(SyncFd(staging.get(), "the staging directory"));
  if (job.before_publish) IPSRT_RETURN_IF_ERROR(job.before_publish());
  IPSRT_RETURN_IF_ERROR(
      PublishStaging(parent.get(), staging_name, opened.name, relative));
  cleanup.keep = true;
  IPSRT_RETURN_IF_ERROR(SyncFd(parent.get(), "the output's directory"));
  return status;
}

}  // namespace ipsrt
