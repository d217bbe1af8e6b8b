#include "llama.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace F = torch::nn::functional;

namespace pangea {
namespace {

// Activation checkpointing of one block: the forward pass keeps only the block's input; the
// backward pass runs the block again with gradients on and differentiates that.
struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
    static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::TensorList weights,
                                 const LlamaModel* model, int64_t index) {
        ctx->save_for_backward({x});
        ctx->saved_data["model"] = reinterpret_cast<int64_t>(model);
        ctx->saved_data["index"] = index;
        ctx->saved_data["weights"] = static_cast<int64_t>(weights.size());
        torch::NoGradGuard no_grad;
        return model->block(static_cast<size_t>(index), x);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grad_output) {
        const auto* model = reinterpret_cast<const LlamaModel*>(ctx->saved_data["model"].toInt());
        const auto index = static_cast<size_t>(ctx->saved_data["index"].toInt());
        const torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
        std::vector<torch::Tensor> inputs = model->block_parameters(index);
        torch::Tensor y;
        {
            torch::AutoGradMode enable(true);
            y = model->block(index, x);
        }
        inputs.insert(inputs.begin(), x);
        const auto grads = torch::autograd::grad({y}, inputs, {grad_output[0]}, /*retain_graph=*/false,
                                                 /*create_graph=*/false, /*allow_unused=*/true);
        // forward's arguments: x, each weight, then the model and the index (no gradient).
        torch::autograd::variable_list result(grads.begin(), grads.end());
        result.emplace_back();
        result.emplace_back();
        return result;
    }
};

}  // namespace

FlatRange FlatRange::intersect(const FlatRange& other) const {
    const int64_t b = std::max(begin, other.begin), e = std::min(end, other.end);
    return b < e ? FlatRange{b, e} : FlatRange{b, b};
}

LlamaModel::LlamaModel(const ModelShape& shape, int64_t max_seq_len, uint64_t seed, const ComputeOptions& compute,
                       std::optional<FlatRange> held)
    : shape_(shape), compute_(compute), count_(static_cast<int64_t>(parameter_count(shape))),
      held_(held.value_or(FlatRange{0, count_})) {
    const auto layout = parameter_layout(shape);
    const auto on_device = torch::TensorOptions().dtype(torch::kFloat32).device(compute.device);
    flat_ = torch::empty({held_.size()}, on_device);
    // A generator of our own, not the global one: nodes built on several threads of one process
    // (the tests) still get exactly the same parameters. Drawn on the CPU one tensor at a time,
    // so every device and every shard starts from the same values, and the host holds at most one
    // tensor extra. A shard draws every tensor (the generator's sequence) and keeps its part.
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    std::map<std::string, torch::Tensor> by_name;
    const double output_std = 0.02 / std::sqrt(2.0 * double(shape.layers));
    {
        torch::NoGradGuard no_grad;
        for (const auto& slot : layout) {
            const FlatRange range{static_cast<int64_t>(slot.offset), static_cast<int64_t>(slot.offset + slot.count)};
            const FlatRange part = range.intersect(held_);
            const bool is_norm = slot.shape.size() == 1;
            const bool is_output_projection = slot.name.find("wo") != std::string::npos ||
                                              slot.name.find("w2") != std::string::npos;
            const double std = is_output_projection ? output_std : 0.02;
            const bool held_here = part.size() > 0;
            torch::Tensor into = held_here ? flat_.narrow(0, part.begin - held_.begin, part.size()) : torch::Tensor();
            if (is_norm) {
                if (held_here) into.fill_(1.0);
            } else if (compute.device.is_cpu() && part.size() == range.size()) {
                into.view(slot.shape).normal_(0.0, std, generator);
            } else {  // (also when none of it is held: the generator moves on alike)
                const auto drawn = torch::empty(slot.shape, torch::kFloat32).normal_(0.0, std, generator);
                if (held_here) into.copy_(drawn.view({-1}).narrow(0, part.begin - range.begin, part.size()));
            }
            if (!holds_all()) continue;
            torch::Tensor view = into.view(slot.shape);
            view.set_requires_grad(true);
            (is_norm ? vectors_ : matrices_).push_back(view);
            by_name[slot.name] = view;
        }
    }
    if (holds_all()) {
        embedding_ = by_name.at("tok_embeddings");
        norm_ = by_name.at("norm");
        output_ = shape.tied_embeddings ? embedding_ : by_name.at("output");
        for (int64_t l = 0; l < shape.layers; ++l) {
            const std::string p = "layers." + std::to_string(l) + ".";
            blocks_.push_back({by_name.at(p + "attention_norm"), by_name.at(p + "attention.wq"),
                               by_name.at(p + "attention.wk"), by_name.at(p + "attention.wv"),
                               by_name.at(p + "attention.wo"), by_name.at(p + "ffn_norm"),
                               by_name.at(p + "feed_forward.w1"), by_name.at(p + "feed_forward.w3"),
                               by_name.at(p + "feed_forward.w2")});
        }
    }
    // Rotary tables, "rotate half" form: dimension i pairs with i + head_dim / 2. In the compute
    // type, like the queries and keys they turn.
    const int64_t hd = shape.head_dim();
    const auto exponents = torch::arange(0, hd, 2, torch::kFloat64) / double(hd);
    const auto inverse_frequency = torch::pow(shape.rope_theta, -exponents);
    const auto angles = torch::outer(torch::arange(max_seq_len, torch::kFloat64), inverse_frequency);
    const auto both = torch::cat({angles, angles}, -1);
    cos_ = torch::cos(both).to(compute.device, compute.compute);
    sin_ = torch::sin(both).to(compute.device, compute.compute);
#if TORCH_VERSION_MAJOR < 2
    future_ = torch::ones({max_seq_len, max_seq_len}, torch::TensorOptions().dtype(torch::kBool).device(compute.device)).triu(1);
#endif
}

