// A node of several workers ([node] workers = W): the process started as the node (worker 0, the
// leader) starts W-1 more of itself, and all W share one replica of the model, sharded among
// them (ZeRO-3: model/sharded.hpp): each inner step splits the node's batch among them and sums
// their gradients (the learner, over the WorkerGroup), so the node computes the inner step a
// single worker would, on W times the cores and with 1/W of the state each. The leader alone
// talks to the run (outer steps, recovery, checkpoints, metrics): after each round it holds the
// whole model (gathered), and it scatters each new state to the others; a worker that dies fails
// the others' next collective, and the node leaves the run as one (it comes back by live
// recovery).
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
class Learner;

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
    // The leader's learner (made with group()), whose requests go to the others from now on.
    void lead(Learner& learner);

    // The state the node goes on from after `step` outer steps (at the start, a resume or a
    // recovery), in the learner's parameters (its inner optimizer's state went with its load):
    // every worker takes it up.
    void hand_over(int64_t step);
    // After outer step `step` committed: the new parameters, in the learner's.
    void synced(int64_t step);
    // The round of inner steps of outer step `outer`: the others train it beside the leader.
    void train(int64_t outer);
    // The run is over: the workers exit. Returns each worker's peak resident memory (bytes;
    // worker 0's so far), or nothing on GPUs.
    std::vector<uint64_t> done();

private:
    class WatchedGroup;
    bool on_gpus_;  // worker k on GPU k, summing over NCCL
    TemporaryDirectory rendezvous_;  // where the workers meet
    std::vector<ChildProcess> children_;
    std::unique_ptr<WorkerGroup> group_;
    Learner* learner_ = nullptr;
};

// A worker's side (`pangea run ... --worker K`): does what the leader says (take up a state or
// parameters, train a round, serve a request of the learner's) until the leader says the run is
// over. Returns the exit code.
int run_node_worker(const Manifest& manifest, PluginRegistry& registry, const NodeOptions& options);

// The [node] workers setting checked against the rest, for worker `worker` of the node: the
// micro-batch splits evenly; on GPUs, a build with NCCL and worker k on GPU k (the leader's
// device "cuda", the others' "cuda:k"); no overlap. Returns the workers; throws ManifestError.
int check_workers(const Manifest& manifest, int worker);

}  // namespace pangea
