// ConfigReader reads a plugin's `config` block (ConfigureRequest.config, the
// YAML of ipsrtd.yaml as JSON values) and refuses bad values with
// INVALID_ARGUMENT naming the key: "config.<key>: <reason>". ipsrtd then
// refuses to start and prints the config file's line.
//
// Example:
//   absl::Status Configure(const v1::ConfigureRequest& request) override {
//     ipsrt::plugin::ConfigReader config(request);
//     IPSRT_RETURN_IF_ERROR(config.OnlyKeys({"path", "sync"}));
//     IPSRT_ASSIGN_OR_RETURN(std::string path, config.String("path", "",
//     true)); path_ = config.Resolve(path);
//     ...
//   }
#ifndef IPSRT_PLUGIN_CONFIG_READER_H_
#define IPSRT_PLUGIN_CONFIG_READER_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "ipsrt/plugin/v1/plugin.pb.h"

namespace ipsrt::plugin {

class ConfigReader {
 public:
  // Reads `request`, which must outlive the reader.
  explicit ConfigReader(const v1::ConfigureRequest& request)
      : ConfigReader(request.config(), request.config_dir(), "config.") {}
  // Reads `config`, naming keys "<prefix><key>" (e.g. "config.targets.ehr.")
  // in errors; relative paths resolve against `config_dir`.
  ConfigReader(const google::protobuf::Struct& config, std::string config_dir,
               std::string prefix)
      : config_(config),
        config_dir_(std::move(config_dir)),
        prefix_(std::move(prefix)) {}

  // OnlyKeys refuses any key not in `allowed`.
  absl::Status OnlyKeys(std::initializer_list<absl::string_view> allowed) const;
  // Has: the key is present and not null.
  bool Has(absl::string_view key) const;
  // A string; `fallback` when absent; not a string or, when `required`,
  // absent or empty: INVALID_ARGUMENT.
  absl::StatusOr<std::string> String(absl::string_view key,
                                     absl::string_view fallback,
                                     bool required = false) const;
  absl::StatusOr<bool> Bool(absl::string_view key, bool fallback) const;
  // A string that, when present, is not empty ("must not be empty");
  // absent: "" or, when `required`, INVALID_ARGUMENT "is required".
  absl::StatusOr<std::string> NonEmptyString(absl::string_view key,
                                             bool required = false) const;
  // A whole number in [min, max].
  absl::StatusOr<int64_t> Int(absl::string_view key, int64_t fallback,
                              int64_t min, int64_t max) const;
  // A duration such as "250ms" or "5s", positive and at most `max`.
  absl::StatusOr<absl::Duration> Duration(absl::string_view key,
                                          absl::Duration fallback,
                                          absl::Duration max) const;
  // A path, relative ones against the engine config's directory.
  std::string Resolve(const std::string& path) const;
  // The error for `key`: INVALID_ARGUMENT "<prefix><key>: <reason>".
  absl::Status Error(absl::string_view key, absl::string_view reason) const;
  // "<prefix><key>", e.g. "config.timeout".
  std::string KeyPath(absl::string_view key) const;
  // The value of `key`; nullptr when absent or null.
  const google::protobuf::Value* Find(absl::string_view key) const;

 private:
  const google::protobuf::Struct& config_;
  std::string config_dir_;
  std::string prefix_;
};

}  // namespace ipsrt::plugin

#endif  // IPSRT_PLUGIN_CONFIG_READER_H_
