// Hostile requests against the real ipsrtd, driven by protobuf reflection:
// every method of every ipsrt.v1 service gets, one field at a time, a
// 100 KB string or a 10,000-element repeated field, then seeded random
// requests. Each call must end with a bounded answer (never the caller's
// own deadline, never a status message over the trailer bound), and health
// and ordinary calls on the same channel must still work afterwards.
#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/impl/codegen/sync_stream.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "ipsrt/v1/diagnostics.grpc.pb.h"
#include "ipsrt/v1/workflow.grpc.pb.h"
#include "process.h"

namespace ipsrt::e2e {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::MethodDescriptor;
using google::protobuf::Reflection;
using ::testing::HasSubstr;

constexpr size_t kBigString = 100 * 1024;
constexpr int kBigRepeated = 10000;
// ipsrtd's bound on status messages (service/status_mapping.h) plus the
// truncation note.
constexpr size_t kMaxMessage = 1536 + 64;

const char* kFiles[] = {
    "ipsrt/v1/audit.proto",      "ipsrt/v1/diagnostics.proto",
    "ipsrt/v1/enrollment.proto", "ipsrt/v1/export.proto",
    "ipsrt/v1/plugin.proto",     "ipsrt/v1/questionnaire.proto",
    "ipsrt/v1/reminder.proto",   "ipsrt/v1/workflow.proto"};

std::vector<const MethodDescriptor*> AllMethods() {
  // Referencing a generated type makes sure the files are registered.
  (void)v1::PingRequest::descriptor();
  std::vector<const MethodDescriptor*> out;
  for (const char* f : kFiles) {
    const google::protobuf::FileDescriptor* file =
        google::protobuf::DescriptorPool::generated_pool()->FindFileByName(f);
    if (file == nullptr) {
      ADD_FAILURE() << "no descriptor for " << f;
      continue;
    }
    for (int s = 0; s < file->service_count(); ++s) {
      for (int m = 0; m < file->service(s)->method_count(); ++m) {
        out.push_back(file->service(s)->method(m));
      }
    }
  }
  return out;
}

std::unique_ptr<Message> New(const Descriptor* d) {
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(d)
          ->New());
}

// Sets field `f` of `m` to its extreme: 100 KB strings, 10,000 elements.
void Extreme(Message& m, const FieldDescriptor* f) {
  const Reflection* r = m.GetReflection();
  if (!f->is_repeated()) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        r->SetString(&m, f, std::string(kBigString, 'x'));
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        Message* child = r->MutableMessage(&m, f);
        for (int i = 0; i < child->GetDescriptor()->field_count(); ++i) {
          const FieldDescriptor* g = child->GetDescriptor()->field(i);
          if (g->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
              !g->is_repeated()) {
            r = child->GetReflection();
            r->SetString(child, g, std::string(kBigString, 'y'));
          }
        }
        break;
      }
      case FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(&m, f, INT32_MAX);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->SetInt64(&m, f, INT64_MAX);
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        r->SetDouble(&m, f, 1e308);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r->SetEnumValue(&m, f, 12345);
        break;
      default:
        break;
    }
    return;
  }
  for (int i = 0; i < kBigRepeated; ++i) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        r->AddString(&m, f, absl::StrCat("v", i));
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        Message* e = r->AddMessage(&m, f);
        if (f->is_map()) {
          const FieldDescriptor* key = e->GetDescriptor()->map_key();
          if (key->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
            e->GetReflection()->SetString(e, key, absl::StrCat("k", i));
          }
        }
        break;
      }
      case FieldDescriptor::CPPTYPE_INT32:
        r->AddInt32(&m, f, i);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->AddInt64(&m, f, i);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r->AddEnumValue(&m, f, i % 4);
        break;
      default:
        return;
    }
  }
}

// Random printable text, sometimes long.
std::string RandomText(std::mt19937& rng) {
  static const char kChars[] = "abcXYZ0123456789-_/.:\"'\\{}[]%\n\t ";
  size_t n = std::uniform_int_distribution<size_t>(0, 1)(rng) == 0
                 ? std::uniform_int_distribution<size_t>(0, 40)(rng)
                 : std::uniform_int_distribution<size_t>(0, 4000)(rng);
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += kChars[std::uniform_int_distribution<size_t>(0,
                                                      sizeof kChars - 2)(rng)];
  }
  return s;
}

