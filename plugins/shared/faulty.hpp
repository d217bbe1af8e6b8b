// The `faulty` plugins: one per kind (transport, compress, optim, storage), each a wrapper that
// loads another plugin of its kind (the "inner" one) through the C ABI, forwards every call to
// it, and fails chosen calls with a chosen status: transiently or persistently, in one node or
// in all, always or with a probability. Like SQLite's test VFS, they let tests show what the
// core does when a plugin misbehaves. See docs/plugins/faulty.md.
//
// This header is the whole mechanism: the settings, loading the inner plugin (dlopen, the
// handshake, the descriptor checks the host makes, a pangea_host of our own that answers the
// inner plugin's settings from `inner_settings` and its declared defaults), and the decision
// of which call fails. Each kind's faulty.cpp only writes the forwarding vtable:
//
//     pangea_status encode(void* self, ...) {
//         Instance& f = Instance::of(self);
//         if (const pangea_status s = f.inject(kEncode); s != PANGEA_OK) return s;
//         return f.vt<pangea_compress_vtable>().encode(f.inner(), ...);
//     }
//
// Plugins never link the core, so nothing here may come from it. Needs C++17 and POSIX dl*.
#pragma once

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "pangea/plugin.h"

namespace {
namespace faulty {

// ------------------------------------------------------------------ what each kind declares

// Each kind's faulty.cpp defines one of these: its kind, the default inner plugin, and the
// names of its vtable functions that return a status (the ones `fail` may name), in the order
// of the indices it passes to Instance::inject().
struct KindSpec {
    pangea_plugin_kind kind;
    const char* kind_name;          // "compress"
    const char* default_inner;      // "none"
    std::vector<std::string> functions;
    uint32_t vtable_size;           // sizeof the kind's vtable as compiled here (ours)
    uint32_t required_size;         // its ABI 1.0 part: slots the inner plugin must have
};

// An error that create() reports, or that an injected failure carries.
struct Failure : std::runtime_error {
    Failure(pangea_status s, const std::string& message) : std::runtime_error(message), status(s) {}
    pangea_status status;
};

// ------------------------------------------------------------------ statuses

struct StatusName {
    const char* setting;  // as written in `status = "..."`
    pangea_status status;
    const char* full;     // as the host prints it
};

constexpr StatusName kStatuses[] = {
    {"invalid_argument", PANGEA_ERR_INVALID_ARGUMENT, "PANGEA_ERR_INVALID_ARGUMENT"},
    {"config", PANGEA_ERR_CONFIG, "PANGEA_ERR_CONFIG"},
    {"unsupported", PANGEA_ERR_UNSUPPORTED, "PANGEA_ERR_UNSUPPORTED"},
    {"no_memory", PANGEA_ERR_NO_MEMORY, "PANGEA_ERR_NO_MEMORY"},
    {"io", PANGEA_ERR_IO, "PANGEA_ERR_IO"},
    {"timeout", PANGEA_ERR_TIMEOUT, "PANGEA_ERR_TIMEOUT"},
    {"peer_lost", PANGEA_ERR_PEER_LOST, "PANGEA_ERR_PEER_LOST"},
    {"aborted", PANGEA_ERR_ABORTED, "PANGEA_ERR_ABORTED"},
    {"corrupt", PANGEA_ERR_CORRUPT, "PANGEA_ERR_CORRUPT"},
    {"capacity", PANGEA_ERR_CAPACITY, "PANGEA_ERR_CAPACITY"},
    {"not_found", PANGEA_ERR_NOT_FOUND, "PANGEA_ERR_NOT_FOUND"},
    {"invalid_data", PANGEA_ERR_INVALID_DATA, "PANGEA_ERR_INVALID_DATA"},
    {"internal", PANGEA_ERR_INTERNAL, "PANGEA_ERR_INTERNAL"},
};
constexpr const char* kStatusChoices =
    "invalid_argument|config|unsupported|no_memory|io|timeout|peer_lost|aborted|corrupt|capacity|not_found|"
    "invalid_data|internal";

// ------------------------------------------------------------------ our settings

constexpr double kMaxCount = 9007199254740992.0;  // 2^53: every such integer is exact in a double

template <class Spec>
const auto& declared_settings() {
    static const pangea_setting settings[] = {
        {"inner", PANGEA_SETTING_STRING, Spec::default_inner,
         "the wrapped plugin: a name (libpangea-<kind>-<name>.so beside this library) or a library path", 1.0, 0.0,
         nullptr},
        {"inner_settings", PANGEA_SETTING_STRING, "",
         "the wrapped plugin's settings as key=value,key=value (its declared defaults for the rest)", 1.0, 0.0,
         nullptr},
        {"fail", PANGEA_SETTING_STRING, "",
         "vtable functions to fail, separated by | (e.g. encode, write|commit, isend, create); empty: none", 1.0,
         0.0, nullptr},
        {"after", PANGEA_SETTING_INT, "0", "calls of those functions that succeed before the first failure", 0.0,
         kMaxCount, nullptr},
        {"times", PANGEA_SETTING_INT, "1", "how many calls then fail; -1: every call from then on", -1.0, kMaxCount,
         nullptr},
        {"status", PANGEA_SETTING_STRING, "io", "the status a failed call returns", 1.0, 0.0, kStatusChoices},
        {"node", PANGEA_SETTING_INT, "-1",
         "fail only in the process of this node id (PANGEA_NODE_ID, else --node-id on the command line); -1: any",
         -1.0, 1000000.0, nullptr},
        {"probability", PANGEA_SETTING_FLOAT, "1", "each call past `after` fails with this probability", 0.0, 1.0,
         nullptr},
        {"seed", PANGEA_SETTING_INT, "1", "seed of the draws when probability < 1", 0.0, kMaxCount, nullptr},
        {"delay_ms", PANGEA_SETTING_INT, "0", "sleep this long before returning an injected failure", 0.0,
         600000.0, nullptr},
    };
    return settings;
}

// ------------------------------------------------------------------ small helpers

std::vector<std::string> split(std::string_view text, char separator) {
    std::vector<std::string> out;
    while (true) {
        const size_t at = text.find(separator);
        out.emplace_back(text.substr(0, at));
        if (at == std::string_view::npos) return out;
        text.remove_prefix(at + 1);
    }
}

std::string trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return std::string(text);
}

const char* status_text(pangea_status status) {
    for (const auto& s : kStatuses)
        if (s.status == status) return s.full;
    return status == PANGEA_OK ? "PANGEA_OK" : "an unknown status";
}

// This process's node id: PANGEA_NODE_ID, else `--node-id N` on the command line (the way
// `pangea run` and the nodes `pangea launch` starts are called); -1 when neither says.
int64_t this_node() {
    auto parse = [](const std::string& text) -> int64_t {
        int64_t value = -1;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        return ec == std::errc() && end == text.data() + text.size() && !text.empty() ? value : -1;
    };
    if (const char* env = std::getenv("PANGEA_NODE_ID")) return parse(env);
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::vector<std::string> args;
    for (std::string arg; std::getline(in, arg, '\0');) args.push_back(arg);
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--node-id" && i + 1 < args.size()) return parse(args[i + 1]);
        if (args[i].rfind("--node-id=", 0) == 0) return parse(args[i].substr(10));
    }
    return -1;
}

