// One process's share of a node's rings in an elastic run ([mesh] rings = R): the connections of
// rings [first, first + count) for each epoch, and one attempt at averaging over them. A node of
// one process holds all R (LocalRings in collective/elastic_allreduce.hpp). A node of W workers
// gives worker k rings [k R/W, (k + 1) R/W), whose ranges lie in its shard of the buffer
// (common/shard_range.hpp): each worker connects to the same rings of the other nodes' workers,
// at their Member::ring_addresses, and the node's leader decides for all of them
// (train/node_workers.cpp).
//
// An attempt is three calls, so that the workers of a node can agree between them: connect(),
// then decide() on the process holding ring 0 (the members compare the norms of their
// contributions over it: collective/contribution_check.hpp), then run() with the decision.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "collective/link.hpp"
#include "collective/ring_allreduce.hpp"
#include "membership/membership.hpp"
#include "topology/peers.hpp"

namespace pangea {

struct LaneOptions {
    RingOptions ring;
    std::chrono::milliseconds connect_timeout{10000};  // to reach a ring neighbour
    std::string secret;                                // the run's (topology/auth.hpp); empty: none
    double outlier_factor = 10;                        // collective/contribution_check.hpp; 0: NaN/Inf only
    int rings = 1;  // R, the run's: the buffer is cut into R ranges, each reduced around a ring of its own
    int first = 0;  // this process's rings: [first, first + count)
    int count = 1;
};

// What the node decided before its rings run: run them, leaving out the contributions of the
// members at these ring positions (they send zeros), or give the attempt up.
struct LaneDecision {
    pangea_status status = PANGEA_OK;
    std::string error;      // why the attempt is given up
    std::vector<int> left_out;
};

class RingLanes {
public:
    // All references must outlive this object. Each ring after the first compresses with an
    // instance of its own (codec.another()).
    RingLanes(const PluginInstance& transport, PeerAcceptor& acceptor, const PluginInstance& codec, int node,
              uint64_t run_id, LaneOptions options);
    ~RingLanes();

    // Connects this process's rings for `epoch` (kept while its members stay the same): "" when
    // connected, else why not. Throws std::runtime_error when this transport cannot connect at
    // all (retrying would fail the same way).
    std::string connect(const Epoch& epoch);
    // Over ring 0 (this process holds it, connected): gathers the members' norms (`own`: this
    // node's whole contribution's) and decides whose contributions are left out.
    LaneDecision decide(const Epoch& epoch, double own);
    // Averages `part`, values [offset, offset + part.size()) of the node's buffer of `total`, over
    // this process's rings as `decision` says (each ring its range of the run's cut, which must
    // lie in `part`); `residual`, empty or as long as `part`, gets what compression lost of it
    // (RingAllReduce::run()). A failed or given-up attempt leaves no connections (the neighbours'
    // rings fail at once instead of waiting on them).
    AllReduceResult run(const Epoch& epoch, const LaneDecision& decision, std::span<float> part,
                        std::span<float> residual, size_t offset, size_t total);

    void disconnect();
    // From any thread (the membership's, when the epoch is given up): fails what runs on the
    // links, and so the neighbours' rings in turn.
    void abort();

    const LaneOptions& options() const { return options_; }

private:
    RingConnections connect_ring(const Epoch& epoch, uint32_t ring);

    const PluginInstance& transport_;
    PeerAcceptor& acceptor_;
    const PluginInstance& codec_;
    std::vector<PluginInstance> more_codecs_;  // one per ring after the first
    int node_;
    uint64_t run_id_;
    LaneOptions options_;
    std::mutex links_mutex_;  // abort() comes from another thread
    struct Lane {  // one ring's connections
        RingConnections connections;
        std::unique_ptr<Link> next, previous;
    };
    std::vector<Lane> lanes_;   // empty when not connected
    std::vector<Member> ring_;  // members the connections were made for
};

}  // namespace pangea
