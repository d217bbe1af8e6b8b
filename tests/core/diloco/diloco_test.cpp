// DiLoCo end to end inside one process: N nodes as threads, each with its own Llama learner,
// sampler, tcp transport and outer optimizer, talking over loopback.
#include <gtest/gtest.h>

#include <future>

#include "diloco/outer_loop.hpp"
#include "manifest/manifest.hpp"
#include "topology/ring_setup.hpp"
#include "train/learner.hpp"
#include "train/model_shape.hpp"
#include "common/float_hash.hpp"
#include "train/node.hpp"

#include "support/builtin_plugins.hpp"

namespace pangea {
namespace {

PluginRegistry& registry() { return test::builtin_registry(); }
PluginInstance make(pangea_plugin_kind kind, const std::string& name, std::map<std::string, SettingValue> overrides = {}) {
    return test::make_plugin(kind, name, std::move(overrides));
}

Manifest small_manifest() {
    return parse_manifest(R"(
[run]
seed = 7
[model]
preset = "tiny"
layers = 2
[data]
seq_len = 16
[train]
lr = 0.01
micro_batch = 2
threads = 1
)", "test.toml", ".", {}, registry());
}

struct Node {
    std::unique_ptr<Learner> learner;
    std::unique_ptr<Sampler> sampler;
    std::vector<int32_t> tokens;

    Node(const Manifest& m, int rank, int world)
        : learner(make_llama_learner(m, check_training_inputs(m))),
          sampler(std::make_unique<Sampler>(m.data_sources, 16, 7, rank, world)),
          tokens(2 * 17) {}

