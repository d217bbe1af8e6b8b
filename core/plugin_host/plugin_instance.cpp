#include "plugin_host/plugin_instance.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "common/log.hpp"
#include "pangea/plugin.h"
#include "plugin_host/kinds.hpp"

namespace pangea {
namespace {

// ---- open_plugin(): what a wrapper plugin opens, found as a manifest section's plugin is

std::mutex wrapped_mutex;  // guards the registry below (load_library adds to it)

PluginRegistry& wrapped_registry() {
    static PluginRegistry registry(default_search_path());
    return registry;
}

const PluginDescriptor& find_wrapped(pangea_plugin_kind kind, const std::string& which) {
    std::lock_guard<std::mutex> lock(wrapped_mutex);
    PluginRegistry& registry = wrapped_registry();
    if (which.find('/') == std::string::npos) return registry.get(kind, which);
    std::vector<const PluginDescriptor*> matches;
    for (const PluginDescriptor* plugin : registry.load_library(which))
        if (plugin->kind == kind) matches.push_back(plugin);
    if (matches.size() != 1)
        throw PluginError(which + (matches.empty() ? " provides no " : " provides several ") + kind_name(kind) +
                          " plugin" + (matches.empty() ? "" : "s: give a library with one"));
    return *matches.front();
}

const void* vtable_pointer(const AdaptedVtable& vtable) {
    return std::visit([](const auto& v) -> const void* { return &v; }, vtable);
}

void copy_error(const std::string& text, char* error, size_t capacity) {
    if (error == nullptr || capacity == 0) return;
    const size_t n = std::min(text.size(), capacity - 1);
    std::memcpy(error, text.data(), n);
    error[n] = '\0';
}

}  // namespace

// The state behind one instance's pangea_host. Its functions are the C side of the boundary:
// each catches everything, so no exception reaches the plugin.
class HostServices {
public:
    HostServices(std::string component, SettingMap settings)
        : component_(std::move(component)), settings_(std::move(settings)) {
        table_.struct_size = sizeof(pangea_host);
        table_.abi_version = PANGEA_ABI_VERSION;
        table_.context = this;
        table_.log = &HostServices::log;
        table_.config_string = &HostServices::lookup<std::string, const char*>;
        table_.config_int = &HostServices::lookup<int64_t, int64_t>;
        table_.config_float = &HostServices::lookup<double, double>;
        table_.config_bool = &HostServices::lookup<bool, int>;
        table_.report_error = &HostServices::report_error;
        table_.open_plugin = &HostServices::open_plugin;
        table_.close_plugin = &HostServices::close_plugin;
    }

    const pangea_host* table() const { return &table_; }
    const SettingMap& settings() const { return settings_; }

    std::string reported_error() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return reported_;
    }

private:
    static HostServices* self(void* context) { return static_cast<HostServices*>(context); }

    static void log(void* context, pangea_log_level level, const char* message) {
        try {
            pangea::log(level, self(context)->component_, message ? message : "");
        } catch (...) {
        }
    }

    static void report_error(void* context, pangea_status status, const char* message) {
        try {
            HostServices* host = self(context);
            std::string text = message ? message : "";
            pangea::log(PANGEA_LOG_ERROR, host->component_,
                        std::string(status_name(status)) + ": " + text);
            std::lock_guard<std::mutex> lock(host->mutex_);
            host->reported_ = std::move(text);
        } catch (...) {
        }
    }

    static pangea_status open_plugin(void* context, pangea_plugin_kind kind, const char* which, const char* settings,
                                     const void** out_vtable, void** out_instance, char* error,
                                     size_t error_capacity) {
        if (which == nullptr || out_vtable == nullptr || out_instance == nullptr) {
            copy_error("open_plugin: NULL which, out_vtable or out_instance", error, error_capacity);
            return PANGEA_ERR_INVALID_ARGUMENT;
        }
        try {
            if (find_kind(kind) == nullptr) {
                copy_error("open_plugin: unknown kind " + std::to_string(static_cast<int>(kind)), error, error_capacity);
                return PANGEA_ERR_INVALID_ARGUMENT;
            }
            const PluginDescriptor& plugin = find_wrapped(kind, which);
            auto opened = std::make_unique<PluginInstance>(plugin, plugin.settings_from(settings ? settings : "", "open_plugin"));
            HostServices* host = self(context);
            std::lock_guard<std::mutex> lock(host->mutex_);
            *out_vtable = vtable_pointer(*opened->plugin().vtable);
            *out_instance = opened->handle();
            host->opened_.push_back(std::move(opened));
            return PANGEA_OK;
        } catch (const PluginCreateError& e) {
            copy_error(e.what(), error, error_capacity);
            return e.status();
        } catch (const std::exception& e) {
            copy_error(e.what(), error, error_capacity);
            return PANGEA_ERR_CONFIG;
        } catch (...) {
            copy_error("open_plugin: unknown exception", error, error_capacity);
            return PANGEA_ERR_INTERNAL;
        }
    }

