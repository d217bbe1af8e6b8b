// Wiring a fixed ring of ranks over a transport plugin: owned listener and connection handles,
// a file-based rendezvous for processes on one machine (or in network namespaces that share its
// filesystem), and the connect-to-next / accept-from-previous handshake. The elastic mesh
// (membership, heartbeats, joins) builds on these.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "pangea/transport.h"
#include "plugin_host/plugin_instance.hpp"

namespace pangea {

// Thrown when the ring cannot be formed; what() says which rank waited for what.
class MeshError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class OwnedListener {
public:
    OwnedListener(const PluginInstance& transport, const std::string& address);  // throws MeshError
    ~OwnedListener();
    OwnedListener(const OwnedListener&) = delete;
    OwnedListener& operator=(const OwnedListener&) = delete;

    pangea_listener* handle() const { return handle_; }
    const std::string& address() const { return address_; }  // as bound: the port filled in

private:
    const PluginInstance& transport_;
    pangea_listener* handle_ = nullptr;
    std::string address_;
};

class OwnedConnection {
public:
    OwnedConnection() = default;
    OwnedConnection(const PluginInstance* transport, pangea_connection* handle) : transport_(transport), handle_(handle) {}
    ~OwnedConnection() { reset(); }
    OwnedConnection(OwnedConnection&& other) noexcept
        : transport_(other.transport_), handle_(std::exchange(other.handle_, nullptr)) {}
    OwnedConnection& operator=(OwnedConnection&& other) noexcept {
        if (this != &other) {
            reset();
            transport_ = other.transport_;
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    pangea_connection* handle() const { return handle_; }
    void reset();

private:
    const PluginInstance* transport_ = nullptr;
    pangea_connection* handle_ = nullptr;
};

// Ranks publish their listening address as <dir>/rank-<r>.addr (written atomically) and read
// everyone's.
class FileRendezvous {
public:
    explicit FileRendezvous(std::filesystem::path directory) : directory_(std::move(directory)) {}
    void publish(int rank, const std::string& address) const;
    // Waits until all `world` addresses are there; throws MeshError naming the missing ranks.
    std::vector<std::string> wait_all(int world, std::chrono::milliseconds timeout) const;

private:
    std::filesystem::path directory_;
};

constexpr uint32_t kRingChannel = 1;

struct RingConnections {
    OwnedConnection next;      // this rank sends on it
    OwnedConnection previous;  // this rank receives on it
};

// Connects to rank (rank + 1) % world at addresses[next] and accepts the connection of rank
// (rank - 1) % world, concurrently. Connections from anyone else are closed and logged.
RingConnections connect_ring(const PluginInstance& transport, const OwnedListener& listener, int rank,
                             const std::vector<std::string>& addresses, uint64_t run_id,
                             std::chrono::milliseconds timeout);

}  // namespace pangea
