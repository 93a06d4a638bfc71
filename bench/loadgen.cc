// ipsrt_loadgen: closed-loop unary load generator for ipsrtd.
//
// Model: --concurrency call slots are spread over --threads completion
// queues (one polling thread each) and --channels channels. Every slot keeps
// exactly one call outstanding: when a call completes, the slot records it
// and, until the run ends, starts the next one at once (closed loop, no
// think time). Calls use the async API (CompletionQueue) so one thread can
// keep many calls in flight. With --rate the run is paced instead: call k
// is scheduled at start + k/rate (a grpc::Alarm on the slot's queue when
// that lies ahead), at most --concurrency outstanding, and its latency runs
// from that scheduled instant.
//
// Timeline: [start, start+warmup) is warm-up (calls run, nothing counted);
// [start+warmup, start+warmup+duration) is the measurement window. A call is
// counted when its *completion* falls inside the window, so throughput is
// completions/window and calls in flight at the edges are not double
// counted. After the window no new call starts; outstanding ones finish
// (bounded by --deadline) and are discarded.
//
// Latency: every counted call's latency is kept (full sample, nanosecond
// resolution); percentiles are exact nearest-rank values over that sample,
// not histogram approximations.
//
// Safety: only loopback targets are accepted; every loop is bounded by the
// run's end time and every call by its deadline.
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/enrollment.grpc.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "Target host:port, or several separated by commas (replicas on one "
          "database; channels are dealt to them round-robin); loopback "
          "addresses only.");
ABSL_FLAG(std::string, rpc, "ping",
          "Which RPC to drive: ping, create, get, event.");
ABSL_FLAG(int, concurrency, 32, "Calls kept outstanding at all times.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "Length of the measurement window.");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(2),
          "Warm-up before the window; calls run but are not counted.");
ABSL_FLAG(int, channels, 2,
          "Number of channels (separate TCP connections); slots are spread "
          "over them round-robin.");
ABSL_FLAG(int, threads, 1, "Completion-queue polling threads.");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(5), "Per-call deadline.");
ABSL_FLAG(int, get_population, 200,
          "For --rpc=get and --rpc=event: enrollments created before the run "
          "and then read, or given events, round-robin.");
ABSL_FLAG(int, payload_bytes, 0, "For --rpc=ping: bytes of echoed payload.");
ABSL_FLAG(std::string, parent, "tenants/bench",
          "Parent tenant for created enrollments.");
ABSL_FLAG(std::string, workflow_id, "ipsrt-standard",
          "Workflow template for created enrollments.");
ABSL_FLAG(double, max_error_ratio, 0.01,
          "Exit 1 when errors exceed this fraction of counted calls.");
ABSL_FLAG(bool, json, false, "Print one JSON line instead of text.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA file of the server's certificate; turns TLS on.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate, for servers that require mutual TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, token, "",
          "Bearer token sent with every call (default: $IPSRT_TOKEN).");
ABSL_FLAG(double, rate, 0,
          "Open-loop pacing: start calls at this many per second in total "
          "(call k of the run at start + k/rate), at most --concurrency "
          "outstanding; latency runs from each call's scheduled start, so a "
          "server that falls behind shows it (no coordinated omission). "
          "0: closed loop, each slot starts its next call at once.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to verify in the server's certificate, if not the host.");

