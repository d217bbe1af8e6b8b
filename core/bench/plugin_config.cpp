#include "bench/plugin_config.hpp"

#include <stdexcept>

namespace pangea {

PluginInstance make_configured(PluginRegistry& registry, pangea_plugin_kind kind, const std::string& config) {
    const size_t colon = config.find(':');
    const PluginDescriptor& plugin = registry.get(kind, config.substr(0, colon));
    SettingMap settings = plugin.default_settings();
    std::string rest = colon == std::string::npos ? "" : config.substr(colon + 1);
    while (!rest.empty()) {
        const size_t comma = rest.find(',');
        const std::string item = rest.substr(0, comma);
        rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
        const size_t equals = item.find('=');
        const pangea_setting* setting =
            equals == std::string::npos ? nullptr : plugin.find_setting(item.substr(0, equals));
        if (setting == nullptr)
            throw std::runtime_error("'" + config + "': '" + item + "' is not key=value for a setting of " + plugin.id());
        std::string expected;
        auto value = parse_checked_setting(*setting, item.substr(equals + 1), &expected);
        if (!value) throw std::runtime_error("'" + config + "': " + item + ": expected " + expected);
        settings[setting->name] = {*value, "command line"};
    }
    return PluginInstance(plugin, std::move(settings));
}

}  // namespace pangea