void Randomize(Message& m, std::mt19937& rng, int depth) {
  const Descriptor* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) continue;
    int count =
        f->is_repeated() ? std::uniform_int_distribution<int>(0, 30)(rng) : 1;
    for (int k = 0; k < count; ++k) {
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_STRING:
          f->is_repeated() ? r->AddString(&m, f, RandomText(rng))
                           : r->SetString(&m, f, RandomText(rng));
          break;
        case FieldDescriptor::CPPTYPE_INT32: {
          int32_t v = static_cast<int32_t>(rng());
          f->is_repeated() ? r->AddInt32(&m, f, v) : r->SetInt32(&m, f, v);
          break;
        }
        case FieldDescriptor::CPPTYPE_INT64: {
          int64_t v = static_cast<int64_t>(rng()) << 20;
          f->is_repeated() ? r->AddInt64(&m, f, v) : r->SetInt64(&m, f, v);
          break;
        }
        case FieldDescriptor::CPPTYPE_UINT32:
        case FieldDescriptor::CPPTYPE_UINT64:
        case FieldDescriptor::CPPTYPE_FLOAT:
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE: {
          double v = std::uniform_real_distribution<double>(-1e6, 1e6)(rng);
          f->is_repeated() ? r->AddDouble(&m, f, v) : r->SetDouble(&m, f, v);
          break;
        }
        case FieldDescriptor::CPPTYPE_BOOL:
          if (!f->is_repeated()) r->SetBool(&m, f, rng() % 2 == 0);
          break;
        case FieldDescriptor::CPPTYPE_ENUM: {
          int v = std::uniform_int_distribution<int>(-1, 8)(rng);
          f->is_repeated() ? r->AddEnumValue(&m, f, v)
                           : r->SetEnumValue(&m, f, v);
          break;
        }
        case FieldDescriptor::CPPTYPE_MESSAGE:
          if (depth < 3) {
            Message* child = f->is_repeated() ? r->AddMessage(&m, f)
                                              : r->MutableMessage(&m, f);
            Randomize(*child, rng, depth + 1);
          }
          break;
      }
    }
  }
}

class RobustnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Ipsrtd>> server =
        Ipsrtd::Start(WriteConfig(dir_));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
  }

  // One call of `method` with `request`; the answer must be bounded.
  grpc::Status Call(const MethodDescriptor* method, const Message& request,
                    const std::string& what) {
    const std::string path =
        absl::StrCat("/", method->service()->full_name(), "/", method->name());
    grpc::ClientContext ctx;
    const bool streaming = method->server_streaming();
    ctx.set_deadline(
        std::chrono::system_clock::now() +
        (streaming ? std::chrono::seconds(2) : std::chrono::seconds(20)));
    std::unique_ptr<Message> response = New(method->output_type());
    grpc::Status s;
    if (streaming) {
      grpc::internal::RpcMethod rpc(
          path.c_str(), grpc::internal::RpcMethod::SERVER_STREAMING, channel_);
      std::unique_ptr<grpc::ClientReader<Message>> reader(
          grpc::internal::ClientReaderFactory<Message>::Create(
              channel_.get(), rpc, &ctx, request));
      int read = 0;
      while (read < 1000 && reader->Read(response.get())) ++read;
      if (read < 1000) {
        s = reader->Finish();
      } else {
        ctx.TryCancel();
        s = grpc::Status::OK;
      }
    } else {
      grpc::internal::RpcMethod rpc(
          path.c_str(), grpc::internal::RpcMethod::NORMAL_RPC, channel_);
      s = grpc::internal::BlockingUnaryCall<Message, Message>(
          channel_.get(), rpc, &ctx, request, response.get());
      EXPECT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
          << path << " " << what << ": no answer within 20s";
    }
    EXPECT_LE(s.error_message().size(), kMaxMessage) << path << " " << what;
    EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr("GOAWAY")))
        << path << " " << what;
    ++calls_;
    return s;
  }

  void ExpectStillServing() {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext hctx;
    hctx.set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(10));
    grpc::health::v1::HealthCheckRequest hreq;
    grpc::health::v1::HealthCheckResponse hres;
    grpc::Status hs = health->Check(&hctx, hreq, &hres);
    ASSERT_TRUE(hs.ok()) << hs.error_message();
    EXPECT_EQ(hres.status(), grpc::health::v1::HealthCheckResponse::SERVING);

    auto workflows = v1::WorkflowService::NewStub(channel_);
    grpc::ClientContext wctx;
    wctx.set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(10));
    v1::GetWorkflowRequest wreq;
    wreq.set_id("ipsrt-standard");
    v1::Workflow workflow;
    grpc::Status ws = workflows->GetWorkflow(&wctx, wreq, &workflow);
    ASSERT_TRUE(ws.ok()) << ws.error_message();
    EXPECT_EQ(workflow.id(), "ipsrt-standard");
  }

  TempDir dir_;
  std::unique_ptr<Ipsrtd> server_;
  std::shared_ptr<grpc::Channel> channel_;
  int calls_ = 0;
};

TEST_F(RobustnessTest, HundredKilobyteIdIsRefusedByNameAndTheChannelSurvives) {
  // The request that stalled the connection (issue: GOAWAY after 100 KB).
  const MethodDescriptor* get =
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
          "ipsrt.v1.QuestionnaireService.GetQuestionnaire");
  ASSERT_NE(get, nullptr);
  std::unique_ptr<Message> request = New(get->input_type());
  Extreme(*request, get->input_type()->FindFieldByName("id"));
  grpc::Status s = Call(get, *request, "id=100KB");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "request field id is 102400 bytes; the limit is 1024 bytes");
  ExpectStillServing();
}