namespace ipsrt::bench {
namespace {

using Clock = std::chrono::steady_clock;

enum class Rpc { kPing, kCreate, kGet, kEvent };

// IsLoopbackTarget accepts "host:port" whose host is 127.0.0.0/8, ::1 or
// localhost. This tool generates heavy load; it must not be pointed at a
// machine it does not run on.
bool IsLoopbackTarget(const std::string& target) {
  std::string t = target;
  for (const char* prefix : {"ipv4:", "ipv6:", "dns:///", "dns:"}) {
    if (absl::StartsWith(t, prefix)) t = t.substr(std::string(prefix).size());
  }
  size_t colon = t.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = t.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(t.substr(colon + 1), &port) || port <= 0 ||
      port > 65535) {
    return false;
  }
  if (host == "localhost" || host == "[::1]") return true;
  if (absl::StartsWith(host, "127.")) {
    int dots = static_cast<int>(std::count(host.begin(), host.end(), '.'));
    return dots == 3;
  }
  return false;
}

// Stubs for one channel.
struct ChannelStubs {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::DiagnosticsService::Stub> diagnostics;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollments;
};

// Shared, read-only run parameters plus the few shared counters.
struct RunContext {
  Rpc rpc;
  std::vector<ChannelStubs>* channels;
  absl::Duration deadline;
  Clock::time_point window_start;
  Clock::time_point window_end;
  std::string ping_payload;
  std::string parent;
  std::string workflow_id;
  std::string run_id;  // makes request ids unique across runs
  const std::vector<std::string>* get_names;
  std::atomic<uint64_t> next_seq{0};  // request ids and get round-robin
  // --rate: calls per second in total (0: closed loop) and the schedule's
  // next free index.
  double rate = 0;
  Clock::time_point start;
  std::atomic<uint64_t> next_tick{0};
};

// Results of one polling thread; merged after the run, so never shared.
struct ThreadStats {
  std::vector<int64_t> latencies_ns;  // successful calls in the window
  std::map<int, int64_t> errors;      // by grpc::StatusCode, in the window
  int64_t ok = 0;
  int64_t warmup_calls = 0;
  int64_t late_calls = 0;  // completed after the window; discarded
};

// One call slot: holds the state of its current call. Reused call after
// call; ClientContext is single-use, so it is rebuilt each time.
struct Slot {
  int channel = 0;
  std::unique_ptr<grpc::ClientContext> ctx;
  Clock::time_point started;  // the scheduled start under --rate
  grpc::Status status;
  // Under --rate: the alarm a slot waits on until its scheduled start, and
  // whether the slot's pending tag is that alarm rather than a call.
  grpc::Alarm alarm;
  bool waiting = false;
  v1::PingRequest ping_req;
  v1::PingResponse ping_resp;
  v1::CreateEnrollmentRequest create_req;
  v1::GetEnrollmentRequest get_req;
  v1::SubmitEventRequest event_req;
  v1::SubmitEventResponse event_resp;
  v1::Enrollment enrollment;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::PingResponse>> ping_rd;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::Enrollment>> enr_rd;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::SubmitEventResponse>>
      event_rd;
};

// Authorize adds the bearer token (--token, else $IPSRT_TOKEN) to a call.
void Authorize(grpc::ClientContext& ctx) {
  static const std::string* const kHeader = [] {
    std::string token = absl::GetFlag(FLAGS_token);
    if (token.empty() && std::getenv("IPSRT_TOKEN") != nullptr) {
      token = std::getenv("IPSRT_TOKEN");
    }
    return new std::string(token.empty() ? "" : "Bearer " + token);
  }();
  if (!kHeader->empty()) ctx.AddMetadata("authorization", *kHeader);
}

void SendCall(RunContext& run, Slot& s, grpc::CompletionQueue* cq) {
  s.ctx = std::make_unique<grpc::ClientContext>();
  s.ctx->set_deadline(absl::ToChronoTime(absl::Now() + run.deadline));
  Authorize(*s.ctx);
  ChannelStubs& ch = (*run.channels)[s.channel];
  if (run.rate <= 0) s.started = Clock::now();
  switch (run.rpc) {
    case Rpc::kPing:
      s.ping_req.set_payload(run.ping_payload);
      s.ping_rd = ch.diagnostics->AsyncPing(s.ctx.get(), s.ping_req, cq);
      s.ping_rd->Finish(&s.ping_resp, &s.status, &s);
      break;
    case Rpc::kCreate: {
      uint64_t n = run.next_seq.fetch_add(1, std::memory_order_relaxed);
      s.create_req.set_parent(run.parent);
      s.create_req.set_request_id(absl::StrCat("bench-", run.run_id, "-", n));
      s.create_req.set_patient_ref(absl::StrCat("Patient/bench-", n));
      s.create_req.set_workflow_id(run.workflow_id);
      s.create_req.set_time_zone("Europe/London");
      s.create_req.set_clinician_ref("Practitioner/bench");
      s.enr_rd =
          ch.enrollments->AsyncCreateEnrollment(s.ctx.get(), s.create_req, cq);
      s.enr_rd->Finish(&s.enrollment, &s.status, &s);
      break;
    }
    case Rpc::kGet: {
      uint64_t n = run.next_seq.fetch_add(1, std::memory_order_relaxed);
      s.get_req.set_name((*run.get_names)[n % run.get_names->size()]);
      s.enr_rd = ch.enrollments->AsyncGetEnrollment(s.ctx.get(), s.get_req, cq);
      s.enr_rd->Finish(&s.enrollment, &s.status, &s);
      break;
    }
    case Rpc::kEvent: {
      // A revision-less "session held" event: one durable append (event
      // row, enrollment snapshot, request record) per call.
      uint64_t n = run.next_seq.fetch_add(1, std::memory_order_relaxed);
      s.event_req.set_name((*run.get_names)[n % run.get_names->size()]);
      s.event_req.set_request_id(absl::StrCat("bench-", run.run_id, "-ev-", n));
      s.event_req.set_expected_revision(0);
      s.event_req.mutable_event()->mutable_session_held();
      s.event_rd =
          ch.enrollments->AsyncSubmitEvent(s.ctx.get(), s.event_req, cq);
      s.event_rd->Finish(&s.event_resp, &s.status, &s);
      break;
    }
  }
}

// StartCall starts the slot's next call: at once in a closed loop; under
// --rate at the next free tick of the schedule (an alarm on the same
// completion queue when that lies ahead). Returns false, starting nothing,
// when the next tick lies after the window.
bool StartCall(RunContext& run, Slot& s, grpc::CompletionQueue* cq) {
  if (run.rate <= 0) {
    SendCall(run, s, cq);
    return true;
  }
  uint64_t k = run.next_tick.fetch_add(1, std::memory_order_relaxed);
  s.started =
      run.start +
      std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(static_cast<double>(k) / run.rate));
  if (s.started >= run.window_end) return false;
  if (s.started <= Clock::now()) {
    SendCall(run, s, cq);
    return true;
  }
  s.waiting = true;
  s.alarm.Set(cq, std::chrono::system_clock::now() + (s.started - Clock::now()),
              &s);
  return true;
}

