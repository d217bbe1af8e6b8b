#include "collective/elastic_allreduce.hpp"

#include "collective/contribution_check.hpp"
#include "common/log.hpp"

namespace pangea {

AllReduceResult LocalRings::attempt(const Epoch& epoch, std::span<float> data, std::span<float> residual,
                                    const std::function<void(std::span<float>)>& contribution) {
    contribution(data);
    if (epoch.members.size() < 2) {  // the average is its own, nothing lost
        std::fill(residual.begin(), residual.end(), 0.0f);
        return {};
    }
    const std::string error = lanes_.connect(epoch);
    const LaneDecision decision =
        error.empty() ? lanes_.decide(epoch, contribution_norm(data)) : LaneDecision{PANGEA_ERR_IO, error, {}};
    return lanes_.run(epoch, decision, data, residual, 0, data.size());
}

ElasticAllReduce::ElasticAllReduce(Membership& membership, NodeRings& rings, int node, int64_t committed_step,
                                   int max_attempts, RingPlanner* planner)
    : membership_(membership),
      rings_(rings),
      node_(node),
      committed_step_(committed_step),
      max_attempts_(max_attempts),
      planner_(planner) {
    membership_.on_abort([this](uint64_t) {
        if (planner_) planner_->abort();
        rings_.abort();
    });
}

AllReduceResult ElasticAllReduce::average(std::span<float> data, std::span<float> residual,
                                          const std::function<void(std::span<float>)>& contribution) {
    const int64_t step = committed_step_ + 1;
    AllReduceResult total;
    auto dropped = [&](Rejoin rejoin) {
        rings_.ended(NodeRings::End::kDropped, rejoin.why);
        if (planner_) planner_->forget();
        total.status = PANGEA_ERR_ABORTED;
        total.error = rejoin.why;
        total.dropped = true;
        rejoin_ = std::move(rejoin);
        return total;
    };
    for (int attempt = 1;; ++attempt) {
        auto ready = membership_.ready(step, inner_steps_);
        if (auto* rejoin = std::get_if<Rejoin>(&ready)) return dropped(std::move(*rejoin));
        const Epoch epoch = std::get<Epoch>(std::move(ready));
        last_ = epoch;
        Epoch in_ring_order = epoch;
        AllReduceResult result;
        try {
            if (planner_) in_ring_order = planner_->order(epoch);
        } catch (const MeshError& e) {  // a probe failed: a member died or stalled
            result.status = PANGEA_ERR_IO;
            result.error = e.what();
        }
        const float weight = epoch.weight_of(node_);
        const auto weighted = [&](std::span<float> out) {
            contribution(out);
            if (weight != 1.0f)
                for (float& value : out) value *= weight;
        };
        if (result.status == PANGEA_OK) result = rings_.attempt(in_ring_order, data, residual, weighted);
        total.seconds += result.seconds;
        total.bytes_sent += result.bytes_sent;
        total.bytes_received += result.bytes_received;
        total.excluded_nodes = result.excluded_nodes;
        const bool ok = result.status == PANGEA_OK;
        std::string why_retried;
        auto end = membership_.done(epoch, ok ? "" : result.error, &why_retried);
        if (auto* rejoin = std::get_if<Rejoin>(&end)) return dropped(std::move(*rejoin));
        if (std::get<EpochEnd>(end) == EpochEnd::kCommitted) {
            rings_.ended(NodeRings::End::kCommitted, "");
            committed_step_ = step;
            return total;
        }
        if (!ok) log(PANGEA_LOG_WARN, "mesh", "node " + std::to_string(node_) + ": all-reduce in " + epoch.describe() + " failed: " + result.error);
        if (attempt >= max_attempts_) {
            // A member whose ring broke because another failed says so, and why the other failed.
            const bool cause_elsewhere = why_retried.rfind("node " + std::to_string(node_) + " ", 0) != 0;
            std::string last = ok ? why_retried : result.error;
            if (!ok && cause_elsewhere && !why_retried.empty()) last += " (the epoch was retried: " + why_retried + ")";
            total.status = PANGEA_ERR_IO;
            total.error = "outer step " + std::to_string(step) + " failed in " + std::to_string(attempt) +
                          " epochs in a row; last: " + last;
            rings_.ended(NodeRings::End::kFailed, total.error);
            if (planner_) planner_->forget();
            return total;
        }
        rings_.ended(NodeRings::End::kRetried, why_retried);  // the members change, or a link is broken: fresh rings
        if (planner_) planner_->forget();  // and fresh measurements, on every member alike
    }
}

}  // namespace pangea
