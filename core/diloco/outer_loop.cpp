#include "diloco/outer_loop.hpp"

#include "common/float_hash.hpp"

#include <algorithm>
#include <chrono>

#include "pangea/optim.h"

namespace pangea {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

void HostParameters::subtract_from(std::span<const float> base, std::span<float> out) const {
    for (size_t i = 0; i < values_.size(); ++i) out[i] = base[i] - values_[i];
}

void HostParameters::assign(std::span<const float> values) {
    if (values.data() != values_.data()) std::copy(values.begin(), values.end(), values_.begin());
}

void HostParameters::read(std::span<float> out) const { std::copy(values_.begin(), values_.end(), out.begin()); }

OuterLoop::OuterLoop(ModelParameters& params, const PluginInstance& optimizer, AverageFn average, OuterLoopOptions options)
    : params_(params),
      optimizer_(optimizer),
      average_(std::move(average)),
      overlap_(options.overlap),
      synced_(params.size()),
      delta_(params.size()) {
    params_.read(synced_);
    if (options.error_feedback) {
        residual_.assign(params.size(), 0.0f);
        next_residual_.assign(params.size(), 0.0f);
    }
    if (overlap_) start_ = synced_;
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    if (const pangea_status status = vt.init(optimizer_.handle(), params.size()); status != PANGEA_OK)
        throw OuterLoopError(optimizer_.describe_failure("init(" + std::to_string(params.size()) + ")", status));
}

OuterLoop::~OuterLoop() {
    if (in_flight_.valid()) in_flight_.wait();
}

std::span<float> OuterLoop::scratch() {
    scratch_.resize(synced_.size());
    return scratch_;
}

void OuterLoop::apply(std::span<const float> average, std::span<float> scratch) {
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    // The plugin updates a copy: a failing step must not leave half-updated synced parameters.
    std::copy(synced_.begin(), synced_.end(), scratch.begin());
    if (const pangea_status status = vt.step(optimizer_.handle(), scratch.data(), average.data(), scratch.size());
        status != PANGEA_OK)
        throw OuterLoopError(optimizer_.describe_failure("step", status));
    std::copy(scratch.begin(), scratch.end(), synced_.begin());
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
    const std::span<float> stepped_copy = scratch();
    std::copy(synced_.begin(), synced_.end(), stepped_copy.begin());
    const pangea_status stepped = vt.step(optimizer_.handle(), stepped_copy.data(), estimate.data(), stepped_copy.size());
    // Put the state back even when the step failed: the preview must not count as a step.
    if (const pangea_status s = vt.load_state(optimizer_.handle(), saved_state_.data(), written); s != PANGEA_OK)
        fail("load_state", s);
    if (stepped != PANGEA_OK) fail("step", stepped);
}

void OuterLoop::apply_average(AllReduceResult result, OuterStepReport* report, std::span<float> scratch) {
    report->allreduce = std::move(result);
    if (report->allreduce.dropped) return;  // not a failure: the node takes up the run's state instead
    if (report->allreduce.status != PANGEA_OK)
        throw OuterLoopError("all-reduce of the pseudo-gradient failed: " + report->allreduce.error);
    apply(delta_, scratch);
    residual_.swap(next_residual_);  // what this contribution lost goes into the next one
    report->applied = true;
}

void OuterLoop::apply_in_flight(OuterStepReport* report) {
    if (in_flight_.valid()) apply_average(in_flight_.get(), report, scratch());
}

OuterStepReport OuterLoop::sync() {
    const auto start = std::chrono::steady_clock::now();
    OuterStepReport report;
    if (!overlap_) {
        const ContributionFn pseudo_gradient = [this](std::span<float> out) {
            params_.subtract_from(synced_, out);
            add_residual(out);
        };
        // The model's own memory, when it is host memory, holds the step: it becomes synced anyway.
        const std::span<float> host = params_.host_memory();
        apply_average(average_(delta_, next_residual_, pseudo_gradient), &report, host.empty() ? scratch() : host);
        if (host.empty()) params_.assign(synced_);
        report.blocked_seconds = seconds_since(start);
        return report;
    }
    // Overlap. Apply the previous round's average (it ran during this round's inner steps).
    apply_in_flight(&report);
    if (report.dropped()) return report;
    // This round's local progress; start averaging it, and continue from where the outer step
    // would take synced if the average equalled it.
    params_.subtract_from(start_, delta_);
    add_residual(delta_);
    contribution_.assign(delta_.begin(), delta_.end());
    preview(delta_);
    params_.assign(scratch_);
    std::copy(scratch_.begin(), scratch_.end(), start_.begin());
    in_flight_ = std::async(std::launch::async, [this] {
        return average_(delta_, next_residual_,
                        [this](std::span<float> out) { std::copy(contribution_.begin(), contribution_.end(), out.begin()); });
    });
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

void OuterLoop::add_residual(std::span<float> contribution) const {
    for (size_t i = 0; i < residual_.size(); ++i) contribution[i] += residual_[i];
}

void OuterLoop::read_residual(std::span<float> out) const {
    if (out.size() != residual_.size())
        throw OuterLoopError("read_residual: " + std::to_string(out.size()) + " values asked, there are " +
                             std::to_string(residual_.size()));
    std::copy(residual_.begin(), residual_.end(), out.begin());
}

void OuterLoop::restore_residual(std::span<const float> residual) {
    if (residual.size() != residual_.size())
        throw OuterLoopError("the error feedback residual to take up is " + std::to_string(residual.size()) +
                             " values, this node keeps " + std::to_string(residual_.size()) +
                             (residual_.empty() ? " (its codec asks for no error feedback)" : ""));
    if (in_flight_.valid()) throw OuterLoopError("cannot take up a residual while an all-reduce is in flight");
    std::copy(residual.begin(), residual.end(), residual_.begin());
}

void OuterLoop::read_synced(std::span<float> out) const {
    if (out.size() != synced_.size())
        throw OuterLoopError("read_synced: " + std::to_string(out.size()) + " values asked, there are " +
                             std::to_string(synced_.size()));
    std::copy(synced_.begin(), synced_.end(), out.begin());
}

std::string OuterLoop::synced_hash() const { return hash_floats(synced_.data(), synced_.size()); }

size_t OuterLoop::optimizer_state_size() const {
    return optimizer_.vtable<pangea_optim_vtable>().state_size(optimizer_.handle());
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
    params_.assign(synced_);
    if (overlap_) start_ = synced_;
}

OuterStepReport OuterLoop::finish() {
    const auto start = std::chrono::steady_clock::now();
    OuterStepReport report;
    apply_in_flight(&report);
    params_.assign(synced_);
    report.blocked_seconds = seconds_since(start);
    return report;
}

}  // namespace pangea
