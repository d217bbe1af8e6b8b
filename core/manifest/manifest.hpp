// The TOML run manifest: parsed with toml++, overridden from the environment and the command
// line, and validated against the core's sections and the chosen plugins' declared settings.
// Every error names where the bad value came from (file:line:column, the environment variable,
// or the --set argument) and what was expected.
#pragma once

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/settings.hpp"
#include "data/sampler.hpp"
#include "plugin_host/plugin_registry.hpp"

namespace pangea {

// One value set from outside the file: `--set section.key=value` or PANGEA_<SECTION>_<KEY>.
struct Override {
    std::string section;
    std::string key;
    std::string text;
    std::string origin;  // "--set diloco.inner_steps=50", "PANGEA_DILOCO_INNER_STEPS"
};

// Parses a --set argument "section.key=value". Throws ManifestError when malformed.
Override parse_set_argument(std::string_view argument);

// The overrides among environment entries ("NAME=value"): those named PANGEA_<SECTION>_<KEY>
// for a known section. Other PANGEA_ variables (PANGEA_PLUGIN_PATH) are not overrides.
std::vector<Override> environment_overrides(const std::vector<std::string>& environment);
std::vector<std::string> process_environment();

class ManifestError : public std::runtime_error {
public:
    explicit ManifestError(std::vector<std::string> errors);
    const std::vector<std::string>& errors() const { return errors_; }

private:
    std::vector<std::string> errors_;
};

// A plugin section after validation.
struct PluginChoice {
    const PluginDescriptor* plugin = nullptr;  // nullptr: the section is absent
    std::string plugin_origin;
    std::string library;  // resolved path of `library = ...`, or ""
    std::string library_origin;
    SettingMap settings;  // every declared setting, defaults filled in
};

struct Manifest {
    std::string source;  // the file's path, or a name for embedded text
    std::map<std::string, SettingMap> core;  // section -> every key, defaults filled in
    std::map<pangea_plugin_kind, PluginChoice> plugins;
    std::vector<DataSource> data_sources;  // [[data.sources]], or the built-in mixture

    // Typed access to a core setting (the manifest was validated, so these cannot miss).
    const std::string& get_string(const std::string& section, const std::string& key) const;
    int64_t get_int(const std::string& section, const std::string& key) const;
    double get_float(const std::string& section, const std::string& key) const;
    bool get_bool(const std::string& section, const std::string& key) const;

    // The resolved configuration as TOML, each value commented with where it came from.
    std::string to_toml() const;
};

// Reads, overrides and validates. `library` paths are relative to the file's directory
// (`base_directory` for text). Throws ManifestError listing every problem found.
Manifest load_manifest(const std::filesystem::path& path, const std::vector<Override>& overrides,
                       PluginRegistry& registry);
Manifest parse_manifest(std::string_view text, const std::string& source,
                        const std::filesystem::path& base_directory,
                        const std::vector<Override>& overrides, PluginRegistry& registry);

}  // namespace pangea
