// A Llama-3 style decoder in LibTorch: token embedding, RMSNorm, rotary position embeddings,
// grouped-query causal attention, SwiGLU feed-forward, optional tied output embedding.
//
// Every parameter is a view into one contiguous fp32 tensor laid out by parameter_layout(), on
// the compute device, so the DiLoCo outer loop reads and writes the model's memory in one piece.
//
// Precision: the parameters (and so their gradients and the AdamW moments) stay fp32, the
// master weights; with compute = bf16 the forward pass casts each weight and the residual
// stream to bf16 for the matrix products and attention (what autocast does), while norms,
// rotary tables, logits and the loss stay fp32. One design for CPU and GPU, any LibTorch.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "train/model_shape.hpp"

namespace pangea {

struct ComputeOptions {
    torch::Device device = torch::kCPU;
    torch::ScalarType compute = torch::kFloat32;  // kFloat32 or kBFloat16
    // Recompute each block's activations in the backward pass instead of keeping them: memory
    // for activations drops from one set per block to one block's, for about 1/3 more compute.
    bool activation_checkpointing = false;
};

// A range of parameter_layout()'s flat order, in values: a worker's shard, a slot.
struct FlatRange {
    int64_t begin = 0, end = 0;
    int64_t size() const { return end - begin; }
    FlatRange intersect(const FlatRange& other) const;  // (empty: begin == end)
};

// One transformer block's weights.
struct BlockWeights {
    torch::Tensor attention_norm, wq, wk, wv, wo, ffn_norm, w1, w3, w2;
};

class LlamaModel {
public:
    // Initializes from `seed`, identically on every machine and device: normal(0, 0.02) weights
    // (drawn on the CPU), output projections of each block scaled by 1/sqrt(2 x layers), norms at 1.
    // `held`: the part of the parameters this model holds (a worker's shard: model/sharded.hpp),
    // with the values the whole would have there; all of them by default. Only a model holding
    // all of them has parameter views and forward().
    LlamaModel(const ModelShape& shape, int64_t max_seq_len, uint64_t seed, const ComputeOptions& compute,
               std::optional<FlatRange> held = std::nullopt);

    // tokens: [batch, time] int64 on the device -> fp32 logits [batch, time, vocab].
    torch::Tensor forward(const torch::Tensor& tokens) const;

    // The parameters held, one fp32 tensor on the device in parameter_layout() order.
    const torch::Tensor& flat() const { return flat_; }
    FlatRange held() const { return held_; }
    bool holds_all() const { return held_.begin == 0 && held_.end == count_; }
    const ModelShape& shape() const { return shape_; }
    // Matrices (weight decay applies) and vectors (norm gains: no weight decay).
    const std::vector<torch::Tensor>& matrices() const { return matrices_; }
    const std::vector<torch::Tensor>& vectors() const { return vectors_; }
    std::vector<torch::Tensor> parameters() const;
    const ComputeOptions& compute() const { return compute_; }

    // The model in pieces, with weights given (a sharded model's, gathered: model/sharded.hpp).
    // embed: tokens -> x [batch, time, d_model] fp32; block: x -> x, the residual stream fp32,
    // the products in the compute type; head: x -> fp32 logits.
    torch::Tensor embed(const torch::Tensor& tokens, const torch::Tensor& embedding) const;
    torch::Tensor block(const BlockWeights& weights, const torch::Tensor& x) const;
    torch::Tensor head(const torch::Tensor& x, const torch::Tensor& norm, const torch::Tensor& output) const;

    // With all parameters held: block `index` on x, and its weights.
    torch::Tensor block(size_t index, const torch::Tensor& x) const { return block(blocks_.at(index), x); }
    size_t blocks() const { return blocks_.size(); }
    std::vector<torch::Tensor> block_parameters(size_t index) const;

private:
    torch::Tensor weight(const torch::Tensor& w) const { return w.to(compute_.compute); }
    torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& gain) const;  // in fp32
    torch::Tensor rotate(const torch::Tensor& x) const;  // rotary embedding, x: [batch, heads, time, head_dim]
    torch::Tensor attention(const BlockWeights& block, const torch::Tensor& x) const;

    ModelShape shape_;
    ComputeOptions compute_;
    int64_t count_ = 0;  // parameters in all
    FlatRange held_;
    torch::Tensor flat_;
    torch::Tensor embedding_, norm_, output_;
    std::vector<BlockWeights> blocks_;
    std::vector<torch::Tensor> matrices_, vectors_;
    torch::Tensor cos_, sin_;  // [max_seq_len, head_dim], in the compute type on the device
    torch::Tensor future_;     // [max_seq_len, max_seq_len] causal mask (LibTorch 1.x, which has no fused attention)
};

}  // namespace pangea