// The directory this library was loaded from.
std::string own_directory() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || info.dli_fname == nullptr) return ".";
    const std::string path = info.dli_fname;
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

// ------------------------------------------------------------------ setting values

// One typed value, parsed and checked the way the host checks a manifest value.
struct Value {
    pangea_setting_type type = PANGEA_SETTING_STRING;
    std::string text;  // STRING
    int64_t integer = 0;
    double number = 0;
    bool boolean = false;
};

bool has_range(const pangea_setting& s) { return s.min_value <= s.max_value; }

// Parses `text` as `setting` declares it; throws Failure(PANGEA_ERR_CONFIG) naming what it expected.
Value parse_value(const pangea_setting& setting, const std::string& text, const std::string& where) {
    Value value;
    value.type = setting.type;
    auto misfit = [&](const std::string& expected) {
        return Failure(PANGEA_ERR_CONFIG, where + ": expected " + expected + ", got \"" + text + "\"");
    };
    auto number = [](double v) {
        char text[32];
        std::snprintf(text, sizeof text, "%.15g", v);
        return std::string(text);
    };
    const std::string range =
        has_range(setting) ? " in [" + number(setting.min_value) + ", " + number(setting.max_value) + "]" : "";
    switch (setting.type) {
        case PANGEA_SETTING_STRING:
            value.text = text;
            if (setting.choices != nullptr) {
                for (const auto& choice : split(setting.choices, '|'))
                    if (choice == text) return value;
                throw misfit(std::string("one of ") + setting.choices);
            }
            return value;
        case PANGEA_SETTING_INT: {
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value.integer);
            if (ec != std::errc() || end != text.data() + text.size() || text.empty()) throw misfit("an integer");
            const long double v = static_cast<long double>(value.integer);
            if (has_range(setting) && (v < setting.min_value || v > setting.max_value)) throw misfit("an integer" + range);
            return value;
        }
        case PANGEA_SETTING_FLOAT: {
            char* end = nullptr;
            errno = 0;
            value.number = std::strtod(text.c_str(), &end);
            if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !std::isfinite(value.number))
                throw misfit("a finite number");
            if (has_range(setting) && (value.number < setting.min_value || value.number > setting.max_value))
                throw misfit("a number" + range);
            return value;
        }
        case PANGEA_SETTING_BOOL:
            if (text != "true" && text != "false") throw misfit("true or false");
            value.boolean = text == "true";
            return value;
    }
    throw misfit("a value of a known type");
}

