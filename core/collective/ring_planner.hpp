// The order of an elastic run's ring ([mesh] ring_order = "measured"): a ring all-reduce runs at
// the pace of its slowest hop, so the members of each new member set probe the bandwidth between
// every pair of them (topology/ring_order.hpp: bounded, probe_bytes per pair and direction) and
// take the order whose slowest hop is fastest. Every member ends with the same measurements, so
// with the same order: parameters stay bit-identical.
//
// Which epochs probe must be the same on every member: a member set is probed in the first epoch
// that has it after any member's last commit with another set, a failure or a recovery (forget()
// is called on each of those on every member: an epoch that fails is retried on all of them).
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "membership/membership.hpp"
#include "topology/peers.hpp"

namespace pangea {

struct RingPlanOptions {
    size_t probe_bytes = 4 << 20;
    std::chrono::milliseconds connect_timeout{10000};  // to reach every other member
    std::chrono::milliseconds probe_timeout{60000};    // for the probes, once connected
    std::string secret;                        // the run's (topology/auth.hpp); empty: none
    // The measured order replaces node-id order only when its slowest hop is this much faster:
    // links that measure about the same keep the order (and the sums) of the run before.
    double min_gain = 1.5;  // (probes on a busy machine vary by a third)
};

class RingPlanner {
public:
    // All references must outlive this object.
    RingPlanner(const PluginInstance& transport, PeerAcceptor& acceptor, int node, uint64_t run_id,
                RingPlanOptions options);

    // `epoch` (members in node-id order, as the coordinator gives them) with its members in ring
    // order. Probes when its member set is new (all members do, on their connections of channel
    // probe_channel(epoch.id)); members that all listen on one host, or fewer than four members
    // (every ring of three is the same), keep node-id order. Throws MeshError when a probe
    // fails: a member died or stalled.
    Epoch order(const Epoch& epoch);

    // The next epoch probes whatever its members (after a failed or retried epoch, a recovery).
    void forget();
    // From any thread: fails a probe under way.
    void abort();

    // How the last order came about: "node-id order (one host)", "measured: slowest hop ...".
    const std::string& note() const { return note_; }

private:
    std::vector<int> probe(const Epoch& epoch);  // the order, as node ids

    const PluginInstance& transport_;
    PeerAcceptor& acceptor_;
    int node_;
    uint64_t run_id_;
    RingPlanOptions options_;
    std::vector<int> members_;  // node ids of the set `order_` is for (empty: none yet)
    std::vector<int> order_;
    std::string note_;
    std::mutex probing_mutex_;  // abort() comes from another thread
    std::vector<pangea_connection*> probing_;
};

}  // namespace pangea
