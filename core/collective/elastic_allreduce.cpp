#include "collective/elastic_allreduce.hpp"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "common/log.hpp"
#include "topology/auth.hpp"
#include "collective/contribution_check.hpp"

namespace pangea {

ElasticAllReduce::ElasticAllReduce(Membership& membership, const PluginInstance& transport, PeerAcceptor& acceptor,
                                   const PluginInstance& codec, int node, uint64_t run_id, int64_t committed_step,
                                   ElasticOptions options)
    : membership_(membership),
      transport_(transport),
      acceptor_(acceptor),
      codec_(codec),
      node_(node),
      run_id_(run_id),
      committed_step_(committed_step),
      options_(options) {
    for (int k = 1; k < options_.rings; ++k) more_codecs_.push_back(codec.another());
    if (options_.rings > 1)
        log(PANGEA_LOG_INFO, "mesh", "node " + std::to_string(node_) + ": the outer all-reduce runs " +
                                         std::to_string(options_.rings) + " rings at once, each over its share of the buffer");
    membership_.on_abort([this](uint64_t) { abort_links(); });
}

void ElasticAllReduce::abort_links() {
    std::lock_guard lock(links_mutex_);
    for (Lane& lane : lanes_) {
        lane.next->abort();
        lane.previous->abort();
    }
}

void ElasticAllReduce::disconnect() {
    std::lock_guard lock(links_mutex_);
    lanes_.clear();
    ring_.clear();
}

void ElasticAllReduce::connect(const Epoch& epoch) {
    const bool same = ring_.size() == epoch.members.size() &&
                      std::equal(ring_.begin(), ring_.end(), epoch.members.begin(),
                                 [](const Member& a, const Member& b) { return a.node == b.node && a.address == b.address; });
    if (same && !lanes_.empty()) return;
    disconnect();
    for (int k = 0; k < options_.rings; ++k) {
        Lane lane{connect_ring(epoch, static_cast<uint32_t>(k)), nullptr, nullptr};
        lane.next = std::make_unique<Link>(transport_, lane.connections.next.handle());
        lane.previous = std::make_unique<Link>(transport_, lane.connections.previous.handle());
        std::lock_guard lock(links_mutex_);
        lanes_.push_back(std::move(lane));
    }
    ring_ = epoch.members;
}

RingConnections ElasticAllReduce::connect_ring(const Epoch& epoch, uint32_t ring) {
    const int n = static_cast<int>(epoch.members.size());
    const int position = epoch.position_of(node_);
    const Member& next = epoch.members[(position + 1) % n];
    const Member& previous = epoch.members[(position + n - 1) % n];
    pangea_hello self{};
    self.struct_size = sizeof self;
    self.node_id = static_cast<uint32_t>(node_);
    self.run_id = run_id_;
    self.channel = ring_channel(epoch.id, ring);
    const auto& vt = transport_.vtable<pangea_transport_vtable>();
    const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
    RingConnections connections;
    while (true) {  // the next member may still be finishing its own connect
        pangea_connection* handle = nullptr;
        pangea_hello peer{};
        const pangea_status status =
            vt.connect(transport_.handle(), next.address.c_str(), &self, 2000, &peer, &handle);
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
                                     " at " + next.address + ": " + transport_.describe_failure("connect", status) +
                                     " (not retried: this transport cannot)");
        if (std::chrono::steady_clock::now() > deadline)
            throw MeshError("node " + std::to_string(node_) + " could not connect to node " + std::to_string(next.node) +
                            " at " + next.address + " in " + epoch.describe() + ": " +
                            transport_.describe_failure("connect", status));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    connections.previous = acceptor_.take(previous.node, self.channel, options_.connect_timeout);
    return connections;
}

std::vector<int> ElasticAllReduce::leave_out_outliers(const Epoch& epoch, int position, std::span<float> data) {
    const int n = static_cast<int>(epoch.members.size());
    const std::vector<double> norms = gather_norms(*lanes_[0].next, *lanes_[0].previous, position, n, contribution_norm(data),
                                                   options_.ring.stall_timeout_ms);
    std::vector<int> left_out = outlier_positions(norms, options_.outlier_factor);
    for (const int p : left_out) {
        const int node = epoch.members[static_cast<size_t>(p)].node;
        log(PANGEA_LOG_WARN, "mesh", "node " + std::to_string(node_) + ": outer step " + std::to_string(epoch.step) +
                                         " leaves out node " + std::to_string(node) + "'s contribution: " +
                                         outlier_reason(norms, p, options_.outlier_factor) +
                                         (node == node_ ? " (this node's own)" : ""));
        if (p == position) std::fill(data.begin(), data.end(), 0.0f);  // it still relays the others'
    }
    if (static_cast<int>(left_out.size()) == n)
        throw ContributionCheckError(PANGEA_ERR_INVALID_DATA, "every member's contribution to outer step " +
                                                                  std::to_string(epoch.step) + " was left out");
    return left_out;
}

AllReduceResult ElasticAllReduce::average(std::span<float> data, const std::function<void(std::span<float>)>& contribution) {
    const int64_t step = committed_step_ + 1;
    AllReduceResult total;
    auto dropped = [&](Rejoin rejoin) {
        disconnect();
        total.status = PANGEA_ERR_ABORTED;
        total.error = rejoin.why;
        total.dropped = true;
        rejoin_ = std::move(rejoin);
        return total;
    };
    for (int attempt = 1;; ++attempt) {
        auto ready = membership_.ready(step);
        if (auto* rejoin = std::get_if<Rejoin>(&ready)) return dropped(std::move(*rejoin));
        const Epoch epoch = std::get<Epoch>(std::move(ready));
        last_ = epoch;
        const int n = static_cast<int>(epoch.members.size());
        AllReduceResult result;
        contribution(data);
        if (n > 1) {
            try {
                connect(epoch);
                const int position = epoch.position_of(node_);
                const std::vector<int> left_out = leave_out_outliers(epoch, position, data);
                std::vector<RingAllReduce> rings;
                rings.reserve(lanes_.size());
                for (size_t k = 0; k < lanes_.size(); ++k)
                    rings.emplace_back(position, n, *lanes_[k].next, *lanes_[k].previous, k ? more_codecs_[k - 1] : codec_,
                                       options_.ring);
                result = run_rings(rings, data, ReduceOp::kAverage, n - static_cast<int>(left_out.size()));
                for (const int p : left_out) result.excluded_nodes.push_back(epoch.members[static_cast<size_t>(p)].node);
            } catch (const MeshError& e) {
                result.status = PANGEA_ERR_IO;
                result.error = e.what();
            } catch (const ContributionCheckError& e) {
                result.status = e.status;
                result.error = e.what();
            }
        }
        total.seconds += result.seconds;
        total.bytes_sent += result.bytes_sent;
        total.bytes_received += result.bytes_received;
        total.excluded_nodes = result.excluded_nodes;
        const bool ok = result.status == PANGEA_OK;
        if (!ok) disconnect();
        std::string why_retried;
        auto end = membership_.done(epoch, ok ? "" : result.error, &why_retried);
        if (auto* rejoin = std::get_if<Rejoin>(&end)) return dropped(std::move(*rejoin));
        if (std::get<EpochEnd>(end) == EpochEnd::kCommitted) {
            committed_step_ = step;
            return total;
        }
        disconnect();  // the members change, or a link is broken: a fresh ring next time
        if (!ok) log(PANGEA_LOG_WARN, "mesh", "node " + std::to_string(node_) + ": all-reduce in " + epoch.describe() + " failed: " + result.error);
        if (attempt >= options_.max_attempts) {
            // A member whose ring broke because another failed says so, and why the other failed.
            const bool cause_elsewhere = why_retried.rfind("node " + std::to_string(node_) + " ", 0) != 0;
            std::string last = ok ? why_retried : result.error;
            if (!ok && cause_elsewhere && !why_retried.empty()) last += " (the epoch was retried: " + why_retried + ")";
            total.status = PANGEA_ERR_IO;
            total.error = "outer step " + std::to_string(step) + " failed in " + std::to_string(attempt) +
                          " epochs in a row; last: " + last;
            return total;
        }
    }
}

}  // namespace pangea
