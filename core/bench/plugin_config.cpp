#include "bench/plugin_config.hpp"

#include <stdexcept>

namespace pangea {

PluginInstance make_configured(PluginRegistry& registry, pangea_plugin_kind kind, const std::string& config) {
    const size_t colon = config.find(':');
    const PluginDescriptor& plugin = registry.get(kind, config.substr(0, colon));
    try {
        return PluginInstance(plugin, plugin.settings_from(colon == std::string::npos ? "" : config.substr(colon + 1),
                                                           "command line"));
    } catch (const PluginCreateError&) {
        throw;
    } catch (const PluginError& e) {
        throw std::runtime_error("'" + config + "': " + e.what());
    }
}

}  // namespace pangea
