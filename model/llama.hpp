// A Llama-3 style decoder in LibTorch: token embedding, RMSNorm, rotary position embeddings,
// grouped-query causal attention, SwiGLU feed-forward, optional tied output embedding.
//
// Every parameter is a view into one contiguous fp32 tensor laid out by parameter_layout(), so
// the DiLoCo outer loop and the all-reduce read and write the model's memory directly.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <span>
#include <vector>

#include "train/model_shape.hpp"

namespace pangea {

class LlamaModel {
public:
    // Initializes from `seed`, identically on every machine: normal(0, 0.02) weights, output
    // projections of each block scaled by 1/sqrt(2 x layers), norms at 1.
    LlamaModel(const ModelShape& shape, int64_t max_seq_len, uint64_t seed);

    // tokens: [batch, time] int64 -> logits [batch, time, vocab].
    torch::Tensor forward(const torch::Tensor& tokens) const;

    std::span<float> flat() { return {flat_.data_ptr<float>(), static_cast<size_t>(flat_.numel())}; }
    // Matrices (weight decay applies) and vectors (norm gains: no weight decay).
    const std::vector<torch::Tensor>& matrices() const { return matrices_; }
    const std::vector<torch::Tensor>& vectors() const { return vectors_; }
    std::vector<torch::Tensor> parameters() const;

private:
    struct Block {
        torch::Tensor attention_norm, wq, wk, wv, wo, ffn_norm, w1, w3, w2;
    };
    torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& gain) const;
    torch::Tensor rotate(const torch::Tensor& x) const;  // rotary embedding, x: [batch, heads, time, head_dim]
    torch::Tensor attention(const Block& block, const torch::Tensor& x) const;

    ModelShape shape_;
    torch::Tensor flat_;
    torch::Tensor embedding_, norm_, output_;
    std::vector<Block> blocks_;
    std::vector<torch::Tensor> matrices_, vectors_;
    torch::Tensor cos_, sin_;  // [max_seq_len, head_dim]
};

}  // namespace pangea