// PollLoop drives the slots of one completion queue until every one has
// finished its last call. Bounded: no call starts after window_end, and
// each outstanding call ends by its deadline.
void PollLoop(RunContext& run, std::vector<Slot>& slots,
              grpc::CompletionQueue* cq, ThreadStats& stats) {
  size_t outstanding = 0;
  for (Slot& s : slots) {
    if (StartCall(run, s, cq)) ++outstanding;
  }
  if (outstanding == 0) cq->Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) {
    Slot& s = *static_cast<Slot*>(tag);
    if (s.waiting) {  // the scheduled start has come
      s.waiting = false;
      SendCall(run, s, cq);
      continue;
    }
    Clock::time_point done = Clock::now();
    if (done < run.window_start) {
      ++stats.warmup_calls;
    } else if (done < run.window_end) {
      if (ok && s.status.ok()) {
        ++stats.ok;
        stats.latencies_ns.push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(done -
                                                                 s.started)
                .count());
      } else {
        ++stats.errors[ok ? static_cast<int>(s.status.error_code())
                          : static_cast<int>(grpc::StatusCode::UNKNOWN)];
      }
    } else {
      ++stats.late_calls;
    }
    if (done >= run.window_end || !StartCall(run, s, cq)) {
      if (--outstanding == 0)
        cq->Shutdown();  // Next returns false once drained
    }
  }
}

const char* CodeName(int code) {
  switch (static_cast<grpc::StatusCode>(code)) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "?";
  }
}

// Nearest-rank percentile of a sorted sample, in milliseconds.
double PercentileMs(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(
      std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1e6;
}

// Populate creates `n` enrollments with blocking calls (setup, not
// measured) and returns their names.
bool Populate(RunContext& run, int n, std::vector<std::string>* names) {
  ChannelStubs& ch = (*run.channels)[0];
  for (int i = 0; i < n; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + run.deadline));
    Authorize(ctx);
    v1::CreateEnrollmentRequest req;
    req.set_parent(run.parent);
    req.set_request_id(absl::StrCat("bench-", run.run_id, "-setup-", i));
    req.set_patient_ref(absl::StrCat("Patient/bench-setup-", i));
    req.set_workflow_id(run.workflow_id);
    req.set_time_zone("Europe/London");
    req.set_clinician_ref("Practitioner/bench");
    v1::Enrollment e;
    grpc::Status st = ch.enrollments->CreateEnrollment(&ctx, req, &e);
    if (!st.ok()) {
      std::fprintf(stderr,
                   "ipsrt_loadgen: setup CreateEnrollment failed: %s: %s\n",
                   CodeName(st.error_code()), st.error_message().c_str());
      return false;
    }
    names->push_back(e.name());
  }
  return true;
}

