#include "train/inner_steps.hpp"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "data/sampler.hpp"
#include "manifest/manifest.hpp"
#include "train/run_setup.hpp"

namespace pangea {

InnerSteps::InnerSteps(const Manifest& m, Learner& learner, Sampler& sampler, int node)
    : learner_(learner),
      sampler_(sampler),
      tag_("node-" + std::to_string(node)),
      inner_steps_(rounds_of(m).inner_steps),
      micro_batch_(m.get_int("train", "micro_batch")),
      seq_len_(sampler.seq_len()),
      sequences_per_step_(micro_batch_ * m.get_int("train", "grad_accum")),
      eval_sequences_(m.get_int("data", "eval_sequences")) {
    schedule_.peak = m.get_float("train", "lr");
    schedule_.warmup_steps = m.get_int("train", "warmup_steps");
    schedule_.total_steps = inner_steps_ * rounds_of(m).count;
    schedule_.decay_fraction = m.get_float("train", "decay_fraction");
    schedule_.sqrt_decay = m.get_string("train", "decay") == "sqrt";
    schedule_.min_ratio = m.get_float("train", "min_lr_ratio");

    const int64_t window = seq_len_ + 1;
    tokens_.resize(static_cast<size_t>(sequences_per_step_ * window));
    for (int64_t first = 0; first < sequences_per_step_; first += micro_batch_)
        micro_.push_back({std::span<const int32_t>(tokens_).subspan(first * window, micro_batch_ * window), micro_batch_,
                          seq_len_});
}

InnerSteps::Round InnerSteps::run(int64_t outer, NodeMetrics* metrics, const std::function<bool()>& wrap_up) {
    Round round;
    double loss_sum = 0;
    for (int64_t h = 0; h < inner_steps_; ++h) {
        if (wrap_up && wrap_up()) {
            sampler_.skip_to(sampler_.state().draws + static_cast<uint64_t>((inner_steps_ - h) * sequences_per_step_));
            break;
        }
        const int64_t step = outer * inner_steps_ + h;
        sampler_.next(tokens_);
        const auto start = std::chrono::steady_clock::now();
        const InnerStepResult result = learner_.step(micro_, schedule_.at(step));
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        round.compute_seconds += seconds;
        if (!std::isfinite(result.loss))
            throw std::runtime_error(tag_ + ": the loss is " + std::to_string(result.loss) + " at inner step " +
                                     std::to_string(step) + " (outer step " + std::to_string(outer) +
                                     "); lower [train] lr or set grad_clip");
        loss_sum += result.loss;
        ++round.steps;
        if (!metrics) continue;
        metrics->inner_step(result.loss, seconds);
        metrics->status("training", outer, h + 1,
                        double((h + 1) * sequences_per_step_ * seq_len_) / round.compute_seconds, false);
    }
    round.mean_loss = round.steps > 0 ? loss_sum / double(round.steps) : 0.0;
    return round;
}

double InnerSteps::evaluate() const {
    const int64_t window = seq_len_ + 1;
    std::vector<int32_t> tokens;
    LossSum total;
    for (int64_t first = 0; first < eval_sequences_; first += micro_batch_) {
        const int64_t count = std::min(micro_batch_, eval_sequences_ - first);
        tokens.resize(static_cast<size_t>(count * window));
        for (int64_t i = 0; i < count; ++i)
            sampler_.held_out(static_cast<uint64_t>(first + i), std::span<int32_t>(tokens).subspan(i * window, window));
        const LossSum part = learner_.evaluate({tokens, count, seq_len_});
        total.sum += part.sum;
        total.tokens += part.tokens;
    }
    return total.tokens > 0 ? total.sum / double(total.tokens) : 0.0;
}

}  // namespace pangea