    static void close_plugin(void* context, void* instance) {
        if (instance == nullptr) return;
        HostServices* host = self(context);
        std::unique_ptr<PluginInstance> doomed;  // destroyed outside the lock
        std::lock_guard<std::mutex> lock(host->mutex_);
        for (auto it = host->opened_.begin(); it != host->opened_.end(); ++it)
            if ((*it)->handle() == instance) {
                doomed = std::move(*it);
                host->opened_.erase(it);
                break;
            }
    }

    // Stored is the setting's C++ type; Out what the C function writes.
    template <class Stored, class Out>
    static pangea_status lookup(void* context, const char* key, Out* out) {
        if (key == nullptr || out == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
        try {
            const SettingMap& settings = self(context)->settings_;
            const auto found = settings.find(key);
            if (found == settings.end()) return PANGEA_ERR_NOT_FOUND;
            const Stored* value = std::get_if<Stored>(&found->second.value);
            if (value == nullptr) return PANGEA_ERR_CONFIG;
            if constexpr (std::is_same_v<Stored, std::string>)
                *out = value->c_str();
            else
                *out = static_cast<Out>(*value);
            return PANGEA_OK;
        } catch (...) {
            return PANGEA_ERR_INTERNAL;
        }
    }

    std::string component_;
    SettingMap settings_;
    pangea_host table_{};
    mutable std::mutex mutex_;
    std::string reported_;
    std::vector<std::unique_ptr<PluginInstance>> opened_;  // by open_plugin(), until close_plugin()
};

PluginInstance::PluginInstance(const PluginDescriptor& plugin, SettingMap settings)
    : plugin_(plugin), services_(std::make_unique<HostServices>(plugin.id(), std::move(settings))) {
    void* handle = nullptr;
    const pangea_status status = header().create(services_->table(), &handle);
    if (status != PANGEA_OK) {
        std::string reason = services_->reported_error();
        if (reason.empty()) reason = "(the plugin reported no reason)";
        throw PluginCreateError(status, plugin.id() + ": create() failed with " + status_name(status) + ": " + reason);
    }
    if (handle == nullptr)
        throw PluginError(plugin.id() + ": create() returned PANGEA_OK but no instance");
    handle_ = handle;
}

PluginInstance PluginInstance::another() const { return PluginInstance(plugin_, services_->settings()); }

PluginInstance::~PluginInstance() {
    if (handle_ != nullptr) header().destroy(handle_);
}

PluginInstance::PluginInstance(PluginInstance&& other) noexcept
    : plugin_(std::move(other.plugin_)),
      services_(std::move(other.services_)),
      handle_(std::exchange(other.handle_, nullptr)) {}

PluginInstance& PluginInstance::operator=(PluginInstance&& other) noexcept {
    if (this != &other) {
        PluginInstance doomed(std::move(*this));
        plugin_ = std::move(other.plugin_);
        services_ = std::move(other.services_);
        handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
}

const pangea_vtable_header& PluginInstance::header() const { return header_of(*plugin_.vtable); }

std::string PluginInstance::last_error() const {
    const char* text = header().last_error(handle_);
    return text ? text : "(last_error() returned NULL)";
}

std::string PluginInstance::describe_failure(const std::string& what,
                                             pangea_status status) const {
    return plugin_.id() + ": " + what + " failed with " + status_name(status) + ": " +
           last_error();
}

const char* status_name(pangea_status status) {
    switch (status) {
        case PANGEA_OK: return "PANGEA_OK";
        case PANGEA_ERR_INVALID_ARGUMENT: return "PANGEA_ERR_INVALID_ARGUMENT";
        case PANGEA_ERR_CONFIG: return "PANGEA_ERR_CONFIG";
        case PANGEA_ERR_UNSUPPORTED: return "PANGEA_ERR_UNSUPPORTED";
        case PANGEA_ERR_NO_MEMORY: return "PANGEA_ERR_NO_MEMORY";
        case PANGEA_ERR_IO: return "PANGEA_ERR_IO";
        case PANGEA_ERR_TIMEOUT: return "PANGEA_ERR_TIMEOUT";
        case PANGEA_ERR_PEER_LOST: return "PANGEA_ERR_PEER_LOST";
        case PANGEA_ERR_ABORTED: return "PANGEA_ERR_ABORTED";
        case PANGEA_ERR_CORRUPT: return "PANGEA_ERR_CORRUPT";
        case PANGEA_ERR_CAPACITY: return "PANGEA_ERR_CAPACITY";
        case PANGEA_ERR_NOT_FOUND: return "PANGEA_ERR_NOT_FOUND";
        case PANGEA_ERR_AGAIN: return "PANGEA_ERR_AGAIN";
        case PANGEA_ERR_VERSION: return "PANGEA_ERR_VERSION";
        case PANGEA_ERR_INVALID_DATA: return "PANGEA_ERR_INVALID_DATA";
        case PANGEA_ERR_INTERNAL: return "PANGEA_ERR_INTERNAL";
        case PANGEA_ERR_NO_SPACE: return "PANGEA_ERR_NO_SPACE";
    }
    return "unknown status";
}

}  // namespace pangea