// ------------------------------------------------------------------ the inner plugin

// The inner plugin: its library (kept loaded: RTLD_NODELETE), descriptor, instance, and the
// pangea_host we give it. Its settings are the declared defaults with `inner_settings` applied.
class Inner {
public:
    Inner(const KindSpec& spec, const std::string& which, const std::string& settings_text, const pangea_host* outer)
        : outer_(outer) {
        try {
            start(spec, which, settings_text);
        } catch (...) {
            if (library_ != nullptr) dlclose(library_);
            throw;
        }
    }
    ~Inner() {
        if (handle_ != nullptr) header().destroy(handle_);
        if (library_ != nullptr) dlclose(library_);  // RTLD_NODELETE: stays mapped
    }
    Inner(const Inner&) = delete;
    Inner& operator=(const Inner&) = delete;

    void* handle() const { return handle_; }
    const void* vtable() const { return info_->vtable; }
    const pangea_vtable_header& header() const { return *static_cast<const pangea_vtable_header*>(info_->vtable); }
    const std::string& id() const { return id_; }  // "compress/int8"

private:
    static Inner& self(void* context) { return *static_cast<Inner*>(context); }

    void start(const KindSpec& spec, const std::string& which, const std::string& settings_text) {
        load(spec, which);
        configure(settings_text);
        table_.struct_size = sizeof(pangea_host);
        table_.abi_version = PANGEA_ABI_VERSION;
        table_.context = this;
        table_.log = &Inner::log;
        table_.config_string = &Inner::config_string;
        table_.config_int = &Inner::config_int;
        table_.config_float = &Inner::config_float;
        table_.config_bool = &Inner::config_bool;
        table_.report_error = &Inner::report_error;
        const pangea_status status = header().create(&table_, &handle_);
        if (status != PANGEA_OK) {
            std::lock_guard<std::mutex> lock(mutex_);
            // The inner plugin's report reached our host already (report_error below).
            throw Failure(status, id_ + ": create() failed with " + status_text(status) + ": " +
                                      (reported_.empty() ? "(the plugin reported no reason)" : reported_));
        }
        if (handle_ == nullptr) throw Failure(PANGEA_ERR_INTERNAL, id_ + ": create() returned PANGEA_OK but no instance");
    }

