#include "manifest/manifest.hpp"

#include <toml++/toml.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>
#include <variant>

#include "manifest/schema.hpp"
#include "plugin_host/kinds.hpp"

extern char** environ;

namespace fs = std::filesystem;

namespace pangea {
namespace {

// A value before validation: a TOML node from the file, or text from an override.
struct RawValue {
    std::variant<const toml::node*, std::string> value;
    std::string origin;
};

struct RawSection {
    std::string origin;  // where the section was opened
    std::map<std::string, RawValue> values;
};

std::string where(const std::string& source, const toml::source_region& region) {
    return source + ":" + std::to_string(region.begin.line) + ":" +
           std::to_string(region.begin.column);
}

const char* toml_type_name(const toml::node& node) {
    switch (node.type()) {
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a float";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::table: return "a table";
        case toml::node_type::array: return "an array";
        case toml::node_type::date:
        case toml::node_type::time:
        case toml::node_type::date_time: return "a date/time";
        case toml::node_type::none: break;
    }
    return "nothing";
}

// Converts a TOML node to the declared type, or says what it is instead.
std::optional<SettingValue> from_node(const pangea_setting& setting, const toml::node& node,
                                      std::string* error) {
    switch (setting.type) {
        case PANGEA_SETTING_STRING:
            if (auto v = node.value_exact<std::string>()) return SettingValue(*v);
            break;
        case PANGEA_SETTING_INT:
            if (auto v = node.value_exact<int64_t>()) return SettingValue(*v);
            break;
        case PANGEA_SETTING_FLOAT:
            if (node.is_floating_point()) return SettingValue(*node.value_exact<double>());
            if (auto v = node.value_exact<int64_t>()) return SettingValue(static_cast<double>(*v));
            break;
        case PANGEA_SETTING_BOOL:
            if (auto v = node.value_exact<bool>()) return SettingValue(*v);
            break;
    }
    *error = std::string("got ") + toml_type_name(node);
    return std::nullopt;
}

std::string list_keys(std::span<const pangea_setting> settings, bool plugin_section) {
    std::string out;
    if (plugin_section) out = "plugin, library";
    for (const auto& s : settings) out += (out.empty() ? "" : ", ") + std::string(s.name);
    return out.empty() ? "(none)" : out;
}

// Validates one section's raw values against declarations and fills in defaults.
SettingMap resolve_settings(const std::string& section_label, const RawSection& raw,
                            std::span<const pangea_setting> settings, bool plugin_section,
                            std::vector<std::string>* errors) {
    SettingMap out;
    for (const auto& [key, entry] : raw.values) {
        if (plugin_section && (key == "plugin" || key == "library")) continue;
        const pangea_setting* setting = nullptr;
        for (const auto& s : settings)
            if (key == s.name) setting = &s;
        if (setting == nullptr) {
            errors->push_back(entry.origin + ": unknown key '" + key + "' in " + section_label +
                              "; valid keys: " + list_keys(settings, plugin_section));
            continue;
        }
        const std::string expected =
            std::string("expected ") +
            (setting->type == PANGEA_SETTING_INT ? "an integer" :
             setting->type == PANGEA_SETTING_FLOAT ? "a number" :
             setting->type == PANGEA_SETTING_BOOL ? "true or false" : "a string");
        std::string problem;
        std::optional<SettingValue> value;
        if (const auto* node = std::get_if<const toml::node*>(&entry.value)) {
            value = from_node(*setting, **node, &problem);
        } else {
            std::string wanted;
            value = parse_setting_text(*setting, std::get<std::string>(entry.value), &wanted);
            problem = "got \"" + std::get<std::string>(entry.value) + "\"";
        }
        if (!value) {
            errors->push_back(entry.origin + ": " + section_label + " " + key + ": " + expected +
                              ", " + problem);
            continue;
        }
        if (const std::string misfit = check_setting_value(*setting, *value); !misfit.empty()) {
            errors->push_back(entry.origin + ": " + section_label + " " + key + ": expected " +
                              misfit + ", got " + format_setting_value(*value));
            continue;
        }
        out[key] = {std::move(*value), entry.origin};
    }
    for (const auto& s : settings) {
        if (out.count(s.name) != 0 || raw.values.count(s.name) != 0) continue;
        if (s.default_value == nullptr) {
            errors->push_back(raw.origin + ": " + section_label + " needs '" + s.name + "' (" +
                              setting_type_name(s.type) + ": " + s.help + ")");
            continue;
        }
        std::string unused;
        out[s.name] = {*parse_setting_text(s, s.default_value, &unused), "default"};
    }
    return out;
}

// Reads a plugin section's `plugin` / `library` keys as strings.
std::optional<std::string> host_key(const RawSection& raw, const char* key,
                                    const std::string& section_label,
                                    std::vector<std::string>* errors) {
    const auto found = raw.values.find(key);
    if (found == raw.values.end()) return std::nullopt;
    if (const auto* node = std::get_if<const toml::node*>(&found->second.value)) {
        if (auto text = (*node)->value_exact<std::string>()) return *text;
        errors->push_back(found->second.origin + ": " + section_label + " " + key +
                          ": expected a string, got " + toml_type_name(**node));
        return std::nullopt;
    }
    std::string text = std::get<std::string>(found->second.value);
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"')
        text = text.substr(1, text.size() - 2);
    return text;
}

PluginChoice resolve_plugin_section(const KindInfo& kind, const RawSection& raw,
                                    const fs::path& base_directory, PluginRegistry& registry,
                                    std::vector<std::string>* errors) {
    const std::string label = "[" + std::string(kind.name) + "]";
    PluginChoice choice;
    const auto name = host_key(raw, "plugin", label, errors);
    const auto library = host_key(raw, "library", label, errors);
    if (!name) {
        if (raw.values.count("plugin") == 0)
            errors->push_back(raw.origin + ": " + label +
                              " has no 'plugin' key: name the plugin to use (`pangea plugins "
                              "list` shows them), e.g. plugin = \"...\"");
        return choice;
    }
    choice.plugin_origin = raw.values.at("plugin").origin;
    try {
        if (library) {
            fs::path path = *library;
            if (path.is_relative()) path = base_directory / path;
            choice.library = path.lexically_normal().string();
            choice.library_origin = raw.values.at("library").origin;
            std::string provided;
            for (const PluginDescriptor* plugin : registry.load_library(choice.library)) {
                if (plugin->kind == kind.kind && plugin->name == *name) choice.plugin = plugin;
                provided += (provided.empty() ? "" : ", ") + plugin->id();
            }
            if (choice.plugin == nullptr)
                throw PluginError("library " + choice.library + " provides " + provided +
                                  ", not " + kind.name + "/" + *name);
        } else {
            choice.plugin = &registry.get(kind.kind, *name);
        }
    } catch (const PluginError& e) {
        const auto& origin = library ? raw.values.at("library").origin : choice.plugin_origin;
        errors->push_back(origin + ": " + label + " plugin \"" + *name + "\": " + e.what());
        return choice;
    }
    choice.settings = resolve_settings(label + " (plugin " + choice.plugin->name + ")", raw,
                                       choice.plugin->settings, true, errors);
    return choice;
}

// Rules that tie two core settings together; each names both and where the second came from.
void check_core_consistency(const Manifest& m, std::vector<std::string>* errors) {
    const auto& mesh = m.core.at("mesh");
    if (m.get_int("mesh", "min_members") > m.get_int("mesh", "nodes"))
        errors->push_back(mesh.at("min_members").origin + ": [mesh] min_members (" +
                          std::to_string(m.get_int("mesh", "min_members")) +
                          ") is larger than nodes (" + std::to_string(m.get_int("mesh", "nodes")) +
                          "): the run could never start an outer step");
    if (m.get_int("mesh", "heartbeat_ms") >= m.get_int("mesh", "timeout_ms"))
        errors->push_back(mesh.at("heartbeat_ms").origin + ": [mesh] heartbeat_ms (" +
                          std::to_string(m.get_int("mesh", "heartbeat_ms")) +
                          ") must be shorter than timeout_ms (" +
                          std::to_string(m.get_int("mesh", "timeout_ms")) +
                          "), or live peers would be declared dead");
    if (const int64_t quorum = m.get_int("diloco", "quorum"); quorum > 0) {
        const std::string at = m.core.at("diloco").at("quorum").origin + ": [diloco] quorum (" + std::to_string(quorum) + ")";
        if (quorum > m.get_int("mesh", "nodes"))
            errors->push_back(at + " is larger than [mesh] nodes (" + std::to_string(m.get_int("mesh", "nodes")) +
                              "): no step would ever have its quorum");
        // (Each of these syncs what was trained before the round that a wrap-up cuts short.)
        if (m.get_bool("diloco", "overlap"))
            errors->push_back(at + " cannot be used with [diloco] overlap = true yet: a round's all-reduce runs "
                                   "while the next round trains");
        if (m.get_int("diloco", "fragments") > 1)
            errors->push_back(at + " cannot be used with [diloco] fragments > 1 yet: each fragment carries "
                                   "several rounds' progress");
        if (m.get_int("node", "workers") > 1)
            errors->push_back(at + " cannot be used with [node] workers > 1 yet: the workers train each inner "
                                   "step together");
    }
}

// [[data.sources]]: an array of tables with `path` (a shard, a directory of shards, or
// "builtin:NAME") and `weight` (default 1). Relative paths are relative to the manifest.
std::vector<DataSource> parse_data_sources(const toml::node& node, const std::string& source,
                                           const std::string& origin, const fs::path& base_directory,
                                           std::vector<std::string>* errors) {
    std::vector<DataSource> out;
    const toml::array* array = node.as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
        errors->push_back(origin + ": [data] sources: expected [[data.sources]] tables with path and weight, got " +
                          toml_type_name(node));
        return out;
    }
    for (const auto& element : *array) {
        const toml::table& table = *element.as_table();
        const std::string at = where(source, table.source());
        DataSource entry;
        entry.origin = at;
        for (auto&& [key, value] : table) {
            const std::string key_at = where(source, key.source());
            if (key.str() == "path") {
                if (auto text = value.value_exact<std::string>()) entry.path = *text;
                else errors->push_back(key_at + ": [[data.sources]] path: expected a string, got " + toml_type_name(value));
            } else if (key.str() == "weight") {
                if (auto number = value.value<double>()) entry.weight = *number;
                else errors->push_back(key_at + ": [[data.sources]] weight: expected a number, got " + toml_type_name(value));
            } else {
                errors->push_back(key_at + ": unknown key '" + std::string(key.str()) +
                                  "' in [[data.sources]]; valid keys: path, weight");
            }
        }
        if (entry.path.empty()) {
            errors->push_back(at + ": [[data.sources]] needs a path (a token shard, a directory of shards, or builtin:NAME)");
            continue;
        }
        if (!(entry.weight >= 0) || !std::isfinite(entry.weight))
            errors->push_back(at + ": [[data.sources]] weight " + format_setting_value(entry.weight) + " must be >= 0");
        if (entry.path.rfind("builtin:", 0) != 0 && fs::path(entry.path).is_relative())
            entry.path = (base_directory / entry.path).lexically_normal().string();
        out.push_back(std::move(entry));
    }
    double total = 0;
    for (const auto& entry : out) total += entry.weight;
    if (!out.empty() && !(total > 0))
        errors->push_back(origin + ": the weights of [[data.sources]] sum to " + format_setting_value(total) +
                          "; they must sum to more than 0");
    return out;
}

bool is_known_section(std::string_view name) {
    return find_core_section(name) != nullptr || find_kind(name) != nullptr;
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

const ResolvedSetting& core_value(const Manifest& manifest, const std::string& section,
                                  const std::string& key) {
    return manifest.core.at(section).at(key);
}

}  // namespace

ManifestError::ManifestError(std::vector<std::string> errors)
    : std::runtime_error([&] {
          std::string text;
          for (const auto& e : errors) text += (text.empty() ? "" : "\n") + e;
          return text;
      }()),
      errors_(std::move(errors)) {}

Override parse_set_argument(std::string_view argument) {
    const size_t dot = argument.find('.');
    const size_t equals = argument.find('=');
    if (dot == std::string_view::npos || equals == std::string_view::npos || dot > equals ||
        dot == 0 || equals == dot + 1)
        throw ManifestError({"--set " + std::string(argument) +
                             ": expected section.key=value, e.g. --set diloco.inner_steps=50"});
    Override out{std::string(argument.substr(0, dot)),
                 std::string(argument.substr(dot + 1, equals - dot - 1)),
                 std::string(argument.substr(equals + 1)), "--set " + std::string(argument)};
    if (!is_known_section(out.section))
        throw ManifestError({out.origin + ": unknown section [" + out.section +
                             "]; sections are: " + all_section_names()});
    return out;
}

std::vector<Override> environment_overrides(const std::vector<std::string>& environment) {
    std::vector<Override> out;
    constexpr std::string_view kPrefix = "PANGEA_";
    for (const auto& entry : environment) {
        const size_t equals = entry.find('=');
        if (entry.rfind(kPrefix, 0) != 0 || equals == std::string::npos) continue;
        const std::string name = entry.substr(0, equals);
        const std::string_view rest = std::string_view(name).substr(kPrefix.size());
        const size_t underscore = rest.find('_');
        if (underscore == std::string_view::npos) continue;
        const std::string section = lower(rest.substr(0, underscore));
        if (!is_known_section(section)) continue;
        out.push_back({section, lower(rest.substr(underscore + 1)), entry.substr(equals + 1),
                       "environment " + name});
    }
    return out;
}

std::vector<std::string> process_environment() {
    std::vector<std::string> out;
    for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry)
        out.emplace_back(*entry);
    return out;
}

