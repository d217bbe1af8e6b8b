// "name:key=value,key=value": a plugin and settings, as the benchmarks take them on the command
// line, validated against the plugin's declarations like a manifest section.
#pragma once

#include <string>

#include "plugin_host/plugin_instance.hpp"

namespace pangea {

PluginInstance make_configured(PluginRegistry& registry, pangea_plugin_kind kind, const std::string& config);

}  // namespace pangea
