// DiLoCo's outer loop on flat buffers.
//
// The loop keeps the last synced parameters in host memory (the "offload" copy; the model's own
// parameters may live elsewhere, a GPU say: ModelParameters reads and writes them). After each
// round of inner steps, sync():
//
//   blocking: pseudo-gradient = synced - params; average it over the nodes; the outer optimizer
//             plugin steps `synced` with it; params = synced.
//   overlap:  the round's pseudo-gradient (start of round - params) starts averaging in the
//             background while the next round's inner steps run; the average that was in flight
//             (started one round earlier) is waited for and applied to `synced`. The next round
//             starts from a preview of the outer step on this round's local pseudo-gradient
//             (optimizer state saved and restored around it): the node's own progress stands in
//             for the average that is still on the wire ("eager" updates). Every node applies
//             the same averages in the same order, so `synced` stays bit-identical across
//             nodes; updates land one outer step late.
//
// With H = 1, no compression and SGD at lr 1, momentum 0, blocking mode is synchronous
// parameter averaging.
//
// Memory (blocking mode), per parameter beside the model's own: synced 4 bytes, the
// pseudo-gradient 4 (one copy: the all-reduce works in it in place, and a retry asks for the
// contribution again, which synced - params still gives), the optimizer plugin's state. The
// optimizer steps the model's memory when it is host memory (it becomes the synced parameters
// anyway), so a failed step leaves `synced` whole without a copy of it; model memory elsewhere
// costs one host scratch copy. Overlap mode adds the round's start, the contribution in flight
// and the scratch (12 bytes). Error feedback adds the residual and the next one (8 bytes): a
// retried attempt needs the old one while the all-reduce writes the new.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "collective/ring_allreduce.hpp"
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

// The model's parameters, wherever they live. The loop reads them once per outer step (as a
// pseudo-gradient) and writes them once.
class ModelParameters {
public:
    virtual ~ModelParameters() = default;
    virtual size_t size() const = 0;
    // out = base - parameters, in host memory.
    virtual void subtract_from(std::span<const float> base, std::span<float> out) const = 0;
    virtual void assign(std::span<const float> values) = 0;
    virtual void read(std::span<float> out) const = 0;
    // The parameters' own memory when it is host memory (empty otherwise): the loop steps the
    // outer optimizer there instead of in a copy.
    virtual std::span<float> host_memory() { return {}; }
};

// Parameters in host memory the caller owns.
class HostParameters final : public ModelParameters {
public:
    explicit HostParameters(std::span<float> values) : values_(values) {}
    size_t size() const override { return values_.size(); }
    void subtract_from(std::span<const float> base, std::span<float> out) const override;
    void assign(std::span<const float> values) override;
    void read(std::span<float> out) const override;
    std::span<float> host_memory() override { return values_; }

private:
    std::span<float> values_;
};

class OuterLoopError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

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
};

struct OuterLoopOptions {
    bool overlap = false;  // [diloco] overlap
    // The codec asks for error feedback (PANGEA_COMPRESS_CAP_ERROR_FEEDBACK): the loop keeps what
    // compression lost of each contribution and adds it to the next one.
    bool error_feedback = false;
};

class OuterLoop final : public OuterState {
public:
    // `params` are the model's; `optimizer` an optim plugin instance (init() is called here).
    // Both must outlive the loop; `average` is called from a background thread in overlap mode,
    // never from two threads at once.
    OuterLoop(ModelParameters& params, const PluginInstance& optimizer, AverageFn average, OuterLoopOptions options);
    ~OuterLoop();  // waits for an all-reduce still in flight
    OuterLoop(const OuterLoop&) = delete;
    OuterLoop& operator=(const OuterLoop&) = delete;

    // After each round of inner steps. Throws OuterLoopError naming what failed (the all-reduce,
    // the optimizer plugin) and leaves the synced parameters as they were (the model's are then
    // undefined: the node stops, or takes up a state with restore()). A node dropped from the
    // run is not a failure: the report says so, and the synced parameters stay as they were.
    OuterStepReport sync();

    // At the end of training: overlap mode waits for and applies the last average; then the
    // model's parameters are the synced ones in both modes.
    OuterStepReport finish();

    std::span<const float> synced() const { return synced_; }

    // OuterState. restore(): blocking mode only (nothing in flight).
    size_t parameter_count() const override { return synced_.size(); }
    void read_synced(std::span<float> out) const override;
    std::string synced_hash() const override;
    std::vector<uint8_t> optimizer_state(std::vector<uint8_t> reuse = {}) const override;
    void restore(std::span<const float> synced, std::span<const uint8_t> optimizer_state) override;
    size_t residual_count() const override { return residual_.size(); }
    void read_residual(std::span<float> out) const override;
    void restore_residual(std::span<const float> residual) override;
    std::span<const float> residual() const { return residual_; }
    size_t optimizer_state_size() const;  // its size in bytes (at most), without a copy
    const PluginInstance& optimizer() const { return optimizer_; }
    int64_t applied_steps() const { return applied_; }

private:
    // Steps synced_ with `average` in `scratch` (as long as synced_), then copies the result to
    // synced_: synced_ changes only on success.
    void apply(std::span<const float> average, std::span<float> scratch);
    // Applies delta_ once `result` (its all-reduce) succeeded; throws OuterLoopError otherwise.
    void apply_average(AllReduceResult result, OuterStepReport* report, std::span<float> scratch);
    void apply_in_flight(OuterStepReport* report);  // the overlapped all-reduce, if one is running
    // scratch_ = synced_ after an outer step with `estimate`; the optimizer's state is unchanged.
    void preview(std::span<const float> estimate);
    std::span<float> scratch();  // scratch_, allocated on first use
    void add_residual(std::span<float> contribution) const;  // error feedback (nothing without it)

    ModelParameters& params_;
    const PluginInstance& optimizer_;
    AverageFn average_;
    bool overlap_;
    std::vector<float> synced_;   // last synced parameters
    // Error feedback: the residual carried into the next contribution, and the one the all-reduce
    // in progress writes (taken up once its average is applied).
    std::vector<float> residual_, next_residual_;
    std::vector<float> start_;         // overlap: where the current round started
    std::vector<float> delta_;         // pseudo-gradient; in overlap mode owned by the in-flight all-reduce
    std::vector<float> contribution_;  // overlap: the pseudo-gradient in flight, for its retries
    std::vector<float> scratch_;  // the optimizer steps a copy (when the model's memory cannot serve)
    std::vector<uint8_t> saved_state_;  // overlap: optimizer state around a preview
    std::future<AllReduceResult> in_flight_;
    int64_t applied_ = 0;
};

}  // namespace pangea