Manifest parse_manifest(std::string_view text, const std::string& source,
                        const fs::path& base_directory, const std::vector<Override>& overrides,
                        PluginRegistry& registry) {
    toml::table document;
    try {
        document = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        throw ManifestError({where(source, e.source()) + ": TOML syntax error: " +
                             std::string(e.description())});
    }

    std::vector<std::string> errors;
    std::map<std::string, RawSection> raw;
    std::vector<DataSource> data_sources;
    for (auto&& [key, node] : document) {
        const std::string name(key.str());
        const std::string origin = where(source, key.source());
        if (!node.is_table()) {
            errors.push_back(origin + ": '" + name +
                             "' is outside any section; settings belong in a section: " +
                             all_section_names());
            continue;
        }
        if (!is_known_section(name)) {
            errors.push_back(origin + ": unknown section [" + name +
                             "]; sections are: " + all_section_names());
            continue;
        }
        RawSection& section = raw[name];
        section.origin = origin;
        for (auto&& [setting_key, value] : *node.as_table()) {
            const std::string setting_origin = where(source, setting_key.source());
            if (name == "data" && setting_key.str() == "sources") {
                data_sources = parse_data_sources(value, source, setting_origin, base_directory, &errors);
                continue;
            }
            if (value.is_table()) {
                errors.push_back(setting_origin + ": [" + name + "] " +
                                 std::string(setting_key.str()) +
                                 ": expected a value, got a table");
                continue;
            }
            section.values[std::string(setting_key.str())] = {&value, setting_origin};
        }
    }
    for (const auto& override_value : overrides) {
        if (override_value.section == "data" && override_value.key == "sources") {
            errors.push_back(override_value.origin + ": [data] sources is a list of tables ([[data.sources]] with "
                             "path and weight); set it in the manifest file");
            continue;
        }
        RawSection& section = raw[override_value.section];
        if (section.origin.empty()) section.origin = override_value.origin;
        section.values[override_value.key] = {override_value.text, override_value.origin};
    }

    Manifest manifest;
    manifest.source = source;
    manifest.data_sources = data_sources.empty() ? default_data_sources() : std::move(data_sources);
    for (const auto& section : core_sections()) {
        RawSection empty{source, {}};
        const auto found = raw.find(section.name);
        manifest.core[section.name] =
            resolve_settings("[" + std::string(section.name) + "]",
                             found == raw.end() ? empty : found->second, section.settings, false,
                             &errors);
    }
    if (errors.empty()) check_core_consistency(manifest, &errors);
    for (const auto& kind : all_kinds()) {
        const auto found = raw.find(kind.name);
        if (found == raw.end()) continue;
        manifest.plugins[kind.kind] =
            resolve_plugin_section(kind, found->second, base_directory, registry, &errors);
    }
    if (!errors.empty()) throw ManifestError(std::move(errors));
    return manifest;
}

