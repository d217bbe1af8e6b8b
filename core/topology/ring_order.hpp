// Choosing the ring order from measured bandwidth, as prime and PCCL do: a ring all-reduce runs
// at the pace of its slowest hop, so the best ring is the one whose slowest hop is fastest.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "topology/ring_setup.hpp"

namespace pangea {

// bandwidth[i][j]: bytes per second from rank i to rank j (the diagonal is ignored).
using BandwidthMatrix = std::vector<std::vector<double>>;

// The ring (a permutation of the ranks that starts with rank 0) that maximizes its slowest hop,
// then minimizes its hops' time per byte added up (fewer slow hops means less sharing of slow
// shared links), then the lexicographically smallest. Exhaustive up to 10 ranks; beyond that a greedy tour improved by
// 2-opt. Deterministic: every rank computes the same order from the same matrix.
std::vector<int> best_ring_order(const BandwidthMatrix& bandwidth);

// The slowest hop of a ring order, in bytes per second.
double slowest_hop(const BandwidthMatrix& bandwidth, const std::vector<int>& order);

// What best_ring_order() ranks rings by: the slowest hop (bytes per second, the higher the
// better), then the hops' time per byte added up (the lower the better).
struct RingScore {
    double slowest = 0;
    double seconds = 0;
};
RingScore ring_score(const BandwidthMatrix& bandwidth, const std::vector<int>& order);

constexpr uint32_t kProbeChannel = 2;

// Measures the matrix with short probes. In round k (1 .. n-1) every rank sends `probe_bytes`
// to rank + k and receives from rank - k, so each node's link carries one probe each way at a
// time; the receiver times the probe. Then every rank sends its measurements to all others, so
// all end with the same matrix. Uses its own connections (channel kProbeChannel), closed after.
BandwidthMatrix measure_bandwidth(const PluginInstance& transport, const OwnedListener& listener, int rank,
                                  const std::vector<std::string>& addresses, uint64_t run_id, size_t probe_bytes,
                                  std::chrono::milliseconds timeout);

// The probe rounds and the exchange of measure_bandwidth() over connections already made:
// `to[r]` sends to rank r, `from[r]` receives from it (both unused at `rank`); every rank of
// `to.size()` must call it. A wait past `timeout` (from the call) fails every connection
// (Link::abort()) and throws MeshError, as does a failed send or receive.
BandwidthMatrix probe_bandwidth(const PluginInstance& transport, const std::vector<pangea_connection*>& to,
                                const std::vector<pangea_connection*>& from, int rank, size_t probe_bytes,
                                std::chrono::milliseconds timeout);

}  // namespace pangea
