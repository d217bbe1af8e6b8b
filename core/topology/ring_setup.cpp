#include "topology/ring_setup.hpp"

#include <fstream>
#include <future>
#include <thread>

#include "common/log.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

const pangea_transport_vtable& vt(const PluginInstance& transport) {
    return transport.vtable<pangea_transport_vtable>();
}

pangea_hello hello_of(int rank, uint64_t run_id) {
    pangea_hello hello{};
    hello.struct_size = sizeof hello;
    hello.node_id = static_cast<uint32_t>(rank);
    hello.run_id = run_id;
    hello.channel = kRingChannel;
    return hello;
}

}  // namespace

OwnedListener::OwnedListener(const PluginInstance& transport, const std::string& address) : transport_(transport) {
    char bound[256] = {};
    const pangea_status status = vt(transport).listen(transport.handle(), address.c_str(), &handle_, bound, sizeof bound);
    if (status != PANGEA_OK) throw MeshError(transport.describe_failure("listen on " + address, status));
    address_ = bound;
}

OwnedListener::~OwnedListener() { vt(transport_).close_listener(transport_.handle(), handle_); }

void OwnedConnection::reset() {
    if (handle_ != nullptr) vt(*transport_).close(transport_->handle(), handle_);
    handle_ = nullptr;
}

void FileRendezvous::publish(int rank, const std::string& address) const {
    const fs::path target = directory_ / ("rank-" + std::to_string(rank) + ".addr");
    const fs::path temporary = target.string() + ".tmp";
    {
        std::ofstream out(temporary);
        out << address;
        if (!out) throw MeshError("rendezvous: cannot write " + temporary.string());
    }
    fs::rename(temporary, target);  // readers see the whole address or nothing
}

std::vector<std::string> FileRendezvous::wait_all(int world, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<std::string> addresses(static_cast<size_t>(world));
    while (true) {
        std::string missing;
        for (int r = 0; r < world; ++r) {
            if (!addresses[r].empty()) continue;
            std::ifstream in(directory_ / ("rank-" + std::to_string(r) + ".addr"));
            if (!(in >> addresses[r])) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
        }
        if (missing.empty()) return addresses;
        if (std::chrono::steady_clock::now() > deadline)
            throw MeshError("rendezvous in " + directory_.string() + ": ranks " + missing + " did not publish an address within " +
                            std::to_string(timeout.count()) + " ms");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

RingConnections connect_ring(const PluginInstance& transport, const OwnedListener& listener, int rank,
                             const std::vector<std::string>& addresses, uint64_t run_id,
                             std::chrono::milliseconds timeout) {
    const int world = static_cast<int>(addresses.size());
    const int next = (rank + 1) % world, previous = (rank + world - 1) % world;
    const pangea_hello self = hello_of(rank, run_id);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto left_ms = [&] {
        return static_cast<int>(std::max<long long>(
            0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
    };

    auto accepted = std::async(std::launch::async, [&]() -> OwnedConnection {
        while (true) {
            pangea_connection* handle = nullptr;
            pangea_hello peer{};
            const pangea_status status =
                vt(transport).accept(transport.handle(), listener.handle(), &self, left_ms(), &peer, &handle);
            if (status != PANGEA_OK)
                throw MeshError("rank " + std::to_string(rank) + " waited for rank " + std::to_string(previous) +
                                " to connect: " + transport.describe_failure("accept", status));
            OwnedConnection connection(&transport, handle);
            if (static_cast<int>(peer.node_id) == previous && peer.channel == kRingChannel) return connection;
            log(PANGEA_LOG_WARN, "mesh",
                "rank " + std::to_string(rank) + " closed an unexpected connection from node " + std::to_string(peer.node_id));
        }
    });

    RingConnections ring;
    // The next rank may not be listening yet: retry until the deadline.
    while (true) {
        pangea_connection* handle = nullptr;
        pangea_hello peer{};
        const pangea_status status = vt(transport).connect(transport.handle(), addresses[next].c_str(), &self,
                                                           std::max(left_ms(), 1), &peer, &handle);
        if (status == PANGEA_OK) {
            ring.next = OwnedConnection(&transport, handle);
            if (static_cast<int>(peer.node_id) != next)
                throw MeshError("rank " + std::to_string(rank) + ": " + addresses[next] + " answered as node " +
                                std::to_string(peer.node_id) + ", expected rank " + std::to_string(next));
            break;
        }
        if (left_ms() == 0 || status == PANGEA_ERR_CONFIG) {
            accepted.wait();
            throw MeshError("rank " + std::to_string(rank) + " could not connect to rank " + std::to_string(next) + " at " +
                            addresses[next] + ": " + transport.describe_failure("connect", status));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ring.previous = accepted.get();
    return ring;
}

}  // namespace pangea
