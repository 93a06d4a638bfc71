// The C++ side of the plugin SDK: write a class, not the C glue.
//
//   #include <ipsrt/plugin/plugin.h>
//
//   class SleepCheck final : public ipsrt::plugin::Plugin {
//    public:
//     absl::StatusOr<ipsrt::plugin::v1::ListInstrumentsResponse>
//     ListInstruments(const ipsrt::plugin::v1::ListInstrumentsRequest&)
//         override;
//     absl::StatusOr<ipsrt::plugin::v1::ScoreResponseResponse> ScoreResponse(
//         const ipsrt::plugin::v1::ScoreResponseRequest&) override;
//   };
//   IPSRT_PLUGIN(SleepCheck, "sleep-check", "1.0.0",
//                IPSRT_KIND_QUESTIONNAIRE)
//
// IPSRT_PLUGIN defines the exported `ipsrt_plugin_entry` and a descriptor
// whose entry points parse the request, call the method, and serialize the
// response or the status. The host creates one instance per loaded plugin
// (the class needs a default constructor) and may call it from several
// threads at once. Exceptions are caught at the boundary and become
// INTERNAL. Only the entry points of the declared kinds are exported; the
// default implementations of the others answer UNIMPLEMENTED.
//
// The messages come from the shared library libipsrt_proto that the engine
// itself uses (one copy of the generated code per process: protobuf has one
// global descriptor pool), so a C++ plugin is built against the SDK of the
// engine release it runs in.
#ifndef IPSRT_PLUGIN_PLUGIN_H_
#define IPSRT_PLUGIN_PLUGIN_H_

#include <cstdint>
#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ipsrt/plugin/contract.h"
#include "ipsrt/plugin/v1/plugin.pb.h"
#include "ipsrt_plugin.h"

namespace ipsrt::plugin {

// The engine, as a plugin sees it.
class Host {
 public:
  explicit Host(const ipsrt_host_api* api) : api_(api) {}

  // One line in the engine's log. Never pass patient data.
  void Log(int level, absl::string_view message) const {
    if (api_ != nullptr && api_->log != nullptr) {
      api_->log(api_->host_data, level, message.data(), message.size());
    }
  }
  // The engine's clock. Scoring must not depend on it.
  absl::Time Now() const {
    if (api_ == nullptr || api_->now_unix_micros == nullptr) {
      return absl::Now();
    }
    return absl::FromUnixMicros(api_->now_unix_micros(api_->host_data));
  }

 private:
  const ipsrt_host_api* api_;
};

class Plugin {
 public:
  virtual ~Plugin() = default;

  // Called once, before any other entry point except Describe. The default
  // accepts an empty config and refuses any key, so that a typo in an
  // operator's config is not silently ignored.
  virtual absl::Status Configure(const v1::ConfigureRequest& request) {
    if (request.config().fields().empty()) return absl::OkStatus();
    return absl::InvalidArgumentError("config." +
                                      request.config().fields().begin()->first +
                                      ": this plugin takes no configuration");
  }
  // The name, version and kinds of IPSRT_PLUGIN are filled in by the glue;
  // override to add the config schema, summary or export formats.
  virtual absl::StatusOr<v1::DescribeResponse> Describe() {
    return v1::DescribeResponse();
  }

  virtual absl::StatusOr<v1::ListInstrumentsResponse> ListInstruments(
      const v1::ListInstrumentsRequest&) {
    return Unimplemented("ListInstruments");
  }
  virtual absl::StatusOr<v1::ScoreResponseResponse> ScoreResponse(
      const v1::ScoreResponseRequest&) {
    return Unimplemented("ScoreResponse");
  }
  virtual absl::StatusOr<v1::DeliverReminderResponse> DeliverReminder(
      const v1::DeliverReminderRequest&) {
    return Unimplemented("DeliverReminder");
  }
  virtual absl::StatusOr<v1::PlanRemindersResponse> PlanReminders(
      const v1::PlanRemindersRequest&) {
    return Unimplemented("PlanReminders");
  }
  virtual absl::StatusOr<v1::RenderExportResponse> RenderExport(
      const v1::RenderExportRequest&) {
    return Unimplemented("RenderExport");
  }
  virtual absl::StatusOr<v1::DeliverExportResponse> DeliverExport(
      const v1::DeliverExportRequest&) {
    return Unimplemented("DeliverExport");
  }

