#include "core/integrity.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "core/event_chain.h"
#include "ipsrt/internal/state.pb.h"
#include "ipsrt/status_macros.h"

namespace ipsrt {
namespace {

constexpr int kEnrollmentPage = 500;
constexpr int kEventPage = 1000;
constexpr int kAuditPage = 1000;
constexpr absl::string_view kMagic = "ipsrt-anchor 1";

std::string EnrollmentName(absl::string_view tenant, absl::string_view id) {
  return absl::StrCat("tenants/", tenant, "/enrollments/", id);
}

void AddProblem(IntegrityReport& report, IntegrityProblem problem) {
  ++report.problems_total;
  if (static_cast<int>(report.problems.size()) < kMaxIntegrityProblems) {
    report.problems.push_back(std::move(problem));
  }
}

// ForEachEnrollment calls `fn` with every enrollment row of every tenant,
// in (tenant, creation) order.
absl::Status ForEachEnrollment(
    Store& store, const std::function<absl::Status(const EnrollmentRow&)>& fn,
    const std::function<void(int64_t done, int64_t total)>& on_tenant =
        nullptr) {
  IPSRT_ASSIGN_OR_RETURN(std::vector<std::string> tenants, store.ListTenants());
  int64_t done = 0;
  for (const std::string& tenant : tenants) {
    std::optional<EnrollmentCursor> cursor;
    while (true) {
      EnrollmentFilter filter;
      filter.tenant = tenant;
      IPSRT_ASSIGN_OR_RETURN(
          std::vector<EnrollmentRow> rows,
          store.ListEnrollments(filter, cursor, kEnrollmentPage));
      for (const EnrollmentRow& r : rows) IPSRT_RETURN_IF_ERROR(fn(r));
      if (static_cast<int>(rows.size()) < kEnrollmentPage) break;
      cursor = EnrollmentCursor{rows.back().create_time, rows.back().id};
    }
    ++done;
    if (on_tenant) on_tenant(done, static_cast<int64_t>(tenants.size()));
  }
  return absl::OkStatus();
}

bool SortedHeadLess(const EventHead& a, const EventHead& b) {
  return std::tie(a.tenant, a.enrollment_id) <
         std::tie(b.tenant, b.enrollment_id);
}

}  // namespace

absl::StatusOr<IntegrityReport> VerifyStore(Store& store,
                                            const VerifyStoreOptions& options) {
  IntegrityReport report;
  IntegrityProgress progress;
  auto tick = [&]() {
    progress.enrollments_verified = report.enrollments_verified;
    progress.events_verified = report.events_verified;
    if (options.on_progress) options.on_progress(progress);
  };
  IPSRT_RETURN_IF_ERROR(ForEachEnrollment(
      store,
      [&](const EnrollmentRow& row) -> absl::Status {
        if (options.cancelled && options.cancelled()) {
          return absl::CancelledError("store verification cancelled");
        }
        const std::string name = EnrollmentName(row.tenant, row.id);
        EventChainVerifier chain(name);
        int64_t after = 0;
        while (!chain.first_break().has_value()) {
          IPSRT_ASSIGN_OR_RETURN(
              std::vector<EventRow> events,
              store.ListEvents(row.tenant, row.id, after, kEventPage));
          for (const EventRow& e : events) {
            if (chain.Feed(e).has_value()) break;
            after = e.sequence;
          }
          if (static_cast<int>(events.size()) < kEventPage) break;
        }
        report.events_verified += chain.head_sequence();
        internal::EnrollmentState state;
        if (!chain.first_break().has_value()) {
          if (!state.ParseFromString(row.snapshot) ||
              state.enrollment().revision() != row.revision) {
            AddProblem(report,
                       {name, 0,
                        "the enrollment's snapshot cannot be parsed or "
                        "disagrees with its revision column (modified)"});
          } else {
            chain.ExpectHead(row.revision, state.last_event_hash());
          }
        }
        if (chain.first_break().has_value()) {
          AddProblem(report, {name, chain.first_break()->sequence,
                              chain.first_break()->reason});
        }
        report.heads.push_back(EventHead{
            row.tenant, row.id, chain.head_sequence(), chain.head_hash()});
        ++report.enrollments_verified;
        if (report.enrollments_verified % 100 == 0) tick();
        return absl::OkStatus();
      },
      [&](int64_t done, int64_t total) {
        progress.tenants_done = done;
        progress.tenants_total = total;
        report.tenants = total;
        tick();
      }));
  std::sort(report.heads.begin(), report.heads.end(), SortedHeadLess);
  IPSRT_ASSIGN_OR_RETURN(report.audit, VerifyAuditTrail(store));
  if (!report.audit.intact) {
    AddProblem(report, {"audit", report.audit.broken_seq, report.audit.reason});
  }
  tick();
  return report;
}

v1::VerifyStoreProgress ReportProto(const IntegrityReport& report,
                                    bool anchor_checked) {
  v1::VerifyStoreProgress p;
  p.set_tenants_done(report.tenants);
  p.set_tenants_total(report.tenants);
  p.set_enrollments_verified(report.enrollments_verified);
  p.set_events_verified(report.events_verified);
  p.set_done(true);
  p.set_intact(report.intact());
  for (const IntegrityProblem& problem : report.problems) {
    v1::IntegrityProblem* out = p.add_problems();
    out->set_record(problem.record);
    out->set_sequence(problem.sequence);
    out->set_reason(problem.reason);
  }
  p.set_problems_total(report.problems_total);
  p.set_audit_records_verified(report.audit.records_verified);
  p.set_audit_head_seq(report.audit.head_seq);
  p.set_audit_head_hash(report.audit.head_hash);
  p.set_anchor_checked(anchor_checked);
  return p;
}

absl::StatusOr<std::string> ReadAnchorKey(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("anchor key file ", path, ": ", bytes.status().message()));
  }
  std::string key(absl::StripAsciiWhitespace(*bytes));
  if (key.size() < 32) {
    return absl::FailedPreconditionError(absl::StrCat(
        "anchor key file ", path,
        ": holds fewer than 32 bytes; use e.g. `openssl rand -hex 32`"));
  }
  return key;
}

