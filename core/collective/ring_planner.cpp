#include "collective/ring_planner.hpp"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "collective/link.hpp"
#include "common/log.hpp"
#include "topology/auth.hpp"
#include "topology/ring_order.hpp"

namespace pangea {
namespace {

std::string host_of(const std::string& address) {  // "host:port", "[v6]:port"
    const size_t colon = address.rfind(':');
    return colon == std::string::npos ? address : address.substr(0, colon);
}

std::string mbit(double bytes_per_second) { return std::to_string(static_cast<long long>(bytes_per_second * 8 / 1e6)); }

std::string joined(const std::vector<int>& nodes) {
    std::string out;
    for (const int node : nodes) out += (out.empty() ? "" : ", ") + std::to_string(node);
    return out;
}

}  // namespace

RingPlanner::RingPlanner(const PluginInstance& transport, PeerAcceptor& acceptor, int node, uint64_t run_id,
                         RingPlanOptions options)
    : transport_(transport), acceptor_(acceptor), node_(node), run_id_(run_id), options_(std::move(options)) {}

Epoch RingPlanner::order(const Epoch& epoch) {
    std::vector<int> members;
    for (const Member& member : epoch.members) members.push_back(member.node);
    if (members != members_) {
        members_.clear();  // until the order is known: a failed probe leaves none
        const bool one_host = std::all_of(epoch.members.begin(), epoch.members.end(), [&](const Member& member) {
            return host_of(member.address) == host_of(epoch.members.front().address);
        });
        if (members.size() < 4) {
            order_ = members;
            note_ = "node-id order (every ring of " + std::to_string(members.size()) + " is the same)";
        } else if (one_host) {
            order_ = members;
            note_ = "node-id order (every member listens on " + host_of(epoch.members.front().address) +
                    ": no links to measure)";
        } else {
            order_ = probe(epoch);
        }
        members_ = members;
        if (members.size() >= 4)  // (smaller rings: nothing to choose)
            log(PANGEA_LOG_INFO, "mesh", "node " + std::to_string(node_) + ": the ring of " + epoch.describe() +
                                             " runs in the order " + joined(order_) + " (" + note_ + ")");
    }
    Epoch ordered = epoch;
    ordered.members.clear();
    for (const int node : order_)
        ordered.members.push_back(epoch.members[static_cast<size_t>(epoch.position_of(node))]);
    return ordered;
}

std::vector<int> RingPlanner::probe(const Epoch& epoch) {
    const int n = static_cast<int>(epoch.members.size());
    const int rank = epoch.position_of(node_);
    pangea_hello self{};
    self.struct_size = sizeof self;
    self.node_id = static_cast<uint32_t>(node_);
    self.run_id = run_id_;
    self.channel = probe_channel(epoch.id);
    const auto& vt = transport_.vtable<pangea_transport_vtable>();
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + options_.connect_timeout;
    auto describe = [&](int other) {
        return "node " + std::to_string(epoch.members[static_cast<size_t>(other)].node) + " at " +
               epoch.members[static_cast<size_t>(other)].address;
    };

    // A connection to every other member (this node sends its probes on it), and one from each.
    std::vector<OwnedConnection> outgoing(n), incoming(n);
    for (int other = 0; other < n; ++other) {
        if (other == rank) continue;
        while (true) {
            pangea_connection* handle = nullptr;
            pangea_hello peer{};
            const pangea_status status = vt.connect(transport_.handle(), epoch.members[static_cast<size_t>(other)].address.c_str(),
                                                    &self, 2000, &peer, &handle);
            if (status == PANGEA_OK) {
                outgoing[other] = OwnedConnection(&transport_, handle);
                authenticate_link(Link(transport_, handle), options_.secret, /*initiator=*/true);
                break;
            }
            if (std::chrono::steady_clock::now() > deadline)
                throw MeshError("node " + std::to_string(node_) + " could not reach " + describe(other) +
                                " for a bandwidth probe in " + epoch.describe() + ": " +
                                transport_.describe_failure("connect", status));
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    for (int other = 0; other < n; ++other) {
        if (other == rank) continue;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        incoming[other] = acceptor_.take(epoch.members[static_cast<size_t>(other)].node, self.channel,
                                         std::max(left, std::chrono::milliseconds(1)));
    }

    std::vector<pangea_connection*> to(n, nullptr), from(n, nullptr);
    for (int other = 0; other < n; ++other) {
        to[other] = outgoing[other].handle();
        from[other] = incoming[other].handle();
    }
    BandwidthMatrix bandwidth;
    {
        // abort() closes what is being probed: the connections are listed for it meanwhile.
        std::lock_guard lock(probing_mutex_);
        probing_ = to;
        probing_.insert(probing_.end(), from.begin(), from.end());
    }
    struct Unlist {  // however the probe ends
        RingPlanner& planner;
        ~Unlist() {
            std::lock_guard lock(planner.probing_mutex_);
            planner.probing_.clear();
        }
    } unlist{*this};
    bandwidth = probe_bandwidth(transport_, to, from, rank, options_.probe_bytes, options_.probe_timeout);

    std::vector<int> by_node(n);
    for (int i = 0; i < n; ++i) by_node[i] = i;
    const std::vector<int> best = best_ring_order(bandwidth);
    const RingScore best_score = ring_score(bandwidth, best), node_score = ring_score(bandwidth, by_node);
    // Node-id order stays unless the best order is clearly better: its slowest hop, or else its
    // hops' time together (fewer slow hops: fewer flows sharing a slow link, which each probe
    // alone cannot see), by min_gain.
    const bool reorder = best_score.slowest >= options_.min_gain * node_score.slowest ||
                         best_score.seconds * options_.min_gain <= node_score.seconds;
    const std::vector<int>& chosen = reorder ? best : by_node;
    auto describe_score = [n](const RingScore& score) {
        return "slowest hop " + mbit(score.slowest) + " Mbit/s, harmonic mean " + mbit(n / score.seconds);
    };
    note_ = reorder ? "measured: " + describe_score(best_score) + ", against " + describe_score(node_score) +
                          " in node-id order"
                    : "node-id order, measured: " + describe_score(node_score) + "; the best order's: " +
                          describe_score(best_score);
    char took[32];
    std::snprintf(took, sizeof took, "; probes took %.1f s",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    note_ += took;
    std::vector<int> nodes;
    for (const int position : chosen) nodes.push_back(epoch.members[static_cast<size_t>(position)].node);
    return nodes;
}

void RingPlanner::forget() { members_.clear(); }

void RingPlanner::abort() {
    std::lock_guard lock(probing_mutex_);
    for (pangea_connection* connection : probing_)
        if (connection != nullptr) Link(transport_, connection).abort();
}

}  // namespace pangea
