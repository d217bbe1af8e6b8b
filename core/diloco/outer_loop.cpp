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

const char* const kOverlapNeedsFragments =
    "[diloco] overlap needs fragments >= 2: each fragment's average lands one round (inner_steps / fragments inner "
    "steps) after it left, while the other fragments train on; one fragment would have to be sent and trained at once";

void HostParameters::subtract_from(size_t begin, std::span<const float> base, std::span<float> out) const {
    for (size_t i = 0; i < out.size(); ++i) out[i] = base[i] - values_[begin + i];
}

void HostParameters::assign(size_t begin, std::span<const float> values) {
    if (values.data() != values_.data() + begin) std::copy(values.begin(), values.end(), values_.begin() + begin);
}

void HostParameters::read(size_t begin, std::span<float> out) const {
    std::copy_n(values_.begin() + begin, out.size(), out.begin());
}

OuterLoop::OuterLoop(ModelParameters& params, const PluginInstance& optimizer, AverageFn average, OuterLoopOptions options)
    : params_(params),
      optimizer_(optimizer),
      average_(std::move(average)),
      overlap_(options.overlap),
      fragments_(options.fragments),
      overlap_alpha_(options.overlap_alpha),
      synced_(params.size()) {
    if (fragments_ < 1 || static_cast<size_t>(fragments_) > synced_.size())
        throw OuterLoopError("[diloco] fragments = " + std::to_string(fragments_) + " for " +
                             std::to_string(synced_.size()) + " parameters: from 1 to the parameter count");
    if (overlap_ && fragments_ < 2) throw OuterLoopError(kOverlapNeedsFragments);
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    if (fragments_ > 1) {
        if (vt.range_state_size(optimizer_.handle(), 1) == 0)
            throw OuterLoopError("[diloco] fragments = " + std::to_string(fragments_) +
                                 " steps the outer optimizer one fragment at a time, which needs an optimizer that "
                                 "splits its state by range (plugin ABI 1.3: save_state_range); " +
                                 optimizer_.plugin().id() + " cannot. Set fragments = 1, or use optim/nesterov");
        fragment_optimizer_.emplace(optimizer_.another());
    }
    const size_t largest = fragment(fragments_ - 1).size();  // (shard_range: the last is the longest)
    delta_.resize(largest);
    params_.read(0, synced_);
    if (options.error_feedback) {
        residual_.assign(synced_.size(), 0.0f);
        next_residual_.assign(largest, 0.0f);
    }
    if (overlap_) contribution_.resize(largest);
    if (const pangea_status status = vt.init(optimizer_.handle(), synced_.size()); status != PANGEA_OK)
        throw OuterLoopError(optimizer_.describe_failure("init(" + std::to_string(synced_.size()) + ")", status));
}

OuterLoop::~OuterLoop() {
    if (in_flight_.valid()) in_flight_.wait();
}

ShardRange OuterLoop::fragment(int64_t step) const {
    return shard_range(synced_.size(), fragments_, static_cast<int>(step % fragments_));
}

std::span<float> OuterLoop::scratch(size_t size) {
    if (scratch_.size() < size) scratch_.resize(size);
    return std::span<float>(scratch_).first(size);
}

std::span<float> OuterLoop::next_residual(ShardRange part) {
    return next_residual_.empty() ? std::span<float>() : std::span<float>(next_residual_).first(part.size());
}

void OuterLoop::step_optimizer(ShardRange part, std::span<float> values, std::span<const float> average) {
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    const auto check = [](const PluginInstance& instance, const std::string& what, pangea_status status) {
        if (status != PANGEA_OK) throw OuterLoopError(instance.describe_failure(what, status));
    };
    if (!fragment_optimizer_) {
        check(optimizer_, "step", vt.step(optimizer_.handle(), values.data(), average.data(), values.size()));
        return;
    }
    const PluginInstance& piece = *fragment_optimizer_;
    const std::string range = "[" + std::to_string(part.begin) + ", " + std::to_string(part.end) + ")";
    fragment_state_.resize(vt.range_state_size(optimizer_.handle(), part.size()));
    size_t written = 0;
    check(optimizer_, "save_state_range of fragment " + range,
          vt.save_state_range(optimizer_.handle(), part.begin, part.size(), fragment_state_.data(),
                              fragment_state_.size(), &written));
    check(piece, "init(" + std::to_string(part.size()) + ")", vt.init(piece.handle(), part.size()));
    check(piece, "load_state of fragment " + range, vt.load_state(piece.handle(), fragment_state_.data(), written));
    check(piece, "step of fragment " + range, vt.step(piece.handle(), values.data(), average.data(), values.size()));
    fragment_state_.resize(vt.state_size(piece.handle()));
    check(piece, "save_state of fragment " + range,
          vt.save_state(piece.handle(), fragment_state_.data(), fragment_state_.size(), &written));
    check(optimizer_, "load_state_range of fragment " + range,
          vt.load_state_range(optimizer_.handle(), part.begin, part.size(), fragment_state_.data(), written));
}

void OuterLoop::apply(ShardRange part, std::span<const float> average, std::span<float> scratch) {
    // The plugin updates a copy: a failing step must not leave half-updated synced parameters.
    const auto synced = std::span<float>(synced_).subspan(part.begin, part.size());
    std::copy(synced.begin(), synced.end(), scratch.begin());
    step_optimizer(part, scratch, average);
    std::copy(scratch.begin(), scratch.end(), synced.begin());
    ++applied_;
}

