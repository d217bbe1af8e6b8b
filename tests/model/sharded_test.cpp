// ZeRO-3 among a node's workers (threads here, over real Gloo pairs): each shard starts from the
// whole model's values, a sharded step is the whole model's step on the same batch (within float
// summation order), and the inner optimizer's state and evaluation come out the same.
#include "sharded.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "manifest/manifest.hpp"
#include "train/learner.hpp"
#include "workers/worker_group.hpp"

namespace pangea {
namespace {

namespace fs = std::filesystem;

ModelShape tiny_shape(bool tied) {
    ModelShape s;
    s.preset = "test";
    s.layers = 2, s.d_model = 32, s.heads = 4, s.kv_heads = 2, s.ffn = 64, s.vocab = 50;
    s.tied_embeddings = tied;
    return s;
}

Manifest manifest() {
    static PluginRegistry registry(std::vector<SearchPath>{});
    return parse_manifest("[model]\nlayers = 2\nd_model = 32\nheads = 4\nkv_heads = 2\nffn = 64\nvocab = 50\n"
                          "[data]\nseq_len = 16\n[train]\nlr = 0.01\nweight_decay = 0.1\ngrad_clip = 0.5\nthreads = 1\n",
                          "test.toml", ".", {}, registry);
}

std::vector<int32_t> random_windows(int64_t sequences, int64_t seq_len, int seed) {
    torch::manual_seed(seed);
    const auto t = torch::randint(50, {sequences * (seq_len + 1)}, torch::kInt32);
    return std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + t.numel());
}

double worst_difference(std::span<const float> a, std::span<const float> b) {
    EXPECT_EQ(a.size(), b.size());
    double worst = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, double(std::abs(a[i] - b[i])));
    return worst;
}

TEST(Sharded, EachShardStartsFromTheWholeModelsValues) {
    for (const bool tied : {false, true}) {
        const ModelShape shape = tiny_shape(tied);
        const LlamaModel whole(shape, 16, 7, {});
        const int64_t count = whole.flat().numel();
        for (int k = 0; k < 3; ++k) {
            const FlatRange shard = shard_of(count, 3, k);
            const LlamaModel part(shape, 16, 7, {}, shard);
            EXPECT_FALSE(part.holds_all());
            EXPECT_TRUE(torch::equal(part.flat(), whole.flat().narrow(0, shard.begin, shard.size())))
                << "shard " << k << (tied ? " (tied)" : "");
        }
    }
}

class ShardedLearners : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override {
        dir = fs::temp_directory_path() / ("pangea-sharded-" + std::to_string(std::random_device()()));
        fs::create_directories(dir);
    }
    void TearDown() override { fs::remove_all(dir); }
    fs::path dir;
};

TEST_P(ShardedLearners, TakeTheWholeModelsStepsAndHoldItsOptimizerState) {
    const ModelShape shape = tiny_shape(GetParam());
    const Manifest m = manifest();
    const auto tokens = random_windows(4, 16, 3);
    const TokenBatch batch{tokens, 4, 16};
    const auto eval_tokens = random_windows(3, 16, 4);  // 3 windows: uneven shares
    const TokenBatch eval{eval_tokens, 3, 16};

    auto whole = make_llama_learner(m, shape);
    std::vector<InnerStepResult> expected;
    for (int i = 0; i < 3; ++i) expected.push_back(whole->step(std::span<const TokenBatch>(&batch, 1), 0.01));
    const LossSum expected_eval = whole->evaluate(eval);
    const std::vector<uint8_t> expected_state = whole->snapshot_optimizer_state()();

    constexpr int kWorkers = 2;
    std::vector<float> gathered(whole->parameters().size());
    std::mutex gathering;
    std::vector<InnerStepResult> results;
    LossSum evaluated;
    std::vector<uint8_t> state;
    std::vector<std::thread> threads;
    for (int rank = 0; rank < kWorkers; ++rank)
        threads.emplace_back([&, rank] {
            const auto group = join_gloo_group(dir, rank, kWorkers, std::chrono::milliseconds(20000));
            auto learner = make_llama_learner(m, shape, group.get());
            for (int i = 0; i < 3; ++i) {
                const auto result = learner->step(std::span<const TokenBatch>(&batch, 1), 0.01);
                if (rank == 0) results.push_back(result);
            }
            {
                const auto shard = learner->parameters().host_memory();  // this worker's
                const ShardRange range = shard_range(whole->parameters().size(), kWorkers, rank);
                EXPECT_EQ(shard.size(), range.size());
                std::lock_guard lock(gathering);
                std::copy(shard.begin(), shard.end(), gathered.begin() + static_cast<std::ptrdiff_t>(range.begin));
            }
            if (rank == 0) {
                evaluated = learner->evaluate(eval);
                state = learner->snapshot_optimizer_state()();
                // Loading it back scatters it; the state is then the same again.
                learner->load_optimizer_state(state);
                EXPECT_EQ(learner->snapshot_optimizer_state()(), state);
            } else {  // (a node's worker serves what worker 0 announces)
                learner->serve(WorkerRequest::kEvaluate);
                learner->serve(WorkerRequest::kSnapshotOptimizerState);
                learner->serve(WorkerRequest::kLoadOptimizerState);
                learner->serve(WorkerRequest::kSnapshotOptimizerState);
            }
        });
    for (auto& t : threads) t.join();

    ASSERT_EQ(results.size(), expected.size());
    for (size_t i = 0; i < results.size(); ++i) {
        EXPECT_NEAR(results[i].loss, expected[i].loss, 1e-5) << "step " << i;
        EXPECT_NEAR(results[i].grad_norm, expected[i].grad_norm, 1e-4 * expected[i].grad_norm) << "step " << i;
    }
    EXPECT_LT(worst_difference(gathered, whole->parameters().host_memory()), 1e-5);
    EXPECT_EQ(evaluated.tokens, expected_eval.tokens);
    EXPECT_NEAR(evaluated.sum, expected_eval.sum, 1e-4 * expected_eval.sum);
    ASSERT_EQ(state.size(), expected_state.size());
    const auto moments = [](const std::vector<uint8_t>& bytes) {
        return std::span<const float>(reinterpret_cast<const float*>(bytes.data() + 24), (bytes.size() - 24) / 4);
    };
    EXPECT_EQ(std::vector<uint8_t>(state.begin(), state.begin() + 24),
              std::vector<uint8_t>(expected_state.begin(), expected_state.begin() + 24));  // header, step count
    EXPECT_LT(worst_difference(moments(state), moments(expected_state)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(TiedOrNot, ShardedLearners, ::testing::Values(false, true));

TEST(Sharded, AStateOfAnotherModelIsRefusedSayingWhy) {
    const Manifest m = manifest();
    auto learner = make_llama_learner(m, tiny_shape(false));
    auto other = make_llama_learner(m, tiny_shape(true));  // fewer parameters
    try {
        learner->load_optimizer_state(other->snapshot_optimizer_state()());
        FAIL() << "a state of another model was taken";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("does not fit this model"), std::string::npos) << e.what();
    }
    try {
        learner->load_optimizer_state(std::vector<uint8_t>(100, 7));
        FAIL() << "garbage was taken";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("not Pangea's AdamW state"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace pangea
