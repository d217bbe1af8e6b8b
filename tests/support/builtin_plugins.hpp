// The built-in plugins of this build tree, for tests that run them through the host.
#pragma once

#include <map>
#include <string>

#include "plugin_host/plugin_instance.hpp"
#include "plugin_host/plugin_registry.hpp"

namespace pangea::test {

inline PluginRegistry& builtin_registry() {
    static PluginRegistry instance(std::vector<SearchPath>{{PANGEA_TEST_BUILTIN_PLUGINS, "build tree"}});
    return instance;
}

// An instance with the plugin's defaults, some of them overridden.
inline PluginInstance make_plugin(pangea_plugin_kind kind, const std::string& name,
                                  std::map<std::string, SettingValue> overrides = {}) {
    const PluginDescriptor& plugin = builtin_registry().get(kind, name);
    SettingMap settings = plugin.default_settings();
    for (auto& [key, value] : overrides) settings[key] = {value, "test"};
    return PluginInstance(plugin, settings);
}

}  // namespace pangea::test