    void inner_step(double lr) {
        sampler->next(tokens);
        const TokenBatch batch{tokens, 2, 16};
        learner->step(std::span<const TokenBatch>(&batch, 1), lr);
    }
};

struct RunOptions {
    int world = 2;
    int outer_steps = 3;
    int inner_steps = 1;
    bool overlap = false;
    int fragments = 1;
    float overlap_alpha = 0;
    std::string codec = "none";
    std::optional<Aggregation> aggregation;  // unset: the codec's
    std::map<std::string, SettingValue> optimizer;
};

struct NodeResult {
    std::vector<float> params;
    std::vector<std::string> synced_hashes;  // after every sync()
    int64_t applied = 0;
    std::vector<float> residual;  // error feedback's, at the end
};

// Each rank's final parameters and the hash of its synced parameters after every outer step.
std::vector<NodeResult> run_diloco(const Manifest& m, const RunOptions& o) {
    std::vector<PluginInstance> transports;
    std::vector<std::unique_ptr<OwnedListener>> listeners;
    std::vector<std::string> addresses;
    transports.reserve(o.world);
    for (int r = 0; r < o.world; ++r) {
        transports.push_back(make(PANGEA_KIND_TRANSPORT, "tcp"));
        listeners.push_back(std::make_unique<OwnedListener>(transports.back(), "127.0.0.1:0"));
        addresses.push_back(listeners.back()->address());
    }
    std::vector<std::future<NodeResult>> futures;
    for (int r = 0; r < o.world; ++r)
        futures.push_back(std::async(std::launch::async, [&, r] {
            Node node(m, r, o.world);
            const RingConnections ring =
                connect_ring(transports[r], *listeners[r], r, addresses, 99, std::chrono::seconds(30));
            const Link next(transports[r], ring.next.handle()), previous(transports[r], ring.previous.handle());
            const PluginInstance codec = make(PANGEA_KIND_COMPRESS, o.codec);
            RingOptions options;
            options.aggregation = o.aggregation;
            RingAllReduce allreduce(r, o.world, next, previous, codec, options);
            const PluginInstance optimizer = make(PANGEA_KIND_OPTIM, "nesterov", o.optimizer);
            OuterLoop loop(node.learner->parameters(), optimizer,
                           [&](std::span<float> data, std::span<float> residual, const ContributionFn& contribution) {
                               contribution(data);
                               return allreduce.run(data, ReduceOp::kAverage, 0, residual);
                           },
                           OuterLoopOptions{.overlap = o.overlap,
                                            .fragments = o.fragments,
                                            .overlap_alpha = o.overlap_alpha,
                                            .error_feedback = wants_error_feedback(codec)});
            NodeResult result;
            for (int outer = 0; outer < o.outer_steps; ++outer) {
                for (int h = 0; h < o.inner_steps; ++h) node.inner_step(0.01);
                loop.sync(outer);
                result.synced_hashes.push_back(hash_floats(loop.synced().data(), loop.synced().size()));
            }
            loop.finish();
            const auto params = node.learner->parameters().host_memory();
            result.params.assign(params.begin(), params.end());
            result.applied = loop.applied_steps();
            result.residual.assign(loop.residual().begin(), loop.residual().end());
            return result;
        }));
    std::vector<NodeResult> results;
    for (auto& f : futures) results.push_back(f.get());
    return results;
}

// Synchronous parameter averaging, computed here without any network: every node takes one
// AdamW step from the common parameters, then all take the average.
std::vector<float> parameter_averaging(const Manifest& m, int world, int steps) {
    std::vector<std::unique_ptr<Node>> nodes;
    for (int r = 0; r < world; ++r) nodes.push_back(std::make_unique<Node>(m, r, world));
    const auto first = nodes[0]->learner->parameters().host_memory();
    std::vector<float> common(first.begin(), first.end());
    std::vector<float> sum(common.size());
    for (int step = 0; step < steps; ++step) {
        std::fill(sum.begin(), sum.end(), 0.0f);
        for (auto& node : nodes) {
            node->inner_step(0.01);
            const auto p = node->learner->parameters().host_memory();
            for (size_t i = 0; i < sum.size(); ++i) sum[i] += common[i] - p[i];  // the pseudo-gradient
        }
        const float scale = 1.0f / static_cast<float>(world);
        for (size_t i = 0; i < common.size(); ++i) common[i] -= sum[i] * scale;
        for (auto& node : nodes) {
            const auto p = node->learner->parameters().host_memory();
            std::copy(common.begin(), common.end(), p.begin());
        }
    }
    return common;
}

TEST(Diloco, OneInnerStepWithPlainSgdIsParameterAveraging) {
    const Manifest m = small_manifest();
    RunOptions o;
    o.world = 2;
    o.optimizer = {{"lr", 1.0}, {"momentum", 0.0}};
    const auto results = run_diloco(m, o);
    const auto reference = parameter_averaging(m, 2, o.outer_steps);
    // Two nodes: a + b is b + a, and x 0.5 is exact, so the ring's arithmetic matches the
    // reference bit for bit.
    for (const auto& r : results) EXPECT_TRUE(r.params == reference);
}

TEST(Diloco, ThreeNodesMatchParameterAveragingUpToSummationOrder) {
    const Manifest m = small_manifest();
    RunOptions o;
    o.world = 3;
    o.optimizer = {{"lr", 1.0}, {"momentum", 0.0}};
    const auto results = run_diloco(m, o);
    const auto reference = parameter_averaging(m, 3, o.outer_steps);
    for (const auto& r : results) {
        ASSERT_EQ(r.params.size(), reference.size());
        double worst = 0;
        for (size_t i = 0; i < reference.size(); ++i) worst = std::max(worst, double(std::abs(r.params[i] - reference[i])));
        EXPECT_LT(worst, 1e-6);
        EXPECT_TRUE(r.params == results[0].params) << "nodes differ";
    }
}

TEST(Diloco, OverlapKeepsEveryNodeBitIdenticalAndAppliesEveryStep) {
    const Manifest m = small_manifest();
    RunOptions o;
    o.world = 3;
    o.outer_steps = 4;
    o.inner_steps = 2;
    o.overlap = true;
    o.fragments = 2;
    o.codec = "int8";
    const auto results = run_diloco(m, o);
    for (const auto& r : results) {
        EXPECT_EQ(r.synced_hashes, results[0].synced_hashes);
        EXPECT_TRUE(r.params == results[0].params);
        EXPECT_EQ(r.applied, 4);
    }
    // The first sync only starts the first all-reduce, so the synced parameters change from the
    // second on.
    EXPECT_NE(results[0].synced_hashes[1], results[0].synced_hashes[0]);
}

TEST(Diloco, FragmentsKeepEveryNodeBitIdenticalInEitherModeAndSyncInTurn) {
    const Manifest m = small_manifest();
    for (const bool overlap : {false, true}) {
        RunOptions o;
        o.world = 3;
        o.outer_steps = 6;  // each of the 3 fragments syncs twice
        o.inner_steps = 1;
        o.overlap = overlap;
        o.fragments = 3;
        o.overlap_alpha = 0.5f;
        o.codec = "int8";
        const auto results = run_diloco(m, o);
        for (const auto& r : results) {
            EXPECT_EQ(r.synced_hashes, results[0].synced_hashes) << "overlap " << overlap;
            EXPECT_TRUE(r.params == results[0].params) << "overlap " << overlap;
            EXPECT_EQ(r.applied, 6) << "overlap " << overlap;
        }
        // Every sync changes the synced parameters (blocking: its own fragment; overlap: the one
        // that landed, from the second on).
        for (size_t k = overlap ? 2 : 1; k < results[0].synced_hashes.size(); ++k)
            EXPECT_NE(results[0].synced_hashes[k], results[0].synced_hashes[k - 1]) << "overlap " << overlap << ", sync " << k;
    }
}

TEST(Diloco, ErrorFeedbackKeepsEveryNodeBitIdenticalInEitherAggregationAndMode) {
    const Manifest m = small_manifest();
    for (const Aggregation aggregation : {Aggregation::kRing, Aggregation::kGather})
        for (const bool overlap : {false, true}) {
            RunOptions o;
            o.world = 3;
            o.outer_steps = 3;
            o.inner_steps = 2;
            o.overlap = overlap;
            o.fragments = overlap ? 3 : 1;
            o.codec = "int8";  // lossy: it asks for error feedback
            o.aggregation = aggregation;
            const auto results = run_diloco(m, o);
            const std::string what = std::string(aggregation == Aggregation::kGather ? "gather" : "ring") +
                                     (overlap ? ", overlap" : ", blocking");
            for (const auto& r : results) {
                EXPECT_EQ(r.synced_hashes, results[0].synced_hashes) << what;
                EXPECT_TRUE(r.params == results[0].params) << what;
                EXPECT_EQ(r.applied, 3) << what;
            }
            // Each node keeps its own residual: what int8 lost of its last contribution.
            ASSERT_EQ(results[0].residual.size(), results[0].params.size()) << what;
            double norm = 0;
            for (const float v : results[0].residual) norm += double(v) * v;
            EXPECT_GT(norm, 0.0) << what;
            EXPECT_FALSE(results[0].residual == results[1].residual) << what;
        }
}

TEST(Diloco, ALosslessCodecKeepsNoResidual) {
    const Manifest m = small_manifest();
    RunOptions o;
    o.world = 2;
    const auto results = run_diloco(m, o);
    EXPECT_TRUE(results[0].residual.empty());
}

TEST(Diloco, NesterovBlockingRunsAreReproducible) {
    const Manifest m = small_manifest();
    RunOptions o;
    o.world = 2;
    o.inner_steps = 2;
    o.codec = "int8";
    const auto a = run_diloco(m, o);
    const auto b = run_diloco(m, o);
    EXPECT_TRUE(a[0].params == b[0].params);
    EXPECT_EQ(a[0].synced_hashes, b[1].synced_hashes);
}

}  // namespace
}  // namespace pangea