    void load(const KindSpec& spec, const std::string& which) {
        if (which.empty()) throw Failure(PANGEA_ERR_CONFIG, "inner: names no plugin");
        const bool by_path = which.find('/') != std::string::npos;
        const std::string path =
            by_path ? which : own_directory() + "/libpangea-" + spec.kind_name + "-" + which + ".so";
        library_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (library_ == nullptr) {
            const char* why = dlerror();
            throw Failure(PANGEA_ERR_CONFIG, "inner = \"" + which + "\": cannot load " + path + ": " +
                                                 (why ? why : "dlopen failed") +
                                                 (by_path ? "" : " (name a plugin built beside this library, or give a path)"));
        }
        const std::string where = "inner library " + path;
        auto entry = reinterpret_cast<pangea_plugin_entry_fn>(dlsym(library_, PANGEA_PLUGIN_ENTRY_SYMBOL));
        if (entry == nullptr)
            throw Failure(PANGEA_ERR_CONFIG, where + ": no entry symbol " + PANGEA_PLUGIN_ENTRY_SYMBOL);
        const pangea_library* library = nullptr;
        const pangea_status status = entry(PANGEA_ABI_VERSION, &library);
        if (status == PANGEA_ERR_VERSION)
            throw Failure(PANGEA_ERR_VERSION, where + ": refused the handshake for ABI " +
                                                  std::to_string(PANGEA_ABI_MAJOR) + "." + std::to_string(PANGEA_ABI_MINOR));
        if (status != PANGEA_OK || library == nullptr)
            throw Failure(PANGEA_ERR_CONFIG, where + ": entry point failed (status " + std::to_string(status) + ")");
        if (library->struct_size < sizeof(pangea_library) ||
            PANGEA_ABI_VERSION_MAJOR(library->abi_version) != PANGEA_ABI_MAJOR || library->plugin_count == 0 ||
            library->plugins == nullptr)
            throw Failure(PANGEA_ERR_CONFIG, where + ": bad library descriptor (size, ABI major, or no plugins)");
        // By name: the plugin of that name and kind. By path: the library's one plugin of this kind.
        std::vector<const pangea_plugin_info*> candidates;
        for (uint32_t i = 0; i < library->plugin_count; ++i) {
            const pangea_plugin_info* info = library->plugins[i];
            if (info == nullptr || info->struct_size < sizeof(pangea_plugin_info)) continue;
            uint32_t kind;
            std::memcpy(&kind, &info->kind, sizeof kind);
            if (kind != static_cast<uint32_t>(spec.kind) || info->name == nullptr) continue;
            if (by_path || which == info->name) candidates.push_back(info);
        }
        if (candidates.size() != 1)
            throw Failure(PANGEA_ERR_CONFIG, where + (candidates.empty() ? ": provides no " : ": provides several ") +
                                                 spec.kind_name + " plugin" + (by_path ? "" : " named '" + which + "'"));
        info_ = candidates.front();
        id_ = std::string(spec.kind_name) + "/" + info_->name;
        if (PANGEA_ABI_VERSION_MAJOR(info_->abi_version) != PANGEA_ABI_MAJOR)
            throw Failure(PANGEA_ERR_CONFIG, where + ": " + id_ + " was built for another ABI major");
        const auto* header = static_cast<const pangea_vtable_header*>(info_->vtable);
        if (header == nullptr || header->struct_size < spec.required_size || header->create == nullptr ||
            header->destroy == nullptr || header->last_error == nullptr)
            throw Failure(PANGEA_ERR_CONFIG, where + ": " + id_ + ": vtable missing or smaller than ABI 1.0's");
        using Slot = void (*)();
        const auto* bytes = static_cast<const unsigned char*>(info_->vtable);
        for (size_t at = sizeof(pangea_vtable_header); at + sizeof(Slot) <= spec.required_size; at += sizeof(Slot)) {
            Slot slot = nullptr;
            std::memcpy(&slot, bytes + at, sizeof slot);
            if (slot == nullptr) throw Failure(PANGEA_ERR_CONFIG, where + ": " + id_ + ": a required vtable slot is NULL");
        }
        if (info_->setting_count > 0 && (info_->settings == nullptr || info_->setting_size < sizeof(pangea_setting)))
            throw Failure(PANGEA_ERR_CONFIG, where + ": " + id_ + ": bad settings array");
    }

