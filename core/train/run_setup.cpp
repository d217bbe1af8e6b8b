#include "train/run_setup.hpp"

#include <cstdio>
#include <filesystem>

#include "diloco/outer_loop.hpp"
#include "manifest/manifest.hpp"
#include "topology/auth.hpp"

namespace fs = std::filesystem;

namespace pangea {

PluginInstance instantiate(const Manifest& manifest, PluginRegistry& registry, pangea_plugin_kind kind,
                           const char* default_name) {
    const auto found = manifest.plugins.find(kind);
    if (found != manifest.plugins.end() && found->second.plugin != nullptr)
        return PluginInstance(*found->second.plugin, found->second.settings);
    const PluginDescriptor& plugin = registry.get(kind, default_name);
    return PluginInstance(plugin, plugin.default_settings());
}

PluginInstance open_storage(const Manifest& manifest, PluginRegistry& registry) {
    const auto found = manifest.plugins.find(PANGEA_KIND_STORAGE);
    if (found != manifest.plugins.end() && found->second.plugin != nullptr)
        return instantiate(manifest, registry, PANGEA_KIND_STORAGE, "local");
    // The default, storage/local, keeps them in the run's directory.
    const PluginDescriptor& plugin = registry.get(PANGEA_KIND_STORAGE, "local");
    SettingMap settings = plugin.default_settings();
    settings["path"] = {(fs::path(manifest.get_string("run", "dir")) / "checkpoints").string(), "default: <run.dir>/checkpoints"};
    return PluginInstance(plugin, settings);
}

std::string checkpoint_prefix(const Manifest& m) {
    const std::string& prefix = m.get_string("checkpoint", "prefix");
    return (prefix.empty() ? m.get_string("run", "name") : prefix) + "/";
}

uint64_t run_id_of(const Manifest& m, uint64_t explicit_id) {
    if (explicit_id != 0) return explicit_id;
    uint64_t h = 1469598103934665603ull;  // FNV-1a of [run] name
    for (unsigned char c : m.get_string("run", "name")) h = (h ^ c) * 1099511628211ull;
    return h | 1;  // never 0
}

std::string run_id_text(uint64_t id) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
    return text;
}

Rounds rounds_of(const Manifest& m) {
    const int64_t inner = m.get_int("diloco", "inner_steps");
    const int64_t fragments = m.get_int("diloco", "fragments");
    if (inner % fragments != 0)
        throw ManifestError({m.core.at("diloco").at("fragments").origin + ": [diloco] fragments = " +
                             std::to_string(fragments) + " must divide inner_steps = " + std::to_string(inner) +
                             " (each fragment syncs every inner_steps, one every inner_steps / fragments)"});
    if (fragments < 2 && m.get_bool("diloco", "overlap"))
        throw ManifestError({m.core.at("diloco").at("overlap").origin + ": " + kOverlapNeedsFragments +
                             " (set [diloco] fragments, e.g. 5)"});
    return {m.get_int("diloco", "outer_steps") * fragments, inner / fragments, static_cast<int>(fragments)};
}

int outer_rings(const Manifest& m) {
    const int64_t rings = m.get_int("mesh", "rings");
    return static_cast<int>(rings > 0 ? rings : m.get_int("node", "workers"));
}

CoordinatorOptions coordinator_options(const Manifest& m, uint64_t run_id) {
    CoordinatorOptions options;
    options.run = run_id_text(run_id);
    options.timeout = std::chrono::milliseconds(m.get_int("mesh", "timeout_ms"));
    options.min_members = static_cast<int>(m.get_int("mesh", "min_members"));
    options.rings = static_cast<int>(m.get_int("mesh", "rings"));  // (0: as the first node's, one per its workers)
    options.quorum = static_cast<int>(m.get_int("diloco", "quorum"));
    options.grace = std::chrono::milliseconds(m.get_int("diloco", "grace_ms"));
    options.secret = load_run_secret(m);
    return options;
}

}  // namespace pangea
