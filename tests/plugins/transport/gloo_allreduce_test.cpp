// transport/gloo's own all-reduce (the optional vtable slot allreduce_sum_f32, with the setting
// allreduce = "gloo"): N ranks as threads of this process over loopback, each with its own gloo
// instance. The exact sum, bit-identical results, the core's ring handing uncompressed fp32 to
// it, and failures that end the call instead of hanging it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <future>
#include <random>
#include <thread>

#include "collective/ring_allreduce.hpp"
#include "topology/ring_setup.hpp"
#include "pangea/transport.h"

#include "support/builtin_plugins.hpp"

namespace pangea {
namespace {

using Clock = std::chrono::steady_clock;


bool have_gloo() {
    try {
        test::builtin_registry().get(PANGEA_KIND_TRANSPORT, "gloo");
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

struct Rank {
    explicit Rank(const std::string& allreduce)
        : transport(test::make_plugin(PANGEA_KIND_TRANSPORT, "gloo", {{"allreduce", allreduce}})) {}
    PluginInstance transport;
    std::unique_ptr<OwnedListener> listener = std::make_unique<OwnedListener>(transport, "127.0.0.1:0");
    RingConnections ring;

    pangea_status allreduce(uint32_t rank, uint32_t world, std::vector<float>& data, int timeout_ms = 20000) {
        const auto& vt = transport.vtable<pangea_transport_vtable>();
        return vt.allreduce_sum_f32(transport.handle(), ring.next.handle(), ring.previous.handle(), rank, world,
                                    data.data(), data.size(), timeout_ms);
    }
};

// `world` ranks with their rings formed (in parallel, as the ring setup needs).
std::vector<std::unique_ptr<Rank>> make_ring(int world, const std::string& allreduce = "gloo") {
    std::vector<std::unique_ptr<Rank>> ranks;
    std::vector<std::string> addresses;
    for (int r = 0; r < world; ++r) {
        ranks.push_back(std::make_unique<Rank>(allreduce));
        addresses.push_back(ranks.back()->listener->address());
    }
    std::vector<std::future<void>> formed;
    for (int r = 0; r < world; ++r)
        formed.push_back(std::async(std::launch::async, [&, r] {
            ranks[r]->ring = connect_ring(ranks[r]->transport, *ranks[r]->listener, r, addresses, 42, std::chrono::seconds(20));
        }));
    for (auto& f : formed) f.get();
    return ranks;
}

// Runs f(rank) on every rank at once; returns what each returned.
template <class F>
auto on_every_rank(int world, F f) {
    std::vector<std::future<decltype(f(0))>> futures;
    for (int r = 0; r < world; ++r) futures.push_back(std::async(std::launch::async, f, r));
    std::vector<decltype(f(0))> out;
    for (auto& future : futures) out.push_back(future.get());
    return out;
}

std::vector<float> normal_input(int rank, size_t n) {
    std::mt19937 rng(500 + rank);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> out(n);
    for (auto& v : out) v = normal(rng);
    return out;
}

TEST(GlooAllReduce, TcpHasTheSlotAndAnswersUnsupported) {
    // (A transport built against the 1.0 vtable: tests/core/plugin_host/abi_adapters_test.cpp.)
    // tcp, built with the SDK, has the slot and answers UNSUPPORTED without touching anything.
    PluginInstance tcp = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    float value = 3;
    EXPECT_EQ(tcp.vtable<pangea_transport_vtable>().allreduce_sum_f32(
                  tcp.handle(), reinterpret_cast<pangea_connection*>(&value), reinterpret_cast<pangea_connection*>(&tcp),
                  0, 2, &value, 1, 1000),
              PANGEA_ERR_UNSUPPORTED);
    EXPECT_EQ(value, 3);
}

TEST(GlooAllReduce, GivesTheExactSumBitIdenticalOnEveryRank) {
    if (!have_gloo()) GTEST_SKIP() << "transport/gloo is not built";
    for (const int world : {2, 3, 4}) {
        auto ranks = make_ring(world);
        // Integers: every order of adding gives the exact sum. Odd sizes, one smaller than the world.
        for (const size_t n : {size_t{1}, size_t{1000}, size_t{262147}}) {
            const auto results = on_every_rank(world, [&](int r) {
                std::vector<float> data(n);
                for (size_t i = 0; i < n; ++i) data[i] = static_cast<float>((i * 7 + static_cast<size_t>(r) * 13) % 1001);
                const pangea_status status = ranks[r]->allreduce(r, world, data);
                return std::make_pair(status, data);
            });
            for (int r = 0; r < world; ++r) {
                ASSERT_EQ(results[r].first, PANGEA_OK) << "world " << world << " rank " << r << ": "
                                                       << ranks[r]->transport.last_error();
                for (size_t i = 0; i < n; ++i) {
                    double exact = 0;
                    for (int q = 0; q < world; ++q) exact += static_cast<double>((i * 7 + static_cast<size_t>(q) * 13) % 1001);
                    if (results[r].second[i] != exact) {
                        ADD_FAILURE() << "world " << world << " rank " << r << " value " << i << ": "
                                      << results[r].second[i] << ", not " << exact;
                        break;
                    }
                }
            }
        }
        // Random floats: the order of adding matters, yet every rank holds the same bits.
        const size_t n = 300001;
        const auto results = on_every_rank(world, [&](int r) {
            std::vector<float> data = normal_input(r, n);
            const pangea_status status = ranks[r]->allreduce(r, world, data);
            return std::make_pair(status, data);
        });
        for (int r = 0; r < world; ++r) {
            ASSERT_EQ(results[r].first, PANGEA_OK) << ranks[r]->transport.last_error();
            EXPECT_EQ(results[r].second, results[0].second) << "world " << world << " rank " << r << " differs";
        }
        std::vector<double> exact(n, 0.0);
        for (int q = 0; q < world; ++q) {
            const auto input = normal_input(q, n);
            for (size_t i = 0; i < n; ++i) exact[i] += input[i];
        }
        for (size_t i = 0; i < n; ++i) ASSERT_NEAR(results[0].second[i], exact[i], 1e-5 * (1 + std::fabs(exact[i])));
    }
}

TEST(GlooAllReduce, WithoutTheSettingItIsUnsupportedAndTheCoreRingRuns) {
    if (!have_gloo()) GTEST_SKIP() << "transport/gloo is not built";
    const int world = 2;
    auto ranks = make_ring(world, "pangea");
    std::vector<float> data = {1, 2, 3};
    EXPECT_EQ(ranks[0]->allreduce(0, world, data), PANGEA_ERR_UNSUPPORTED);
    EXPECT_EQ(data, (std::vector<float>{1, 2, 3}));
    // The connections are untouched: the core's ring runs over them.
    const auto results = on_every_rank(world, [&](int r) {
        PluginInstance codec = test::make_plugin(PANGEA_KIND_COMPRESS, "none");
        RingAllReduce ring(r, world, Link(ranks[r]->transport, ranks[r]->ring.next.handle()),
                           Link(ranks[r]->transport, ranks[r]->ring.previous.handle()), codec);
        std::vector<float> values = {1, 2, 3};
        const AllReduceResult result = ring.run(values, ReduceOp::kSum);
        EXPECT_FALSE(result.native);
        EXPECT_EQ(result.status, PANGEA_OK) << result.error;
        return values;
    });
    EXPECT_EQ(results[1], (std::vector<float>{2, 4, 6}));
}

TEST(GlooAllReduce, TheCoreRingHandsItUncompressedFp32AndAveragesTheSameOnEveryRank) {
    if (!have_gloo()) GTEST_SKIP() << "transport/gloo is not built";
    const int world = 3;
    auto ranks = make_ring(world);
    const size_t n = 100003;
    const auto results = on_every_rank(world, [&](int r) {
        PluginInstance none = test::make_plugin(PANGEA_KIND_COMPRESS, "none");
        PluginInstance int8 = test::make_plugin(PANGEA_KIND_COMPRESS, "int8");
        const Link next(ranks[r]->transport, ranks[r]->ring.next.handle());
        const Link previous(ranks[r]->transport, ranks[r]->ring.previous.handle());
        RingAllReduce native(r, world, next, previous, none), ours(r, world, next, previous, int8);
        std::vector<float> average = normal_input(r, n), compressed = normal_input(r, n);
        const AllReduceResult a = native.run(average, ReduceOp::kAverage);
        const AllReduceResult b = ours.run(compressed, ReduceOp::kSum);  // a compressor: the core's ring
        EXPECT_TRUE(a.native);
        EXPECT_FALSE(b.native);
        EXPECT_EQ(a.status, PANGEA_OK) << a.error;
        EXPECT_EQ(b.status, PANGEA_OK) << b.error;
        return average;
    });
    for (int r = 1; r < world; ++r) EXPECT_EQ(results[r], results[0]) << "rank " << r;
    std::vector<double> sum(n, 0.0);
    for (int q = 0; q < world; ++q) {
        const auto input = normal_input(q, n);
        for (size_t i = 0; i < n; ++i) sum[i] += input[i];
    }
    for (size_t i = 0; i < n; ++i) ASSERT_NEAR(results[0][i], sum[i] / world, 1e-5 * (1 + std::fabs(sum[i])));
}

TEST(GlooAllReduce, AnAbortedConnectionFailsItFastOnEveryRank) {
    if (!have_gloo()) GTEST_SKIP() << "transport/gloo is not built";
    const int world = 3;
    auto ranks = make_ring(world);
    // One good call first, so that the failure also hits a ring Gloo has set up.
    const auto warm = on_every_rank(world, [&](int r) {
        std::vector<float> data(1000, 1.0f);
        return ranks[r]->allreduce(r, world, data);
    });
    for (int r = 0; r < world; ++r) ASSERT_EQ(warm[r], PANGEA_OK) << ranks[r]->transport.last_error();
    const auto& vt = ranks[1]->transport.vtable<pangea_transport_vtable>();
    vt.abort(ranks[1]->transport.handle(), ranks[1]->ring.next.handle());
    const auto start = Clock::now();
    const auto results = on_every_rank(world, [&](int r) {
        std::vector<float> data(100000, 1.0f);
        const pangea_status status = ranks[r]->allreduce(r, world, data, 20000);
        return std::make_pair(status, std::chrono::duration<double>(Clock::now() - start).count());
    });
    EXPECT_EQ(results[1].first, PANGEA_ERR_ABORTED);
    EXPECT_LT(results[1].second, 0.5);
    for (int r = 0; r < world; ++r) {
        EXPECT_NE(results[r].first, PANGEA_OK) << "rank " << r;
        EXPECT_LT(results[r].second, 5.0) << "rank " << r << " took its time (the timeout is 20 s)";
    }
}

TEST(GlooAllReduce, AbortDuringTheCallEndsItAndAMissingPeerTimesOut) {
    if (!have_gloo()) GTEST_SKIP() << "transport/gloo is not built";
    const int world = 2;
    {
        // Rank 1 never joins: rank 0 waits in the call until abort() from another thread.
        auto ranks = make_ring(world);
        std::thread aborter([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            ranks[0]->transport.vtable<pangea_transport_vtable>().abort(ranks[0]->transport.handle(),
                                                                          ranks[0]->ring.previous.handle());
        });
        std::vector<float> data(1000, 2.0f);
        const auto start = Clock::now();
        EXPECT_EQ(ranks[0]->allreduce(0, world, data, 20000), PANGEA_ERR_ABORTED);
        EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
        aborter.join();
    }
    {
        // ... or until its timeout.
        auto ranks = make_ring(world);
        std::vector<float> data(1000, 2.0f);
        const auto start = Clock::now();
        EXPECT_EQ(ranks[0]->allreduce(0, world, data, 500), PANGEA_ERR_TIMEOUT);
        EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
    }
    {
        // Ranks that disagree on the count fail instead of mixing their data.
        auto ranks = make_ring(world);
        const auto results = on_every_rank(world, [&](int r) {
            std::vector<float> data(1000 + static_cast<size_t>(r), 1.0f);
            const pangea_status status = ranks[r]->allreduce(r, world, data, 5000);
            return std::make_pair(status, ranks[r]->transport.last_error());  // per thread
        });
        EXPECT_EQ(results[0].first, PANGEA_ERR_INVALID_ARGUMENT) << results[0].second;
        EXPECT_THAT(results[0].second, ::testing::HasSubstr("the ranks disagree"));
        EXPECT_NE(results[1].first, PANGEA_OK);
    }
}

TEST(GlooAllReduce, AnAbortInTheMiddleOfGloosWorkEndsTheCallOnEveryRankLongBeforeTheTimeout) {
    if (!have_gloo()) GTEST_SKIP() << "transport/gloo is not built";
    const int world = 3;
    // Big enough that Gloo is still busy 300 ms in; on a machine fast enough to finish first, the
    // next size is tried.
    for (const size_t n : {size_t{48} << 20, size_t{128} << 20}) {
        auto ranks = make_ring(world);
        const auto start = Clock::now();
        const auto results = on_every_rank(world, [&](int r) {
            std::vector<float> data(n, 1.0f);
            std::thread aborter;
            if (r == 2)  // as the mesh does when it declares a member dead
                aborter = std::thread([&] {
                    std::this_thread::sleep_for(std::chrono::milliseconds(300));
                    ranks[2]->transport.vtable<pangea_transport_vtable>().abort(ranks[2]->transport.handle(),
                                                                                  ranks[2]->ring.next.handle());
                });
            const pangea_status status = ranks[r]->allreduce(r, world, data, 20000);
            const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
            if (aborter.joinable()) aborter.join();
            return std::make_pair(status, seconds);
        });
        if (results[2].first == PANGEA_OK) continue;  // done before the abort
        EXPECT_EQ(results[2].first, PANGEA_ERR_ABORTED);
        for (int r = 0; r < world; ++r) EXPECT_LT(results[r].second, 10.0) << "rank " << r << " (the timeout is 20 s)";
        return;
    }
    GTEST_SKIP() << "Gloo finished every size before the abort";
}

}  // namespace
}  // namespace pangea
