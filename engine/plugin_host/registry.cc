#include "plugin_host/registry.h"

namespace ipsrt {

std::unique_ptr<PluginRegistry> PluginRegistry::ForTesting(
    std::vector<std::unique_ptr<LoadedPlugin>> plugins) {
  std::unique_ptr<PluginRegistry> registry(new PluginRegistry());
  registry->plugins_ = std::move(plugins);
  return registry;
}

PluginRegistry::~PluginRegistry() { Shutdown(); }

std::vector<v1::PluginInfo> PluginRegistry::List() const {
  std::vector<v1::PluginInfo> out;
  for (const auto& p : plugins_) out.push_back(p->Info());
  return out;
}

LoadedPlugin* PluginRegistry::Find(absl::string_view name) const {
  for (const auto& p : plugins_) {
    if (p->name() == name) return p.get();
  }
  return nullptr;
}

std::vector<LoadedPlugin*> PluginRegistry::WithKind(
    plugin::v1::Kind kind) const {
  std::vector<LoadedPlugin*> out;
  for (const auto& p : plugins_) {
    if (p->HasKind(kind)) out.push_back(p.get());
  }
  return out;
}

void PluginRegistry::Shutdown() {
  for (auto& p : plugins_) p->transport().Shutdown();
}

}  // namespace ipsrt
