// Incoming transport connections of a node in an elastic run. The listener is accepted on for as
// long as the node runs (peers connect at every membership change, joiners ask for the state at
// any time); each connection goes to whoever waits for it, by the channel in its hello.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "topology/ring_setup.hpp"

namespace pangea {

constexpr uint32_t kRecoveryChannel = 2;
// Connections of an elastic run are made per epoch: the bandwidth probes that order its ring
// (collective/ring_planner.hpp), then each ring of the epoch ([mesh] rings), so that a late
// connection of an old epoch cannot be mistaken for one of the current epoch. Channels grow with
// the epoch, then probes before rings (those below one being taken are never taken).
constexpr uint32_t kFirstEpochChannel = 0x10000000u;
constexpr uint32_t probe_channel(uint64_t epoch) {
    return kFirstEpochChannel | (static_cast<uint32_t>(epoch & 0xfffffu) << 8);
}
constexpr uint32_t ring_channel(uint64_t epoch, uint32_t ring = 0) { return probe_channel(epoch) + 1 + (ring & 0x7fu); }

class PeerAcceptor {
public:
    using Handler = std::function<void(OwnedConnection connection, const pangea_hello& peer)>;

    // Every connection must first prove it holds `secret` (topology/auth.hpp; none when empty), on a
    // thread of its own. `on_recovery` then serves a joiner's state request on that thread.
    PeerAcceptor(const PluginInstance& transport, const OwnedListener& listener, int node, uint64_t run_id,
                 std::string secret, Handler on_recovery);
    ~PeerAcceptor();  // stops accepting, waits for the handlers
    PeerAcceptor(const PeerAcceptor&) = delete;
    PeerAcceptor& operator=(const PeerAcceptor&) = delete;

    // The connection `peer` made on `channel`; throws MeshError naming both after `timeout`.
    OwnedConnection take(int peer, uint32_t channel, std::chrono::milliseconds timeout);

private:
    void run();
    void admit(OwnedConnection connection, pangea_hello peer);  // authenticates, then hands it on

    const PluginInstance& transport_;
    const OwnedListener& listener_;
    pangea_hello self_{};
    std::string secret_;
    Handler on_recovery_;
    std::mutex mutex_;
    std::condition_variable arrived_;
    std::map<std::pair<int, uint32_t>, OwnedConnection> waiting_;  // (peer, channel) -> connection
    // A thread per connection being authenticated or served; finished ones are joined as new
    // connections come. At most kMaxHandlers at once, and kMaxWaiting connections waiting to be
    // taken: a peer cannot make this node hold unbounded threads or connections.
    static constexpr size_t kMaxHandlers = 64;
    static constexpr size_t kMaxWaiting = 64;
    struct HandlerThread {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> finished;
    };
    void join_finished_handlers();
    std::list<HandlerThread> handlers_;  // touched by run()'s thread only (and the destructor)
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace pangea