std::string AnchorText(const Anchor& anchor, absl::string_view key) {
  std::string text =
      absl::StrCat(kMagic, "\ntime ",
                   absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", anchor.time,
                                    absl::UTCTimeZone()),
                   "\naudit ", anchor.audit_seq, " ",
                   anchor.audit_hash.empty() ? "-" : anchor.audit_hash,
                   "\nevents ", anchor.events.size(), "\n");
  for (const EventHead& h : anchor.events) {
    absl::StrAppend(&text, "event ", h.tenant, " ", h.enrollment_id, " ",
                    h.sequence, " ", h.hash, "\n");
  }
  absl::StrAppend(&text, "hmac-sha256 ", HmacSha256Hex(key, text), "\n");
  return text;
}

absl::StatusOr<Anchor> ParseAnchor(absl::string_view text,
                                   absl::string_view key) {
  size_t mac_at = text.rfind("hmac-sha256 ");
  if (mac_at == absl::string_view::npos ||
      (mac_at != 0 && text[mac_at - 1] != '\n')) {
    return absl::DataLossError("anchor: no hmac-sha256 line");
  }
  absl::string_view body = text.substr(0, mac_at);
  std::string mac(absl::StripAsciiWhitespace(text.substr(mac_at + 12)));
  std::string expected = HmacSha256Hex(key, body);
  if (mac.size() != expected.size() ||
      CRYPTO_memcmp(mac.data(), expected.data(), mac.size()) != 0) {
    return absl::DataLossError(
        "anchor: the HMAC does not match: the anchor file was modified or "
        "the key is not the one it was written with");
  }
  Anchor anchor;
  std::vector<absl::string_view> lines =
      absl::StrSplit(body, '\n', absl::SkipEmpty());
  auto bad = [](size_t line, absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("anchor: line ", line + 1, ": ", why));
  };
  if (lines.empty() || lines[0] != kMagic) return bad(0, "not an anchor file");
  int64_t count = -1;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit(lines[i], ' ');
    if (f[0] == "time" && f.size() == 2) {
      std::string err;
      if (!absl::ParseTime(absl::RFC3339_full, f[1], &anchor.time, &err)) {
        return bad(i, "bad time");
      }
    } else if (f[0] == "audit" && f.size() == 3) {
      if (!absl::SimpleAtoi(f[1], &anchor.audit_seq)) return bad(i, "bad seq");
      anchor.audit_hash = f[2] == "-" ? "" : std::string(f[2]);
    } else if (f[0] == "events" && f.size() == 2) {
      if (!absl::SimpleAtoi(f[1], &count)) return bad(i, "bad count");
    } else if (f[0] == "event" && f.size() == 5) {
      EventHead h{std::string(f[1]), std::string(f[2]), 0, std::string(f[4])};
      if (!absl::SimpleAtoi(f[3], &h.sequence)) return bad(i, "bad sequence");
      anchor.events.push_back(std::move(h));
    } else {
      return bad(i, "unknown record");
    }
  }
  if (count != static_cast<int64_t>(anchor.events.size())) {
    return absl::DataLossError("anchor: the event head count does not match");
  }
  return anchor;
}

