// ZeRO-3 over a node's workers: each worker holds one contiguous shard of the flat parameters
// (shard_of), its gradient and its AdamW moments. The model runs unit by unit (the embedding,
// each block, the head): a unit's weights are gathered from every worker just before its forward
// pass and freed after it, gathered again for its backward pass (which recomputes the unit from
// its input, as activation checkpointing does), and its gradient is reduce-scattered into each
// worker's shard. Memory per worker: state / W plus one unit's weights and gradient.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "llama.hpp"

namespace pangea {

class WorkerGroup;

// Worker k's shard of `count` parameters among `workers` (shard_range in workers/worker_group.hpp).
FlatRange shard_of(int64_t count, int workers, int worker);

class ShardedModel {
public:
    // `model` holds this worker's shard (shard_of); `grad` is its gradient (the same size, on the
    // same device), which backward passes add to. Both and `group` must outlive this.
    ShardedModel(const LlamaModel& model, torch::Tensor grad, WorkerGroup& group);

    // As LlamaModel::forward; every worker calls it (and backward) alike: each unit is a collective.
    torch::Tensor forward(const torch::Tensor& tokens);

    // The unit's weights, gathered (for a unit's forward and backward: public for the autograd
    // function in sharded.cpp).
    struct Unit {
        std::vector<FlatRange> ranges;  // of the flat parameters, merged where adjacent
        std::vector<size_t> slots;      // parameter_layout() indices
    };
    torch::Tensor gather(const Unit& unit) const;  // the unit's ranges back to back
    // Runs `unit` on x with the weights in `gathered`.
    torch::Tensor run(size_t unit, const torch::Tensor& x, const torch::Tensor& gathered) const;
    // Sums the unit's gradient (as gather() lays it out) over the workers into this one's shard.
    void reduce_scatter(const Unit& unit, torch::Tensor gradient);
    const std::vector<Unit>& units() const { return units_; }

private:
    std::vector<size_t> counts(const FlatRange& range) const;  // each worker's part of `range`

    const LlamaModel& model_;
    torch::Tensor grad_;
    WorkerGroup& group_;
    std::vector<ParameterSlot> layout_;
    std::vector<FlatRange> shards_;  // every worker's
    std::vector<Unit> units_;        // embedding, blocks, head
    torch::Tensor requires_grad_;    // an input of each unit that needs a gradient: its backward then runs
};

}  // namespace pangea
