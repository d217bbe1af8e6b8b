#include "train/node_state.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "common/log.hpp"
#include "data/sampler.hpp"
#include "train/learner.hpp"

namespace pangea {

uint64_t TransferableState::max_snapshot_bytes() const {
    return 8 * outer_.parameter_count() * sizeof(float) + (uint64_t{64} << 20);
}

std::shared_ptr<const StateSnapshot> TransferableState::snapshot(int64_t step) const {
    auto snapshot = std::make_shared<StateSnapshot>();
    snapshot->step = step;
    std::vector<uint8_t> params(outer_.parameter_count() * sizeof(float));
    outer_.read_synced({reinterpret_cast<float*>(params.data()), outer_.parameter_count()});
    snapshot->sections.push_back({"params", std::move(params), true});
    snapshot->sections.push_back({"outer_optimizer", outer_.optimizer_state(), true});
    snapshot->sections.push_back({"inner_optimizer", inner_state(), false});
    return snapshot;
}

void TransferableState::take_up(const StateSnapshot& snapshot) {
    const std::vector<uint8_t>& params = snapshot.at("params").bytes;
    const size_t expected = outer_.parameter_count() * sizeof(float);
    if (params.size() != expected)
        throw std::runtime_error("the recovered parameters are " + std::to_string(params.size()) + " bytes, this model has " +
                                 std::to_string(expected) + "; do the nodes' manifests and models agree?");
    outer_.restore({reinterpret_cast<const float*>(params.data()), params.size() / sizeof(float)},
                  snapshot.at("outer_optimizer").bytes);
    take_up_inner(snapshot.at("inner_optimizer").bytes, snapshot.step);
}

TrainingState TransferableState::checkpoint(int64_t step, TrainingState state) const {
    state.step = step;
    state.params.resize(outer_.parameter_count());
    outer_.read_synced(state.params);
    state.outer_optimizer = outer_.optimizer_state(std::move(state.outer_optimizer));
    state.residual.resize(outer_.residual_count());
    if (!state.residual.empty()) outer_.read_residual(state.residual);
    // All zeros (a node that has only run alone) is what no residual means: nothing to write.
    if (std::all_of(state.residual.begin(), state.residual.end(), [](float v) { return v == 0.0f; }))
        state.residual.clear();
    state.local.resize(outer_.local_count());
    if (!state.local.empty()) outer_.read_local(state.local);
    state.inner_optimizer_later = inner_state_later();
    state.sampler_position = data_position(step);
    return state;
}

void TransferableState::take_up(const TrainingState& state) {
    outer_.restore(state.params, state.outer_optimizer);
    // The residual is this node's own: a node whose codec keeps none has no use for one, and one
    // from a checkpoint without it (another codec then) starts from zero.
    if (!state.residual.empty() && outer_.residual_count() > 0)
        outer_.restore_residual(state.residual);
    else if (!state.residual.empty())
        log(PANGEA_LOG_WARN, "checkpoint",
            "the checkpoint's error-feedback residual is left unused: this node's codec keeps none");
    // So are the local parameters: a node without fragments starts from the synced ones.
    if (!state.local.empty() && outer_.local_count() > 0)
        outer_.restore_local(state.local);
    else if (!state.local.empty())
        log(PANGEA_LOG_WARN, "checkpoint",
            "the checkpoint's local parameters are left unused: this node syncs all of them at once ([diloco] "
            "fragments = 1) and starts from the synced ones");
    take_up_inner(state.inner_optimizer, state.step);
}

std::function<std::vector<uint8_t>()> TransferableState::inner_state_later() const {
    return [bytes = inner_state()] { return bytes; };
}

std::vector<uint8_t> NodeState::inner_state() const { return learner_.snapshot_optimizer_state()(); }

std::function<std::vector<uint8_t>()> NodeState::inner_state_later() const { return learner_.snapshot_optimizer_state(); }

void NodeState::take_up_inner(std::span<const uint8_t> bytes, int64_t step) {
    learner_.load_optimizer_state(bytes);
    sampler_.skip_to(data_position(step));
}

}  // namespace pangea
