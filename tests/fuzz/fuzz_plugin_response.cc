// Host-side decoding of plugin answers: a transport (the plugin host's own
// interface) answers each call with bytes from the input, decoded exactly
// as both real transports decode them; the host then builds the
// questionnaire catalog from what the "plugin" listed, scores with it and
// asks it to render. Input: up to four chunks, each a 2-byte big-endian
// length and that many bytes (Describe, ListInstruments, ScoreResponse,
// RenderExport answers).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/questionnaires.h"
#include "plugin_host/plugin.h"
#include "plugin_host/registry.h"

namespace {

class BytesTransport final : public ipsrt::PluginTransport {
 public:
  explicit BytesTransport(std::vector<std::string> answers)
      : answers_(std::move(answers)) {}

  absl::Status Call(ipsrt::PluginMethod method,
                    const google::protobuf::Message& request,
                    google::protobuf::Message* response,
                    absl::Duration timeout) override {
    size_t slot = 0;
    switch (method) {
      case ipsrt::PluginMethod::kDescribe:
        slot = 0;
        break;
      case ipsrt::PluginMethod::kListInstruments:
        slot = 1;
        break;
      case ipsrt::PluginMethod::kScoreResponse:
        slot = 2;
        break;
      default:
        slot = 3;
        break;
    }
    if (!response->ParseFromString(answers_[slot])) {
      return absl::InternalError("not a valid response");
    }
    return absl::OkStatus();
  }
  ipsrt::v1::PluginInfo::Transport transport() const override {
    return ipsrt::v1::PluginInfo::IN_PROCESS;
  }
  ipsrt::v1::PluginInfo::Health health() const override {
    return ipsrt::v1::PluginInfo::SERVING;
  }
  void Shutdown() override {}

 private:
  std::vector<std::string> answers_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> chunks(4);
  size_t at = 0;
  for (std::string& chunk : chunks) {
    if (at + 2 > size) break;
    size_t n = (static_cast<size_t>(data[at]) << 8) | data[at + 1];
    at += 2;
    n = std::min(n, size - at);
    chunk.assign(reinterpret_cast<const char*>(data + at), n);
    at += n;
  }
  auto transport = std::make_unique<BytesTransport>(chunks);
  ipsrt::plugin::v1::DescribeResponse description;
  if (!transport
           ->Call(ipsrt::PluginMethod::kDescribe,
                  ipsrt::plugin::v1::DescribeRequest(), &description,
                  absl::Seconds(1))
           .ok() ||
      description.name().empty() || description.kinds().empty()) {
    return 0;  // refused at load, as LoadOne does
  }
  std::vector<std::unique_ptr<ipsrt::LoadedPlugin>> loaded;
  loaded.push_back(std::make_unique<ipsrt::LoadedPlugin>(
      std::move(transport), description, "fuzz.so", absl::Seconds(1)));
  ipsrt::LoadedPlugin* plugin = loaded.back().get();
  (void)plugin->Info();
  std::unique_ptr<ipsrt::PluginRegistry> registry =
      ipsrt::PluginRegistry::ForTesting(std::move(loaded));
  absl::StatusOr<std::unique_ptr<ipsrt::QuestionnaireCatalog>> catalog =
      ipsrt::QuestionnaireCatalog::Build(*registry);
  if (catalog.ok()) {
    for (const ipsrt::v1::Questionnaire* q : (*catalog)->List()) {
      ipsrt::v1::ScoreResponseRequest request;
      request.mutable_response()->set_questionnaire_id(q->id());
      (void)(*catalog)->Score(request, "response");
    }
  }
  (void)plugin->RenderExport(ipsrt::plugin::v1::RenderExportRequest());
  (void)plugin->DeliverExport(ipsrt::plugin::v1::DeliverExportRequest());
  (void)plugin->PlanReminders(ipsrt::plugin::v1::PlanRemindersRequest());
  return 0;
}
