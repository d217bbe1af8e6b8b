// The all-reduce of an elastic run: at each outer step the members agree on an epoch, form the
// ring of that epoch (kept while the members stay the same), average, and commit only if every
// member succeeded. A member lost midway makes every survivor abort, agree on the members
// without it, and average the same inputs again. Before averaging, the members compare the norms
// of their contributions and leave out a NaN/Inf or outsized one (collective/contribution_check.hpp).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "collective/link.hpp"
#include "collective/ring_allreduce.hpp"
#include "membership/membership.hpp"
#include "topology/peers.hpp"

namespace pangea {

struct ElasticOptions {
    RingOptions ring;
    std::chrono::milliseconds connect_timeout{10000};  // to reach a ring neighbour
    int max_attempts = 20;                             // of one outer step, before giving up
    std::string secret;                                // the run's (topology/auth.hpp); empty: none
    double outlier_factor = 10;                        // collective/contribution_check.hpp; 0: NaN/Inf only
    int rings = 1;  // rings at once, each over its own range and connections (collective/ring_allreduce.hpp)
};

class ElasticAllReduce {
public:
    // All references must outlive this object. `committed_step` is the number of outer steps
    // the run had committed when this node got its state. Rings after the first compress with
    // instances of their own (codec.another()).
    ElasticAllReduce(Membership& membership, const PluginInstance& transport, PeerAcceptor& acceptor,
                     const PluginInstance& codec, int node, uint64_t run_id, int64_t committed_step,
                     ElasticOptions options);

    // Averages this node's contribution over the members of the next outer step into `data`,
    // in place: `contribution` fills `data` before each attempt (the ring leaves partial sums
    // after a failure, and a committed epoch can still be retried when another member failed).
    // The average is in `data` once the epoch committed; members whose contribution was left out
    // count in result.excluded_nodes. A node dropped from the run gets result.dropped, and
    // rejoin() says where the run is; a step not completed in max_attempts epochs fails with
    // PANGEA_ERR_IO. Failed attempts' time and bytes are counted.
    AllReduceResult average(std::span<float> data, const std::function<void(std::span<float>)>& contribution);

    int64_t committed_step() const { return committed_step_; }
    // After live recovery: the run's step, and no ring kept from before (its peers moved on).
    void set_committed_step(int64_t step) {
        committed_step_ = step;
        disconnect();
    }
    const Epoch& last_epoch() const { return last_; }
    // After an average() that found this node dropped: where the run is, to recover from.
    const Rejoin& rejoin() const { return rejoin_; }

private:
    void connect(const Epoch& epoch);  // throws MeshError
    RingConnections connect_ring(const Epoch& epoch, uint32_t ring);
    void disconnect();
    void abort_links();
    // Gathers the members' contribution norms; zeroes this node's contribution if it is left
    // out; returns the ring positions left out. Throws ContributionCheckError.
    std::vector<int> leave_out_outliers(const Epoch& epoch, int position, std::span<float> data);

    Membership& membership_;
    const PluginInstance& transport_;
    PeerAcceptor& acceptor_;
    const PluginInstance& codec_;
    std::vector<PluginInstance> more_codecs_;  // one per ring after the first
    int node_;
    uint64_t run_id_;
    int64_t committed_step_;
    ElasticOptions options_;
    Epoch last_;
    Rejoin rejoin_;
    std::mutex links_mutex_;  // the membership's abort handler runs on another thread
    struct Lane {  // one ring's connections
        RingConnections connections;
        std::unique_ptr<Link> next, previous;
    };
    std::vector<Lane> lanes_;   // empty when not connected
    std::vector<Member> ring_;  // members the connections were made for
};

}  // namespace pangea
