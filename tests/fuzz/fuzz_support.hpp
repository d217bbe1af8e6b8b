// Shared by the fuzz targets (tests/fuzz/*_fuzz.cpp): a reader of the fuzzer's bytes, a check
// that aborts (so that libFuzzer and the replay tests both see a broken property as a crash), and
// plugin instances made from a vtable in the target itself (no library to load).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.hpp"
#include "plugin_host/plugin_instance.hpp"
#include "plugin_host/plugin_registry.hpp"

// Every target defines this; libFuzzer (fuzz build) or replay_main.cpp (every build) calls it.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// A property the code under test must keep: abort with the reason when it does not.
#define FUZZ_CHECK(condition, what)                                                                  \
    do {                                                                                             \
        if (!(condition)) ::pangea::fuzz::fail(__FILE__, __LINE__, #condition, std::string(what));  \
    } while (0)

namespace pangea::fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* condition, const std::string& what) {
    std::fprintf(stderr, "%s:%d: fuzz check failed: %s: %s\n", file, line, condition, what.c_str());
    std::abort();
}

// The core's log lines only slow a fuzzer down: errors only, unless PANGEA_FUZZ_LOG is set.
inline const bool quiet_log = [] {
    if (std::getenv("PANGEA_FUZZ_LOG") == nullptr) set_log_level(PANGEA_LOG_ERROR);
    return true;
}();

// Takes typed values off the front of the input; past the end everything reads as zero.
class Input {
public:
    Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}

    size_t left() const { return size_ - at_; }
    bool empty() const { return at_ >= size_; }

    uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
    template <typename T>
    T integer() {
        T value{};
        uint8_t raw[sizeof(T)] = {};
        const size_t n = std::min(sizeof(T), left());
        if (n > 0) std::memcpy(raw, data_ + at_, n);
        at_ += n;
        std::memcpy(&value, raw, sizeof(T));
        return value;
    }
    // Up to `max` bytes.
    std::string bytes(size_t max) {
        const size_t n = std::min(max, left());
        std::string out(reinterpret_cast<const char*>(data_ + at_), n);
        at_ += n;
        return out;
    }
    std::string rest() { return bytes(left()); }
    // The text up to the next '\n' (which is consumed), or the rest.
    std::string line() {
        std::string out;
        while (at_ < size_ && data_[at_] != '\n') out += static_cast<char>(data_[at_++]);
        if (at_ < size_) ++at_;
        return out;
    }

private:
    const uint8_t* data_;
    size_t size_;
    size_t at_ = 0;
};

// An instance of a plugin described by `info`: one compiled into the fuzz target (a plugin's
// source, or a fake written with the SDK's classes, see memory_storage.hpp), served by the core's
// real plugin host. Only the library loading is skipped. Settings: the plugin's defaults, then
// `overrides`.
inline PluginInstance instance_of(const pangea_plugin_info& info,
                                  const std::map<std::string, SettingValue>& overrides = {}) {
    PluginDescriptor plugin{};
    plugin.kind = info.kind;
    plugin.name = info.name;
    plugin.version = info.version;
    plugin.description = info.description;
    plugin.abi_version = plugin.spoken_abi_version = info.abi_version;
    auto vtable = std::make_shared<AdaptedVtable>();
    if (const std::string bad = adapt_vtable(info.kind, info.vtable, vtable.get()); !bad.empty())
        fail(__FILE__, __LINE__, "adapt_vtable", bad.c_str());
    plugin.vtable = std::move(vtable);
    plugin.library_path = "(compiled into the fuzz target)";
    for (uint32_t i = 0; i < info.setting_count; ++i) plugin.settings.push_back(info.settings[i]);
    SettingMap settings = plugin.default_settings();
    for (const auto& [key, value] : overrides) settings[key] = {value, "fuzz"};
    return PluginInstance(plugin, std::move(settings));
}

// The one plugin of the library whose source is compiled into this target (PANGEA_EXPORT_PLUGINS
// defines the entry point).
inline const pangea_plugin_info& compiled_in_plugin(pangea_plugin_entry_fn entry) {
    const pangea_library* library = nullptr;
    if (entry(PANGEA_ABI_VERSION, &library) != PANGEA_OK || library == nullptr || library->plugin_count < 1)
        fail(__FILE__, __LINE__, "entry", "the compiled-in plugin's entry point failed");
    return *library->plugins[0];
}

}  // namespace pangea::fuzz
