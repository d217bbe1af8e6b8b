#include "topology/ring_order.hpp"

#include <algorithm>
#include <future>
#include <map>
#include <numeric>
#include <thread>

#include "collective/link.hpp"

namespace pangea {
namespace {

struct Score {
    double slowest;  // bytes per second
    double seconds;  // per byte, over all hops: robust to a hop measured absurdly fast
    bool operator>(const Score& other) const {
        if (slowest != other.slowest) return slowest > other.slowest;
        return seconds < other.seconds;
    }
};

Score score(const BandwidthMatrix& bandwidth, const std::vector<int>& order) {
    Score s{1e300, 0};
    for (size_t i = 0; i < order.size(); ++i) {
        const double hop = bandwidth[order[i]][order[(i + 1) % order.size()]];
        s.slowest = std::min(s.slowest, hop);
        s.seconds += 1 / std::max(hop, 1e-9);
    }
    return s;
}

const pangea_transport_vtable& vt(const PluginInstance& transport) { return transport.vtable<pangea_transport_vtable>(); }

}  // namespace

double slowest_hop(const BandwidthMatrix& bandwidth, const std::vector<int>& order) {
    return score(bandwidth, order).slowest;
}

RingScore ring_score(const BandwidthMatrix& bandwidth, const std::vector<int>& order) {
    const Score s = score(bandwidth, order);
    return {s.slowest, s.seconds};
}

std::vector<int> best_ring_order(const BandwidthMatrix& bandwidth) {
    const int n = static_cast<int>(bandwidth.size());
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    if (n <= 3) return order;  // every ring of three is the same up to direction
    std::vector<int> best = order;
    Score best_score = score(bandwidth, order);
    if (n <= 10) {
        while (std::next_permutation(order.begin() + 1, order.end())) {
            const Score s = score(bandwidth, order);
            if (s > best_score) {
                best = order;
                best_score = s;
            }
        }
        return best;
    }
    // Greedy: from rank 0, always go to the fastest unvisited rank; then 2-opt while it helps.
    std::vector<bool> used(n, false);
    best = {0};
    used[0] = true;
    for (int step = 1; step < n; ++step) {
        int pick = -1;
        for (int j = 0; j < n; ++j)
            if (!used[j] && (pick < 0 || bandwidth[best.back()][j] > bandwidth[best.back()][pick])) pick = j;
        best.push_back(pick);
        used[pick] = true;
    }
    best_score = score(bandwidth, best);
    for (bool improved = true; improved;) {
        improved = false;
        for (int i = 1; i < n - 1; ++i)
            for (int j = i + 1; j < n; ++j) {
                std::vector<int> candidate = best;
                std::reverse(candidate.begin() + i, candidate.begin() + j + 1);
                const Score s = score(bandwidth, candidate);
                if (s > best_score) {
                    best = std::move(candidate);
                    best_score = s;
                    improved = true;
                }
            }
    }
    return best;
}

BandwidthMatrix measure_bandwidth(const PluginInstance& transport, const OwnedListener& listener, int rank,
                                  const std::vector<std::string>& addresses, uint64_t run_id, size_t probe_bytes,
                                  std::chrono::milliseconds timeout) {
    const int n = static_cast<int>(addresses.size());
    pangea_hello self{};
    self.struct_size = sizeof self;
    self.node_id = static_cast<uint32_t>(rank);
    self.run_id = run_id;
    self.channel = kProbeChannel;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto left_ms = [&] {
        return static_cast<int>(std::max<long long>(
            1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
    };

    // A connection to every other rank (to send on) and one from every other rank (to receive on).
    std::map<int, OwnedConnection> incoming, outgoing;
    auto accepting = std::async(std::launch::async, [&] {
        while (static_cast<int>(incoming.size()) < n - 1) {
            pangea_connection* handle = nullptr;
            pangea_hello peer{};
            const pangea_status status = vt(transport).accept(transport.handle(), listener.handle(), &self, left_ms(), &peer, &handle);
            if (status != PANGEA_OK)
                throw MeshError("rank " + std::to_string(rank) + " waited for bandwidth probes: " +
                                transport.describe_failure("accept", status));
            OwnedConnection connection(&transport, handle);
            if (peer.channel == kProbeChannel && static_cast<int>(peer.node_id) < n && static_cast<int>(peer.node_id) != rank)
                incoming[static_cast<int>(peer.node_id)] = std::move(connection);
        }
    });
    for (int other = 0; other < n; ++other) {
        if (other == rank) continue;
        while (true) {
            pangea_connection* handle = nullptr;
            pangea_hello peer{};
            const pangea_status status =
                vt(transport).connect(transport.handle(), addresses[other].c_str(), &self, left_ms(), &peer, &handle);
            if (status == PANGEA_OK) {
                outgoing[other] = OwnedConnection(&transport, handle);
                break;
            }
            if (std::chrono::steady_clock::now() > deadline)
                throw MeshError("rank " + std::to_string(rank) + " could not reach rank " + std::to_string(other) +
                                " for a bandwidth probe: " + transport.describe_failure("connect", status));
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    accepting.get();

    std::vector<pangea_connection*> to(n, nullptr), from(n, nullptr);
    for (auto& [other, connection] : outgoing) to[other] = connection.handle();
    for (auto& [other, connection] : incoming) from[other] = connection.handle();
    return probe_bandwidth(transport, to, from, rank, probe_bytes, timeout);
}

BandwidthMatrix probe_bandwidth(const PluginInstance& transport, const std::vector<pangea_connection*>& to,
                                const std::vector<pangea_connection*>& from, int rank, size_t probe_bytes,
                                std::chrono::milliseconds timeout) {
    const int n = static_cast<int>(to.size());
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // A failure, or a wait past the deadline, fails every connection first, so that no request
    // is left pending on a peer that will never answer.
    auto complete = [&](Request& request, const char* what) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        const pangea_status status = request.wait(static_cast<int>(std::max<long long>(1, left.count())));
        if (status == PANGEA_OK) return;
        const std::string error = request.error();
        for (int other = 0; other < n; ++other)
            if (other != rank) {
                Link(transport, to[other]).abort();
                Link(transport, from[other]).abort();
            }
        request.wait(-1);
        throw MeshError("rank " + std::to_string(rank) + ": bandwidth probe " + what +
                        (status == PANGEA_ERR_TIMEOUT ? " took longer than " + std::to_string(timeout.count()) + " ms"
                                                      : " failed with " + std::string(status_name(status)) + ": " + error));
    };

    // Rounds: send to rank + k, receive from rank - k, timing the receive.
    std::vector<double> measured(n, 0.0);  // measured[from]: bytes/s from rank `from` to this rank
    std::vector<uint8_t> probe_out(probe_bytes, 0x5a), probe_in(probe_bytes);
    uint64_t token_out = 0, token_in = 0;
    pangea_status status;
    for (int k = 1; k < n; ++k) {
        const int next = (rank + k) % n, previous = (rank - k + n) % n;
        const Link send_link(transport, to[next]), receive_link(transport, from[previous]);
        Request token_received = receive_link.receive(&token_in, sizeof token_in, &status);
        Request probe_received = receive_link.receive(probe_in.data(), probe_in.size(), &status);
        Request token_sent = send_link.send(&token_out, sizeof token_out, &status);
        Request probe_sent = send_link.send(probe_out.data(), probe_out.size(), &status);
        complete(token_received, "token");
        const auto start = std::chrono::steady_clock::now();
        complete(probe_received, "receive");
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        measured[previous] = static_cast<double>(probe_bytes) / std::max(seconds, 1e-9);
        complete(token_sent, "token send");
        complete(probe_sent, "send");
    }

    // Everyone tells everyone what it measured.
    BandwidthMatrix matrix(n, std::vector<double>(n, 0.0));
    for (int source = 0; source < n; ++source) matrix[source][rank] = measured[source];
    std::vector<std::vector<double>> columns(n, std::vector<double>(n));
    std::vector<Request> requests;
    for (int other = 0; other < n; ++other) {
        if (other == rank) continue;
        requests.push_back(Link(transport, from[other]).receive(columns[other].data(), n * sizeof(double), &status));
        requests.push_back(Link(transport, to[other]).send(measured.data(), n * sizeof(double), &status));
    }
    for (auto& request : requests) complete(request, "exchange");
    for (int other = 0; other < n; ++other)
        if (other != rank)
            for (int source = 0; source < n; ++source) matrix[source][other] = columns[other][source];
    return matrix;
}

}  // namespace pangea
