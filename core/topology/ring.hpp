// A formed ring: every node's address known, the order chosen (by rank, or by measured
// bandwidth so that the slowest hop is as fast as it can be), and this node connected to its
// neighbours in that order. Used by `pangea run` and `pangea bench allreduce`.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "topology/ring_order.hpp"
#include "topology/ring_setup.hpp"

namespace pangea {

struct Ring {
    std::vector<int> order;  // ranks in ring order, starting with rank 0
    int position = 0;        // this rank's index in `order`
    std::string order_note;  // "by rank", or "measured; slowest hop 180 Mbit/s, against 90 by rank"
    RingConnections connections;
};

// `addresses[r]` is rank r's listening address. `ring_order` is "rank" or "measured".
// Throws MeshError naming the rank that could not be reached.
Ring form_ring(const PluginInstance& transport, const OwnedListener& listener, int rank,
               const std::vector<std::string>& addresses, uint64_t run_id, const std::string& ring_order,
               size_t probe_bytes, std::chrono::milliseconds timeout);

}  // namespace pangea
