// One live plugin instance: the host services it was given, its settings, and its handle.
// RAII: the destructor calls the plugin's destroy() and only then lets the library unload.
#pragma once

#include <memory>
#include <string>

#include "common/settings.hpp"
#include "plugin_host/plugin_registry.hpp"

namespace pangea {

class HostServices;  // the pangea_host table and the state behind it

// create() failed: the plugin's status, and its reported reason in what().
class PluginCreateError : public PluginError {
public:
    PluginCreateError(pangea_status status, const std::string& what) : PluginError(what), status_(status) {}
    pangea_status status() const noexcept { return status_; }

private:
    pangea_status status_;
};

class PluginInstance {
public:
    // Calls the plugin's create() with these settings (already validated against its
    // declarations). Throws PluginError with the plugin's reported reason if create() fails.
    PluginInstance(const PluginDescriptor& plugin, SettingMap settings);
    ~PluginInstance();
    PluginInstance(PluginInstance&&) noexcept;
    PluginInstance& operator=(PluginInstance&&) noexcept;

    const PluginDescriptor& plugin() const { return plugin_; }
    void* handle() const { return handle_; }

    // A new instance of the same plugin with the same settings: for work on several threads at
    // once with a kind whose instance serves one thread at a time (compress). Throws like the
    // constructor.
    PluginInstance another() const;

    // The kind's vtable in today's layout, every slot callable (older plugins' are adapted);
    // the caller picks the type matching plugin().kind.
    template <class Vtable>
    const Vtable& vtable() const {
        return std::get<Vtable>(*plugin_.vtable);
    }

    // The plugin's last_error() text.
    std::string last_error() const;

    // "compress/int8: <what> failed with status N: <last_error>" for a failed call.
    std::string describe_failure(const std::string& what, pangea_status status) const;

private:
    const pangea_vtable_header& header() const;

    // A copy, so the instance outlives the registry; it keeps the library loaded until after the
    // destructor has called destroy().
    PluginDescriptor plugin_;
    std::unique_ptr<HostServices> services_;
    void* handle_ = nullptr;
};

const char* status_name(pangea_status status);  // "PANGEA_ERR_CORRUPT"

}  // namespace pangea
