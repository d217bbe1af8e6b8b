#include "plugin_host/plugin_instance.hpp"

#include <mutex>
#include <utility>

#include "common/log.hpp"
#include "pangea/plugin.h"

namespace pangea {

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
    }

    const pangea_host* table() const { return &table_; }

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
};

PluginInstance::PluginInstance(const PluginDescriptor& plugin, SettingMap settings)
    : plugin_(plugin), services_(std::make_unique<HostServices>(plugin.id(), std::move(settings))) {
    void* handle = nullptr;
    const pangea_status status = header().create(services_->table(), &handle);
    if (status != PANGEA_OK) {
        std::string reason = services_->reported_error();
        if (reason.empty()) reason = "(the plugin reported no reason)";
        throw PluginError(plugin.id() + ": create() failed with " + status_name(status) + ": " +
                          reason);
    }
    if (handle == nullptr)
        throw PluginError(plugin.id() + ": create() returned PANGEA_OK but no instance");
    handle_ = handle;
}

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