    // Every declared setting gets a value: from `text` (key=value,key=value), else its default;
    // a key the plugin does not declare, a misfit value or a missing required one is an error.
    void configure(const std::string& text) {
        std::vector<pangea_setting> declared;
        const auto* base = reinterpret_cast<const unsigned char*>(info_->settings);
        for (uint32_t i = 0; i < info_->setting_count; ++i) {
            pangea_setting s;
            std::memcpy(&s, base + static_cast<size_t>(i) * info_->setting_size, sizeof s);
            if (s.name == nullptr) throw Failure(PANGEA_ERR_CONFIG, id_ + ": a declared setting has no name");
            declared.push_back(s);
        }
        auto find = [&](const std::string& key) -> const pangea_setting* {
            for (const auto& s : declared)
                if (key == s.name) return &s;
            return nullptr;
        };
        std::map<std::string, std::string> given;
        if (!trim(text).empty()) {
            for (const std::string& item : split(text, ',')) {
                const size_t equals = item.find('=');
                const std::string key = trim(std::string_view(item).substr(0, equals));
                if (equals == std::string::npos || key.empty())
                    throw Failure(PANGEA_ERR_CONFIG, "inner_settings: \"" + item + "\" is not key=value");
                if (find(key) == nullptr) {
                    std::string valid;
                    for (const auto& s : declared) valid += (valid.empty() ? "" : ", ") + std::string(s.name);
                    throw Failure(PANGEA_ERR_CONFIG, "inner_settings: " + id_ + " has no setting '" + key +
                                                         "'; valid keys: " + (valid.empty() ? "(none)" : valid));
                }
                if (!given.emplace(key, trim(std::string_view(item).substr(equals + 1))).second)
                    throw Failure(PANGEA_ERR_CONFIG, "inner_settings: '" + key + "' is given twice");
            }
        }
        for (const auto& s : declared) {
            const auto found = given.find(s.name);
            if (found != given.end())
                values_[s.name] = parse_value(s, found->second, "inner_settings: " + id_ + " " + s.name);
            else if (s.default_value != nullptr)
                values_[s.name] = parse_value(s, s.default_value, id_ + ": default of " + s.name);
            else
                throw Failure(PANGEA_ERR_CONFIG, "inner_settings: " + id_ + " requires '" + s.name +
                                                     "': give it as inner_settings = \"" + s.name + "=...\"");
        }
    }

    // ---- the pangea_host of the inner plugin: the outer host's log and reports, our settings

