#include "diloco/outer_loop.hpp"

#include <algorithm>
#include <chrono>

#include "pangea/optim.h"

namespace pangea {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

OuterLoop::OuterLoop(std::span<float> params, const PluginInstance& optimizer, AverageFn average, bool overlap)
    : params_(params),
      optimizer_(optimizer),
      average_(std::move(average)),
      overlap_(overlap),
      synced_(params.begin(), params.end()),
      delta_(params.size()) {
    if (overlap_) start_ = synced_;
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    if (const pangea_status status = vt.init(optimizer_.handle(), params.size()); status != PANGEA_OK)
        throw OuterLoopError(optimizer_.describe_failure("init(" + std::to_string(params.size()) + ")", status));
}

OuterLoop::~OuterLoop() {
    if (in_flight_.valid()) in_flight_.wait();
}

void OuterLoop::apply(std::span<const float> average) {
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    // The plugin updates a copy: a failing step must not leave half-updated synced parameters.
    scratch_.assign(synced_.begin(), synced_.end());
    if (const pangea_status status = vt.step(optimizer_.handle(), scratch_.data(), average.data(), scratch_.size());
        status != PANGEA_OK)
        throw OuterLoopError(optimizer_.describe_failure("step", status));
    synced_.swap(scratch_);
    ++applied_;
}

void OuterLoop::preview(std::span<const float> estimate) {
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    const auto fail = [&](const char* what, pangea_status status) {
        throw OuterLoopError(optimizer_.describe_failure(what, status));
    };
    saved_state_.resize(vt.state_size(optimizer_.handle()));
    size_t written = 0;
    if (const pangea_status s = vt.save_state(optimizer_.handle(), saved_state_.data(), saved_state_.size(), &written);
        s != PANGEA_OK)
        fail("save_state", s);
    scratch_.assign(synced_.begin(), synced_.end());
    const pangea_status stepped = vt.step(optimizer_.handle(), scratch_.data(), estimate.data(), scratch_.size());
    // Put the state back even when the step failed: the preview must not count as a step.
    if (const pangea_status s = vt.load_state(optimizer_.handle(), saved_state_.data(), written); s != PANGEA_OK)
        fail("load_state", s);
    if (stepped != PANGEA_OK) fail("step", stepped);
}

void OuterLoop::apply_average(AllReduceResult result, OuterStepReport* report) {
    report->allreduce = std::move(result);
    if (report->allreduce.status != PANGEA_OK)
        throw OuterLoopError("all-reduce of the pseudo-gradient failed: " + report->allreduce.error);
    apply(delta_);
    report->applied = true;
}

void OuterLoop::apply_in_flight(OuterStepReport* report) {
    if (in_flight_.valid()) apply_average(in_flight_.get(), report);
}

OuterStepReport OuterLoop::sync() {
    const auto start = std::chrono::steady_clock::now();
    OuterStepReport report;
    if (!overlap_) {
        for (size_t i = 0; i < delta_.size(); ++i) delta_[i] = synced_[i] - params_[i];
        apply_average(average_(delta_), &report);
        std::copy(synced_.begin(), synced_.end(), params_.begin());
        report.blocked_seconds = seconds_since(start);
        return report;
    }
    // Overlap. Apply the previous round's average (it ran during this round's inner steps).
    apply_in_flight(&report);
    // This round's local progress; start averaging it, and continue from where the outer step
    // would take synced if the average equalled it.
    for (size_t i = 0; i < delta_.size(); ++i) delta_[i] = start_[i] - params_[i];
    preview(delta_);
    std::copy(scratch_.begin(), scratch_.end(), params_.begin());
    std::copy(params_.begin(), params_.end(), start_.begin());
    in_flight_ = std::async(std::launch::async, [this] { return average_(delta_); });
    report.blocked_seconds = seconds_since(start);
    return report;
}

std::vector<uint8_t> OuterLoop::optimizer_state(std::vector<uint8_t> bytes) const {
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    bytes.resize(vt.state_size(optimizer_.handle()));
    size_t written = 0;
    if (const pangea_status s = vt.save_state(optimizer_.handle(), bytes.data(), bytes.size(), &written); s != PANGEA_OK)
        throw OuterLoopError(optimizer_.describe_failure("save_state", s));
    bytes.resize(written);
    return bytes;
}

void OuterLoop::restore(std::span<const float> synced, std::span<const uint8_t> optimizer_state) {
    if (in_flight_.valid()) throw OuterLoopError("cannot take up a recovered state while an all-reduce is in flight");
    if (synced.size() != synced_.size())
        throw OuterLoopError("the recovered parameters are " + std::to_string(synced.size()) + " values, the model has " +
                             std::to_string(synced_.size()));
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    if (const pangea_status s = vt.load_state(optimizer_.handle(), optimizer_state.data(), optimizer_state.size());
        s != PANGEA_OK)
        throw OuterLoopError(optimizer_.describe_failure("load_state of the recovered state", s));
    synced_.assign(synced.begin(), synced.end());
    std::copy(synced.begin(), synced.end(), params_.begin());
    if (overlap_) start_ = synced_;
}

OuterStepReport OuterLoop::finish() {
    const auto start = std::chrono::steady_clock::now();
    OuterStepReport report;
    apply_in_flight(&report);
    std::copy(synced_.begin(), synced_.end(), params_.begin());
    report.blocked_seconds = seconds_since(start);
    return report;
}

}  // namespace pangea
