// The all-reduce of an elastic run: at each outer step the members agree on an epoch, form the
// rings of that epoch (kept while the members stay the same: collective/ring_lanes.hpp), average,
// and commit only if every member succeeded. A member lost midway makes every survivor abort,
// agree on the members without it, and average the same inputs again. Before averaging, the
// members compare the norms of their contributions and leave out a NaN/Inf or outsized one
// (collective/contribution_check.hpp).
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "collective/ring_lanes.hpp"
#include "collective/ring_planner.hpp"
#include "membership/membership.hpp"

namespace pangea {

// Who runs a node's rings in an epoch: this process (LocalRings), or the node's workers, each its
// share (train/node_workers.cpp). One attempt, then how the epoch ended.
class NodeRings {
public:
    virtual ~NodeRings() = default;

    // One attempt at averaging `data` (this process's part of the node's buffer) in `epoch`:
    // `contribution` fills it (again at every attempt: a failed ring leaves partial sums), then,
    // with other members, the rings average it, writing what compression lost of it to
    // `residual` when that is not empty (RingAllReduce::run()). Failures come back in the result.
    virtual AllReduceResult attempt(const Epoch& epoch, std::span<float> data, std::span<float> residual,
                                    const std::function<void(std::span<float>)>& contribution) = 0;
    enum class End { kCommitted, kRetried, kDropped, kFailed };
    // How the epoch of the last attempt ended (kDropped may also come without an attempt, and
    // kFailed: the step is given up, `why`). Connections are kept only after a commit.
    virtual void ended(End end, const std::string& why) = 0;
    // From the membership's thread: the epoch is given up, fail what runs on the rings.
    virtual void abort() = 0;
    virtual void disconnect() = 0;  // connections of an old epoch are of no use (after a recovery)
};

// All of a node's rings, in this process.
class LocalRings final : public NodeRings {
public:
    explicit LocalRings(RingLanes& lanes) : lanes_(lanes) {}
    AllReduceResult attempt(const Epoch& epoch, std::span<float> data, std::span<float> residual,
                            const std::function<void(std::span<float>)>& contribution) override;
    void ended(End end, const std::string&) override {
        if (end != End::kCommitted) lanes_.disconnect();
    }
    void abort() override { lanes_.abort(); }
    void disconnect() override { lanes_.disconnect(); }

private:
    RingLanes& lanes_;
};

class ElasticAllReduce {
public:
    // All references must outlive this object. `committed_step` is the number of outer steps
    // the run had committed when this node got its state; a step not completed in
    // `max_attempts` epochs fails.
    // `planner`: the order of each epoch's ring ([mesh] ring_order = "measured"); none: the
    // coordinator's (node-id order).
    ElasticAllReduce(Membership& membership, NodeRings& rings, int node, int64_t committed_step, int max_attempts = 20,
                     RingPlanner* planner = nullptr);

    // Averages this node's contribution over the members of the next outer step into `data`,
    // in place: `contribution` fills `data` before each attempt (the ring leaves partial sums
    // after a failure, and a committed epoch can still be retried when another member failed).
    // The average is in `data` once the epoch committed; members whose contribution was left out
    // count in result.excluded_nodes. Members that trained unequal inner steps are weighed by
    // them: each contribution is scaled by Epoch::weight_of() after `contribution` fills it (so
    // the error-feedback residual, part of it, is scaled alike). A node dropped from the run gets result.dropped, and
    // rejoin() says where the run is; a step not completed in max_attempts epochs fails with
    // PANGEA_ERR_IO. Failed attempts' time and bytes are counted. `residual`: as for
    // NodeRings::attempt(), valid once the epoch committed.
    AllReduceResult average(std::span<float> data, std::span<float> residual,
                            const std::function<void(std::span<float>)>& contribution);

    // The inner steps this node trained for the next outer step, which ready() reports: the
    // epoch weighs each member's contribution by them (Epoch::weight_of()). Default: unknown.
    void set_inner_steps(int64_t inner_steps) { inner_steps_ = inner_steps; }

    int64_t committed_step() const { return committed_step_; }
    // After live recovery: the run's step, and no ring kept from before (its peers moved on).
    void set_committed_step(int64_t step) {
        committed_step_ = step;
        rings_.disconnect();
        if (planner_) planner_->forget();
    }
    const Epoch& last_epoch() const { return last_; }
    // After an average() that found this node dropped: where the run is, to recover from.
    const Rejoin& rejoin() const { return rejoin_; }

private:
    Membership& membership_;
    NodeRings& rings_;
    int node_;
    int64_t committed_step_;
    int max_attempts_;
    RingPlanner* planner_;
    int64_t inner_steps_ = kInnerStepsUnknown;
    Epoch last_;
    Rejoin rejoin_;
};

}  // namespace pangea
