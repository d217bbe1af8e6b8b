// A node's place in a run of several nodes, for the length of the run: the listener its peers
// connect to, the membership backend (the coordinator, or etcd), the elastic all-reduce of each
// outer step, and the state server that hands this node's state to joiners.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "collective/elastic_allreduce.hpp"
#include "diloco/outer_loop.hpp"
#include "membership/coordinator_client.hpp"
#include "membership/etcd_backend.hpp"
#include "recovery/state_transfer.hpp"
#include "topology/peers.hpp"

namespace pangea {

struct Manifest;
struct NodeOptions;

// What a node of several workers ([node] workers) gives its mesh session: the workers run the
// node's rings (train/node_workers.hpp implements it).
class RingWorkers {
public:
    virtual ~RingWorkers() = default;
    virtual int count() const = 0;  // W, the leader included
    // Where each of the run's rings reaches the node, the leader's at `own` (called once).
    virtual std::vector<std::string> ring_addresses(const std::string& own) = 0;
    // The node's rings in an epoch: the leader's `own` share, and the others' through them.
    virtual std::unique_ptr<NodeRings> rings(RingLanes& own) = 0;
};

// How worker `worker` of a node of `workers` runs its share of the rings (ring_lanes.hpp).
LaneOptions lane_options(const Manifest& manifest, int worker, int workers);
// Where worker `worker` listens for its rings: [mesh] address, its port + worker (port 0: any).
std::string worker_address(const Manifest& manifest, int worker);

class MeshSession {
public:
    // Listens, registers with the membership backend ([mesh] backend) and waits for the answer.
    // `resumed_step` tells the run which outer step a node resumed from a checkpoint holds. With
    // `workers`, they run the rings (the leader, this process, its share). All references must
    // outlive this object. Throws std::runtime_error / MeshError saying what in [mesh] is missing
    // or who could not be reached.
    MeshSession(const Manifest& manifest, const PluginInstance& transport, const PluginInstance& codec,
                const NodeOptions& options, std::optional<int64_t> resumed_step, RingWorkers* workers = nullptr);
    ~MeshSession();
    MeshSession(const MeshSession&) = delete;
    MeshSession& operator=(const MeshSession&) = delete;

    // Where the run was when this node joined: a member from step joined().step on, or
    // (Role::kRecover) a late joiner that must take up the state of joined().sources first.
    const JoinResult& joined() const { return joined_; }
    // [mesh] min_members: below it the run commits nothing.
    int min_members() const { return min_members_; }
    std::string address() const { return listener_->address(); }
    int node() const { return node_; }

    // One outer step's average over the members (an AverageFn for the outer loop). A node found
    // dropped from the run gets result.dropped; rejoin() then says where the run is.
    AllReduceResult average(std::span<float> data, std::span<float> residual, const ContributionFn& contribution) {
        return elastic_->average(data, residual, contribution);
    }
    const Rejoin& rejoin() const { return elastic_->rejoin(); }
    // [diloco] quorum: whether the run asked this node to end the inner steps of its next outer
    // step early (the step's quorum is ready and its grace window over); and, before average(),
    // how many inner steps it trained for that step.
    bool wrap_up_requested() const { return wrap_up_step_.load() == elastic_->committed_step() + 1; }
    void set_inner_steps(int64_t inner_steps) { elastic_->set_inner_steps(inner_steps); }
    int64_t committed_step() const { return elastic_->committed_step(); }
    int members() const { return static_cast<int>(elastic_->last_epoch().members.size()); }
    const Epoch& last_epoch() const { return elastic_->last_epoch(); }
    // The nodes of the last committed step (its checkpoint is split among them).
    std::vector<int> member_nodes() const;

    // Live recovery, the joiner's side: fetches a state of outer step run_step or later from
    // the sources, asking the run to wait for this node at the step after the snapshot's.
    StateSnapshot fetch(const Rejoin& from, uint64_t max_bytes, FetchReport* report);
    // After taking up a snapshot of outer step `step`: waits to take part in step + 1. Empty once
    // admitted (this node is a member again); a Rejoin when the run moved on meanwhile.
    std::optional<Rejoin> admit(int64_t step);

    // The member's side: whether anyone waits to recover, and the snapshot to hand them
    // (nullptr: keep none).
    bool joiners_waiting() const { return membership_->joiners() > 0; }
    void offer(std::shared_ptr<const StateSnapshot> snapshot) { state_server_.publish(std::move(snapshot)); }
    // While this node waits for an outer step that cannot start before joiners take part (below
    // min_members), `handler` is called on the waiting thread to offer them the committed state.
    void on_joiners_blocked(std::function<void()> handler) { membership_->on_joiners_blocked(std::move(handler)); }

    // Leaves the run at once (the others do not wait for this node's timeout).
    void leave();

private:
    const PluginInstance& transport_;
    int node_;
    uint64_t run_id_;
    std::string secret_;
    std::chrono::milliseconds recovery_timeout_;
    int min_members_;
    // Declared in the order they start; they stop in reverse (the acceptor hands connections to
    // the state server; the all-reduce uses the acceptor and the membership).
    std::unique_ptr<OwnedListener> listener_;
    StateServer state_server_;
    std::unique_ptr<PeerAcceptor> acceptor_;
    std::unique_ptr<HostedCoordinator> hosted_coordinator_;  // NodeOptions::host_coordinator
    std::unique_ptr<EtcdBackend> etcd_;  // backend = etcd: registers this node, may host the coordinator
    std::unique_ptr<CoordinatorClient> membership_;
    JoinResult joined_;
    std::unique_ptr<RingLanes> lanes_;  // this process's rings
    std::unique_ptr<NodeRings> rings_;  // the node's
    std::unique_ptr<RingPlanner> planner_;  // [mesh] ring_order = "measured"
    std::unique_ptr<ElasticAllReduce> elastic_;
    std::atomic<int64_t> wrap_up_step_ = 0;  // the last step the run asked this node to wrap up
};

}  // namespace pangea
