#include "plugin_host/plugin_registry.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>

#include "plugin_host/abi_adapters.hpp"
#include "plugin_host/kinds.hpp"
#include "plugin_host/shared_library.hpp"

namespace fs = std::filesystem;

namespace pangea {

class LoadedLibrary {
public:
    explicit LoadedLibrary(SharedLibrary library) : library_(std::move(library)) {}

private:
    SharedLibrary library_;  // unloads on destruction
};

namespace {

// How the plugin directory lies relative to the executable; set by the build (bin -> lib).
#ifndef PANGEA_PLUGIN_DIR_FROM_BIN
#define PANGEA_PLUGIN_DIR_FROM_BIN "../lib/pangea/plugins"
#endif

std::string abi_text(uint32_t version) {
    return std::to_string(PANGEA_ABI_VERSION_MAJOR(version)) + "." +
           std::to_string(PANGEA_ABI_VERSION_MINOR(version));
}

bool valid_plugin_name(const char* name) {
    if (name == nullptr || name[0] == '\0' || std::strlen(name) > 64) return false;
    for (const char* c = name; *c != '\0'; ++c)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return false;
    return true;
}

bool nonempty(const char* text) { return text != nullptr && text[0] != '\0'; }

// A plugin of a kind this host does not know (added in a later minor) is passed over, not held
// against the rest of its library.
constexpr const char* kUnknownKindSuffix = " (from a newer ABI?); passed over";

// Reads one plugin's descriptor, or says why it cannot be used.
std::string describe_plugin(const pangea_plugin_info* given, PluginDescriptor* out) {
    if (given == nullptr) return "a plugin descriptor is NULL";
    pangea_plugin_info info;
    if (std::string bad = adapt_plugin_info(given, &info); !bad.empty()) return bad;
    const std::string label = nonempty(info.name) ? std::string("plugin '") + info.name + "'"
                                                  : std::string("a plugin");
    if (PANGEA_ABI_VERSION_MAJOR(info.abi_version) != PANGEA_ABI_MAJOR)
        return label + " was built for ABI " + abi_text(info.abi_version) +
               ", this host speaks ABI " + abi_text(PANGEA_ABI_VERSION);
    if (!valid_plugin_name(info.name))
        return label + ": name must be 1-64 characters of [a-z0-9_-]";
    uint32_t kind_value;  // read as an integer: a newer plugin may hold a kind this enum lacks
    std::memcpy(&kind_value, &info.kind, sizeof kind_value);
    const KindInfo* kind = find_kind(static_cast<pangea_plugin_kind>(kind_value));
    if (kind == nullptr)
        return label + ": unknown kind " + std::to_string(kind_value) + kUnknownKindSuffix;
    if (!nonempty(info.version)) return label + ": no version string";
    if (!nonempty(info.description)) return label + ": no description";
    auto vtable = std::make_shared<AdaptedVtable>();
    if (const std::string bad = adapt_vtable(kind->kind, info.vtable, vtable.get()); !bad.empty())
        return label + " (" + kind->name + "): " + bad;
    if (info.setting_count > 0 && (info.settings == nullptr || info.setting_size < PANGEA_SETTING_SIZE_1_0))
        return label + ": settings array is NULL or setting_size is smaller than ABI 1.0's";

    out->kind = kind->kind;
    out->name = info.name;
    out->version = info.version;
    out->description = info.description;
    out->abi_version = info.abi_version;
    out->vtable = std::move(vtable);
    std::set<std::string> names;
    for (uint32_t i = 0; i < info.setting_count; ++i) {
        const pangea_setting setting = setting_at(info.settings, info.setting_size, i);
        if (const std::string bad = check_setting_declaration(setting); !bad.empty())
            return label + ": " + bad;
        if (!names.insert(setting.name).second)
            return label + ": setting '" + std::string(setting.name) + "' is declared twice";
        out->settings.push_back(setting);
    }
    return "";
}

// Loads a library and reads its descriptors, or says why it cannot be used.
// Plugins passed over (unknown kinds) are described in *passed_over.
std::string inspect_library(const fs::path& path,
                            std::vector<std::unique_ptr<PluginDescriptor>>* out,
                            std::vector<std::string>* passed_over) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return "file not found";
    if (!fs::is_regular_file(path, ec)) return "not a regular file";
    std::optional<SharedLibrary> opened;
    try {
        opened.emplace(path);
    } catch (const std::exception& e) {
        return std::string("not a loadable shared library: ") + e.what();
    }
    SharedLibrary& library = *opened;
    const auto entry = library.function<pangea_plugin_entry_fn>(PANGEA_PLUGIN_ENTRY_SYMBOL);
    if (entry == nullptr) {
        for (int major = PANGEA_ABI_MAJOR + 1; major < PANGEA_ABI_MAJOR + 16; ++major) {
            const std::string newer = "pangea_plugin_entry_v" + std::to_string(major);
            if (library.symbol(newer) != nullptr)
                return "exports " + newer + ": built for plugin ABI major " +
                       std::to_string(major) + ", this host speaks ABI " +
                       abi_text(PANGEA_ABI_VERSION) + " (upgrade pangea or rebuild the plugin)";
        }
        return std::string("no entry symbol ") + PANGEA_PLUGIN_ENTRY_SYMBOL +
               " (not a Pangea plugin, or built without PANGEA_EXPORT_PLUGINS / default "
               "visibility for the entry point)";
    }
    // The negotiation: we offer the newest version we speak; the library answers with the one
    // it will speak (pangea_library.abi_version).
    const pangea_library* answer = nullptr;
    const pangea_status status = entry(PANGEA_ABI_VERSION, &answer);
    if (status == PANGEA_ERR_VERSION)
        return "refused the handshake: it cannot work with host ABI " +
               abi_text(PANGEA_ABI_VERSION);
    if (status != PANGEA_OK)
        return "entry point failed with status " + std::to_string(status);
    if (answer == nullptr) return "entry point returned no library descriptor";
    pangea_library descriptor;
    if (std::string bad = adapt_library(answer, &descriptor); !bad.empty()) return bad;
    if (PANGEA_ABI_VERSION_MAJOR(descriptor.abi_version) != PANGEA_ABI_MAJOR)
        return "built for plugin ABI " + abi_text(descriptor.abi_version) +
               ", this host speaks ABI " + abi_text(PANGEA_ABI_VERSION);
    // A library built for a newer minor that answers with it anyway is read as our newest: its
    // structs are size-led, and we call nothing we do not know.
    const uint32_t spoken = std::min(descriptor.abi_version, PANGEA_ABI_VERSION);
    if (descriptor.plugin_count == 0 || descriptor.plugins == nullptr)
        return "the library provides no plugins";