std::vector<torch::Tensor> LlamaModel::parameters() const {
    std::vector<torch::Tensor> all = matrices_;
    all.insert(all.end(), vectors_.begin(), vectors_.end());
    return all;
}

std::vector<torch::Tensor> LlamaModel::block_parameters(size_t index) const {
    const BlockWeights& b = blocks_.at(index);
    return {b.attention_norm, b.wq, b.wk, b.wv, b.wo, b.ffn_norm, b.w1, b.w3, b.w2};
}

torch::Tensor LlamaModel::rms_norm(const torch::Tensor& x, const torch::Tensor& gain) const {
    const torch::Tensor x32 = x.to(torch::kFloat32);
    return x32 * torch::rsqrt(x32.pow(2).mean(-1, true) + shape_.norm_eps) * gain;
}

torch::Tensor LlamaModel::rotate(const torch::Tensor& x) const {
    const int64_t time = x.size(2), half = x.size(3) / 2;
    const auto cos = cos_.narrow(0, 0, time), sin = sin_.narrow(0, 0, time);
    const auto rotated = torch::cat({-x.narrow(3, half, half), x.narrow(3, 0, half)}, -1);
    return x * cos + rotated * sin;
}

torch::Tensor LlamaModel::attention(const BlockWeights& b, const torch::Tensor& x) const {
    const int64_t batch = x.size(0), time = x.size(1), hd = shape_.head_dim();
    const torch::Tensor input = x.to(compute_.compute);
    auto q = F::linear(input, weight(b.wq)).view({batch, time, shape_.heads, hd}).transpose(1, 2);
    auto k = F::linear(input, weight(b.wk)).view({batch, time, shape_.kv_heads, hd}).transpose(1, 2);
    auto v = F::linear(input, weight(b.wv)).view({batch, time, shape_.kv_heads, hd}).transpose(1, 2);
    q = rotate(q);
    k = rotate(k);
    if (shape_.kv_heads != shape_.heads) {  // grouped-query: each KV head serves heads / kv_heads heads
        const int64_t group = shape_.heads / shape_.kv_heads;
        k = k.repeat_interleave(group, 1);
        v = v.repeat_interleave(group, 1);
    }
#if TORCH_VERSION_MAJOR >= 2
    // Fused attention (flash or memory-efficient kernels on a GPU): no [time, time] scores kept.
    const auto y = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
#else
    auto scores = torch::matmul(q, k.transpose(-2, -1)).to(torch::kFloat32) / std::sqrt(double(hd));
    scores = scores.masked_fill(future_.narrow(0, 0, time).narrow(1, 0, time), -std::numeric_limits<float>::infinity());
    const auto y = torch::matmul(torch::softmax(scores, -1).to(compute_.compute), v);
#endif
    return F::linear(y.transpose(1, 2).reshape({batch, time, shape_.d_model}), weight(b.wo));
}

torch::Tensor LlamaModel::block(const BlockWeights& b, const torch::Tensor& x) const {
    // The residual stream stays fp32; the products run in the compute type.
    const auto h = x + attention(b, rms_norm(x, b.attention_norm));
    const auto n = rms_norm(h, b.ffn_norm).to(compute_.compute);
    return h + F::linear(F::silu(F::linear(n, weight(b.w1))) * F::linear(n, weight(b.w3)), weight(b.w2));
}

torch::Tensor LlamaModel::embed(const torch::Tensor& tokens, const torch::Tensor& embedding) const {
    return F::embedding(tokens, embedding);
}

torch::Tensor LlamaModel::head(const torch::Tensor& x, const torch::Tensor& norm, const torch::Tensor& output) const {
    return F::linear(rms_norm(x, norm).to(compute_.compute), weight(output)).to(torch::kFloat32);
}

torch::Tensor LlamaModel::forward(const torch::Tensor& tokens) const {
    TORCH_CHECK(holds_all(), "LlamaModel::forward needs all the parameters (a shard computes through ShardedModel)");
    auto x = embed(tokens, embedding_);
    for (size_t i = 0; i < blocks_.size(); ++i) {
        if (compute_.activation_checkpointing && torch::GradMode::is_enabled()) {
            const std::vector<torch::Tensor> weights = block_parameters(i);
            x = CheckpointedBlock::apply(x, torch::TensorList(weights), this, static_cast<int64_t>(i));
        } else {
            x = block(i, x);
        }
    }
    return head(x, norm_, output_);
}

}  // namespace pangea
