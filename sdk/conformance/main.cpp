// pangea-plugin-check: the conformance runner. Loads plugin libraries the way the host does and
// runs the generic checks and each plugin kind's checks against them.
//
//   pangea-plugin-check [--set name=value]... [--plugin kind/name]... [--skip FILE] [--object-mib N] LIBRARY...
//
// --set gives a setting to every plugin that declares it (needed for required settings).
// --skip names a file of checks to skip, one per line: "<check name> -- <reason>".
// Exits 0 when every check that ran passed.
#include <algorithm>
#include <charconv>
#include <fstream>
#include <iostream>
#include <set>

#include "conformance.hpp"
#include "plugin_host/kinds.hpp"

namespace {

using namespace pangea;
using namespace pangea::conformance;

std::map<std::string, std::string> read_skips(const std::string& path) {
    std::map<std::string, std::string> skips;
    if (path.empty()) return skips;
    std::ifstream file(path);
    if (!file) throw std::runtime_error(path + ": cannot open the skip file");
    std::string line;
    for (int number = 1; std::getline(file, line); ++number) {
        if (line.empty() || line[0] == '#') continue;
        const size_t separator = line.find(" -- ");
        if (separator == std::string::npos)
            throw std::runtime_error(path + ":" + std::to_string(number) +
                                     ": expected \"<check name> -- <reason>\"");
        skips[line.substr(0, separator)] = line.substr(separator + 4);
    }
    return skips;
}

// Default settings of the plugin, with the --set values it declares applied.
SettingMap settings_for(const PluginDescriptor& plugin, const std::vector<std::string>& sets,
                        std::vector<std::string>* missing) {
    SettingMap settings = plugin.default_settings();
    for (const auto& item : sets) {
        const size_t equals = item.find('=');
        const pangea_setting* setting = plugin.find_setting(item.substr(0, equals));
        if (equals == std::string::npos || setting == nullptr) continue;
        std::string expected;
        auto value = parse_checked_setting(*setting, item.substr(equals + 1), &expected);
        if (!value) throw std::runtime_error("--set " + item + ": expected " + expected);
        settings[setting->name] = {*value, "--set"};
    }
    for (const auto& setting : plugin.settings)
        if (settings.count(setting.name) == 0) missing->push_back(setting.name);
    return settings;
}

constexpr const char* kUsage =
    "usage: pangea-plugin-check [options] LIBRARY...\n"
    "Runs Pangea's conformance checks on plugin libraries (.so).\n"
    "  --set NAME=VALUE   a setting for the plugins that declare it (repeatable)\n"
    "  --plugin KIND/NAME check only this plugin of the libraries (repeatable)\n"
    "  --skip FILE        checks to skip, one per line: \"<check name> -- <reason>\"\n"
    "  --object-mib N     storage: MiB in the large-object round trip (default 1024)\n"
    "  -h, --help         this text\n";

struct Options {
    std::vector<std::string> libraries, sets, only;
    std::string skip_file;
    uint64_t object_mib = 1024;
};

// Throws std::invalid_argument saying what is wrong with the command line.
Options parse_options(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "-h" || arg == "--help") {
            std::cout << kUsage;
            std::exit(0);
        } else if (arg == "--set") {
            options.sets.push_back(value());
        } else if (arg == "--plugin") {
            options.only.push_back(value());
        } else if (arg == "--skip") {
            options.skip_file = value();
        } else if (arg == "--object-mib") {
            const std::string text = value();
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), options.object_mib);
            if (ec != std::errc() || end != text.data() + text.size() || options.object_mib == 0)
                throw std::invalid_argument("--object-mib " + text + ": expected a positive integer");
        } else if (arg.rfind("-", 0) == 0) {
            throw std::invalid_argument("unknown option " + arg);
        } else {
            options.libraries.push_back(arg);
        }
    }
    if (options.libraries.empty()) throw std::invalid_argument("no LIBRARY given");
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    try {
        options = parse_options(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::cerr << "error: " << e.what() << "\n" << kUsage;
        return 2;
    }
    const auto& [libraries, sets, only, skip_file, object_mib] = options;

    try {
        Report report(read_skips(skip_file));
        PluginRegistry registry({});  // only the libraries named
        std::set<std::string> declared, checked;  // setting names; plugin ids
        for (const auto& path : libraries) {
            std::cout << path << "\n";
            std::vector<const PluginDescriptor*> plugins;
            report.run(std::filesystem::path(path).filename().string() + ": loads through the host",
                       [&] {
                           try {
                               plugins = registry.load_library(path);
                           } catch (const PluginError& e) {
                               throw CheckFailed(e.what());
                           }
                       });
            if (plugins.empty()) continue;
            check_library(report, path);
            for (const PluginDescriptor* plugin : plugins) {
                for (const auto& setting : plugin->settings) declared.insert(setting.name);
                if (!only.empty() && std::find(only.begin(), only.end(), plugin->id()) == only.end()) continue;
                checked.insert(plugin->id());
                std::vector<std::string> missing;
                Subject subject{plugin, settings_for(*plugin, sets, &missing), object_mib << 20};
                if (!missing.empty()) {
                    report.skip(plugin->id() + ": all checks",
                                "required setting '" + missing.front() + "' has no value: pass --set " +
                                    missing.front() + "=...");
                    continue;
                }
                check_generic(report, subject);
                switch (plugin->kind) {
                    case PANGEA_KIND_COMPRESS: check_compress(report, subject); break;
                    case PANGEA_KIND_OPTIM: check_optim(report, subject); break;
                    case PANGEA_KIND_TRANSPORT: check_transport(report, subject); break;
                    case PANGEA_KIND_STORAGE: check_storage(report, subject); break;
                }
            }
        }
        // A typo must not pass as "the plugin kept its default".
        for (const auto& item : sets) {
            const std::string key = item.substr(0, item.find('='));
            if (item.find('=') == std::string::npos || declared.count(key) == 0)
                throw std::runtime_error("--set " + item + ": no plugin in these libraries declares a setting '" +
                                         key + "' (give name=value with a declared name)");
        }
        for (const auto& id : only)
            if (checked.count(id) == 0)
                throw std::runtime_error("--plugin " + id + ": these libraries provide no such plugin");
        const auto unused = report.unused_skips();
        for (const auto& name : unused)
            std::cout << "  [FAIL] " << skip_file << ": names no check that ran: \"" << name << "\"\n";
        const int failed = report.failed() + static_cast<int>(unused.size());
        std::cout << report.passed() << " passed, " << failed << " failed, " << report.skipped()
                  << " skipped\n";
        return failed == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 2;
    }
}