    static void log(void* context, pangea_log_level level, const char* message) {
        try {
            Inner& inner = self(context);
            const std::string text = inner.id_ + ": " + (message ? message : "");
            inner.outer_->log(inner.outer_->context, level, text.c_str());
        } catch (...) {
        }
    }
    static void report_error(void* context, pangea_status status, const char* message) {
        try {
            Inner& inner = self(context);
            const std::string text = inner.id_ + ": " + (message ? message : "");
            inner.outer_->report_error(inner.outer_->context, status, text.c_str());
            std::lock_guard<std::mutex> lock(inner.mutex_);
            inner.reported_ = message ? message : "";
        } catch (...) {
        }
    }
    template <class Out, class Read>
    static pangea_status lookup(void* context, const char* key, Out* out, pangea_setting_type type, Read read) {
        if (key == nullptr || out == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
        try {
            const auto& values = self(context).values_;
            const auto found = values.find(key);
            if (found == values.end()) return PANGEA_ERR_NOT_FOUND;
            if (found->second.type != type) return PANGEA_ERR_CONFIG;
            *out = read(found->second);
            return PANGEA_OK;
        } catch (...) {
            return PANGEA_ERR_INTERNAL;
        }
    }
    static pangea_status config_string(void* c, const char* key, const char** out) {
        return lookup(c, key, out, PANGEA_SETTING_STRING, [](const Value& v) { return v.text.c_str(); });
    }
    static pangea_status config_int(void* c, const char* key, int64_t* out) {
        return lookup(c, key, out, PANGEA_SETTING_INT, [](const Value& v) { return v.integer; });
    }
    static pangea_status config_float(void* c, const char* key, double* out) {
        return lookup(c, key, out, PANGEA_SETTING_FLOAT, [](const Value& v) { return v.number; });
    }
    static pangea_status config_bool(void* c, const char* key, int* out) {
        return lookup(c, key, out, PANGEA_SETTING_BOOL, [](const Value& v) { return v.boolean ? 1 : 0; });
    }

    const pangea_host* outer_;
    void* library_ = nullptr;
    const pangea_plugin_info* info_ = nullptr;
    std::string id_;
    std::map<std::string, Value> values_;
    pangea_host table_{};
    void* handle_ = nullptr;
    std::mutex mutex_;
    std::string reported_;
};

// ------------------------------------------------------------------ which calls fail

struct Plan {
    uint64_t mask = 0;      // bit i: function i of the kind's list
    bool create = false;    // `fail` names create
    std::string names;      // `fail` as given, for messages
    int64_t after = 0, times = 1, node = -1, seed = 1, delay_ms = 0;
    double probability = 1.0;
    pangea_status status = PANGEA_ERR_IO;
    bool here = true;       // the node filter matches this process
};

// The decision, shared by the instance's functions (and, for create, by the whole process):
// calls of the named functions are counted; past `after`, each fails (with `probability`)
// until `times` have failed.
class Counter {
public:
    void seed(uint64_t seed) { random_.seed(seed); }
    // Whether this call fails; *call is its number among the counted calls (from 1).
    bool fails(const Plan& plan, uint64_t* call) {
        std::lock_guard<std::mutex> lock(mutex_);
        *call = ++calls_;
        if (static_cast<int64_t>(*call) <= plan.after) return false;
        if (plan.times >= 0 && static_cast<int64_t>(failed_) >= plan.times) return false;
        if (plan.probability < 1.0 && std::uniform_real_distribution<double>(0.0, 1.0)(random_) >= plan.probability)
            return false;
        ++failed_;
        return true;
    }
    uint64_t calls() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return calls_;
    }
    uint64_t failed() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return failed_;
    }

private:
    mutable std::mutex mutex_;
    uint64_t calls_ = 0, failed_ = 0;
    std::mt19937_64 random_{1};
};

// Reads our settings through the host; throws Failure(PANGEA_ERR_CONFIG) on a bad one.
class Settings {
public:
    explicit Settings(const pangea_host* host) : host_(host) {}
    std::string string(const char* key) const {
        const char* value = nullptr;
        check(host_->config_string(host_->context, key, &value), key);
        return value ? value : "";
    }
    int64_t integer(const char* key) const {
        int64_t value = 0;
        check(host_->config_int(host_->context, key, &value), key);
        return value;
    }
    double number(const char* key) const {
        double value = 0;
        check(host_->config_float(host_->context, key, &value), key);
        return value;
    }

private:
    static void check(pangea_status status, const char* key) {
        if (status == PANGEA_OK) return;
        throw Failure(PANGEA_ERR_CONFIG, std::string("setting '") + key + "' " +
                                             (status == PANGEA_ERR_NOT_FOUND ? "is not set" : "cannot be read"));
    }
    const pangea_host* host_;
};

Plan read_plan(const KindSpec& spec, const Settings& settings) {
    Plan plan;
    plan.names = trim(settings.string("fail"));
    if (!plan.names.empty()) {
        for (const std::string& raw : split(plan.names, '|')) {
            const std::string name = trim(raw);
            if (name == "create") {
                plan.create = true;
                continue;
            }
            const auto found = std::find(spec.functions.begin(), spec.functions.end(), name);
            if (found == spec.functions.end()) {
                std::string valid = "create";
                for (const auto& f : spec.functions) valid += ", " + f;
                throw Failure(PANGEA_ERR_CONFIG, "fail: '" + name + "' is not a function of a " + spec.kind_name +
                                                     " plugin that returns a status; one of: " + valid);
            }
            plan.mask |= uint64_t{1} << (found - spec.functions.begin());
        }
    }
    plan.after = settings.integer("after");
    plan.times = settings.integer("times");
    plan.node = settings.integer("node");
    plan.probability = settings.number("probability");
    plan.seed = settings.integer("seed");
    plan.delay_ms = settings.integer("delay_ms");
    const std::string status = settings.string("status");
    bool known = false;
    for (const auto& s : kStatuses) {
        if (status == s.setting) {
            plan.status = s.status;
            known = true;
        }
    }
    if (!known) throw Failure(PANGEA_ERR_CONFIG, "status: '" + status + "' is not one of " + kStatusChoices);
    plan.here = plan.node < 0 || plan.node == this_node();
    return plan;
}