Manifest load_manifest(const fs::path& path, const std::vector<Override>& overrides,
                       PluginRegistry& registry) {
    std::ifstream file(path, std::ios::binary);
    if (!file)
        throw ManifestError({path.string() + ": cannot open the manifest (" +
                             (fs::exists(path) ? "not readable" : "no such file") + ")"});
    std::ostringstream text;
    text << file.rdbuf();
    return parse_manifest(text.str(), path.string(), path.parent_path(), overrides, registry);
}

const std::string& Manifest::get_string(const std::string& section, const std::string& key) const {
    return std::get<std::string>(core_value(*this, section, key).value);
}
int64_t Manifest::get_int(const std::string& section, const std::string& key) const {
    return std::get<int64_t>(core_value(*this, section, key).value);
}
double Manifest::get_float(const std::string& section, const std::string& key) const {
    return std::get<double>(core_value(*this, section, key).value);
}
bool Manifest::get_bool(const std::string& section, const std::string& key) const {
    return std::get<bool>(core_value(*this, section, key).value);
}

std::string Manifest::to_toml() const {
    std::ostringstream out;
    // A comment is one line: an origin (a --set argument, a path) may hold any character.
    auto comment = [](std::string text) {
        for (char& c : text)
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
        return text;
    };
    auto line = [&](const std::string& key, const std::string& value, const std::string& origin) {
        std::string text = key + " = " + value;
        if (text.size() < 40) text.resize(40, ' ');
        out << text << " # " << comment(origin) << "\n";
    };
    out << "# resolved from " << comment(source) << "\n";
    for (const auto& section : core_sections()) {
        out << "\n[" << section.name << "]\n";
        for (const auto& [key, setting] : core.at(section.name))
            line(key, format_setting_value(setting.value), setting.origin);
        if (std::string_view(section.name) != "data") continue;
        for (const auto& entry : data_sources) {
            out << "[[data.sources]]" << std::string(24, ' ') << " # " << comment(entry.origin) << "\n";
            line("path", format_setting_value(entry.path), entry.origin);
            line("weight", format_setting_value(entry.weight), entry.origin);
        }
    }
    for (const auto& kind : all_kinds()) {
        const auto found = plugins.find(kind.kind);
        if (found == plugins.end() || found->second.plugin == nullptr) {
            out << "\n# [" << kind.name << "] not configured\n";
            continue;
        }
        out << "\n[" << kind.name << "]\n";
        const PluginChoice& choice = found->second;
        line("plugin", format_setting_value(choice.plugin->name), choice.plugin_origin);
        if (!choice.library.empty())
            line("library", format_setting_value(choice.library), choice.library_origin);
        out << "# " << comment(choice.plugin->id() + " " + choice.plugin->version + " from " +
                               choice.plugin->library_path.string())
            << "\n";
        for (const auto& [key, setting] : choice.settings)
            line(key, format_setting_value(setting.value), setting.origin);
    }
    return out.str();
}

}  // namespace pangea
