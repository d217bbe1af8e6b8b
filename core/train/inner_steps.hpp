// The inner steps of a node: each round of them (H, or H / F with fragments: rounds_of()) draws the node's next batches, cut into
// micro-batches, and steps the learner at the schedule's learning rate; and the evaluation on the
// held-out windows.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/learner.hpp"
#include "train/metrics.hpp"
#include "train/schedule.hpp"

namespace pangea {

struct Manifest;
class Sampler;

class InnerSteps {
public:
    // [diloco] inner_steps and fragments, [train] and [data] of the manifest. Both references must outlive this.
    InnerSteps(const Manifest& manifest, Learner& learner, Sampler& sampler, int node);
    InnerSteps(const InnerSteps&) = delete;  // micro_ points into tokens_
    InnerSteps& operator=(const InnerSteps&) = delete;

    struct Round {
        double compute_seconds = 0;  // in the learner
        double mean_loss = 0;
        int64_t steps = 0;  // inner steps trained: per_round(), or fewer when wrapped up
    };
    // The inner steps of outer step `outer` (from 0), each reported to `metrics` (none: a worker
    // that is not the node's first). `wrap_up`, asked before each inner step, ends the round
    // early when it says so ([diloco] quorum); the batches of the steps left out are skipped, so
    // that the data position stays the round's end. Throws std::runtime_error when the loss is
    // not finite (saying where, and what to change).
    Round run(int64_t outer, NodeMetrics* metrics, const std::function<bool()>& wrap_up = {});

    // Mean cross-entropy of the model as it is, on [data] eval_sequences held-out windows.
    double evaluate() const;

    int64_t per_round() const { return inner_steps_; }
    int64_t tokens_per_round() const { return inner_steps_ * tokens_per_step(); }
    int64_t tokens_per_step() const { return sequences_per_step_ * seq_len_; }
    uint64_t sequences_per_round() const { return static_cast<uint64_t>(inner_steps_ * sequences_per_step_); }
    double learning_rate(int64_t step) const { return schedule_.at(step); }

private:
    Learner& learner_;
    Sampler& sampler_;
    std::string tag_;
    int64_t inner_steps_, micro_batch_, seq_len_, sequences_per_step_, eval_sequences_;
    LearningRateSchedule schedule_;
    std::vector<int32_t> tokens_;     // one inner step's windows
    std::vector<TokenBatch> micro_;   // views of them, one per micro-batch
};

}  // namespace pangea