// Creates of this library in this process (for `fail = "create"`).
Counter& create_counter() {
    static Counter counter;
    return counter;
}

// ------------------------------------------------------------------ one instance

class Instance {
public:
    Instance(const KindSpec& spec, const pangea_host* host, Plan plan, const std::string& inner,
             const std::string& inner_settings)
        : spec_(spec), host_(host), plan_(std::move(plan)), inner_(spec, inner, inner_settings, host) {
        counter_.seed(static_cast<uint64_t>(plan_.seed));
    }
    ~Instance() {
        if (plan_.here && plan_.mask != 0) {  // what happened, also to find the `after` a test wants
            const std::string text = "faulty: injected " + std::to_string(counter_.failed()) + " failure(s) in " +
                                     std::to_string(counter_.calls()) + " call(s) of " + plan_.names + " of " + inner_.id();
            host_->log(host_->context, PANGEA_LOG_INFO, text.c_str());
        }
    }

    static Instance& of(void* instance) { return *static_cast<Instance*>(instance); }

    template <class Vtable>
    const Vtable& vt() const {
        return *static_cast<const Vtable*>(inner_.vtable());
    }
    void* inner() const { return inner_.handle(); }
    // Whether the inner plugin's vtable has the (optional) slot ending at `slot_end` bytes.
    bool inner_has_slot(size_t slot_end) const { return inner_.header().struct_size >= slot_end; }
    bool targets(int function) const { return plan_.here && ((plan_.mask >> function) & 1) != 0; }

    // Called first by every forwarding function that returns a status: PANGEA_OK means forward
    // the call; anything else is the injected failure, to be returned as is (last_error() says
    // what happened until this thread's next call).
    pangea_status inject(int function) {
        forget_error();
        if (!targets(function)) return PANGEA_OK;
        uint64_t call = 0;
        if (!counter_.fails(plan_, &call)) return PANGEA_OK;
        const std::string name = spec_.functions[static_cast<size_t>(function)];
        const std::string text = "faulty: injected failure of " + name + " (call " + std::to_string(call) + " of " +
                                 plan_.names + " on " + inner_.id() + ")";
        if (!warned_.exchange(true)) {
            const std::string note = text + ": returning " + status_text(plan_.status) + "; after=" +
                                     std::to_string(plan_.after) + ", times=" + std::to_string(plan_.times);
            host_->log(host_->context, PANGEA_LOG_WARN, note.c_str());
        }
        if (plan_.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(plan_.delay_ms));
        set_error(text);
        return plan_.status;
    }

    // The calling thread's injected failure if its last call on this instance was one, else
    // the inner plugin's own text.
    const char* last_error() const {
        if (errors_.load(std::memory_order_relaxed) > 0) {
            std::lock_guard<std::mutex> lock(error_mutex_);
            const auto found = error_text_.find(std::this_thread::get_id());
            if (found != error_text_.end()) return found->second.c_str();
        }
        return inner_.header().last_error(inner_.handle());
    }

    // Forwarding functions that cannot fail (void or size returns) call this first, so that
    // last_error() then reflects the inner plugin again.
    void forget_error() {
        if (errors_.load(std::memory_order_relaxed) == 0) return;
        std::lock_guard<std::mutex> lock(error_mutex_);
        error_text_.erase(std::this_thread::get_id());
        errors_.store(error_text_.size(), std::memory_order_relaxed);
    }

