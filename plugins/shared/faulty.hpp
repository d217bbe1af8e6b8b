// The `faulty` plugins: one per kind (transport, compress, optim, storage), each a wrapper that
// loads another plugin of its kind (the "inner" one) through the C ABI, forwards every call to
// it, and fails chosen calls with a chosen status: transiently or persistently, in one node or
// in all, always or with a probability. Like SQLite's test VFS, they let tests show what the
// core does when a plugin misbehaves. See docs/plugins/faulty.md.
//
// This header is the whole mechanism: the settings, opening the inner plugin (through the
// host's own loader: pangea_host.open_plugin), and the decision of which call fails. Each kind's faulty.cpp only writes the forwarding vtable:
//
//     pangea_status encode(void* self, ...) {
//         Instance& f = Instance::of(self);
//         if (const pangea_status s = f.inject(kEncode); s != PANGEA_OK) return s;
//         return f.vt<pangea_compress_vtable>().encode(f.inner(), ...);
//     }
//
// Plugins never link the core, so nothing here may come from it. Needs C++17.
#pragma once

#include <cstddef>
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

// ------------------------------------------------------------------ the inner plugin

// The inner plugin, opened through the host's own loader (pangea_host.open_plugin, ABI 1.2): the
// host finds it, negotiates with it, checks `inner_settings` against its declarations and hands
// back its vtable in today's layout, so a wrapper of an older plugin calls every slot safely.
class Inner {
public:
    Inner(const KindSpec& spec, const std::string& which, const std::string& settings, const pangea_host* host)
        : host_(host), id_(std::string(spec.kind_name) + "/" + which) {
        if (which.empty()) throw Failure(PANGEA_ERR_CONFIG, "inner: names no plugin");
        if (host->struct_size < offsetof(pangea_host, close_plugin) + sizeof host->close_plugin)
            throw Failure(PANGEA_ERR_VERSION, "faulty needs a host of plugin ABI 1.2 or later (open_plugin)");
        char error[2048] = "";
        const void* vtable = nullptr;
        const pangea_status status = host->open_plugin(host->context, spec.kind, which.c_str(), settings.c_str(),
                                                       &vtable, &handle_, error, sizeof error);
        if (status != PANGEA_OK)
            throw Failure(status, "inner = \"" + which + "\", inner_settings = \"" + settings + "\": " + error);
        vtable_ = vtable;
    }
    ~Inner() { host_->close_plugin(host_->context, handle_); }
    Inner(const Inner&) = delete;
    Inner& operator=(const Inner&) = delete;

    void* handle() const { return handle_; }
    const void* vtable() const { return vtable_; }
    const pangea_vtable_header& header() const { return *static_cast<const pangea_vtable_header*>(vtable_); }
    const std::string& id() const { return id_; }  // "compress/int8"

private:
    const pangea_host* host_;
    std::string id_;
    const void* vtable_ = nullptr;
    void* handle_ = nullptr;
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
