// A typed, RAII view of one connection of a transport plugin instance: what the collectives use
// instead of raw vtable calls.
#pragma once

#include <string>
#include <utility>

#include "pangea/transport.h"
#include "plugin_host/plugin_instance.hpp"

namespace pangea {

// One outstanding isend or irecv. Must be completed (wait() until it returns anything but
// PANGEA_ERR_TIMEOUT) before its buffer is freed; the destructor waits for that as a last resort.
class Request {
public:
    Request() = default;
    Request(const PluginInstance* transport, pangea_request* handle) : transport_(transport), handle_(handle) {}
    Request(Request&& other) noexcept
        : transport_(other.transport_), handle_(std::exchange(other.handle_, nullptr)) {}
    Request& operator=(Request&& other) noexcept {
        if (this != &other) {
            finish();
            transport_ = other.transport_;
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    ~Request() { finish(); }

    bool pending() const { return handle_ != nullptr; }

    // PANGEA_ERR_TIMEOUT leaves it pending; any other status completes it.
    pangea_status wait(int timeout_ms);

    // The transport's text for the calling thread's last failure.
    std::string error() const { return transport_ ? transport_->last_error() : ""; }

private:
    void finish() {
        if (handle_ != nullptr) wait(-1);
    }

    const PluginInstance* transport_ = nullptr;
    pangea_request* handle_ = nullptr;
};

class Link {
public:
    Link(const PluginInstance& transport, pangea_connection* connection)
        : transport_(&transport), connection_(connection) {}

    // Starts a send or a receive; a failure to start comes back as an already failed request's
    // status in *status (and an empty Request).
    Request send(const void* data, size_t bytes, pangea_status* status) const;
    Request receive(void* data, size_t bytes, pangea_status* status) const;

    // Fails everything pending on the connection (the peer is dead or stalled).
    void abort() const;

    const PluginInstance& transport() const { return *transport_; }
    pangea_connection* connection() const { return connection_; }

private:
    const pangea_transport_vtable& vt() const { return transport_->vtable<pangea_transport_vtable>(); }

    const PluginInstance* transport_;
    pangea_connection* connection_;
};

}  // namespace pangea
