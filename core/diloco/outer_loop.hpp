// DiLoCo's outer loop on flat buffers.
//
// The loop keeps the last synced parameters in host memory (the "offload" copy; the model's own
// parameters may live elsewhere, a GPU say: ModelParameters reads and writes them). The
// parameters are cut into F contiguous fragments ([diloco] fragments, shard_range()); after the
// inner steps of round `step`, sync(step) averages fragment step mod F (with F = 1, all of them).
// Each fragment syncs once every F rounds, the fragments in turn (Streaming DiLoCo), so each
// all-reduce carries 1/F of the model:
//
//   blocking: pseudo-gradient = synced - params over the fragment; average it over the nodes; the
//             outer optimizer plugin steps the fragment of `synced` with it; the fragment of the
//             model's parameters becomes the synced one. The other fragments keep their local
//             progress.
//   overlap:  the fragment's pseudo-gradient starts averaging in the background while the next
//             round's inner steps run. At the next sync() that average lands: it steps the synced
//             fragment, and the model's values of the fragment become
//             alpha x local + (1 - alpha) x synced ([diloco] overlap_alpha). An average lands one
//             round (H/F inner steps) after it left. Every node applies the same
//             averages in the same order, so `synced` stays bit-identical across nodes. Overlap
//             needs F >= 2: a fragment's pseudo-gradient is taken against the synced values once
//             its previous average has landed.
//
// With H = 1, no compression and SGD at lr 1, momentum 0, blocking mode is synchronous
// parameter averaging.
//
// Memory, per parameter beside the model's own: synced 4 bytes, the pseudo-gradient 4 / F (one
// copy: the all-reduce works in it in place, and a retry asks for the contribution again, which
// synced - params still gives), the optimizer plugin's state (with fragments, a fragment's share
// of it twice more while it steps). The optimizer steps the model's memory when it is host
// memory (it becomes the synced parameters anyway), so a failed step leaves `synced` whole
// without a copy of it; model memory elsewhere costs a scratch fragment. Overlap mode adds the
// contribution in flight and the scratch (8 / F bytes). Error feedback adds the residual (4
// bytes) and the next one (4 / F): a retried attempt needs the old one while the all-reduce
// writes the new.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "collective/ring_allreduce.hpp"
#include "common/shard_range.hpp"
#include "plugin_host/plugin_instance.hpp"

namespace pangea {

// Writes this node's contribution (its pseudo-gradient) into a buffer.
using ContributionFn = std::function<void(std::span<float>)>;
// Averages this node's contribution over the nodes into `buffer`. The all-reduce works in the
// buffer in place, so before each attempt (a retry with fewer members, say) it calls
// `contribution` to fill the buffer again. The average is in `buffer` only on success; so is, in
// `residual` (empty without error feedback, else as long as `buffer`), what compression lost of
// the contribution (RingAllReduce::run()).
using AverageFn = std::function<AllReduceResult(std::span<float> buffer, std::span<float> residual,
                                                const ContributionFn& contribution)>;

// The model's parameters, wherever they live. The loop reads a fragment of them once per round
// (as a pseudo-gradient) and writes it once; each call works on parameters [begin, begin + the
// span's size).
class ModelParameters {
public:
    virtual ~ModelParameters() = default;
    virtual size_t size() const = 0;
    // out = base - parameters, in host memory.
    virtual void subtract_from(size_t begin, std::span<const float> base, std::span<float> out) const = 0;
    virtual void assign(size_t begin, std::span<const float> values) = 0;
    virtual void read(size_t begin, std::span<float> out) const = 0;
    // The parameters' own memory when it is host memory (empty otherwise): the loop steps the
    // outer optimizer there instead of in a copy.
    virtual std::span<float> host_memory() { return {}; }
};

// Parameters in host memory the caller owns.
class HostParameters final : public ModelParameters {
public:
    explicit HostParameters(std::span<float> values) : values_(values) {}
    size_t size() const override { return values_.size(); }
    void subtract_from(size_t begin, std::span<const float> base, std::span<float> out) const override;
    void assign(size_t begin, std::span<const float> values) override;
    void read(size_t begin, std::span<float> out) const override;
    std::span<float> host_memory() override { return values_; }

private:
    std::span<float> values_;
};

class OuterLoopError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

extern const char* const kOverlapNeedsFragments;  // why overlap with one fragment is refused

struct OuterStepReport {
    bool applied = false;       // an average was applied to the synced parameters in this call
    AllReduceResult allreduce;  // the all-reduce that was applied
    double blocked_seconds = 0;  // how long the caller waited in sync() / finish()
    // The node was dropped from the run (AllReduceResult::dropped): nothing was applied, and the
    // model's parameters are undefined until it takes up a state with restore().
    bool dropped() const { return allreduce.dropped; }
};

// What carrying a node's state elsewhere (live recovery, checkpoints) needs of its outer loop:
// the synced parameters and the outer optimizer's state, all of them. An OuterLoop is one; a node
// of several workers, each with the outer loop of its shard, has another (train/node_workers.hpp).
class OuterState {
public:
    virtual ~OuterState() = default;
    virtual size_t parameter_count() const = 0;
    // The synced parameters, into `out` (parameter_count() values).
    virtual void read_synced(std::span<float> out) const = 0;
    // Their hash (common/float_hash.hpp): what nodes compare.
    virtual std::string synced_hash() const = 0;
    // The optimizer plugin's state, written into `reuse`'s memory (a checkpoint buffer from the
    // previous save: no fresh pages to fault in).
    virtual std::vector<uint8_t> optimizer_state(std::vector<uint8_t> reuse = {}) const = 0;
    // Takes up state from elsewhere (a peer, a checkpoint): synced and model parameters become
    // `synced`, the optimizer loads `optimizer_state`. Throws OuterLoopError, leaving everything
    // as it was, if either does not fit.
    virtual void restore(std::span<const float> synced, std::span<const uint8_t> optimizer_state) = 0;

