// The ring all-reduce with N ranks as threads of this process, each with its own tcp transport
// and compressor instances, talking over loopback: bit parity, accuracy, and failure.
#include "collective/ring_allreduce.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cmath>
#include <filesystem>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "pangea/compress.h"
#include "topology/ring_order.hpp"
#include "topology/ring_setup.hpp"

#include "support/builtin_plugins.hpp"

namespace pangea {
namespace {

using ::testing::HasSubstr;

std::string sha256(std::span<const float> values) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_Digest(values.data(), values.size_bytes(), digest, &length, EVP_sha256(), nullptr);
    std::string hex;
    char byte[3];
    for (unsigned int i = 0; i < length; ++i) {
        std::snprintf(byte, sizeof byte, "%02x", digest[i]);
        hex += byte;
    }
    return hex;
}

std::vector<float> input_of(int rank, size_t n) {
    std::mt19937 rng(1000 + rank);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> out(n);
    for (auto& v : out) v = normal(rng);
    return out;
}

PluginInstance make(pangea_plugin_kind kind, const std::string& name, std::map<std::string, SettingValue> overrides = {}) {
    return test::make_plugin(kind, name, std::move(overrides));
}

// One rank: its plugins, its ring, and what its all-reduce returned.
struct Rank {
    PluginInstance transport = make(PANGEA_KIND_TRANSPORT, "tcp", {{"streams", int64_t{2}}});
    std::unique_ptr<OwnedListener> listener = std::make_unique<OwnedListener>(transport, "127.0.0.1:0");
    RingConnections ring;
};

// One rank's part in a test ring: its codec, its input, and whether it wants the residual.
struct RankSetup {
    std::function<PluginInstance(int rank)> codec;
    std::function<std::vector<float>(int rank)> input;
    bool residual = false;
};

struct RankResult {
    AllReduceResult result;
    std::vector<float> data;
    std::vector<float> residual;
};

// Runs an all-reduce on `world` threads; `before` runs on each rank's thread after the ring is
// formed (to sabotage it).
std::vector<RankResult> run_ranks(int world, size_t n, const RankSetup& setup, ReduceOp op, RingOptions options = {},
                                  std::function<void(int, Rank&)> before = {}) {
    std::vector<std::unique_ptr<Rank>> ranks;
    std::vector<std::string> addresses;
    for (int r = 0; r < world; ++r) {
        ranks.push_back(std::make_unique<Rank>());
        addresses.push_back(ranks.back()->listener->address());
    }
    std::vector<std::future<RankResult>> results;
    for (int r = 0; r < world; ++r)
        results.push_back(std::async(std::launch::async, [&, r] {
            Rank& rank = *ranks[r];
            rank.ring = connect_ring(rank.transport, *rank.listener, r, addresses, 42, std::chrono::seconds(20));
            PluginInstance codec = setup.codec(r);
            if (before) before(r, rank);
            RingAllReduce allreduce(r, world, Link(rank.transport, rank.ring.next.handle()),
                                    Link(rank.transport, rank.ring.previous.handle()), codec, options);
            RankResult out;
            out.data = setup.input ? setup.input(r) : input_of(r, n);
            if (setup.residual) out.residual.assign(out.data.size(), -1.0f);
            out.result = allreduce.run(out.data, op, 0, out.residual);
            return out;
        }));
    std::vector<RankResult> out;
    for (auto& result : results) out.push_back(result.get());
    return out;
}

// Every rank with the same codec and its input_of().
std::vector<std::pair<AllReduceResult, std::vector<float>>> run_ring(
    int world, size_t n, const std::string& compressor, std::map<std::string, SettingValue> compressor_settings,
    ReduceOp op, RingOptions options = {}, std::function<void(int, Rank&)> before = {}) {
    const RankSetup setup{[&](int) { return make(PANGEA_KIND_COMPRESS, compressor, compressor_settings); }, {}};
    std::vector<std::pair<AllReduceResult, std::vector<float>>> out;
    for (RankResult& r : run_ranks(world, n, setup, op, options, std::move(before)))
        out.emplace_back(std::move(r.result), std::move(r.data));
    return out;
}

std::vector<double> exact_sum(int world, size_t n) {
    std::vector<double> sum(n, 0.0);
    for (int r = 0; r < world; ++r) {
        const auto x = input_of(r, n);
        for (size_t i = 0; i < n; ++i) sum[i] += x[i];
    }
    return sum;
}

struct Codec {
    const char* name;
    std::map<std::string, SettingValue> settings;
    double relative_bound;  // of the result against the exact fp64 sum
};

TEST(RingAllReduce, EveryRankEndsBitIdenticalAndCloseToTheExactSum) {
    const std::vector<Codec> codecs = {
        {"none", {}, 1e-6},
        {"int8", {}, 0.02},
        {"int8", {{"scheme", std::string("sigma")}}, 0.04},
        {"fp16", {}, 1e-3},
        {"fp16", {{"format", std::string("bf16")}}, 0.01},
    };
    // Sizes that do not divide evenly, a buffer smaller than the world, several pieces per chunk.
    const std::vector<std::pair<int, size_t>> shapes = {{2, 1000}, {3, 100003}, {4, 3}, {5, 262147}};
    RingOptions options;
    options.piece_values = 16384;
    for (const auto& codec : codecs)
        for (const auto& [world, n] : shapes) {
            const auto results = run_ring(world, n, codec.name, codec.settings, ReduceOp::kSum, options);
            const std::string first = sha256(results[0].second);
            for (int r = 0; r < world; ++r) {
                ASSERT_EQ(results[r].first.status, PANGEA_OK) << results[r].first.error;
                EXPECT_EQ(sha256(results[r].second), first) << codec.name << " world " << world << " rank " << r;
            }
            const auto exact = exact_sum(world, n);
            double error = 0, norm = 0;
            for (size_t i = 0; i < n; ++i) {
                error += (results[0].second[i] - exact[i]) * (results[0].second[i] - exact[i]);
                norm += exact[i] * exact[i];
            }
            EXPECT_LT(std::sqrt(error / norm), codec.relative_bound) << codec.name << " world " << world << " n " << n;
        }
}

TEST(RingAllReduce, UncompressedSumIsTheFloatSumAndAverageDividesByTheWorld) {
    const int world = 4;
    const size_t n = 50000;
    const auto sums = run_ring(world, n, "none", {}, ReduceOp::kSum);
    const auto averages = run_ring(world, n, "none", {}, ReduceOp::kAverage);
    const auto exact = exact_sum(world, n);
    for (size_t i = 0; i < n; ++i) {
        ASSERT_NEAR(sums[0].second[i], exact[i], 1e-5 * (1 + std::fabs(exact[i])));
        ASSERT_EQ(averages[2].second[i], sums[2].second[i] * 0.25f);
    }
    // 2(n-1)/n of the 4n bytes: reduce-scatter pieces carry an 8-byte length, all-gather pieces
    // travel as the values themselves.
    EXPECT_EQ(sums[0].first.bytes_sent, 2 * 3 * n + 3 * 8);
}

TEST(RingAllReduce, APeerThatDisappearsFailsEveryRankPromptly) {
    const int world = 4;
    const size_t n = 1 << 20;
    RingOptions options;
    options.piece_values = 4096;
    options.stall_timeout_ms = 5000;
    const auto start = std::chrono::steady_clock::now();
    const auto results = run_ring(world, n, "int8", {}, ReduceOp::kSum, options, [&](int r, Rank& rank) {
        if (r == 2) {  // rank 2 vanishes: its connections close as a killed process's would
            rank.ring.next.reset();
            rank.ring.previous.reset();
        }
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 10.0);
    for (int r = 0; r < world; ++r) {
        EXPECT_NE(results[r].first.status, PANGEA_OK) << "rank " << r;
        EXPECT_FALSE(results[r].first.error.empty());
    }
    EXPECT_EQ(results[1].first.status, PANGEA_ERR_PEER_LOST) << results[1].first.error;
}

TEST(RingAllReduce, AStalledPeerIsDetectedWithinTheStallTimeout) {
    const int world = 3;
    RingOptions options;
    options.stall_timeout_ms = 800;
    std::promise<void> release;
    auto released = release.get_future().share();
    const auto start = std::chrono::steady_clock::now();
    const auto results = run_ring(world, 100000, "none", {}, ReduceOp::kSum, options, [&](int r, Rank&) {
        if (r == 1) released.wait_for(std::chrono::seconds(3));  // rank 1 hangs (as under SIGSTOP)
    });
    release.set_value();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 6.0);
    // The healthy ranks gave up on their own, long before the stalled one woke after 3 s.
    EXPECT_LT(results[0].first.seconds, 2.5);
    EXPECT_LT(results[2].first.seconds, 2.5);
    EXPECT_EQ(results[0].first.status, PANGEA_ERR_PEER_LOST) << results[0].first.error;
    EXPECT_THAT(results[0].first.error + results[2].first.error, HasSubstr("stalled"));
}

TEST(RingAllReduce, ACompressorFailureFailsTheWholeRing) {
    const int world = 3;
    RingOptions options;
    options.stall_timeout_ms = 5000;
    // Rank 1's input holds a NaN: int8 refuses it, rank 1 aborts, and its neighbours fail too.
    std::vector<std::unique_ptr<Rank>> ranks;
    std::vector<std::string> addresses;
    for (int r = 0; r < world; ++r) {
        ranks.push_back(std::make_unique<Rank>());
        addresses.push_back(ranks.back()->listener->address());
    }
    std::vector<std::future<AllReduceResult>> results;
    for (int r = 0; r < world; ++r)
        results.push_back(std::async(std::launch::async, [&, r] {
            Rank& rank = *ranks[r];
            rank.ring = connect_ring(rank.transport, *rank.listener, r, addresses, 42, std::chrono::seconds(20));
            PluginInstance codec = make(PANGEA_KIND_COMPRESS, "int8");
            RingAllReduce allreduce(r, world, Link(rank.transport, rank.ring.next.handle()),
                                    Link(rank.transport, rank.ring.previous.handle()), codec, options);
            std::vector<float> data = input_of(r, 10000);
            if (r == 1) data[77] = std::nanf("");
            return allreduce.run(data, ReduceOp::kSum);
        }));
    EXPECT_EQ(results[0].get().status == PANGEA_OK, false);
    const AllReduceResult failed = results[1].get();
    EXPECT_EQ(failed.status, PANGEA_ERR_INVALID_DATA);
    EXPECT_THAT(failed.error, HasSubstr("value 77 is NaN"));
    EXPECT_NE(results[2].get().status, PANGEA_OK);
}

// ---- gather aggregation ----------------------------------------------------------------------

// compress/sparse (tests/fixtures/sparse_codec.cpp): lossless, gather mode, sized by the data.
PluginInstance make_sparse(std::map<std::string, SettingValue> overrides = {}) {
    static PluginRegistry fixtures(std::vector<SearchPath>{{std::string(PANGEA_TEST_FIXTURES) + "/gather", "fixtures"}});
    const PluginDescriptor& plugin = fixtures.get(PANGEA_KIND_COMPRESS, "sparse");
    SettingMap settings = plugin.default_settings();
    for (auto& [key, value] : overrides) settings[key] = {value, "test"};
    return PluginInstance(plugin, settings);
}

// Rank r keeps every (r + 2)-th value of its input: its message's size depends on r.
std::vector<float> thinned_input(int rank, size_t n) {
    std::vector<float> values = input_of(rank, n);
    for (size_t i = 0; i < n; ++i)
        if (i % static_cast<size_t>(rank + 2) != 0) values[i] = 0.0f;
    return values;
}

TEST(GatherAggregation, EveryCodecEndsBitIdenticalInBothModesAndCloseToTheExactSum) {
    const std::vector<Codec> codecs = {
        {"none", {}, 1e-6},
        {"int8", {}, 0.02},
        {"fp16", {{"format", std::string("bf16")}}, 0.01},
        {"fp4", {}, 0.3},
        {"fp4", {{"format", std::string("e3m0")}}, 0.5},
        {"topk", {}, 1.0},  // (1% of each contribution: the rest waits in the residual)
        {"topk", {{"value_bits", int64_t{8}}}, 1.0},
    };
    const std::vector<std::pair<int, size_t>> shapes = {{2, 1000}, {3, 100003}, {4, 3}, {5, 40000}};
    for (const Aggregation aggregation : {Aggregation::kRing, Aggregation::kGather}) {
        RingOptions options;
        options.piece_values = 16384;
        options.aggregation = aggregation;
        const std::string mode = aggregation == Aggregation::kGather ? "gather" : "ring";
        for (const auto& codec : codecs)
            for (const auto& [world, n] : shapes) {
                const auto results = run_ring(world, n, codec.name, codec.settings, ReduceOp::kSum, options);
                for (int r = 0; r < world; ++r) {
                    ASSERT_EQ(results[r].first.status, PANGEA_OK) << results[r].first.error;
                    EXPECT_EQ(sha256(results[r].second), sha256(results[0].second))
                        << codec.name << " " << mode << " world " << world << " rank " << r;
                }
                const auto exact = exact_sum(world, n);
                double error = 0, norm = 0;
                for (size_t i = 0; i < n; ++i) {
                    error += (results[0].second[i] - exact[i]) * (results[0].second[i] - exact[i]);
                    norm += exact[i] * exact[i];
                }
                EXPECT_LT(std::sqrt(error / norm), codec.relative_bound) << codec.name << " " << mode << " world " << world;
            }
    }
}

TEST(GatherAggregation, MessagesOfVaryingSizeSumToTheFloatSumInRankOrder) {
    const int world = 4;
    const size_t n = 70001;  // 5 pieces of 16384, the last one short
    RingOptions options;
    options.piece_values = 16384;
    const RankSetup setup{[](int) { return make_sparse(); }, [&](int r) { return thinned_input(r, n); }};
    const auto results = run_ranks(world, n, setup, ReduceOp::kSum, options);
    // Lossless: the sum is the float sum from a zero in rank order, bit for bit, on every rank.
    std::vector<float> expected(n, 0.0f);
    for (int r = 0; r < world; ++r) {
        const auto x = thinned_input(r, n);
        for (size_t i = 0; i < n; ++i) expected[i] += x[i];
    }
    std::set<uint64_t> sent;
    for (int r = 0; r < world; ++r) {
        ASSERT_EQ(results[r].result.status, PANGEA_OK) << results[r].result.error;
        EXPECT_TRUE(results[r].data == expected) << "rank " << r;
        sent.insert(results[r].result.bytes_sent);
    }
    // Each rank forwards the others' messages, which differ in size: the bytes on the wire are
    // what the codec wrote (rank 0 keeps 1 in 2 values, rank 3 1 in 5), not its maximum.
    EXPECT_EQ(sent.size(), static_cast<size_t>(world));
    const uint64_t most = 3 * (5 * 8 + 5 * 24 + n * 8);  // three messages padded to max_encoded_size
    for (const uint64_t bytes : sent) EXPECT_LT(bytes, most / 2);
}

TEST(GatherAggregation, AGarbledMessageFailsEveryRankWithItsPositionNamed) {
    const int world = 3;
    RingOptions options;
    options.stall_timeout_ms = 5000;
    const RankSetup setup{[](int r) { return make_sparse({{"garble", r == 1}}); }, {}};
    const auto start = std::chrono::steady_clock::now();
    const auto results = run_ranks(world, 5000, setup, ReduceOp::kAverage, options);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
    // Every rank decodes rank 1's message and refuses it (or, done with the ring, the link a
    // neighbour dropped on refusing it); none hangs, and the reason names the message.
    std::string errors;
    for (int r = 0; r < world; ++r) {
        EXPECT_NE(results[r].result.status, PANGEA_OK) << "rank " << r;
        errors += results[r].result.error + "\n";
    }
    EXPECT_THAT(errors, HasSubstr("the gathered message of ring position 1, piece 0"));
    EXPECT_THAT(errors, HasSubstr("the frame says"));  // the codec's own reason
}

TEST(GatherAggregation, AMessageLargerThanTheCodecCanWriteFailsTheRingBeforeItIsReceived) {
    const int world = 3;
    RingOptions options;
    options.stall_timeout_ms = 5000;
    // Rank 2 pads every message by 1 MiB: its neighbour refuses the sizes it announces.
    const RankSetup setup{[](int r) { return make_sparse({{"padding", int64_t{r == 2 ? 1 << 20 : 0}}}); }, {}};
    const auto results = run_ranks(world, 5000, setup, ReduceOp::kSum, options);
    // Rank 0 receives rank 2's message first and refuses it; rank 1 then never gets rank 2's
    // message from rank 0. (Rank 2 itself may have sent and received everything before the links
    // went: its step still fails for the run, which commits only if every member succeeded.)
    EXPECT_EQ(results[0].result.status, PANGEA_ERR_CORRUPT) << results[0].result.error;
    EXPECT_THAT(results[0].result.error, HasSubstr("the gathered message of ring position 2 says piece 0 is 1088600 bytes; "
                                                   "compress/sparse writes at most 40024 for 5000 values"));
    EXPECT_NE(results[1].result.status, PANGEA_OK) << results[1].result.error;
}

// Error feedback's residual: in gather aggregation exactly what encoding lost of the rank's own
// contribution; in either aggregation the ranks' residuals add up to what the sum lost, so that
// nothing is lost for good.
TEST(ErrorFeedback, TheResidualsAddUpToWhatTheSumLost) {
    const int world = 3;
    const size_t n = 40000;
    for (const Aggregation aggregation : {Aggregation::kRing, Aggregation::kGather}) {
        const std::string mode = aggregation == Aggregation::kGather ? "gather" : "ring";
        RingOptions options;
        options.piece_values = 16384;
        options.aggregation = aggregation;
        const RankSetup setup{[](int) { return make(PANGEA_KIND_COMPRESS, "fp4"); }, {}, /*residual=*/true};
        const auto results = run_ranks(world, n, setup, ReduceOp::kAverage, options);
        for (int r = 0; r < world; ++r) ASSERT_EQ(results[r].result.status, PANGEA_OK) << results[r].result.error;
        const auto exact = exact_sum(world, n);
        double mismatch = 0, lost = 0;
        for (size_t i = 0; i < n; ++i) {
            double residuals = 0;
            for (int r = 0; r < world; ++r) residuals += results[r].residual[i];
            const double missing = exact[i] - double(results[0].data[i]) * world;
            mismatch += (residuals - missing) * (residuals - missing);
            lost += missing * missing;
        }
        EXPECT_GT(lost, 0.0) << mode;  // fp4 loses something...
        EXPECT_LT(std::sqrt(mismatch / lost), 1e-5) << mode;  // ... and the residuals hold it, up to rounding
    }
    // Gather: input - decode(encode(input)), piece by piece, exactly.
    RingOptions options;
    options.piece_values = 16384;
    const RankSetup setup{[](int) { return make(PANGEA_KIND_COMPRESS, "int8"); }, {}, /*residual=*/true};
    options.aggregation = Aggregation::kGather;
    const auto results = run_ranks(world, n, setup, ReduceOp::kAverage, options);
    const PluginInstance codec = make(PANGEA_KIND_COMPRESS, "int8");
    const auto& vt = codec.vtable<pangea_compress_vtable>();
    for (int r = 0; r < world; ++r) {
        ASSERT_EQ(results[r].result.status, PANGEA_OK) << results[r].result.error;
        const auto input = input_of(r, n);
        std::vector<float> expected(n);
        for (size_t begin = 0; begin < n; begin += options.piece_values) {
            const size_t count = std::min(options.piece_values, n - begin);
            std::vector<uint8_t> bytes(vt.max_encoded_size(codec.handle(), count));
            size_t written = 0;
            ASSERT_EQ(vt.encode(codec.handle(), input.data() + begin, count, bytes.data(), bytes.size(), &written), PANGEA_OK);
            ASSERT_EQ(vt.decode(codec.handle(), bytes.data(), written, expected.data() + begin, count), PANGEA_OK);
            for (size_t i = begin; i < begin + count; ++i) expected[i] = input[i] - expected[i];
        }
        EXPECT_TRUE(results[r].residual == expected) << "rank " << r;
    }
}

TEST(MeasuredRingOrder, EveryRankMeasuresTheSameMatrixAndPicksTheSameRing) {
    const int world = 3;
    std::vector<std::unique_ptr<Rank>> ranks;
    std::vector<std::string> addresses;
    for (int r = 0; r < world; ++r) {
        ranks.push_back(std::make_unique<Rank>());
        addresses.push_back(ranks.back()->listener->address());
    }
    std::vector<std::future<BandwidthMatrix>> matrices;
    for (int r = 0; r < world; ++r)
        matrices.push_back(std::async(std::launch::async, [&, r] {
            return measure_bandwidth(ranks[r]->transport, *ranks[r]->listener, r, addresses, 42, 1 << 20,
                                     std::chrono::seconds(20));
        }));
    std::vector<BandwidthMatrix> results;
    for (auto& m : matrices) results.push_back(m.get());
    for (int r = 0; r < world; ++r) {
        EXPECT_EQ(results[r], results[0]) << "rank " << r << " measured a different matrix";
        EXPECT_EQ(best_ring_order(results[r]), best_ring_order(results[0]));
    }
    for (int i = 0; i < world; ++i)
        for (int j = 0; j < world; ++j)
            if (i != j) {
                EXPECT_GT(results[0][i][j], 0.0) << i << " -> " << j;
            }
    // The probe connections are closed: the ring can form on the same listeners afterwards.
    auto ring = run_ring(world, 1000, "none", {}, ReduceOp::kSum);
    EXPECT_EQ(ring[0].first.status, PANGEA_OK);
}

}  // namespace
}  // namespace pangea