  // The engine; valid from construction to destruction.
  const Host& host() const { return host_; }

 private:
  template <typename T>
  friend struct Glue;
  static absl::Status Unimplemented(absl::string_view method) {
    return absl::UnimplementedError(std::string(method) +
                                    " is not implemented by this plugin");
  }
  Host host_{nullptr};
};

// The C glue behind IPSRT_PLUGIN. Not for direct use.
template <typename T>
struct Glue {
  static ipsrt_code Fail(ipsrt_result* result, const absl::Status& status) {
    const std::string& message = std::string(status.message());
    result->set_error(result, message.data(), message.size());
    return static_cast<ipsrt_code>(status.code());
  }

  template <typename Message>
  static ipsrt_code Succeed(ipsrt_result* result, const Message& response) {
    std::string bytes;
    if (!response.SerializeToString(&bytes)) {
      return Fail(result, absl::InternalError("response does not serialize"));
    }
    result->set_response(result, reinterpret_cast<const uint8_t*>(bytes.data()),
                         bytes.size());
    return IPSRT_CODE_OK;
  }

  // Parses, calls `method`, and turns anything thrown into INTERNAL.
  template <typename Request, typename Call>
  static ipsrt_code Invoke(const uint8_t* data, size_t size,
                           ipsrt_result* result, Call call) {
    try {
      Request request;
      if (!request.ParseFromArray(data, static_cast<int>(size))) {
        return Fail(result,
                    absl::InvalidArgumentError(
                        "request is not a valid " +
                        std::string(Request::descriptor()->full_name())));
      }
      auto response = call(request);
      if (!response.ok()) return Fail(result, response.status());
      return Succeed(result, *response);
    } catch (const std::exception& e) {
      return Fail(result, absl::InternalError(std::string("plugin threw: ") +
                                              e.what()));
    } catch (...) {
      return Fail(result, absl::InternalError("plugin threw a non-exception"));
    }
  }

  static ipsrt_code Create(const ipsrt_host_api* host, void** instance,
                           ipsrt_result* result) {
    try {
      T* plugin = new T();
      static_cast<Plugin*>(plugin)->host_ = Host(host);
      *instance = static_cast<Plugin*>(plugin);
      return IPSRT_CODE_OK;
    } catch (const std::exception& e) {
      return Fail(result,
                  absl::InternalError(
                      std::string("plugin constructor threw: ") + e.what()));
    } catch (...) {
      return Fail(result, absl::InternalError("plugin constructor threw"));
    }
  }
  static void Destroy(void* instance) { delete static_cast<Plugin*>(instance); }
  static Plugin& Self(void* instance) {
    return *static_cast<Plugin*>(instance);
  }

