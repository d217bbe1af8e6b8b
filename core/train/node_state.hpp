// What a node hands over and takes up, in one place: the synced parameters and the outer
// optimizer's state (the outer loop's), the inner optimizer's and the data position. Live
// recovery moves it between nodes as a StateSnapshot; checkpoints keep it as a TrainingState,
// with the node's own error-feedback residual (live recovery brings none: it is another node's;
// a recovered node keeps its own).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "checkpoint/checkpoint.hpp"
#include "diloco/outer_loop.hpp"
#include "recovery/state_transfer.hpp"

namespace pangea {

class Learner;
class Sampler;

// What live recovery moves between nodes (train/live_recovery.hpp): the outer state's part here,
// the inner part from a subclass: the C++ node's NodeState below, or a Python node's
// (python/src/module.cpp), whose inner optimizer lives in PyTorch.
class TransferableState {
public:
    explicit TransferableState(OuterState& outer) : outer_(outer) {}  // which must outlive this
    virtual ~TransferableState() = default;

    // Bytes a peer's snapshot may hold at most: the parameters, the outer optimizer's state (at
    // most 2 buffers of their size) and an inner optimizer's like AdamW's (2 more), with room to
    // spare. A peer cannot make this node allocate more.
    uint64_t max_snapshot_bytes() const;
    // For a joiner: the state after `step` outer steps (only the parameters and the outer
    // optimizer's state are the same on every member).
    std::shared_ptr<const StateSnapshot> snapshot(int64_t step) const;
    // Takes up a peer's snapshot. Throws std::runtime_error (or OuterLoopError) saying what does
    // not fit this model, and then changes nothing the caller relies on: it fetches again or stops.
    void take_up(const StateSnapshot& snapshot);

    // For a checkpoint: the state after `step` outer steps, written into `reuse`'s buffers (the
    // checkpointer's spare: no fresh pages).
    TrainingState checkpoint(int64_t step, TrainingState reuse) const;
    // Takes up a checkpoint read back. Throws like take_up().
    void take_up(const TrainingState& state);

protected:
    // The inner optimizer's state as bytes, now.
    virtual std::vector<uint8_t> inner_state() const = 0;
    // For a checkpoint: a copy of it taken now, made into bytes by the function later (on the
    // checkpoint writer's thread). By default the bytes themselves, now.
    virtual std::function<std::vector<uint8_t>()> inner_state_later() const;
    // Takes up the inner optimizer's bytes, and the position (data, step counters) after `step`
    // outer steps.
    virtual void take_up_inner(std::span<const uint8_t> bytes, int64_t step) = 0;
    // What a checkpoint records as the data position after `step` outer steps.
    virtual uint64_t data_position(int64_t step) const = 0;

    OuterState& outer_;
};

class NodeState final : public TransferableState {
public:
    // All three must outlive this object. A node draws `draws_per_outer_step` training sequences
    // per outer step.
    NodeState(OuterState& outer, Learner& learner, Sampler& sampler, uint64_t draws_per_outer_step)
        : TransferableState(outer), learner_(learner), sampler_(sampler), draws_per_outer_step_(draws_per_outer_step) {}

private:
    std::vector<uint8_t> inner_state() const override;
    std::function<std::vector<uint8_t>()> inner_state_later() const override;
    void take_up_inner(std::span<const uint8_t> bytes, int64_t step) override;
    // The training sequences a node has drawn after `step` outer steps.
    uint64_t data_position(int64_t step) const override { return static_cast<uint64_t>(step) * draws_per_outer_step_; }

    Learner& learner_;
    Sampler& sampler_;
    uint64_t draws_per_outer_step_;
};

}  // namespace pangea