TEST_F(RobustnessTest, EveryMethodSurvivesExtremeAndRandomRequests) {
  std::vector<const MethodDescriptor*> methods = AllMethods();
  ASSERT_GT(methods.size(), 20u);
  int refused_by_limit = 0;
  for (const MethodDescriptor* method : methods) {
    const Descriptor* in = method->input_type();
    for (int i = 0; i < in->field_count(); ++i) {
      const FieldDescriptor* f = in->field(i);
      std::unique_ptr<Message> request = New(in);
      Extreme(*request, f);
      grpc::Status s = Call(method, *request, f->name());
      if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
          absl::StrContains(s.error_message(), "the limit is")) {
        ++refused_by_limit;
      }
    }
  }
  EXPECT_GT(refused_by_limit, 20);
  ExpectStillServing();

  const unsigned seed = static_cast<unsigned>(
      std::chrono::system_clock::now().time_since_epoch().count());
  SCOPED_TRACE(absl::StrCat("random seed ", seed));
  std::mt19937 rng(seed);
  for (int round = 0; round < 5; ++round) {
    for (const MethodDescriptor* method : methods) {
      std::unique_ptr<Message> request = New(method->input_type());
      Randomize(*request, rng, 0);
      Call(method, *request, absl::StrCat("random round ", round));
    }
  }
  ExpectStillServing();
  EXPECT_GT(calls_, 100);
}

// --- ipsrtd's exit takes its plugins' process trees ---

bool Alive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() &&
         line[paren + 2] != 'Z';
}

TEST(PluginTreeTest, SigtermOfIpsrtdTakesAWrapperScriptsChildren) {
  TempDir dir;
  // A wrapper that does not exec: the runner is ipsrtd's grandchild.
  ASSERT_TRUE(
      WriteFile(dir.File("run.sh"),
                absl::StrCat("'", IPSRT_BUILD_DIR,
                             "/engine/ipsrt-plugin-runner' '", IPSRT_BUILD_DIR,
                             "/lib/ipsrt/plugins/"
                             "libipsrt_bedtime_check.so' &\n"
                             "echo $! > '",
                             dir.File("runner.pid"), "'\nwait\n"))
          .ok());
  std::string config = WriteConfig(dir);
  std::ifstream in(config);
  std::string yaml((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  yaml += absl::StrCat("  - path: /bin/sh\n    transport: out_of_process\n",
                       "    args: [", dir.File("run.sh"), "]\n");
  ASSERT_TRUE(WriteFile(config, yaml).ok());
  absl::StatusOr<std::unique_ptr<Ipsrtd>> server = Ipsrtd::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  int runner = 0;
  std::ifstream(dir.File("runner.pid")) >> runner;
  ASSERT_GT(runner, 0);
  ASSERT_TRUE(Alive(runner));
  absl::StatusOr<int> exit_status = (*server)->Terminate();
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WaitFor([&] { return !Alive(runner); }, absl::Seconds(10),
                      absl::Milliseconds(20)));
}

// --- the CLI's own bounds, before any call ---

TEST(CliBoundsTest, DeeplyNestedAnswersFileIsRefusedAtOnce) {
  TempDir dir;
  const std::string file = dir.File("answers.json");
  std::string json = "{\"answers\": ";
  json += std::string(100000, '[') + std::string(100000, ']') + "}";
  ASSERT_TRUE(WriteFile(file, json).ok());
  UnusedPort nobody;
  absl::Time start = absl::Now();
  ProcessResult r = RunCli(absl::StrCat("127.0.0.1:", nobody.port()),
                           {"score", "phq9", absl::StrCat("--answers=", file)});
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err,
              HasSubstr(absl::StrCat(
                  file, ": byte 43: JSON nested deeper than 32 levels")));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("cannot reach")));
}

TEST(CliBoundsTest, SimulateRefusesAnUnboundedSpan) {
  TempDir dir;
  const std::string scenario = dir.File("forever.yaml");
  ASSERT_TRUE(WriteFile(scenario,
                        "workflow: ipsrt-standard\n"
                        "patient:\n"
                        "  time_zone: UTC\n"
                        "  start: \"2026-03-02T09:00\"\n"
                        "tick: P1Y\n"
                        "until: \"9999-12-31T23:59\"\n"
                        "events: []\n")
                  .ok());
  absl::Time start = absl::Now();
  ProcessResult r = RunCliNoServer(
      {"simulate", absl::StrCat(IPSRT_WORKFLOWS_DIR, "/ipsrt-standard.yaml"),
       absl::StrCat("--scenario=", scenario)});
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(
                         scenario, ": error: until: the scenario spans ")));
  EXPECT_THAT(r.err, HasSubstr("the limit is 3653 days (10 years)"));
}

}  // namespace
}  // namespace ipsrt::e2e