// ParseRpc maps --rpc to the call to make; false for an unknown name.
bool ParseRpc(const std::string& rpc_name, Rpc* rpc) {
  if (rpc_name == "ping") {
    *rpc = Rpc::kPing;
  } else if (rpc_name == "create") {
    *rpc = Rpc::kCreate;
  } else if (rpc_name == "get") {
    *rpc = Rpc::kGet;
  } else if (rpc_name == "event") {
    *rpc = Rpc::kEvent;
  } else {
    return false;
  }
  return true;
}

// Credentials are plaintext, or TLS (mutual with --tls_cert/--tls_key)
// with --tls_ca; exits when a file cannot be read.
std::shared_ptr<grpc::ChannelCredentials> Credentials() {
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  if (!absl::GetFlag(FLAGS_tls_ca).empty()) {
    auto read = [](const std::string& path) {
      std::ifstream in(path, std::ios::binary);
      std::stringstream text;
      text << in.rdbuf();
      if (!in || text.str().empty()) {
        std::fprintf(stderr, "ipsrt_loadgen: cannot read %s\n", path.c_str());
        std::exit(2);
      }
      return text.str();
    };
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read(absl::GetFlag(FLAGS_tls_ca));
    if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
      ssl.pem_cert_chain = read(absl::GetFlag(FLAGS_tls_cert));
      ssl.pem_private_key = read(absl::GetFlag(FLAGS_tls_key));
    }
    credentials = grpc::SslCredentials(ssl);
  }

  return credentials;
}

// Connect opens `num_channels` channels dealt round-robin over
// `servers`, each with its own subchannel pool so that channels really are
// separate connections (by default equal targets share one); false when a
// server does not answer within 5 s.
bool Connect(const std::vector<std::string>& servers, int num_channels,
             const std::shared_ptr<grpc::ChannelCredentials>& credentials,
             std::vector<ChannelStubs>& channels) {
  channels.resize(num_channels);
  for (int i = 0; i < num_channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("ipsrt.bench.channel", i);
    if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
      args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
    }
    const std::string& target = servers[i % servers.size()];
    channels[i].channel = grpc::CreateCustomChannel(target, credentials, args);
    if (!channels[i].channel->WaitForConnected(
            absl::ToChronoTime(absl::Now() + absl::Seconds(5)))) {
      std::fprintf(stderr, "ipsrt_loadgen: cannot connect to %s\n",
                   target.c_str());
      return false;
    }
    channels[i].diagnostics =
        v1::DiagnosticsService::NewStub(channels[i].channel);
    channels[i].enrollments =
        v1::EnrollmentService::NewStub(channels[i].channel);
  }
  return true;
}

// DriveLoad keeps `concurrency` calls outstanding on `num_threads`
// polling threads (slots dealt to threads and channels round-robin) for
// the warm-up and the measured window; returns each thread's counts.
std::vector<ThreadStats> DriveLoad(RunContext& run, int concurrency,
                                   int num_channels, int num_threads,
                                   absl::Duration duration,
                                   absl::Duration warmup) {
  std::vector<std::vector<Slot>> slots(num_threads);
  for (int i = 0; i < concurrency; ++i) {
    slots[i % num_threads].emplace_back();
    slots[i % num_threads].back().channel = i % num_channels;
  }
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs;
  for (int t = 0; t < num_threads; ++t) {
    cqs.push_back(std::make_unique<grpc::CompletionQueue>());
  }
  std::vector<ThreadStats> stats(num_threads);
  for (ThreadStats& s : stats) {
    // Sized for ~200k calls/s per thread over the window, to avoid
    // reallocation spikes in the timed loop.
    s.latencies_ns.reserve(static_cast<size_t>(
        std::min<double>(2e5 * absl::ToDoubleSeconds(duration), 5e7)));
  }

  Clock::time_point start = Clock::now();
  run.window_start = start + absl::ToChronoNanoseconds(warmup);
  run.window_end = run.window_start + absl::ToChronoNanoseconds(duration);
  run.start = start;
  run.rate = absl::GetFlag(FLAGS_rate);
  std::vector<std::thread> threads;
  for (int t = 0; t < num_threads; ++t) {
    threads.emplace_back(
        [&, t] { PollLoop(run, slots[t], cqs[t].get(), stats[t]); });
  }
  for (std::thread& t : threads) t.join();

  return stats;
}

