// The Llama model and learner: parameters are views of the flat buffer, initialization is
// reproducible, attention is causal, accumulation matches a whole batch, and it learns.
#include "llama.hpp"

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "manifest/manifest.hpp"
#include "train/learner.hpp"

namespace pangea {
namespace {

std::span<float> values(const torch::Tensor& flat) {
    return {flat.data_ptr<float>(), static_cast<size_t>(flat.numel())};
}

ModelShape tiny_shape() {
    ModelShape s;
    s.preset = "test";
    s.layers = 2, s.d_model = 32, s.heads = 4, s.kv_heads = 2, s.ffn = 64, s.vocab = 50;
    return s;
}

TEST(Llama, FlatBufferHoldsEveryParameter) {
    LlamaModel model(tiny_shape(), 16, 1, {});
    const std::span<float> flat = values(model.flat());
    EXPECT_EQ(flat.size(), parameter_count(tiny_shape()));
    size_t viewed = 0;
    for (const auto& p : model.parameters()) {
        viewed += static_cast<size_t>(p.numel());
        EXPECT_GE(p.data_ptr<float>(), flat.data());
        EXPECT_LE(p.data_ptr<float>() + p.numel(), flat.data() + flat.size());
    }
    EXPECT_EQ(viewed, flat.size());
    // Writing the flat buffer changes what the model computes.
    const auto tokens = torch::randint(50, {1, 8}, torch::kInt64);
    const auto before = model.forward(tokens).detach().clone();
    for (float& v : flat) v *= 0.5f;
    EXPECT_FALSE(torch::allclose(before, model.forward(tokens).detach()));
}

TEST(Llama, InitializationDependsOnlyOnTheSeed) {
    LlamaModel a(tiny_shape(), 16, 5, {}), b(tiny_shape(), 16, 5, {}), c(tiny_shape(), 16, 6, {});
    EXPECT_TRUE(torch::equal(a.flat(), b.flat()));
    EXPECT_FALSE(torch::equal(a.flat(), c.flat()));
}

TEST(Llama, AttentionIsCausal) {
    LlamaModel model(tiny_shape(), 16, 1, {});
    auto tokens = torch::randint(50, {1, 12}, torch::kInt64);
    const auto before = model.forward(tokens).detach().clone();
    tokens[0][11] = (tokens[0][11].item<int64_t>() + 1) % 50;  // change the last token only
    const auto after = model.forward(tokens).detach();
    EXPECT_TRUE(torch::allclose(before.narrow(1, 0, 11), after.narrow(1, 0, 11), 1e-5, 1e-6));
    EXPECT_FALSE(torch::allclose(before.narrow(1, 11, 1), after.narrow(1, 11, 1)));
}

Manifest manifest(const std::string& extra = "") {
    static PluginRegistry registry(std::vector<SearchPath>{});
    return parse_manifest("[model]\nlayers = 2\nd_model = 32\nheads = 4\nkv_heads = 2\nffn = 64\nvocab = 50\n"
                          "[data]\nseq_len = 16\n[train]\nlr = 0.01\nweight_decay = 0\nthreads = 1\n" + extra,
                          "test.toml", ".", {}, registry);
}

std::vector<int32_t> random_windows(int64_t sequences, int64_t seq_len, int seed) {
    torch::manual_seed(seed);
    const auto t = torch::randint(50, {sequences * (seq_len + 1)}, torch::kInt32);
    return std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + t.numel());
}

TEST(Llama, AccumulatedMicroBatchesMatchOneBatch) {
    const Manifest m = manifest();
    ModelShape shape = tiny_shape();
    const auto tokens = random_windows(4, 16, 3);
    auto whole = make_llama_learner(m, shape);
    auto split = make_llama_learner(m, shape);
    const TokenBatch all{tokens, 4, 16};
    const TokenBatch halves[2] = {{std::span<const int32_t>(tokens).first(2 * 17), 2, 16},
                                  {std::span<const int32_t>(tokens).subspan(2 * 17), 2, 16}};
    const auto a = whole->step(std::span<const TokenBatch>(&all, 1), 0.01);
    const auto b = split->step(halves, 0.01);
    EXPECT_NEAR(a.loss, b.loss, 1e-5);
    EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-4 * a.grad_norm);
    const auto pa = whole->parameters().host_memory(), pb = split->parameters().host_memory();
    double worst = 0;
    for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, double(std::abs(pa[i] - pb[i])));
    EXPECT_LT(worst, 1e-5);
}

