// A node of several workers ([node] workers = W): the process started as the node (worker 0, the
// leader) starts W-1 more of itself, and all W share one replica of the model, sharded among
// them (ZeRO-3: model/sharded.hpp): each inner step splits the node's batch among them and sums
// their gradients (the learner, over the WorkerGroup), so the node computes the inner step a
// single worker would, on W times the cores and with 1/W of the state each. The outer state is
// sharded the same way: each worker keeps the synced copy and the outer optimizer's state of its
// shard and takes the outer step on it. The leader alone talks to the run (the all-reduce,
// recovery, checkpoints, metrics): it gathers the workers' pseudo-gradients for the all-reduce
// and hands each its part of the average; a state to take up or hand out is split or gathered by
// shard (the outer optimizer's through the plugin's range state, ABI 1.3), so what the run sees
// does not depend on W. A worker that dies fails the others' next collective, and the node leaves
// the run as one (it comes back by live recovery).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "common/files.hpp"
#include "common/process.hpp"
#include "diloco/outer_loop.hpp"
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

    // The leader's outer loop (of its shard) averages through this: it takes the others'
    // pseudo-gradients, averages all of them with `run_average` (the run's all-reduce) and hands
    // each worker its part. The others take their outer step with it. (outer_state(), made
    // before the first outer step, sizes the node's buffer.)
    AverageFn average(AverageFn run_average);
    // The node's whole outer state over the leader's `own` outer loop and the others': what live
    // recovery and checkpoints carry. Throws std::runtime_error when the outer optimizer cannot
    // split its state by range (plugin ABI 1.3), which W > 1 needs.
    std::unique_ptr<OuterState> outer_state(OuterLoop& own, size_t parameters);

    // The node goes on from after `step` outer steps (at the start, a resume or a recovery; the
    // state went to the others as the leader took it up): their data position.
    void hand_over(int64_t step);
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
    void announce(uint32_t kind, int64_t value = 0);  // a command to all the others (node_workers.cpp)
    void tell(int worker, uint32_t kind, int64_t value);  // ... to one of them
    class ShardedOuterState;
    std::unique_ptr<WorkerGroup> group_;
    std::vector<float> pseudo_gradient_;  // the node's, all of it, for the run's all-reduce
};

// A worker's side (`pangea run ... --worker K`): does what the leader says (train a round, take
// the outer step, take up or hand out its part of a state, serve a request of the learner's)
// until the leader says the run is over. Returns the exit code.
int run_node_worker(const Manifest& manifest, PluginRegistry& registry, const NodeOptions& options);

// The [node] workers setting checked against the rest, for worker `worker` of the node: the
// micro-batch splits evenly; on GPUs, a build with NCCL and worker k on GPU k (the leader's
// device "cuda", the others' "cuda:k"); no overlap. Returns the workers; throws ManifestError.
int check_workers(const Manifest& manifest, int worker);

}  // namespace pangea
