#include "topology/peers.hpp"

#include "collective/link.hpp"
#include "common/log.hpp"
#include "topology/auth.hpp"

namespace pangea {

PeerAcceptor::PeerAcceptor(const PluginInstance& transport, const OwnedListener& listener, int node, uint64_t run_id,
                           std::string secret, Handler on_recovery)
    : transport_(transport), listener_(listener), secret_(std::move(secret)), on_recovery_(std::move(on_recovery)) {
    self_.struct_size = sizeof self_;
    self_.node_id = static_cast<uint32_t>(node);
    self_.run_id = run_id;
    thread_ = std::thread([this] { run(); });
}

PeerAcceptor::~PeerAcceptor() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    arrived_.notify_all();  // ends a back-off
    thread_.join();
    for (auto& handler : handlers_) handler.thread.join();
}

void PeerAcceptor::join_finished_handlers() {
    for (auto it = handlers_.begin(); it != handlers_.end();) {
        if (!*it->finished) {
            ++it;
            continue;
        }
        it->thread.join();
        it = handlers_.erase(it);
    }
}

void PeerAcceptor::run() {
    const auto& vt = transport_.vtable<pangea_transport_vtable>();
    int failures = 0;  // in a row
    while (true) {
        {
            std::lock_guard lock(mutex_);
            if (stop_) return;
        }
        pangea_connection* handle = nullptr;
        pangea_hello peer{};
        const pangea_status status = vt.accept(transport_.handle(), listener_.handle(), &self_, 200, &peer, &handle);
        if (status == PANGEA_ERR_TIMEOUT) continue;
        if (status != PANGEA_OK) {
            // A stranger, a broken handshake or a failing transport: the plugin said why; keep
            // listening. Back off (10 ms, growing to 1 s) so that an accept() that fails at once
            // every time neither spins nor floods the log.
            ++failures;
            if (failures <= 3 || failures % 100 == 0)
                log(PANGEA_LOG_WARN, "mesh", transport_.describe_failure("accept", status) +
                                                 (failures > 3 ? " (" + std::to_string(failures) + " failures in a row)" : ""));
            std::unique_lock lock(mutex_);
            arrived_.wait_for(lock, std::chrono::milliseconds(std::min(1000, 10 * failures)), [&] { return stop_; });
            continue;
        }
        failures = 0;
        OwnedConnection connection(&transport_, handle);
        join_finished_handlers();
        if (handlers_.size() >= kMaxHandlers) {
            log(PANGEA_LOG_WARN, "mesh", "node " + std::to_string(self_.node_id) + " closed a connection from node " +
                                             std::to_string(peer.node_id) + ": " + std::to_string(kMaxHandlers) +
                                             " connections are being handled already");
            continue;  // `connection` closes here
        }
        auto finished = std::make_shared<std::atomic<bool>>(false);
        handlers_.push_back({std::thread([this, peer, finished, c = std::move(connection)]() mutable {
                                 admit(std::move(c), peer);
                                 *finished = true;
                             }),
                             finished});
    }
}

void PeerAcceptor::admit(OwnedConnection connection, pangea_hello peer) {
    try {
        authenticate_link(Link(transport_, connection.handle()), secret_, /*initiator=*/false);
    } catch (const MeshError& e) {
        log(PANGEA_LOG_WARN, "mesh", "node " + std::to_string(self_.node_id) + " refused a connection claiming to be node " +
                                         std::to_string(peer.node_id) + ": " + e.what());
        return;
    }
    if (peer.channel == kRecoveryChannel) return on_recovery_(std::move(connection), peer);
    std::lock_guard lock(mutex_);
    if (waiting_.size() >= kMaxWaiting) {
        log(PANGEA_LOG_WARN, "mesh", "node " + std::to_string(self_.node_id) + " closed a connection from node " +
                                         std::to_string(peer.node_id) + ": " + std::to_string(kMaxWaiting) +
                                         " connections are waiting to be used already");
        return;
    }
    waiting_[{static_cast<int>(peer.node_id), peer.channel}] = std::move(connection);
    arrived_.notify_all();
}

OwnedConnection PeerAcceptor::take(int peer, uint32_t channel, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    const auto key = std::make_pair(peer, channel);
    if (!arrived_.wait_for(lock, timeout, [&] { return waiting_.count(key) > 0; }))
        throw MeshError("node " + std::to_string(self_.node_id) + " waited " + std::to_string(timeout.count()) +
                        " ms for node " + std::to_string(peer) + " to connect");
    OwnedConnection connection = std::move(waiting_.at(key));
    waiting_.erase(key);
    // Connections of epochs that are over will never be taken.
    for (auto it = waiting_.begin(); it != waiting_.end();)
        it = it->first.second < channel && it->first.second >= kFirstEpochChannel ? waiting_.erase(it) : std::next(it);
    return connection;
}

}  // namespace pangea