    // Error feedback's residual: what compression lost of this node's contributions and the next
    // one will carry. Each node's own (checkpoints keep it per node; live recovery brings none:
    // a recovered node keeps its own). Without error feedback there is none (residual_count() 0).
    virtual size_t residual_count() const = 0;
    virtual void read_residual(std::span<float> out) const = 0;   // residual_count() values
    // Throws OuterLoopError, leaving the residual as it was, when the count does not fit.
    virtual void restore_residual(std::span<const float> residual) = 0;

    // The model's parameters, where they are not the synced ones after each sync: with fragments
    // the others keep local progress between their syncs. Each node's own, like the residual
    // (live recovery brings none: a recovered node starts from the synced parameters). Without
    // fragments there are none (local_count() 0).
    virtual size_t local_count() const = 0;
    virtual void read_local(std::span<float> out) const = 0;  // local_count() values
    // After restore(). Throws OuterLoopError, changing nothing, when the count does not fit.
    virtual void restore_local(std::span<const float> values) = 0;
};

struct OuterLoopOptions {
    bool overlap = false;  // [diloco] overlap
    int fragments = 1;     // [diloco] fragments
    float overlap_alpha = 0;  // [diloco] overlap_alpha: the local values' share when an average lands (0: none)
    // The codec asks for error feedback (PANGEA_COMPRESS_CAP_ERROR_FEEDBACK): the loop keeps what
    // compression lost of each contribution and adds it to the next one.
    bool error_feedback = false;
};

class OuterLoop final : public OuterState {
public:
    // `params` are the model's; `optimizer` an optim plugin instance (init() is called here).
    // Both must outlive the loop; `average` is called from a background thread in overlap mode,
    // never from two threads at once. Throws OuterLoopError when the fragments cannot be: more
    // of them than parameters, overlap with one, or an optimizer that cannot step a range
    // (plugin ABI 1.3).
    OuterLoop(ModelParameters& params, const PluginInstance& optimizer, AverageFn average, OuterLoopOptions options);
    ~OuterLoop();  // waits for an all-reduce still in flight
    OuterLoop(const OuterLoop&) = delete;
    OuterLoop& operator=(const OuterLoop&) = delete;

    // After the inner steps of round `step` (from 0; the same on every node): syncs fragment
    // step mod F. Throws OuterLoopError naming what failed (the all-reduce, the optimizer plugin)
    // and leaves the synced parameters as they were (the model's are then undefined: the node
    // stops, or takes up a state with restore()). A node dropped from the run is not a failure:
    // the report says so, and the synced parameters stay as they were.
    OuterStepReport sync(int64_t step);