// Totals are the threads' counts added up: successful calls' latencies
// (sorted, nanoseconds), errors by status code, and calls outside the
// window.
struct Totals {
  std::vector<int64_t> lat;
  std::map<int, int64_t> errors;
  int64_t ok = 0, error_count = 0, warmup_calls = 0, late = 0;
};

Totals AddUp(const std::vector<ThreadStats>& stats) {
  Totals t;
  for (const ThreadStats& s : stats) {
    t.lat.insert(t.lat.end(), s.latencies_ns.begin(), s.latencies_ns.end());
    for (const auto& [code, n] : s.errors) {
      t.errors[code] += n;
      t.error_count += n;
    }
    t.ok += s.ok;
    t.warmup_calls += s.warmup_calls;
    t.late += s.late_calls;
  }
  std::sort(t.lat.begin(), t.lat.end());
  return t;
}

// PrintReport prints throughput and latency over the window, as one JSON
// line with --json.
void PrintReport(const Totals& t, const std::string& rpc_name,
                 const std::string& server, int concurrency, int num_channels,
                 int num_threads, absl::Duration duration,
                 absl::Duration warmup) {
  const std::vector<int64_t>& lat = t.lat;
  const std::map<int, int64_t>& errors = t.errors;
  const int64_t ok = t.ok, error_count = t.error_count,
                warmup_calls = t.warmup_calls, late = t.late;
  const double window_s = absl::ToDoubleSeconds(duration);
  const double throughput = static_cast<double>(ok) / window_s;
  const double p50 = PercentileMs(lat, 50), p90 = PercentileMs(lat, 90),
               p99 = PercentileMs(lat, 99);
  const double max = lat.empty() ? 0 : static_cast<double>(lat.back()) / 1e6;
  double mean = 0;
  for (int64_t v : lat) mean += static_cast<double>(v);
  mean = lat.empty() ? 0 : mean / static_cast<double>(lat.size()) / 1e6;
  if (absl::GetFlag(FLAGS_json)) {
    std::vector<std::string> errs;
    for (const auto& [code, n] : errors) {
      errs.push_back(absl::StrFormat("\"%s\":%d", CodeName(code), n));
    }
    std::printf(
        "{\"rpc\":\"%s\",\"concurrency\":%d,\"channels\":%d,\"threads\":%d,"
        "\"rate\":%.1f,\"duration_s\":%.3f,\"warmup_s\":%.3f,\"completed\":"
        "%" PRId64 ",\"errors\":%" PRId64
        ",\"errors_by_code\":{%s},\"throughput\":%.1f,\"p50_ms\":%.3f,"
        "\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f,"
        "\"latency_method\":\"full-sample-nearest-rank\"}\n",
        rpc_name.c_str(), concurrency, num_channels, num_threads,
        absl::GetFlag(FLAGS_rate), window_s, absl::ToDoubleSeconds(warmup), ok,
        error_count, absl::StrJoin(errs, ",").c_str(), throughput, p50, p90,
        p99, max, mean);
  } else {
    std::printf("rpc:          %s\n", rpc_name.c_str());
    std::printf("server:       %s (%d channel(s), %d polling thread(s))\n",
                server.c_str(), num_channels, num_threads);
    std::printf("concurrency:  %d outstanding calls\n", concurrency);
    std::printf("duration:     %.1f s (after %.1f s warm-up, %" PRId64
                " warm-up calls, %" PRId64 " calls after the window)\n",
                window_s, absl::ToDoubleSeconds(warmup), warmup_calls, late);
    std::printf("completed:    %" PRId64 " ok\n", ok);
    std::printf("errors:       %" PRId64, error_count);
    for (const auto& [code, n] : errors) {
      std::printf(" %s=%" PRId64, CodeName(code), n);
    }
    std::printf("\n");
    std::printf("throughput:   %.1f calls/s\n", throughput);
    std::printf(
        "latency (ms): p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f\n"
        "              (exact, nearest-rank over all %zu successful calls)\n",
        p50, p90, p99, max, mean, lat.size());
  }
}

