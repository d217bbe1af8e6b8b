#include "topology/ring.hpp"

#include <algorithm>
#include <numeric>

namespace pangea {

Ring form_ring(const PluginInstance& transport, const OwnedListener& listener, int rank,
               const std::vector<std::string>& addresses, uint64_t run_id, const std::string& ring_order,
               size_t probe_bytes, std::chrono::milliseconds timeout) {
    const int world = static_cast<int>(addresses.size());
    Ring ring;
    ring.order.resize(world);
    std::iota(ring.order.begin(), ring.order.end(), 0);
    ring.order_note = "by rank";
    if (ring_order == "measured" && world > 2) {
        const BandwidthMatrix bandwidth =
            measure_bandwidth(transport, listener, rank, addresses, run_id, probe_bytes, timeout);
        const std::vector<int> by_rank = ring.order;
        ring.order = best_ring_order(bandwidth);
        ring.order_note = "measured; slowest hop " + std::to_string(int(slowest_hop(bandwidth, ring.order) * 8 / 1e6)) +
                          " Mbit/s, against " + std::to_string(int(slowest_hop(bandwidth, by_rank) * 8 / 1e6)) +
                          " by rank";
    }
    ring.position = static_cast<int>(std::find(ring.order.begin(), ring.order.end(), rank) - ring.order.begin());
    std::vector<std::string> in_order;
    for (int r : ring.order) in_order.push_back(addresses[r]);
    ring.connections = connect_ring(transport, listener, ring.position, in_order, run_id, timeout);
    return ring;
}

}  // namespace pangea