absl::Status WriteAnchorFile(const std::string& path, absl::string_view text) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  const std::string tmp = absl::StrCat(path, ".tmp");
  auto fail = [&](absl::string_view what) {
    return absl::InternalError(absl::StrCat("anchor: cannot ", what, " ", path,
                                            ": ", std::strerror(errno)));
  };
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat(
          "anchor: cannot create the directory of ", path, ": ", ec.message()));
    }
    fs::permissions(dir, fs::perms::owner_all, ec);
  }
  int fd = ::open(tmp.c_str(),
                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail("create a temporary file beside");
  ::fchmod(fd, 0600);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail("write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail("sync");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return fail("replace");
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<Anchor> CurrentHeads(Store& store, absl::Time now,
                                    Anchor* previous) {
  Anchor anchor;
  anchor.time = now;
  IPSRT_RETURN_IF_ERROR(
      ForEachEnrollment(store, [&](const EnrollmentRow& row) -> absl::Status {
        if (row.revision <= 0) return absl::OkStatus();
        IPSRT_ASSIGN_OR_RETURN(
            std::vector<EventRow> events,
            store.ListEvents(row.tenant, row.id, row.revision - 1, 1));
        if (events.empty() || events[0].sequence != row.revision) {
          return absl::DataLossError(
              absl::StrCat("store: ", EnrollmentName(row.tenant, row.id),
                           ": event ", row.revision, " is missing"));
        }
        anchor.events.push_back(
            EventHead{row.tenant, row.id, row.revision, events[0].hash});
        return absl::OkStatus();
      }));
  std::sort(anchor.events.begin(), anchor.events.end(), SortedHeadLess);
  int64_t after = 0;
  if (previous != nullptr) {
    after = previous->audit_seq;
    anchor.audit_seq = previous->audit_seq;
    anchor.audit_hash = previous->audit_hash;
  }
  while (true) {
    IPSRT_ASSIGN_OR_RETURN(std::vector<AuditRecord> page,
                           store.ListAudit(AuditFilter{}, after, kAuditPage));
    if (!page.empty()) {
      after = anchor.audit_seq = page.back().seq;
      anchor.audit_hash = page.back().hash;
    }
    if (static_cast<int>(page.size()) < kAuditPage) break;
  }
  return anchor;
}

absl::Status CheckAnchor(Store& store, const Anchor& anchor,
                         IntegrityReport& report) {
  std::map<std::pair<std::string, std::string>, const EventHead*> current;
  for (const EventHead& h : report.heads) {
    current[{h.tenant, h.enrollment_id}] = &h;
  }
  std::set<std::string> broken;
  for (const IntegrityProblem& p : report.problems) broken.insert(p.record);
  for (const EventHead& a : anchor.events) {
    const std::string name = EnrollmentName(a.tenant, a.enrollment_id);
    if (broken.contains(name)) continue;  // already reported
    auto it = current.find({a.tenant, a.enrollment_id});
    if (it == current.end()) {
      AddProblem(report, {name, 1,
                          absl::StrCat("the enrollment is gone, but the anchor "
                                       "of ",
                                       absl::FormatTime(anchor.time),
                                       " recorded its events up to ",
                                       a.sequence, " (deleted)")});
      continue;
    }
    const EventHead& now = *it->second;
    if (now.sequence < a.sequence) {
      AddProblem(
          report,
          {name, now.sequence + 1,
           absl::StrCat("event ", now.sequence + 1,
                        " is missing: the anchor recorded events up to ",
                        a.sequence, " (the newest events were deleted)")});
      continue;
    }
    std::string hash = now.hash;
    if (now.sequence > a.sequence) {
      IPSRT_ASSIGN_OR_RETURN(
          std::vector<EventRow> rows,
          store.ListEvents(a.tenant, a.enrollment_id, a.sequence - 1, 1));
      hash = rows.empty() ? "" : rows[0].hash;
    }
    if (hash != a.hash) {
      AddProblem(report,
                 {name, a.sequence,
                  absl::StrCat("event ", a.sequence,
                               " differs from the anchored hash: the chain "
                               "was rewritten and its hashes recomputed at or "
                               "before event ",
                               a.sequence)});
    }
  }
  if (report.audit.intact) {
    if (report.audit.head_seq < anchor.audit_seq) {
      AddProblem(report, {"audit", report.audit.head_seq + 1,
                          absl::StrCat(
                              "record ", report.audit.head_seq + 1,
                              " is missing: the anchor recorded records up "
                              "to ",
                              anchor.audit_seq, " (the newest were deleted)")});
    } else if (anchor.audit_seq > 0) {
      IPSRT_ASSIGN_OR_RETURN(
          std::vector<AuditRecord> rows,
          store.ListAudit(AuditFilter{}, anchor.audit_seq - 1, 1));
      if (rows.empty() || rows[0].seq != anchor.audit_seq ||
          rows[0].hash != anchor.audit_hash) {
        AddProblem(report,
                   {"audit", anchor.audit_seq,
                    absl::StrCat("record ", anchor.audit_seq,
                                 " differs from the anchored hash: the trail "
                                 "was rewritten and recomputed at or before "
                                 "it")});
      }
    }
  }
  return absl::OkStatus();
}

AnchorWriter::AnchorWriter(Store* store, const Clock* clock, Options options,
                           std::optional<Anchor> previous)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      previous_(std::move(previous)) {}

AnchorWriter::~AnchorWriter() {
  if (!thread_.joinable()) return;  // never started
  stop_.Notify();
  thread_.join();
  absl::Status last = WriteNow();
  if (!last.ok()) {
    IPSRT_LOG(ERROR) << "integrity anchor at shutdown: " << last.ToString();
  }
}

void AnchorWriter::Start() {
  thread_ = std::thread([this] { Run(); });
  NameThread(thread_, "anchor-writer");
}

absl::Status AnchorWriter::WriteNow() {
  absl::MutexLock lock(&mu_);
  Anchor* previous = previous_.has_value() ? &*previous_ : nullptr;
  IPSRT_ASSIGN_OR_RETURN(Anchor anchor,
                         CurrentHeads(*store_, clock_->Now(), previous));
  if (previous != nullptr) {
    // The new heads must extend every head anchored before.
    IntegrityReport now;
    now.heads = anchor.events;
    now.audit.head_seq = anchor.audit_seq;
    IPSRT_RETURN_IF_ERROR(CheckAnchor(*store_, *previous, now));
    if (!now.intact()) {
      const IntegrityProblem& p = now.problems.front();
      return absl::DataLossError(absl::StrCat(
          "integrity: ", p.record, " at ", p.sequence, ": ", p.reason,
          "; the anchor file ", options_.path, " is kept as evidence"));
    }
  }
  IPSRT_RETURN_IF_ERROR(
      WriteAnchorFile(options_.path, AnchorText(anchor, options_.key)));
  previous_ = std::move(anchor);
  return absl::OkStatus();
}

void AnchorWriter::Run() {
  while (!stop_.WaitForNotificationWithTimeout(options_.interval)) {
    absl::Status s = WriteNow();
    if (!s.ok()) {
      IPSRT_LOG(ERROR) << "integrity anchor: " << s.ToString();
    }
  }
}

absl::StatusOr<std::optional<AnchorWriter::Options>> StartIntegrity(
    const IntegrityConfig& config, Store& store) {
  if (config.verify_on_start) {
    absl::Time start = absl::Now();
    IPSRT_ASSIGN_OR_RETURN(IntegrityReport report, VerifyStore(store));
    if (!report.intact()) {
      std::string lines;
      for (const IntegrityProblem& p : report.problems) {
        absl::StrAppend(&lines, "\n  ", p.record, " at ", p.sequence, ": ",
                        p.reason);
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "integrity.verify_on_start: ", report.problems_total,
          " broken chain(s); run `ipsrt store verify` for the report:", lines));
    }
    IPSRT_LOG(INFO) << "integrity: " << report.enrollments_verified
                    << " enrollment chain(s), " << report.events_verified
                    << " event(s) and " << report.audit.records_verified
                    << " audit record(s) verified in " << absl::Now() - start;
  }
  if (config.anchor_path.empty()) {
    return std::optional<AnchorWriter::Options>();
  }
  IPSRT_ASSIGN_OR_RETURN(std::string key,
                         ReadAnchorKey(config.anchor_key_file));
  return std::optional<AnchorWriter::Options>(AnchorWriter::Options{
      config.anchor_path, std::move(key), config.anchor_interval});
}

absl::StatusOr<std::unique_ptr<AnchorWriter>> StartAnchorWriter(
    const AnchorWriter::Options& options, Store* store, const Clock* clock) {
  std::optional<Anchor> previous;
  if (std::filesystem::exists(options.path)) {
    absl::StatusOr<std::string> text = ReadFileToString(options.path);
    absl::StatusOr<Anchor> parsed = text.ok()
                                        ? ParseAnchor(*text, options.key)
                                        : absl::StatusOr<Anchor>(text.status());
    if (!parsed.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("integrity.anchor_path ", options.path, ": ",
                       parsed.status().message(),
                       " (move the file away to start a new anchor)"));
    }
    previous = *std::move(parsed);
  }
  auto writer = std::make_unique<AnchorWriter>(store, clock, options,
                                               std::move(previous));
  absl::Status first = writer->WriteNow();
  if (!first.ok()) {
    return absl::FailedPreconditionError(first.message());
  }
  writer->Start();
  return writer;
}

}  // namespace ipsrt