    auto loaded = std::make_shared<const LoadedLibrary>(std::move(library));
    std::vector<std::unique_ptr<PluginDescriptor>> found;
    for (uint32_t i = 0; i < descriptor.plugin_count; ++i) {
        auto plugin = std::make_unique<PluginDescriptor>();
        if (std::string bad = describe_plugin(descriptor.plugins[i], plugin.get()); !bad.empty()) {
            if (!bad.ends_with(kUnknownKindSuffix)) return bad;
            passed_over->push_back(std::move(bad));
            continue;
        }
        for (const auto& other : found)
            if (other->kind == plugin->kind && other->name == plugin->name)
                return "duplicate plugin " + plugin->id() + " within the library";
        plugin->library_path = path;
        plugin->library = loaded;
        plugin->spoken_abi_version = spoken;
        found.push_back(std::move(plugin));
    }
    if (found.empty()) return passed_over->front();
    *out = std::move(found);
    return "";
}

}  // namespace

std::string PluginDescriptor::id() const { return std::string(kind_name(kind)) + "/" + name; }

const pangea_setting* PluginDescriptor::find_setting(std::string_view setting_name) const {
    for (const auto& setting : settings)
        if (setting_name == setting.name) return &setting;
    return nullptr;
}

SettingMap PluginDescriptor::default_settings() const {
    SettingMap out;
    for (const auto& setting : settings) {
        std::string unused;
        if (setting.default_value != nullptr)  // checked to parse when the plugin was loaded
            out[setting.name] = {*parse_setting_text(setting, setting.default_value, &unused), "default"};
    }
    return out;
}

namespace {

std::string trimmed(std::string_view text) {
    const size_t first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return "";
    return std::string(text.substr(first, text.find_last_not_of(" \t") - first + 1));
}

}  // namespace

SettingMap PluginDescriptor::settings_from(std::string_view text, const std::string& origin) const {
    SettingMap out = default_settings();
    std::set<std::string> given;
    while (!trimmed(text).empty()) {
        const size_t comma = text.find(',');
        const std::string item = trimmed(text.substr(0, comma));
        text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
        const size_t equals = item.find('=');
        const std::string key = trimmed(std::string_view(item).substr(0, std::min(equals, item.size())));
        if (equals == std::string::npos || key.empty())
            throw PluginError("settings of " + id() + ": \"" + item + "\" is not key=value");
        const pangea_setting* setting = find_setting(key);
        if (setting == nullptr) {
            std::string valid;
            for (const auto& declared : settings) valid += (valid.empty() ? "" : ", ") + std::string(declared.name);
            throw PluginError(id() + " has no setting '" + key + "'; valid keys: " + (valid.empty() ? "(none)" : valid));
        }
        if (!given.insert(key).second) throw PluginError("settings of " + id() + ": '" + key + "' is given twice");
        const std::string value = trimmed(std::string_view(item).substr(equals + 1));
        std::string expected;
        auto parsed = parse_checked_setting(*setting, value, &expected);
        if (!parsed) throw PluginError(id() + " " + key + ": expected " + expected + ", got \"" + value + "\"");
        out[key] = {*parsed, origin};
    }
    for (const auto& declared : settings)
        if (out.count(declared.name) == 0) throw PluginError(id() + " requires the setting '" + declared.name + "'");
    return out;
}

