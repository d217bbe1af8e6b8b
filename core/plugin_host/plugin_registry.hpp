// Finds plugin libraries, loads them with Boost.DLL, runs the ABI handshake and registers each
// plugin by (kind, name). Every library that is rejected is kept with the reason, so that a
// failed lookup can say what was tried and why each candidate did not qualify.
#pragma once

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/settings.hpp"
#include "plugin_host/abi_adapters.hpp"
#include "pangea/plugin.h"

namespace pangea {

class LoadedLibrary;  // a library kept open while any of its plugins is in use

// Raised for a plugin that cannot be found, loaded or created. what() names what was tried.
class PluginError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// One registered plugin. Its strings and functions live in the library, which the descriptor
// keeps loaded.
struct PluginDescriptor {
    pangea_plugin_kind kind;
    std::string name;
    std::string version;
    std::string description;
    uint32_t abi_version;         // the version the plugin was built against
    uint32_t spoken_abi_version;  // what its library answered the handshake with (at most ours)
    std::vector<pangea_setting> settings;
    // The plugin's vtable in today's layout (abi_adapters.hpp): every slot callable.
    std::shared_ptr<const AdaptedVtable> vtable;
    std::filesystem::path library_path;
    std::shared_ptr<const LoadedLibrary> library;

    std::string id() const;  // "compress/none"
    const pangea_setting* find_setting(std::string_view name) const;
    // Every setting that has a default, at its default (origin "default").
    SettingMap default_settings() const;
    // The defaults with "key=value,key=value" applied, checked like a manifest section: a key the
    // plugin does not declare (the error names the valid ones), a key given twice, a value of the
    // wrong type or out of range, or a required setting left out throws PluginError.
    SettingMap settings_from(std::string_view key_values, const std::string& origin) const;
};

// A library or plugin that was passed over, and why.
struct Rejection {
    std::filesystem::path path;
    std::string reason;
};

// Where plugins are looked for, in order. A directory searched earlier wins over a later one
// when both hold a plugin of the same kind and name.
struct SearchPath {
    std::filesystem::path directory;
    std::string why;  // "PANGEA_PLUGIN_PATH", "beside the executable"
};

// PANGEA_PLUGIN_PATH (a colon list), then the plugin directory beside the executable:
// <prefix>/lib/pangea/plugins for an installed pangea, <build>/lib/pangea/plugins in a build tree
// (the build tree mirrors the install layout).
std::vector<SearchPath> default_search_path();

class PluginRegistry {
public:
    // Loads every *.so in the search path's directories (missing directories are skipped).
    explicit PluginRegistry(std::vector<SearchPath> search_path);

    // Loads one library named explicitly (a manifest's `library = ...`). Its plugins are not
    // registered by name: the caller picks from the list returned, so an explicit library never
    // collides with what the search found. Throws PluginError naming the path and the reason
    // it was rejected.
    std::vector<const PluginDescriptor*> load_library(const std::filesystem::path& path);

    // The plugin, or nullptr.
    const PluginDescriptor* find(pangea_plugin_kind kind, std::string_view name) const;

    // The plugin, or a PluginError that lists the search path, the plugins of that kind that do
    // exist, and the libraries that were rejected.
    const PluginDescriptor& get(pangea_plugin_kind kind, std::string_view name) const;

    const std::vector<std::unique_ptr<PluginDescriptor>>& plugins() const { return plugins_; }
    const std::vector<Rejection>& rejections() const { return rejections_; }
    const std::vector<SearchPath>& search_path() const { return search_path_; }

private:
    std::vector<SearchPath> search_path_;
    std::vector<std::unique_ptr<PluginDescriptor>> plugins_;   // registered by (kind, name)
    std::vector<std::unique_ptr<PluginDescriptor>> explicit_;  // from load_library()
    std::vector<Rejection> rejections_;
};

}  // namespace pangea