  static ipsrt_code Describe(void* self, const uint8_t* data, size_t size,
                             ipsrt_result* result, const char* name,
                             const char* version, uint32_t kinds) {
    return Invoke<v1::DescribeRequest>(
        data, size, result,
        [&](const v1::DescribeRequest&)
            -> absl::StatusOr<v1::DescribeResponse> {
          absl::StatusOr<v1::DescribeResponse> response = Self(self).Describe();
          if (!response.ok()) return response;
          response->set_name(name);
          response->set_version(version);
          response->clear_kinds();
          if (kinds & IPSRT_KIND_QUESTIONNAIRE) {
            response->add_kinds(v1::QUESTIONNAIRE);
          }
          if (kinds & IPSRT_KIND_REMINDER) response->add_kinds(v1::REMINDER);
          if (kinds & IPSRT_KIND_EXPORTER) response->add_kinds(v1::EXPORTER);
          return response;
        });
  }
  static ipsrt_code Configure(void* self, const uint8_t* data, size_t size,
                              ipsrt_result* result) {
    return Invoke<v1::ConfigureRequest>(
        data, size, result,
        [&](const v1::ConfigureRequest& request)
            -> absl::StatusOr<v1::ConfigureResponse> {
          absl::Status status = Self(self).Configure(request);
          if (!status.ok()) return status;
          return v1::ConfigureResponse();
        });
  }
#define IPSRT_PLUGIN_GLUE_METHOD_(Method)                                    \
  static ipsrt_code Method(void* self, const uint8_t* data, size_t size,     \
                           ipsrt_result* result) {                           \
    return Invoke<v1::Method##Request>(                                      \
        data, size, result,                                                  \
        [&](const v1::Method##Request& r) { return Self(self).Method(r); }); \
  }
  IPSRT_PLUGIN_GLUE_METHOD_(ListInstruments)
  IPSRT_PLUGIN_GLUE_METHOD_(ScoreResponse)
  IPSRT_PLUGIN_GLUE_METHOD_(DeliverReminder)
  IPSRT_PLUGIN_GLUE_METHOD_(PlanReminders)
  IPSRT_PLUGIN_GLUE_METHOD_(RenderExport)
  IPSRT_PLUGIN_GLUE_METHOD_(DeliverExport)
#undef IPSRT_PLUGIN_GLUE_METHOD_
};

}  // namespace ipsrt::plugin

// Defines the plugin's exported entry point. Use once per library, at
// namespace scope, outside any namespace.
#define IPSRT_PLUGIN(Class, kName, kVersion, kKinds)                          \
  namespace ipsrt_plugin_glue_ {                                              \
  using G = ::ipsrt::plugin::Glue<Class>;                                     \
  ipsrt_code Describe(void* s, const uint8_t* d, size_t n, ipsrt_result* r) { \
    return G::Describe(s, d, n, r, kName, kVersion, kKinds);                  \
  }                                                                           \
  constexpr uint32_t kPluginKinds = (kKinds);                                 \
  constexpr bool Has(uint32_t kind) { return (kPluginKinds & kind) != 0; }    \
  const ipsrt_plugin_descriptor kDescriptor = {                               \
      sizeof(ipsrt_plugin_descriptor),                                        \
      IPSRT_PLUGIN_ABI_MAJOR,                                                 \
      IPSRT_PLUGIN_ABI_MINOR,                                                 \
      kName,                                                                  \
      kVersion,                                                               \
      kPluginKinds,                                                           \
      0,                                                                      \
      &G::Create,                                                             \
      &G::Destroy,                                                            \
      &Describe,                                                              \
      &G::Configure,                                                          \
      Has(IPSRT_KIND_QUESTIONNAIRE) ? &G::ListInstruments : nullptr,          \
      Has(IPSRT_KIND_QUESTIONNAIRE) ? &G::ScoreResponse : nullptr,            \
      Has(IPSRT_KIND_REMINDER) ? &G::DeliverReminder : nullptr,               \
      Has(IPSRT_KIND_REMINDER) ? &G::PlanReminders : nullptr,                 \
      Has(IPSRT_KIND_EXPORTER) ? &G::RenderExport : nullptr,                  \
      Has(IPSRT_KIND_EXPORTER) ? &G::DeliverExport : nullptr,                 \
      IPSRT_PLUGIN_CONTRACT,                                                  \
  };                                                                          \
  }                                                                           \
  extern "C" IPSRT_PLUGIN_EXPORT const ipsrt_plugin_descriptor*               \
  ipsrt_plugin_entry(void) {                                                  \
    return &ipsrt_plugin_glue_::kDescriptor;                                  \
  }

#endif  // IPSRT_PLUGIN_PLUGIN_H_
