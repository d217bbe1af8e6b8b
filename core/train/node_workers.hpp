// A node of several workers ([node] workers = W): the process started as the node (worker 0, the
// leader) starts W-1 more of itself, and all W share one replica of the model: each inner step
// splits the node's batch among them and sums their gradients (the learner, over the
// WorkerGroup), so the node computes the inner step a single worker would, on W times the cores.
// The leader alone talks to the run (outer steps, recovery, checkpoints, metrics) and hands each
// new state to the others; a worker that dies fails the others' next collective, and the node
// leaves the run as one (it comes back by live recovery).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "common/files.hpp"
#include "common/process.hpp"
#include "workers/worker_group.hpp"

namespace pangea {

struct Manifest;
struct NodeOptions;
class PluginRegistry;
class ModelParameters;
class TransferableState;

// The leader's side.
class NodeWorkers {
public:
    // Starts workers 1..W-1 (this executable, `run` with the resolved manifest and --worker) and
    // meets them. Throws WorkerGroupError when they do not all come.
    NodeWorkers(const Manifest& manifest, const NodeOptions& options);
    ~NodeWorkers();  // stops the workers still running
    NodeWorkers(const NodeWorkers&) = delete;
    NodeWorkers& operator=(const NodeWorkers&) = delete;

    WorkerGroup& group() { return *group_; }

    // The state the node goes on from after `step` outer steps (at the start, a resume or a
    // recovery): every worker takes it up.
    void hand_over(const TransferableState& state, int64_t step);
    // After outer step `step` committed: the new parameters.
    void synced(const ModelParameters& params, int64_t step);
    // The run is over: the workers exit. Returns each worker's peak resident memory (bytes;
    // worker 0's so far), or nothing on GPUs.
    std::vector<uint64_t> done();

private:
    class WatchedGroup;
    bool on_gpus_;  // worker k on GPU k, summing over NCCL
    TemporaryDirectory rendezvous_;  // where the workers meet
    std::vector<ChildProcess> children_;
    std::unique_ptr<WorkerGroup> group_;
};

// A worker's side (`pangea run ... --worker K`): trains its share of each inner step and takes
// up what the leader hands over, until the leader says the run is over. Returns the exit code.
int run_node_worker(const Manifest& manifest, PluginRegistry& registry, const NodeOptions& options);

// The [node] workers setting checked against the rest, for worker `worker` of the node: the
// micro-batch splits evenly; on GPUs, a build with NCCL and worker k on GPU k (the leader's
// device "cuda", the others' "cuda:k"); no overlap. Returns the workers; throws ManifestError.
int check_workers(const Manifest& manifest, int worker);

}  // namespace pangea
