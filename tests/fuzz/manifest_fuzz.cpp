// core/manifest: the TOML run manifest's parser and validator (core sections, [[data.sources]],
// plugin sections against the built-in plugins' declared settings), the --set and environment
// overrides, and the model shape it names.
//
// Input: manifest text. Its comment lines "#set section.key=value" and "#env NAME=value" are
// also given as --set arguments and environment entries (so corpus files stay valid TOML).
// Properties: everything returns or throws ManifestError; a manifest that validates, written out
// with to_toml() (what a checkpoint keeps as manifest.toml), validates again to the same values.
#include <filesystem>

#include "fuzz_support.hpp"
#include "manifest/manifest.hpp"
#include "train/model_shape.hpp"

namespace {

using namespace pangea;

// The built-in plugins, from a directory of links the build makes (only the plugins named in
// tests/fuzz/CMakeLists.txt: the same registry in every build).
PluginRegistry& registry() {
    static PluginRegistry instance(std::vector<SearchPath>{{PANGEA_FUZZ_PLUGIN_DIR, "fuzz plugin directory"}});
    return instance;
}

const std::filesystem::path kBase = "/nonexistent/pangea-fuzz";  // relative paths resolve to nothing

void check_same(const Manifest& a, const Manifest& b, const std::string& text) {
    for (const auto& [section, values] : a.core)
        for (const auto& [key, value] : values)
            FUZZ_CHECK(b.core.at(section).at(key).value == value.value,
                       "[" + section + "] " + key + " reads back as another value from:\n" + text);
    FUZZ_CHECK(a.data_sources.size() == b.data_sources.size(), "[[data.sources]] read back differently from:\n" + text);
    for (size_t i = 0; i < a.data_sources.size(); ++i)
        FUZZ_CHECK(a.data_sources[i].path == b.data_sources[i].path && a.data_sources[i].weight == b.data_sources[i].weight,
                   "[[data.sources]] read back differently from:\n" + text);
    FUZZ_CHECK(a.plugins.size() == b.plugins.size(), "plugin sections read back differently from:\n" + text);
    for (const auto& [kind, choice] : a.plugins) {
        const PluginChoice& other = b.plugins.at(kind);
        FUZZ_CHECK(choice.plugin == other.plugin, "a plugin choice reads back differently from:\n" + text);
        for (const auto& [key, value] : choice.settings)
            FUZZ_CHECK(other.settings.at(key).value == value.value,
                       "plugin setting " + key + " reads back as another value from:\n" + text);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    // `library = "...so"` would load whatever library it names: not this target's business.
    if (text.find(".so") != std::string::npos) return 0;

    std::vector<Override> overrides;
    std::vector<std::string> environment;
    fuzz::Input lines(data, size);
    while (!lines.empty()) {
        const std::string line = lines.line();
        if (line.starts_with("#set ")) {
            try {
                overrides.push_back(parse_set_argument(line.substr(5)));
            } catch (const ManifestError&) {
            }
        } else if (line.starts_with("#env ")) {
            environment.push_back(line.substr(5));
        }
    }
    for (Override& o : environment_overrides(environment)) overrides.push_back(std::move(o));

    Manifest manifest;
    try {
        manifest = parse_manifest(text, "fuzz.toml", kBase, overrides, registry());
    } catch (const ManifestError&) {
        return 0;
    }
    try {
        const ModelShape shape = resolve_model_shape(manifest, 257);
        (void)format_count(static_cast<double>(parameter_count(shape)));
    } catch (const ManifestError&) {
    }

    const std::string resolved = manifest.to_toml();
    Manifest again;
    try {
        again = parse_manifest(resolved, "resolved.toml", kBase, {}, registry());
    } catch (const ManifestError& e) {
        FUZZ_CHECK(false, std::string("the resolved manifest does not validate: ") + e.what() + "\n" + resolved);
    }
    check_same(manifest, again, resolved);
    return 0;
}
