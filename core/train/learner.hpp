// What the node runner needs from a model: its parameters as one flat fp32 buffer (in host or
// device memory), one inner optimizer step on a batch of token windows, and the loss on
// held-out windows. The Llama model in model/ (the only code that links LibTorch) implements it;
// the core drives it without knowing what is inside.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "diloco/outer_loop.hpp"

namespace pangea {

struct Manifest;
struct ModelShape;
class WorkerGroup;

// Windows of seq_len + 1 tokens each (inputs are the first seq_len, targets the last seq_len).
struct TokenBatch {
    std::span<const int32_t> tokens;
    int64_t sequences = 0;
    int64_t seq_len = 0;
};

struct InnerStepResult {
    double loss = 0;       // mean cross-entropy over the step's tokens (without z-loss)
    double grad_norm = 0;  // before clipping
};

struct LossSum {
    double sum = 0;  // summed cross-entropy
    int64_t tokens = 0;
};

// What worker 0 of a node of several asks of the others outside the inner steps, each a
// collective they join (train/node_workers.cpp carries the request to them).
enum class WorkerRequest : uint32_t { kLoadOptimizerState = 16, kSnapshotOptimizerState = 17, kEvaluate = 18 };

class Learner {
public:
    virtual ~Learner() = default;

    // The model's parameters, in parameter_layout() order, wherever they live ([train] device).
    virtual ModelParameters& parameters() = 0;

    // Bytes the learner must hold per its design: parameters, gradients and AdamW moments
    // (16 per parameter in fp32), wherever they live. Activations and caches are not counted.
    virtual uint64_t state_bytes() const = 0;
    // Where and how it computes: "cpu, fp32, LibTorch 1.13.0, BLAS: OpenBLAS (...)".
    virtual std::string describe() const = 0;
    // What in this machine's setup makes training slower than it could be (a reference BLAS,
    // say), each with what to do about it; empty when nothing.
    virtual std::vector<std::string> warnings() const = 0;

    // One inner step: forward and backward over each micro-batch (gradients accumulated and
    // averaged), clipping, then one AdamW update at learning rate `lr`.
    virtual InnerStepResult step(std::span<const TokenBatch> micro_batches, double lr) = 0;

    // Cross-entropy on held-out windows, without changing anything.
    virtual LossSum evaluate(const TokenBatch& batch) = 0;

    // The inner optimizer's state (moments, step counts), for live recovery and checkpoints: a
    // copy taken now (tensor copies, fast), and a function that turns it into opaque bytes later,
    // from any thread, so that a checkpoint's serialization does not stall training.
    // load_optimizer_state() takes such bytes from a learner of the same shape; it throws
    // std::runtime_error saying what does not fit, and changes nothing then.
    virtual std::function<std::vector<uint8_t>()> snapshot_optimizer_state() = 0;
    virtual void load_optimizer_state(std::span<const uint8_t> bytes) = 0;

    // A node of several workers shards the model among them (model/sharded.hpp): every worker
    // holds 1/W of the parameters, gradients and moments, and parameters() are its shard (the
    // range shard_range() gives it), which the outer loop of that worker steps.
    // Worker 0's load_optimizer_state(), snapshot_optimizer_state() and evaluate() are
    // collectives the others do not expect: worker 0 calls `announce` first, and they serve() it.
    virtual void set_announcer(std::function<void(WorkerRequest)> announce) { (void)announce; }
    virtual void serve(WorkerRequest request) { (void)request; }
};

// Makes the Llama learner for [model] and [train] (defined in model/, which links LibTorch).
// Parameters are initialized from [run] seed, identically on every node. Throws ManifestError
// naming [train] device when that device is not there (CUDA asked of a LibTorch without it, a
// GPU index past the last). With `workers` (a node of several: train/node_workers.hpp), the
// model is sharded among them and each step() computes this worker's share of every micro-batch:
// the gradients are summed over the workers (reduce-scattered into each one's shard), so the
// node takes the step a single worker would take on the whole batch (up to float summation
// order).
std::unique_ptr<Learner> make_llama_learner(const Manifest& manifest, const ModelShape& shape,
                                            WorkerGroup* workers = nullptr);


}  // namespace pangea