std::vector<SearchPath> default_search_path() {
    std::vector<SearchPath> out;
    if (const char* env = std::getenv("PANGEA_PLUGIN_PATH")) {
        std::string_view rest = env;
        while (!rest.empty()) {
            const size_t colon = rest.find(':');
            const std::string_view item = rest.substr(0, colon);
            if (!item.empty()) out.push_back({fs::path(item), "PANGEA_PLUGIN_PATH"});
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
    }
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec)
        out.push_back({(exe.parent_path() / PANGEA_PLUGIN_DIR_FROM_BIN).lexically_normal(),
                       "beside the executable"});
    return out;
}

PluginRegistry::PluginRegistry(std::vector<SearchPath> search_path)
    : search_path_(std::move(search_path)) {
    std::set<fs::path> seen_directories;
    for (const auto& entry : search_path_) {
        std::error_code ec;
        const fs::path canonical = fs::weakly_canonical(entry.directory, ec);
        if (ec || !fs::is_directory(canonical, ec) || !seen_directories.insert(canonical).second)
            continue;
        std::vector<fs::path> files;
        for (const auto& item : fs::directory_iterator(canonical, ec))
            if (item.path().extension() == ".so") files.push_back(item.path());
        std::sort(files.begin(), files.end());  // a stable order makes "first wins" predictable
        for (const auto& file : files) {
            std::vector<std::unique_ptr<PluginDescriptor>> found;
            std::vector<std::string> passed_over;
            if (std::string why = inspect_library(file, &found, &passed_over); !why.empty()) {
                rejections_.push_back({file, std::move(why)});
                continue;
            }
            for (auto& note : passed_over) rejections_.push_back({file, std::move(note)});
            for (auto& plugin : found) {
                if (const PluginDescriptor* earlier = find(plugin->kind, plugin->name)) {
                    rejections_.push_back(
                        {file, "duplicate plugin " + plugin->id() + ": already provided by " +
                                   earlier->library_path.string() +
                                   " (earlier in the search path, so that one is used)"});
                    continue;
                }
                plugins_.push_back(std::move(plugin));
            }
        }
    }
}

std::vector<const PluginDescriptor*> PluginRegistry::load_library(const fs::path& path) {
    std::vector<std::unique_ptr<PluginDescriptor>> found;
    std::vector<std::string> passed_over;
    if (const std::string why = inspect_library(path, &found, &passed_over); !why.empty())
        throw PluginError("cannot load plugin library " + path.string() + ": " + why);
    std::vector<const PluginDescriptor*> out;
    for (auto& plugin : found) {
        out.push_back(plugin.get());
        explicit_.push_back(std::move(plugin));
    }
    return out;
}

const PluginDescriptor* PluginRegistry::find(pangea_plugin_kind kind,
                                             std::string_view name) const {
    for (const auto& plugin : plugins_)
        if (plugin->kind == kind && plugin->name == name) return plugin.get();
    return nullptr;
}

const PluginDescriptor& PluginRegistry::get(pangea_plugin_kind kind,
                                            std::string_view name) const {
    if (const PluginDescriptor* plugin = find(kind, name)) return *plugin;
    std::string message = "no " + std::string(kind_name(kind)) + " plugin named '" +
                          std::string(name) + "'.";
    std::string available;
    for (const auto& plugin : plugins_)
        if (plugin->kind == kind) available += (available.empty() ? " " : ", ") + plugin->name;
    message += available.empty() ? " No " + std::string(kind_name(kind)) + " plugin was found."
                                 : " Available:" + available + ".";
    for (const auto& plugin : plugins_)
        if (plugin->kind != kind && plugin->name == name)
            message += " (A plugin named '" + plugin->name + "' exists as kind " +
                       kind_name(plugin->kind) + ": is it in the wrong section?)";
    message += "\n  searched:";
    if (search_path_.empty()) message += " (nothing)";
    for (const auto& entry : search_path_)
        message += "\n    " + entry.directory.string() + "  (" + entry.why + ")";
    if (!rejections_.empty()) {
        message += "\n  rejected:";
        for (const auto& rejection : rejections_)
            message += "\n    " + rejection.path.string() + ": " + rejection.reason;
    }
    message += "\n  (set PANGEA_PLUGIN_PATH, or name the file with `library = \"...\"`)";
    throw PluginError(message);
}

}  // namespace pangea