    // A failure of the wrapper's own (not injected): what last_error() says until this thread's
    // next call.
    void set_error(const std::string& text) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        error_text_[std::this_thread::get_id()] = text;
        errors_.store(error_text_.size(), std::memory_order_relaxed);
    }

private:
    const KindSpec& spec_;
    const pangea_host* host_;
    Plan plan_;
    Inner inner_;
    Counter counter_;
    std::atomic<bool> warned_{false};
    mutable std::mutex error_mutex_;
    std::map<std::thread::id, std::string> error_text_;
    std::atomic<size_t> errors_{0};
};

// ------------------------------------------------------------------ the vtable header's three

template <class Spec>
pangea_status create(const pangea_host* host, void** out_instance) {
    if (host == nullptr || out_instance == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
    try {
        const KindSpec& spec = Spec::spec();
        const Settings settings(host);
        Plan plan = read_plan(spec, settings);
        if (plan.create && plan.here) {
            uint64_t call = 0;
            if (create_counter().fails(plan, &call)) {
                if (plan.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(plan.delay_ms));
                throw Failure(plan.status, "faulty: injected failure of create (call " + std::to_string(call) +
                                               " in this process)");
            }
        }
        auto* instance = new Instance(spec, host, std::move(plan), settings.string("inner"),
                                      settings.string("inner_settings"));
        *out_instance = instance;
        return PANGEA_OK;
    } catch (const Failure& e) {
        host->report_error(host->context, e.status, e.what());
        return e.status;
    } catch (const std::bad_alloc&) {
        host->report_error(host->context, PANGEA_ERR_NO_MEMORY, "out of memory");
        return PANGEA_ERR_NO_MEMORY;
    } catch (const std::exception& e) {
        host->report_error(host->context, PANGEA_ERR_INTERNAL, e.what());
        return PANGEA_ERR_INTERNAL;
    } catch (...) {
        host->report_error(host->context, PANGEA_ERR_INTERNAL, "unknown exception");
        return PANGEA_ERR_INTERNAL;
    }
}

inline void destroy(void* instance) { delete static_cast<Instance*>(instance); }

inline const char* last_error(void* instance) {
    return instance == nullptr ? "" : static_cast<Instance*>(instance)->last_error();
}

template <class Spec>
pangea_vtable_header header() {
    return {Spec::spec().vtable_size, &create<Spec>, &destroy, &last_error};
}

}  // namespace faulty
}  // namespace

// The descriptors and the entry point of one kind's faulty plugin. `Spec` has a static
// spec() returning its KindSpec, and default_inner; `vtable` is the forwarding vtable.
#define PANGEA_FAULTY_PLUGIN(Spec, vtable, kind_value, description_text)                                  \
    namespace {                                                                                            \
    const pangea_plugin_info faulty_info = {sizeof(pangea_plugin_info),                                    \
                                            PANGEA_ABI_VERSION,                                            \
                                            kind_value,                                                    \
                                            "faulty",                                                      \
                                            "1.0.0",                                                       \
                                            description_text,                                              \
                                            faulty::declared_settings<Spec>(),                             \
                                            uint32_t(std::size(faulty::declared_settings<Spec>())),        \
                                            sizeof(pangea_setting),                                        \
                                            &vtable};                                                      \
    const pangea_plugin_info* const faulty_plugins[] = {&faulty_info};                                     \
    const pangea_library faulty_library = {sizeof(pangea_library), PANGEA_ABI_VERSION, 1, faulty_plugins}; \
    }                                                                                                      \
    extern "C" PANGEA_EXPORT pangea_status pangea_plugin_entry_v1(uint32_t host_abi_version,               \
                                                                  const pangea_library** out_library) {    \
        /* A test tool shipped with its host: it speaks only this build's version. */                     \
        if (PANGEA_ABI_VERSION_MAJOR(host_abi_version) != PANGEA_ABI_MAJOR ||                              \
            PANGEA_ABI_VERSION_MINOR(host_abi_version) < PANGEA_ABI_MINOR)                                 \
            return PANGEA_ERR_VERSION;                                                                     \
        if (out_library == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;                                    \
        *out_library = &faulty_library;                                                                    \
        return PANGEA_OK;                                                                                  \
    }
