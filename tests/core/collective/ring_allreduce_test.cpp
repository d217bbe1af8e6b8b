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
#include <thread>

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

// Runs an all-reduce of per-rank inputs on `world` threads; `before` runs on each rank's thread
// after the ring is formed (to sabotage it).
std::vector<std::pair<AllReduceResult, std::vector<float>>> run_ring(
    int world, size_t n, const std::string& compressor, std::map<std::string, SettingValue> compressor_settings,
    ReduceOp op, RingOptions options = {}, std::function<void(int, Rank&)> before = {}) {
    std::vector<std::unique_ptr<Rank>> ranks;
    std::vector<std::string> addresses;
    for (int r = 0; r < world; ++r) {
        ranks.push_back(std::make_unique<Rank>());
        addresses.push_back(ranks.back()->listener->address());
    }
    std::vector<std::future<std::pair<AllReduceResult, std::vector<float>>>> results;
    for (int r = 0; r < world; ++r)
        results.push_back(std::async(std::launch::async, [&, r] {
            Rank& rank = *ranks[r];
            rank.ring = connect_ring(rank.transport, *rank.listener, r, addresses, 42, std::chrono::seconds(20));
            PluginInstance codec = make(PANGEA_KIND_COMPRESS, compressor, compressor_settings);
            if (before) before(r, rank);
            RingAllReduce allreduce(r, world, Link(rank.transport, rank.ring.next.handle()),
                                    Link(rank.transport, rank.ring.previous.handle()), codec, options);
            std::vector<float> data = input_of(r, n);
            AllReduceResult result = allreduce.run(data, op);
            return std::make_pair(result, data);
        }));
    std::vector<std::pair<AllReduceResult, std::vector<float>>> out;
    for (auto& result : results) out.push_back(result.get());
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