TEST(Llama, LearnsARepeatedBatchAndEvaluationChangesNothing) {
    const Manifest m = manifest("z_loss = 0.0001\n");
    auto learner = make_llama_learner(m, tiny_shape());
    const auto tokens = random_windows(4, 16, 4);
    const TokenBatch batch{tokens, 4, 16};
    const LossSum start = learner->evaluate(batch);
    const auto params = learner->parameters().host_memory();
    const std::vector<float> before(params.begin(), params.end());
    EXPECT_EQ(learner->evaluate(batch).sum, start.sum);
    EXPECT_TRUE(std::equal(before.begin(), before.end(), params.begin()));
    EXPECT_EQ(start.tokens, 4 * 16);
    EXPECT_NEAR(start.sum / double(start.tokens), std::log(50.0), 0.3);  // about uniform at first
    InnerStepResult last;
    for (int i = 0; i < 60; ++i) last = learner->step(std::span<const TokenBatch>(&batch, 1), 0.01);
    EXPECT_LT(last.loss, 0.5 * start.sum / double(start.tokens));
}

// Checkpointed blocks recompute the same forward pass in the backward pass: the same step.
TEST(Llama, ActivationCheckpointingTakesTheSameStep) {
    const auto tokens = random_windows(2, 16, 5);
    const TokenBatch batch{tokens, 2, 16};
    auto plain = make_llama_learner(manifest(), tiny_shape());
    auto checkpointed = make_llama_learner(manifest("activation_checkpointing = true\n"), tiny_shape());
    EXPECT_NE(checkpointed->describe().find("activation checkpointing"), std::string::npos);
    for (int i = 0; i < 3; ++i) {
        const auto a = plain->step(std::span<const TokenBatch>(&batch, 1), 0.01);
        const auto b = checkpointed->step(std::span<const TokenBatch>(&batch, 1), 0.01);
        EXPECT_EQ(a.loss, b.loss);
        EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-6 * a.grad_norm);
    }
    const auto pa = plain->parameters().host_memory(), pb = checkpointed->parameters().host_memory();
    double worst = 0;
    for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, double(std::abs(pa[i] - pb[i])));
    EXPECT_LT(worst, 1e-6);
}

// bf16 products, fp32 master weights: it learns, and the same inputs give the same bits.
TEST(Llama, Bf16LearnsAndIsDeterministic) {
    const Manifest m = manifest("precision = \"bf16\"\n");
    auto a = make_llama_learner(m, tiny_shape()), b = make_llama_learner(m, tiny_shape());
    EXPECT_NE(a->describe().find("bf16"), std::string::npos);
    EXPECT_EQ(a->state_bytes(), parameter_count(tiny_shape()) * 16);
    const auto tokens = random_windows(4, 16, 4);
    const TokenBatch batch{tokens, 4, 16};
    const LossSum start = a->evaluate(batch);
    InnerStepResult last;
    for (int i = 0; i < 60; ++i) {
        last = a->step(std::span<const TokenBatch>(&batch, 1), 0.01);
        b->step(std::span<const TokenBatch>(&batch, 1), 0.01);
    }
    EXPECT_LT(last.loss, 0.5 * start.sum / double(start.tokens));
    const auto pa = a->parameters().host_memory(), pb = b->parameters().host_memory();
    EXPECT_TRUE(std::equal(pa.begin(), pa.end(), pb.begin()));
}

TEST(Llama, ADeviceThisLibTorchLacksFailsNamingTheSetting) {
    try {
        make_llama_learner(manifest("device = \"gpu\"\n"), tiny_shape());
        ADD_FAILURE() << "device = gpu was accepted";
    } catch (const ManifestError& e) {
        EXPECT_NE(std::string(e.what()).find("[train] device = \"gpu\": expected cpu, cuda or cuda:N"), std::string::npos)
            << e.what();
    }
    if (torch::cuda::is_available()) GTEST_SKIP() << "this LibTorch has CUDA";
    try {
        make_llama_learner(manifest("device = \"cuda\"\n"), tiny_shape());
        ADD_FAILURE() << "device = cuda was accepted without CUDA";
    } catch (const ManifestError& e) {
        EXPECT_NE(std::string(e.what()).find("test.toml:"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("[train] device = \"cuda\": this LibTorch"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("set device = \"cpu\""), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace pangea
