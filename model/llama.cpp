#include "llama.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>

namespace F = torch::nn::functional;

namespace pangea {

LlamaModel::LlamaModel(const ModelShape& shape, int64_t max_seq_len, uint64_t seed) : shape_(shape) {
    const auto layout = parameter_layout(shape);
    flat_ = torch::empty({static_cast<int64_t>(parameter_count(shape))}, torch::kFloat32);
    // A generator of our own, not the global one: nodes built on several threads of one process
    // (the tests) still get exactly the same parameters.
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    std::map<std::string, torch::Tensor> by_name;
    const double output_std = 0.02 / std::sqrt(2.0 * double(shape.layers));
    {
        torch::NoGradGuard no_grad;
        for (const auto& slot : layout) {
            torch::Tensor view = flat_.narrow(0, static_cast<int64_t>(slot.offset), static_cast<int64_t>(slot.count))
                                     .view(slot.shape);
            const bool is_norm = slot.shape.size() == 1;
            const bool is_output_projection = slot.name.find("wo") != std::string::npos ||
                                              slot.name.find("w2") != std::string::npos;
            if (is_norm) view.fill_(1.0);
            else view.normal_(0.0, is_output_projection ? output_std : 0.02, generator);
            view.set_requires_grad(true);
            (is_norm ? vectors_ : matrices_).push_back(view);
            by_name[slot.name] = view;
        }
    }
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
    // Rotary tables, "rotate half" form: dimension i pairs with i + head_dim / 2.
    const int64_t hd = shape.head_dim();
    const auto exponents = torch::arange(0, hd, 2, torch::kFloat64) / double(hd);
    const auto inverse_frequency = torch::pow(shape.rope_theta, -exponents);
    const auto angles = torch::outer(torch::arange(max_seq_len, torch::kFloat64), inverse_frequency);
    const auto both = torch::cat({angles, angles}, -1);
    cos_ = torch::cos(both).to(torch::kFloat32);
    sin_ = torch::sin(both).to(torch::kFloat32);
}

std::vector<torch::Tensor> LlamaModel::parameters() const {
    std::vector<torch::Tensor> all = matrices_;
    all.insert(all.end(), vectors_.begin(), vectors_.end());
    return all;
}

torch::Tensor LlamaModel::rms_norm(const torch::Tensor& x, const torch::Tensor& gain) const {
    return x * torch::rsqrt(x.pow(2).mean(-1, true) + shape_.norm_eps) * gain;
}

torch::Tensor LlamaModel::rotate(const torch::Tensor& x) const {
    const int64_t time = x.size(2), half = x.size(3) / 2;
    const auto cos = cos_.narrow(0, 0, time), sin = sin_.narrow(0, 0, time);
    const auto rotated = torch::cat({-x.narrow(3, half, half), x.narrow(3, 0, half)}, -1);
    return x * cos + rotated * sin;
}

torch::Tensor LlamaModel::attention(const Block& b, const torch::Tensor& x) const {
    const int64_t batch = x.size(0), time = x.size(1), hd = shape_.head_dim();
    auto q = F::linear(x, b.wq).view({batch, time, shape_.heads, hd}).transpose(1, 2);
    auto k = F::linear(x, b.wk).view({batch, time, shape_.kv_heads, hd}).transpose(1, 2);
    auto v = F::linear(x, b.wv).view({batch, time, shape_.kv_heads, hd}).transpose(1, 2);
    q = rotate(q);
    k = rotate(k);
    if (shape_.kv_heads != shape_.heads) {  // grouped-query: each KV head serves heads / kv_heads heads
        const int64_t group = shape_.heads / shape_.kv_heads;
        k = k.repeat_interleave(group, 1);
        v = v.repeat_interleave(group, 1);
    }
    auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(hd));
    const auto future = torch::ones({time, time}, torch::kBool).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
    const auto y = torch::matmul(torch::softmax(scores, -1), v);
    return F::linear(y.transpose(1, 2).reshape({batch, time, shape_.d_model}), b.wo);
}

torch::Tensor LlamaModel::forward(const torch::Tensor& tokens) const {
    auto x = F::embedding(tokens, embedding_);
    for (const auto& b : blocks_) {
        x = x + attention(b, rms_norm(x, b.attention_norm));
        const auto h = rms_norm(x, b.ffn_norm);
        x = x + F::linear(F::silu(F::linear(h, b.w1)) * F::linear(h, b.w3), b.w2);
    }
    return F::linear(rms_norm(x, norm_), output_);
}

}  // namespace pangea
