// Start-up steps of ipsrtd kept out of main.cc: the metrics endpoint, the
// default reminder channel and `--check_config`.
#ifndef IPSRT_IPSRTD_SETUP_H_
#define IPSRT_IPSRTD_SETUP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/questionnaires.h"
#include "ipsrt/config.h"
#include "ops/metrics.h"
#include "plugin_host/registry.h"

namespace ipsrt {

// StartMetrics binds metrics.listen and installs the registry; null when
// metrics are off (no metrics.listen). The error names the config line.
absl::StatusOr<std::unique_ptr<Metrics>> StartMetrics(const Config& config);

// CheckExportTargets checks that every export target names loaded
// exporter plugins (a typo refuses the start); FAILED_PRECONDITION names
// the target's config line.
absl::Status CheckExportTargets(const Config& config,
                                const PluginRegistry& plugins,
                                const QuestionnaireCatalog& questionnaires);

// UseJsonlChannel: with reminders on and no reminders.channel, reminders
// go to the JSON Lines file of reminders.jsonl (path; default
// reminders.jsonl beside a SQLite database), written by the reminder-jsonl
// plugin (plugins/reminders). It adds that plugin's entry to
// config.plugins, with the file's absolute path and `sync`, and names it in
// reminders.channel. Returns the file's path; "" when reminders are off, go
// to another channel, or (PostgreSQL without reminders.jsonl.path) have no
// default.
std::string UseJsonlChannel(Config& config, const std::string& config_path);

// CheckConfig loads the config file, the workflow templates, the plugins
// (started, then stopped), the questionnaires, the export targets, the
// reminder channel and the authentication settings exactly as a start
// would, prints every problem to stderr, and returns the exit status: 0
// when all are good, 1 otherwise. It neither opens the store (a start
// would migrate it) nor binds a port.
int CheckConfig(const std::string& config_path);

}  // namespace ipsrt

#endif  // IPSRT_IPSRTD_SETUP_H_
