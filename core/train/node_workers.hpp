// A node of several workers ([node] workers = W): the process started as the node (worker 0, the
// leader) starts W-1 more of itself, and all W share one replica of the model, sharded among
// them (ZeRO-3: model/sharded.hpp): each inner step splits the node's batch among them and sums
// their gradients (the learner, over the WorkerGroup), so the node computes the inner step a
// single worker would, on W times the cores and with 1/W of the state each. The outer state is
// sharded the same way: each worker keeps the synced copy and the outer optimizer's state of its
// shard and takes the outer step on it, and averages its shard over rings of its own with the
// workers of the other nodes that hold the same ranges ([mesh] rings = R, a multiple of W: worker
// k runs rings [k R/W, (k + 1) R/W), which lie in its shard, at its own address). The leader alone
// talks to the run's membership (and does recovery, checkpoints, metrics): it tells the others
// each epoch, sums their contributions' norms for the run's check, and reports their outcome; a
// state to take up or hand out is split or gathered by shard (the outer optimizer's through the
// plugin's range state, ABI 1.3), so what the run sees does not depend on W. A worker that dies
// fails the others' next collective (and its rings' neighbours), and the node leaves the run as
// one (it comes back by live recovery).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "common/process.hpp"
#include "diloco/outer_loop.hpp"
#include "train/mesh_session.hpp"
#include "workers/worker_group.hpp"

namespace pangea {

struct Manifest;
struct NodeOptions;
class PluginRegistry;
class Learner;

// The leader's side.
class NodeWorkers final : public RingWorkers {
public:
    // Starts workers 1..W-1 (this executable, `run` with the resolved manifest and --worker) and
    // meets them. Throws WorkerGroupError when they do not all come.
    NodeWorkers(const Manifest& manifest, const NodeOptions& options);
    ~NodeWorkers() override;  // stops the workers still running
    NodeWorkers(const NodeWorkers&) = delete;
    NodeWorkers& operator=(const NodeWorkers&) = delete;

    WorkerGroup& group() { return *group_; }
    // The leader's learner (made with group()) of the model's `parameters`, whose requests go to
    // the others from now on.
    void lead(Learner& learner, size_t parameters);

    // In a run of several nodes (RingWorkers): the others' listeners are where they reported
    // as they started; the leader's rings at `own`.
    int count() const override { return group_->size(); }
    std::vector<std::string> ring_addresses(const std::string& own) override;
    std::unique_ptr<NodeRings> rings(RingLanes& own) override;
    // The outer step begins: the others take theirs (each averages its shard beside the leader).
    void sync();
    // The node's whole outer state over the leader's `own` outer loop and the others': what live
    // recovery and checkpoints carry. Throws std::runtime_error when the outer optimizer cannot
    // split its state by range (plugin ABI 1.3), which W > 1 needs.
    std::unique_ptr<OuterState> outer_state(OuterLoop& own);

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
    class LeaderRings;
    std::unique_ptr<WorkerGroup> group_;
    size_t parameters_ = 0;  // the model's
    int ring_count_ = 1;     // the run's [mesh] rings
};

// A worker's side (`pangea run ... --worker K`): does what the leader says (train a round, take
// the outer step, take up or hand out its part of a state, serve a request of the learner's)
// until the leader says the run is over. Returns the exit code.
int run_node_worker(const Manifest& manifest, PluginRegistry& registry, const NodeOptions& options);

// The [node] workers setting checked against the rest, for worker `worker` of the node: the
// micro-batch splits evenly; with several nodes, [mesh] rings is a multiple of W; on GPUs, a
// build with NCCL and worker k on GPU k (the leader's device "cuda", the others' "cuda:k"); no
// overlap. Returns the workers; throws ManifestError.
int check_workers(const Manifest& manifest, int worker);

}  // namespace pangea
