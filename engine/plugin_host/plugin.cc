#include "plugin_host/plugin.h"

#include "absl/strings/str_cat.h"
#include "ops/metrics_hooks.h"

namespace ipsrt {

absl::string_view PluginMethodName(PluginMethod method) {
  switch (method) {
    case PluginMethod::kDescribe:
      return "Describe";
    case PluginMethod::kConfigure:
      return "Configure";
    case PluginMethod::kListInstruments:
      return "ListInstruments";
    case PluginMethod::kScoreResponse:
      return "ScoreResponse";
    case PluginMethod::kDeliverReminder:
      return "DeliverReminder";
    case PluginMethod::kPlanReminders:
      return "PlanReminders";
    case PluginMethod::kRenderExport:
      return "RenderExport";
    case PluginMethod::kDeliverExport:
      return "DeliverExport";
  }
  return "?";
}

LoadedPlugin::LoadedPlugin(std::unique_ptr<PluginTransport> transport,
                           plugin::v1::DescribeResponse description,
                           std::string path, absl::Duration call_timeout)
    : transport_(std::move(transport)),
      description_(std::move(description)),
      path_(std::move(path)),
      call_timeout_(call_timeout) {
  transport_->SetName(description_.name());
}

LoadedPlugin::~LoadedPlugin() { transport_->Shutdown(); }

bool LoadedPlugin::HasKind(plugin::v1::Kind kind) const {
  for (int k : description_.kinds()) {
    if (k == kind) return true;
  }
  return false;
}

v1::PluginInfo LoadedPlugin::Info() const {
  v1::PluginInfo info;
  info.set_name(description_.name());
  info.set_version(description_.version());
  for (int k : description_.kinds()) {
    switch (k) {
      case plugin::v1::QUESTIONNAIRE:
        info.add_kinds("questionnaire");
        break;
      case plugin::v1::REMINDER:
        info.add_kinds("reminder");
        break;
      case plugin::v1::EXPORTER:
        info.add_kinds("exporter");
        break;
      default:
        break;
    }
  }
  info.set_transport(transport_->transport());
  info.set_health(transport_->health());
  info.set_path(path_);
  return info;
}

template <typename Response>
absl::StatusOr<Response> LoadedPlugin::Invoke(
    PluginMethod method, const google::protobuf::Message& request) {
  Response response;
  absl::Time began = absl::Now();
  absl::Status s = transport_->Call(method, request, &response, call_timeout_);
  metrics::ObservePluginCall(description_.name(), PluginMethodName(method), s,
                             absl::Now() - began);
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<plugin::v1::ListInstrumentsResponse>
LoadedPlugin::ListInstruments() {
  return Invoke<plugin::v1::ListInstrumentsResponse>(
      PluginMethod::kListInstruments, plugin::v1::ListInstrumentsRequest());
}
absl::StatusOr<plugin::v1::ScoreResponseResponse> LoadedPlugin::ScoreResponse(
    const plugin::v1::ScoreResponseRequest& request) {
  return Invoke<plugin::v1::ScoreResponseResponse>(PluginMethod::kScoreResponse,
                                                   request);
}
absl::StatusOr<plugin::v1::DeliverReminderResponse>
LoadedPlugin::DeliverReminder(
    const plugin::v1::DeliverReminderRequest& request) {
  return Invoke<plugin::v1::DeliverReminderResponse>(
      PluginMethod::kDeliverReminder, request);
}
absl::StatusOr<plugin::v1::PlanRemindersResponse> LoadedPlugin::PlanReminders(
    const plugin::v1::PlanRemindersRequest& request) {
  return Invoke<plugin::v1::PlanRemindersResponse>(PluginMethod::kPlanReminders,
                                                   request);
}
absl::StatusOr<plugin::v1::RenderExportResponse> LoadedPlugin::RenderExport(
    const plugin::v1::RenderExportRequest& request) {
  return Invoke<plugin::v1::RenderExportResponse>(PluginMethod::kRenderExport,
                                                  request);
}
absl::StatusOr<plugin::v1::DeliverExportResponse> LoadedPlugin::DeliverExport(
    const plugin::v1::DeliverExportRequest& request) {
  return Invoke<plugin::v1::DeliverExportResponse>(PluginMethod::kDeliverExport,
                                                   request);
}

}  // namespace ipsrt
