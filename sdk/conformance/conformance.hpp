// The conformance runner's parts: a report of named checks, and the checks for each kind.
// Plugin authors run it as `pangea-plugin-check path/to/libmyplugin.so` (docs/plugin-abi.md).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "plugin_host/plugin_instance.hpp"
#include "plugin_host/plugin_registry.hpp"

namespace pangea::conformance {

// Thrown by a check to fail with a reason.
class CheckFailed : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Fails the running check unless `condition` holds.
inline void expect(bool condition, const std::string& what) {
    if (!condition) throw CheckFailed(what);
}

// n values drawn from N(0, 1), the same for the same seed on every machine.
std::vector<float> random_normal(size_t n, uint32_t seed);

// Runs named checks, prints one line each, and counts them.
class Report {
public:
    // checks to skip, by name, with the reason (from a --skip file). A check that crashes the
    // runner (a signal) is still reported, as a [FAIL] line, before the process dies.
    explicit Report(std::map<std::string, std::string> skips);

    void run(const std::string& name, const std::function<void()>& check);
    void skip(const std::string& name, const std::string& reason);

    // Skip-file entries that named no check that ran (typos, or checks that no longer exist).
    std::vector<std::string> unused_skips() const;

    int passed() const { return passed_; }
    int failed() const { return failed_; }
    int skipped() const { return skipped_; }

private:
    std::map<std::string, std::string> skips_;
    std::set<std::string> used_skips_;
    int passed_ = 0;
    int failed_ = 0;
    int skipped_ = 0;
};

// What the kind checks get: the plugin, and settings to create instances with.
struct Subject {
    const PluginDescriptor* plugin;
    SettingMap settings;  // defaults, with the runner's --set values applied
    uint64_t large_object_bytes = 1ull << 30;  // storage: the size of the large round trip

    PluginInstance make() const { return PluginInstance(*plugin, settings); }
    std::string check_name(const std::string& what) const { return plugin->id() + ": " + what; }
};

// Library-level checks: exported symbols and the handshake.
void check_library(Report& report, const std::filesystem::path& library);

// Checks every plugin must pass: descriptor, settings, create/destroy, last_error.
void check_generic(Report& report, const Subject& subject);

// The kind's own checks.
void check_compress(Report& report, const Subject& subject);
void check_optim(Report& report, const Subject& subject);
void check_transport(Report& report, const Subject& subject);
void check_storage(Report& report, const Subject& subject);

}  // namespace pangea::conformance