void OuterLoop::apply_average(AllReduceResult result, ShardRange part, OuterStepReport* report,
                              std::span<float> scratch) {
    report->allreduce = std::move(result);
    if (report->allreduce.dropped) return;  // not a failure: the node takes up the run's state instead
    if (report->allreduce.status != PANGEA_OK)
        throw OuterLoopError("all-reduce of the pseudo-gradient failed: " + report->allreduce.error);
    apply(part, std::span<const float>(delta_).first(part.size()), scratch);
    // What this contribution lost goes into the fragment's next one.
    if (const std::span<float> lost = next_residual(part); !lost.empty())
        std::copy(lost.begin(), lost.end(), residual_.begin() + static_cast<std::ptrdiff_t>(part.begin));
    report->applied = true;
}

void OuterLoop::land_in_flight(OuterStepReport* report) {
    if (!in_flight_.valid()) return;
    if (while_waiting_)
        while (in_flight_.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) while_waiting_();
    const ShardRange part = in_flight_part_;
    apply_average(in_flight_.get(), part, report, scratch(part.size()));
    if (!report->applied) return;
    // The model's values of the fragment move to the synced ones, keeping alpha of their own.
    const auto synced = std::span<const float>(synced_).subspan(part.begin, part.size());
    if (overlap_alpha_ == 0.0f) {
        params_.assign(part.begin, synced);
        return;
    }
    const std::span<float> local = scratch(part.size());
    params_.read(part.begin, local);
    for (size_t i = 0; i < local.size(); ++i)
        local[i] = overlap_alpha_ * local[i] + (1.0f - overlap_alpha_) * synced[i];
    params_.assign(part.begin, local);
}

OuterStepReport OuterLoop::sync(int64_t step) {
    const auto start = std::chrono::steady_clock::now();
    OuterStepReport report;
    const ShardRange part = fragment(step);
    const auto synced = std::span<const float>(synced_).subspan(part.begin, part.size());
    if (!overlap_) {
        const ContributionFn pseudo_gradient = [&](std::span<float> out) {
            params_.subtract_from(part.begin, synced, out);
            add_residual(part, out);
        };
        // The model's own memory, when it is host memory, holds the step: it becomes synced anyway.
        const std::span<float> host = params_.host_memory();
        const std::span<float> room = host.empty() ? scratch(part.size()) : host.subspan(part.begin, part.size());
        apply_average(average_(std::span<float>(delta_).first(part.size()), next_residual(part), pseudo_gradient),
                      part, &report, room);
        if (host.empty() && report.applied) params_.assign(part.begin, synced);
        report.blocked_seconds = seconds_since(start);
        return report;
    }
    // Overlap: the average in flight (another fragment's) lands; this fragment's leaves.
    land_in_flight(&report);  // (it ran during this round's inner steps)
    if (report.dropped()) return report;
    const std::span<float> contribution = std::span<float>(contribution_).first(part.size());
    params_.subtract_from(part.begin, synced, contribution);
    add_residual(part, contribution);
    in_flight_part_ = part;
    in_flight_ = std::async(std::launch::async, [this, part] {
        return average_(std::span<float>(delta_).first(part.size()), next_residual(part), [this](std::span<float> out) {
            std::copy_n(contribution_.begin(), out.size(), out.begin());
        });
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

void OuterLoop::add_residual(ShardRange part, std::span<float> contribution) const {
    if (residual_.empty()) return;
    for (size_t i = 0; i < contribution.size(); ++i) contribution[i] += residual_[part.begin + i];
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

void OuterLoop::read_local(std::span<float> out) const {
    if (out.size() != local_count())
        throw OuterLoopError("read_local: " + std::to_string(out.size()) + " values asked, there are " +
                             std::to_string(local_count()));
    params_.read(0, out);
}

void OuterLoop::restore_local(std::span<const float> values) {
    if (values.size() != local_count())
        throw OuterLoopError("the local parameters to take up are " + std::to_string(values.size()) +
                             " values, this node keeps " + std::to_string(local_count()) +
                             (fragments_ == 1 ? " (it syncs all parameters at once: [diloco] fragments = 1)" : ""));
    if (in_flight_.valid()) throw OuterLoopError("cannot take up local parameters while an all-reduce is in flight");
    params_.assign(0, values);
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
    if (in_flight_.valid()) throw OuterLoopError("cannot take up a recovered state while an all-reduce is in flight (drain() first)");
    if (synced.size() != synced_.size())
        throw OuterLoopError("the recovered parameters are " + std::to_string(synced.size()) + " values, the model has " +
                             std::to_string(synced_.size()));
    const auto& vt = optimizer_.vtable<pangea_optim_vtable>();
    if (const pangea_status s = vt.load_state(optimizer_.handle(), optimizer_state.data(), optimizer_state.size());
        s != PANGEA_OK)
        throw OuterLoopError(optimizer_.describe_failure("load_state of the recovered state", s));
    synced_.assign(synced.begin(), synced.end());
    params_.assign(0, synced_);
}

OuterStepReport OuterLoop::drain() {
    const auto start = std::chrono::steady_clock::now();
    OuterStepReport report;
    land_in_flight(&report);
    report.blocked_seconds = seconds_since(start);
    return report;
}

OuterStepReport OuterLoop::finish() {
    OuterStepReport report = drain();
    if (!report.dropped()) params_.assign(0, synced_);
    return report;
}

}  // namespace pangea