    // Overlap mode: waits for the average in flight and lands it, as the next sync() would, so
    // that nothing is in flight (for a checkpoint, or a joiner's snapshot). Nothing to do in
    // blocking mode. Throws and reports like sync().
    OuterStepReport drain();

    // At the end of training: drain(); then the model's parameters are the synced ones.
    OuterStepReport finish();

    // Called on the caller's thread every 50 ms or so while sync() or drain() wait for an
    // average in flight (live recovery offers joiners a snapshot from there).
    void while_waiting(std::function<void()> poll) { while_waiting_ = std::move(poll); }
    bool in_flight() const { return in_flight_.valid(); }

    std::span<const float> synced() const { return synced_; }

    // OuterState. restore(): with nothing in flight (drain() first).
    size_t parameter_count() const override { return synced_.size(); }
    void read_synced(std::span<float> out) const override;
    std::string synced_hash() const override;
    std::vector<uint8_t> optimizer_state(std::vector<uint8_t> reuse = {}) const override;
    void restore(std::span<const float> synced, std::span<const uint8_t> optimizer_state) override;
    size_t residual_count() const override { return residual_.size(); }
    void read_residual(std::span<float> out) const override;
    void restore_residual(std::span<const float> residual) override;
    size_t local_count() const override { return fragments_ > 1 ? synced_.size() : 0; }
    void read_local(std::span<float> out) const override;
    void restore_local(std::span<const float> values) override;
    std::span<const float> residual() const { return residual_; }
    size_t optimizer_state_size() const;  // its size in bytes (at most), without a copy
    const PluginInstance& optimizer() const { return optimizer_; }
    int64_t applied_steps() const { return applied_; }

private:
    ShardRange fragment(int64_t step) const;
    // Steps synced_'s `part` with `average` in `scratch` (as long as the part), then copies the
    // result to synced_: synced_ changes only on success.
    void apply(ShardRange part, std::span<const float> average, std::span<float> scratch);
    // The outer optimizer's step on `part` of the parameters, in `values`. A fragment's state
    // moves into an instance of its size, steps there and moves back (the ABI's ranges), so that
    // the optimizer of all parameters holds what checkpoints save, and keeps it on a failure.
    void step_optimizer(ShardRange part, std::span<float> values, std::span<const float> average);
    // Applies delta_ to `part` once `result` (its all-reduce) succeeded; throws OuterLoopError
    // otherwise.
    void apply_average(AllReduceResult result, ShardRange part, OuterStepReport* report, std::span<float> scratch);
    void land_in_flight(OuterStepReport* report);  // overlap: the average in flight, if any
    std::span<float> scratch(size_t size);  // scratch_, allocated on first use
    void add_residual(ShardRange part, std::span<float> contribution) const;  // error feedback (nothing without it)
    // The residual the all-reduce of `part` writes (empty without error feedback).
    std::span<float> next_residual(ShardRange part);

    ModelParameters& params_;
    const PluginInstance& optimizer_;
    std::optional<PluginInstance> fragment_optimizer_;  // F > 1: steps one fragment's range
    AverageFn average_;
    bool overlap_;
    int fragments_;
    float overlap_alpha_;
    std::vector<float> synced_;   // last synced parameters
    // Error feedback: the residual carried into the next contribution of each fragment, and the
    // one the all-reduce in progress writes (taken up once its average is applied).
    std::vector<float> residual_, next_residual_;
    std::vector<float> delta_;  // pseudo-gradient of a fragment; in overlap mode owned by the in-flight all-reduce
    std::vector<float> contribution_;  // overlap: the pseudo-gradient in flight, for its retries
    std::vector<float> scratch_;  // the optimizer steps a copy (when the model's memory cannot serve)
    std::vector<uint8_t> fragment_state_;  // F > 1: a fragment's optimizer state on its way
    std::future<AllReduceResult> in_flight_;
    ShardRange in_flight_part_;
    std::function<void()> while_waiting_;
    int64_t applied_ = 0;
};

}  // namespace pangea
