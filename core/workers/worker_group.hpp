// The workers of one node ([node] workers = W local processes) and the collectives they run among
// themselves. Every worker calls the same collectives in the same order. The node is the unit of
// membership: a worker that dies or stalls past the timeout makes the others' calls throw
// WorkerGroupError, and the node leaves the run (it comes back by live recovery).
//
// One small interface, two implementations: Gloo over loopback for host buffers (gloo_group.cpp),
// NCCL for buffers on the GPUs (nccl_group.cpp, where the build found NCCL); the same callers.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include "common/shard_range.hpp"

namespace pangea {

class WorkerGroupError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class WorkerGroup {
public:
    virtual ~WorkerGroup() = default;
    int rank() const { return rank_; }  // 0: the node's leader, which talks to the run
    int size() const { return size_; }

    // Sums `data` over the workers, in place, on every worker. The result is the same bits on
    // every worker (one reduction order for all). `data` is where the group works: host memory
    // for Gloo, this worker's GPU for NCCL.
    virtual void all_reduce_sum(std::span<float> data) = 0;

    // Sharded data (ZeRO): `data` is split into parts back to back in worker order, worker k's
    // `counts[k]` values long (counts sum to data.size(); a part may be empty); like the sum,
    // where the group works.
    // all_gather: every worker's part of `data` is its input; afterwards `data` holds all of them.
    virtual void all_gather(std::span<float> data, std::span<const size_t> counts) = 0;
    // reduce_scatter_sum: `data` is every worker's input; afterwards this worker's part holds the
    // sum of that part over the workers (the rest of `data` is undefined).
    virtual void reduce_scatter_sum(std::span<float> data, std::span<const size_t> counts) = 0;

    // Copies `root`'s `data` (host memory) into every other worker's (of the same size).
    // `timeout` bounds the wait for the root (a worker that died ends it at once, whatever the
    // timeout).
    virtual void broadcast(std::span<uint8_t> data, int root, std::chrono::milliseconds timeout) = 0;
    void broadcast(std::span<uint8_t> data, int root) { broadcast(data, root, timeout_); }
    // Point to point, host memory: `data` to worker `to`, which receives it from this one (the
    // same size) in the order sent. A send completes once the receiver takes it: `timeout`
    // bounds the wait for the receiver on a send and for the sender on a receive (a worker that
    // died ends either at once).
    virtual void send(std::span<const uint8_t> data, int to, std::chrono::milliseconds timeout) = 0;
    void send(std::span<const uint8_t> data, int to) { send(data, to, timeout_); }
    virtual void receive(std::span<uint8_t> data, int from, std::chrono::milliseconds timeout) = 0;
    void receive(std::span<uint8_t> data, int from) { receive(data, from, timeout_); }

protected:
    WorkerGroup(int rank, int size, std::chrono::milliseconds timeout) : rank_(rank), size_(size), timeout_(timeout) {}
    std::chrono::milliseconds timeout() const { return timeout_; }

private:
    int rank_, size_;
    std::chrono::milliseconds timeout_;
};

// Whether this build can run a node's workers on GPUs (it found NCCL).
constexpr bool kWorkersOnGpus = PANGEA_WITH_NCCL;

// Joins the group of `size` workers meeting in `rendezvous` (a directory only they use, empty at
// first) as worker `rank`: over NCCL `on_gpus` (worker k on GPU k; kWorkersOnGpus), over Gloo's
// TCP transport on loopback otherwise. Throws WorkerGroupError naming the workers that did not
// come within `timeout`, which also bounds every collective.
std::unique_ptr<WorkerGroup> join_worker_group(const std::filesystem::path& rendezvous, int rank, int size,
                                               std::chrono::milliseconds timeout, bool on_gpus = false);

// The two, as join_worker_group picks them.
std::unique_ptr<WorkerGroup> join_gloo_group(const std::filesystem::path& rendezvous, int rank, int size,
                                             std::chrono::milliseconds timeout);
std::unique_ptr<WorkerGroup> join_nccl_group(const std::filesystem::path& rendezvous, int rank, int size,
                                             std::chrono::milliseconds timeout);

}  // namespace pangea
