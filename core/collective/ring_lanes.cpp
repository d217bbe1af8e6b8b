#include "collective/ring_lanes.hpp"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "collective/contribution_check.hpp"
#include "common/log.hpp"
#include "common/shard_range.hpp"
#include "topology/auth.hpp"

namespace pangea {

RingLanes::RingLanes(const PluginInstance& transport, PeerAcceptor& acceptor, const PluginInstance& codec, int node,
                     uint64_t run_id, LaneOptions options)
    : transport_(transport), acceptor_(acceptor), codec_(codec), node_(node), run_id_(run_id), options_(options) {
    if (options_.count < 1 || options_.first < 0 || options_.first + options_.count > options_.rings)
        throw std::logic_error("RingLanes: rings [" + std::to_string(options_.first) + ", " +
                               std::to_string(options_.first + options_.count) + ") of " + std::to_string(options_.rings));
    for (int k = 1; k < options_.count; ++k) more_codecs_.push_back(codec.another());
}

RingLanes::~RingLanes() = default;

void RingLanes::abort() {
    std::lock_guard lock(links_mutex_);
    for (Lane& lane : lanes_) {
        lane.next->abort();
        lane.previous->abort();
    }
}

void RingLanes::disconnect() {
    std::lock_guard lock(links_mutex_);
    lanes_.clear();
    ring_.clear();
}

std::string RingLanes::connect(const Epoch& epoch) {
    if (ring_ == epoch.members && !lanes_.empty()) return "";
    disconnect();
    try {
        for (int k = 0; k < options_.count; ++k) {
            Lane lane{connect_ring(epoch, static_cast<uint32_t>(options_.first + k)), nullptr, nullptr};
            lane.next = std::make_unique<Link>(transport_, lane.connections.next.handle());
            lane.previous = std::make_unique<Link>(transport_, lane.connections.previous.handle());
            std::lock_guard lock(links_mutex_);
            lanes_.push_back(std::move(lane));
        }
    } catch (const MeshError& e) {
        disconnect();
        return e.what();
    }
    ring_ = epoch.members;
    return "";
}

RingConnections RingLanes::connect_ring(const Epoch& epoch, uint32_t ring) {
    const int n = static_cast<int>(epoch.members.size());
    const int position = epoch.position_of(node_);
    const Member& next = epoch.members[static_cast<size_t>((position + 1) % n)];
    const Member& previous = epoch.members[static_cast<size_t>((position + n - 1) % n)];
    const std::string& address = next.ring_address(ring);
    pangea_hello self{};
    self.struct_size = sizeof self;
    self.node_id = static_cast<uint32_t>(node_);
    self.run_id = run_id_;
    self.channel = ring_channel(epoch.id, ring);
    const auto& vt = transport_.vtable<pangea_transport_vtable>();
    const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
    const std::string which = options_.rings > 1 ? " (ring " + std::to_string(ring) + ")" : "";
    RingConnections connections;
    while (true) {  // the next member may still be finishing its own connect
        pangea_connection* handle = nullptr;
        pangea_hello peer{};
        const pangea_status status = vt.connect(transport_.handle(), address.c_str(), &self, 2000, &peer, &handle);
        if (status == PANGEA_OK) {
            connections.next = OwnedConnection(&transport_, handle);
            authenticate_link(Link(transport_, handle), options_.secret, /*initiator=*/true);
            break;
        }
        // This node's transport cannot connect at all: retrying (and retrying the epoch) would
        // only take minutes to fail the same way. Not a MeshError: the node stops. (A bad
        // address or another run at it may be the peer's fault or pass: those are retried.)
        if (status == PANGEA_ERR_UNSUPPORTED || status == PANGEA_ERR_VERSION)
            throw std::runtime_error("node " + std::to_string(node_) + " cannot connect to node " + std::to_string(next.node) +
                                     " at " + address + which + ": " + transport_.describe_failure("connect", status) +
                                     " (not retried: this transport cannot)");
        if (std::chrono::steady_clock::now() > deadline)
            throw MeshError("node " + std::to_string(node_) + " could not connect to node " + std::to_string(next.node) +
                            " at " + address + which + " in " + epoch.describe() + ": " +
                            transport_.describe_failure("connect", status));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    connections.previous = acceptor_.take(previous.node, self.channel, options_.connect_timeout);
    return connections;
}

LaneDecision RingLanes::decide(const Epoch& epoch, double own) {
    if (options_.first != 0 || lanes_.empty()) throw std::logic_error("RingLanes::decide needs ring 0, connected");
    const int n = static_cast<int>(epoch.members.size());
    LaneDecision decision;
    try {
        const std::vector<double> norms = gather_norms(*lanes_[0].next, *lanes_[0].previous, epoch.position_of(node_), n,
                                                       own, options_.ring.stall_timeout_ms);
        decision.left_out = outlier_positions(norms, options_.outlier_factor);
        for (const int p : decision.left_out) {
            const int node = epoch.members[static_cast<size_t>(p)].node;
            log(PANGEA_LOG_WARN, "mesh", "node " + std::to_string(node_) + ": outer step " + std::to_string(epoch.step) +
                                             " leaves out node " + std::to_string(node) + "'s contribution: " +
                                             outlier_reason(norms, p, options_.outlier_factor) +
                                             (node == node_ ? " (this node's own)" : ""));
        }
        if (static_cast<int>(decision.left_out.size()) == n)
            throw ContributionCheckError(PANGEA_ERR_INVALID_DATA, "every member's contribution to outer step " +
                                                                      std::to_string(epoch.step) + " was left out");
    } catch (const ContributionCheckError& e) {
        decision.status = e.status;
        decision.error = e.what();
        decision.left_out.clear();
    }
    return decision;
}

AllReduceResult RingLanes::run(const Epoch& epoch, const LaneDecision& decision, std::span<float> part,
                               std::span<float> residual, size_t offset, size_t total) {
    AllReduceResult result;
    if (decision.status != PANGEA_OK || lanes_.empty()) {
        disconnect();
        result.status = decision.status != PANGEA_OK ? decision.status : PANGEA_ERR_IO;
        result.error = decision.status != PANGEA_OK ? decision.error : "the rings are not connected";
        return result;
    }
    const int n = static_cast<int>(epoch.members.size());
    const int position = epoch.position_of(node_);
    if (std::find(decision.left_out.begin(), decision.left_out.end(), position) != decision.left_out.end())
        std::fill(part.begin(), part.end(), 0.0f);  // it still relays the others'
    std::vector<RingAllReduce> rings;
    std::vector<std::span<float>> ranges, residuals;
    rings.reserve(lanes_.size());
    for (size_t k = 0; k < lanes_.size(); ++k) {
        const ShardRange range = shard_range(total, options_.rings, options_.first + static_cast<int>(k));
        if (range.begin < offset || range.end > offset + part.size())
            throw std::logic_error("ring " + std::to_string(options_.first + static_cast<int>(k)) + "'s range [" +
                                   std::to_string(range.begin) + ", " + std::to_string(range.end) +
                                   ") is not in this process's part");
        ranges.push_back(part.subspan(range.begin - offset, range.size()));
        if (!residual.empty()) residuals.push_back(residual.subspan(range.begin - offset, range.size()));
        rings.emplace_back(position, n, *lanes_[k].next, *lanes_[k].previous, k ? more_codecs_[k - 1] : codec_,
                           options_.ring);
    }
    result = run_rings(rings, ranges, ReduceOp::kAverage, n - static_cast<int>(decision.left_out.size()), residuals);
    for (const int p : decision.left_out) result.excluded_nodes.push_back(epoch.members[static_cast<size_t>(p)].node);
    if (result.status != PANGEA_OK) disconnect();
    return result;
}

}  // namespace pangea
