// Loaded plugins, as the engine sees them: one typed client over either
// transport (in-process C ABI, out-of-process gRPC).
//
// A transport moves one request message to the plugin and one response
// message back. LoadedPlugin adds the contract's types and the plugin's
// identity on top, so callers never see which transport serves a plugin.
#ifndef IPSRT_PLUGIN_HOST_PLUGIN_H_
#define IPSRT_PLUGIN_HOST_PLUGIN_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "ipsrt/plugin/v1/plugin.pb.h"
#include "ipsrt/v1/plugin.pb.h"

namespace ipsrt {

// The methods of `service Plugin`, in its order (= the C function table).
enum class PluginMethod {
  kDescribe,
  kConfigure,
  kListInstruments,
  kScoreResponse,
  kDeliverReminder,
  kPlanReminders,
  kRenderExport,
  kDeliverExport,
};

// "ScoreResponse".
absl::string_view PluginMethodName(PluginMethod method);

class PluginTransport {
 public:
  virtual ~PluginTransport() = default;

  // Sends `request` and fills `response` (whose type the method defines).
  // Codes: whatever the plugin answered; UNAVAILABLE when it is not
  // serving; DEADLINE_EXCEEDED when it did not answer within `timeout`
  // (in process the overdue call keeps running; see in_process.h);
  // INTERNAL when it answered bytes that are not the response message.
  virtual absl::Status Call(PluginMethod method,
                            const google::protobuf::Message& request,
                            google::protobuf::Message* response,
                            absl::Duration timeout) = 0;

  virtual v1::PluginInfo::Transport transport() const = 0;
  virtual v1::PluginInfo::Health health() const = 0;

  // Names the plugin in later messages, once it has described itself.
  virtual void SetName(const std::string& name) {}

  // Stops the plugin (kills an out-of-process one). Later calls fail
  // UNAVAILABLE. Idempotent.
  virtual void Shutdown() = 0;
};

class LoadedPlugin {
 public:
  LoadedPlugin(std::unique_ptr<PluginTransport> transport,
               plugin::v1::DescribeResponse description, std::string path,
               absl::Duration call_timeout);
  ~LoadedPlugin();

  const std::string& name() const { return description_.name(); }
  const plugin::v1::DescribeResponse& description() const {
    return description_;
  }
  bool HasKind(plugin::v1::Kind kind) const;
  v1::PluginInfo Info() const;

  absl::StatusOr<plugin::v1::ListInstrumentsResponse> ListInstruments();
  absl::StatusOr<plugin::v1::ScoreResponseResponse> ScoreResponse(
      const plugin::v1::ScoreResponseRequest& request);
  absl::StatusOr<plugin::v1::DeliverReminderResponse> DeliverReminder(
      const plugin::v1::DeliverReminderRequest& request);
  absl::StatusOr<plugin::v1::PlanRemindersResponse> PlanReminders(
      const plugin::v1::PlanRemindersRequest& request);
  absl::StatusOr<plugin::v1::RenderExportResponse> RenderExport(
      const plugin::v1::RenderExportRequest& request);
  absl::StatusOr<plugin::v1::DeliverExportResponse> DeliverExport(
      const plugin::v1::DeliverExportRequest& request);

  PluginTransport& transport() { return *transport_; }

 private:
  template <typename Response>
  absl::StatusOr<Response> Invoke(PluginMethod method,
                                  const google::protobuf::Message& request);

  std::unique_ptr<PluginTransport> transport_;
  plugin::v1::DescribeResponse description_;
  std::string path_;
  absl::Duration call_timeout_;
};

}  // namespace ipsrt

#endif  // IPSRT_PLUGIN_HOST_PLUGIN_H_