int Main() {
  const std::string server = absl::GetFlag(FLAGS_server);
  const std::string rpc_name = absl::GetFlag(FLAGS_rpc);
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const int num_channels = absl::GetFlag(FLAGS_channels);
  const int num_threads = absl::GetFlag(FLAGS_threads);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration warmup = absl::GetFlag(FLAGS_warmup);

  const std::vector<std::string> servers = absl::StrSplit(server, ',');
  for (const std::string& target : servers) {
    if (!IsLoopbackTarget(target)) {
      std::fprintf(stderr,
                   "ipsrt_loadgen: --server=%s: only loopback targets "
                   "(127.x.x.x, [::1], localhost) with a port are allowed\n",
                   target.c_str());
      return 2;
    }
  }
  if (num_channels < static_cast<int>(servers.size())) {
    std::fprintf(stderr,
                 "ipsrt_loadgen: --channels must be at least the number of "
                 "--server targets (%d)\n",
                 static_cast<int>(servers.size()));
    return 2;
  }
  RunContext run;
  if (!ParseRpc(rpc_name, &run.rpc)) {
    std::fprintf(stderr,
                 "ipsrt_loadgen: --rpc must be ping, create, get or event\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_rate) < 0) {
    std::fprintf(stderr, "ipsrt_loadgen: --rate must be >= 0\n");
    return 2;
  }
  if (concurrency < 1 || num_channels < 1 || num_threads < 1 ||
      duration <= absl::ZeroDuration() || warmup < absl::ZeroDuration() ||
      duration > absl::Hours(1) || warmup > absl::Hours(1)) {
    std::fprintf(stderr,
                 "ipsrt_loadgen: --concurrency, --channels, --threads must be "
                 ">= 1; --duration in (0, 1h]; --warmup in [0, 1h]\n");
    return 2;
  }

  std::vector<ChannelStubs> channels;
  if (!Connect(servers, num_channels, Credentials(), channels)) return 1;
  run.channels = &channels;
  run.deadline = absl::GetFlag(FLAGS_deadline);
  run.ping_payload = std::string(
      static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_payload_bytes))),
      'x');
  run.parent = absl::GetFlag(FLAGS_parent);
  run.workflow_id = absl::GetFlag(FLAGS_workflow_id);
  run.run_id = absl::StrFormat("%x", absl::ToUnixNanos(absl::Now()));

  std::vector<std::string> names;
  if (run.rpc == Rpc::kGet || run.rpc == Rpc::kEvent) {
    int n = std::max(1, absl::GetFlag(FLAGS_get_population));
    if (!Populate(run, n, &names)) return 1;
  }
  run.get_names = &names;

  std::vector<ThreadStats> stats =
      DriveLoad(run, concurrency, num_channels, num_threads, duration, warmup);

  const Totals totals = AddUp(stats);
  const int64_t counted = totals.ok + totals.error_count;
  const double error_ratio =
      counted == 0 ? 1.0 : static_cast<double>(totals.error_count) / counted;
  PrintReport(totals, rpc_name, server, concurrency, num_channels, num_threads,
              duration, warmup);
  if (counted == 0) {
    std::fprintf(stderr, "ipsrt_loadgen: no call completed in the window\n");
    return 1;
  }
  if (error_ratio > absl::GetFlag(FLAGS_max_error_ratio)) {
    std::fprintf(stderr, "ipsrt_loadgen: error ratio %.4f over limit %.4f\n",
                 error_ratio, absl::GetFlag(FLAGS_max_error_ratio));
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ipsrt::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ipsrt_loadgen --server=127.0.0.1:PORT --rpc=ping|create|get|event: "
      "closed-loop gRPC load against a local ipsrtd");
  absl::ParseCommandLine(argc, argv);
  return ipsrt::bench::Main();
}
