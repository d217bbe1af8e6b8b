// The contribution check before each outer step's average: the outlier rule, the norm, and the
// ring all-gather of norms between ranks on threads of this process over tcp on loopback.
#include "collective/contribution_check.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <limits>

#include "topology/ring_setup.hpp"
#include "support/builtin_plugins.hpp"

namespace pangea {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(ContributionCheck, LeavesOutNormsFarAboveTheMedian) {
    const std::vector<double> norms{1.0, 1.2, 0.9, 1000.0};
    EXPECT_THAT(outlier_positions(norms, 10), ElementsAre(3));
    EXPECT_THAT(outlier_reason(norms, 3, 10), HasSubstr("norm 1e+03 is over 10x the median 1"));
    EXPECT_THAT(outlier_positions(std::vector<double>{1.0, 5.0, 2.0}, 10), IsEmpty());
}

TEST(ContributionCheck, LeavesOutNaNInfAndNegativeNorms) {
    EXPECT_THAT(outlier_positions(std::vector<double>{1.0, kNaN, 1.1}, 10), ElementsAre(1));
    EXPECT_THAT(outlier_positions(std::vector<double>{kInf, 1.0}, 10), ElementsAre(0));
    EXPECT_THAT(outlier_positions(std::vector<double>{-1.0, 1.0, 1.0}, 10), ElementsAre(0));
    EXPECT_THAT(outlier_reason(std::vector<double>{1.0, kNaN}, 1, 10), HasSubstr("NaN or Inf"));
    // Factor 0 checks NaN/Inf only.
    EXPECT_THAT(outlier_positions(std::vector<double>{1.0, 1e30, kNaN}, 0), ElementsAre(2));
}

TEST(ContributionCheck, TwoMembersUseTheLowerMedian) {
    EXPECT_THAT(outlier_positions(std::vector<double>{1.0, 50.0}, 10), ElementsAre(1));
    EXPECT_THAT(outlier_positions(std::vector<double>{50.0, 1.0}, 10), ElementsAre(0));
    EXPECT_THAT(outlier_positions(std::vector<double>{1.0, 9.0}, 10), IsEmpty());
}

TEST(ContributionCheck, AZeroMedianLeavesNobodyOutForSize) {
    // Members that did not move (lr 0) are no reason to drop the one that did.
    EXPECT_THAT(outlier_positions(std::vector<double>{0.0, 0.0, 3.0}, 10), IsEmpty());
    EXPECT_THAT(outlier_positions(std::vector<double>{kNaN, kNaN}, 10), ElementsAre(0, 1));
}

TEST(ContributionCheck, NormIsL2AndNaNForNonFiniteValues) {
    EXPECT_DOUBLE_EQ(contribution_norm(std::vector<float>{3.0f, 4.0f}), 5.0);
    EXPECT_TRUE(std::isnan(contribution_norm(std::vector<float>{1.0f, std::nanf("")})));
    EXPECT_TRUE(std::isnan(contribution_norm(std::vector<float>{1.0f, std::numeric_limits<float>::infinity()})));
    // Large but finite float values do not overflow in double.
    EXPECT_TRUE(std::isfinite(contribution_norm(std::vector<float>(4, 3e38f))));
}

struct Rank {
    PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp", {});
    std::unique_ptr<OwnedListener> listener = std::make_unique<OwnedListener>(transport, "127.0.0.1:0");
    RingConnections ring;
};

// Runs gather_norms on `world` threads; rank r contributes `own[r]`. `sabotage` runs on a rank's
// thread instead of its gather (and returns its result).
std::vector<std::future<std::vector<double>>> gather_on_threads(
    std::vector<std::unique_ptr<Rank>>& ranks, const std::vector<double>& own,
    std::function<std::vector<double>(int, const Link&, const Link&)> sabotage = {}) {
    const int world = static_cast<int>(own.size());
    std::vector<std::string> addresses;
    for (int r = 0; r < world; ++r) {
        ranks.push_back(std::make_unique<Rank>());
        addresses.push_back(ranks.back()->listener->address());
    }
    std::vector<std::future<std::vector<double>>> results;
    for (int r = 0; r < world; ++r)
        results.push_back(std::async(std::launch::async, [&ranks, addresses, own, sabotage, r, world] {
            Rank& rank = *ranks[r];
            rank.ring = connect_ring(rank.transport, *rank.listener, r, addresses, 42, std::chrono::seconds(20));
            const Link next(rank.transport, rank.ring.next.handle()), previous(rank.transport, rank.ring.previous.handle());
            if (sabotage) {
                if (auto out = sabotage(r, next, previous); !out.empty()) return out;
            }
            return gather_norms(next, previous, r, world, own[r], 5000);
        }));
    return results;
}

TEST(ContributionCheck, EveryRankGathersEveryNorm) {
    for (const int world : {2, 3, 5}) {
        std::vector<double> own;
        for (int r = 0; r < world; ++r) own.push_back(r == 1 ? kNaN : 0.5 + r);
        std::vector<std::unique_ptr<Rank>> ranks;
        auto results = gather_on_threads(ranks, own);
        for (int r = 0; r < world; ++r) {
            const std::vector<double> norms = results[r].get();
            ASSERT_EQ(norms.size(), own.size()) << "rank " << r;
            for (int p = 0; p < world; ++p) {
                if (p == 1) EXPECT_TRUE(std::isnan(norms[p]));
                else EXPECT_EQ(norms[p], own[p]) << "rank " << r << " position " << p;
            }
            EXPECT_THAT(outlier_positions(norms, 10), ElementsAre(1));
        }
    }
}

TEST(ContributionCheck, AMalformedNormMessageFailsWithCorrupt) {
    std::vector<std::unique_ptr<Rank>> ranks;
    // Rank 0 sends 16 bytes of garbage instead of its norm message, then waits to be aborted.
    auto results = gather_on_threads(ranks, {1.0, 1.0, 1.0}, [](int r, const Link& next, const Link&) {
        if (r != 0) return std::vector<double>{};
        const char garbage[16] = "not a norm msg!";
        pangea_status status = PANGEA_OK;
        Request send = next.send(garbage, sizeof garbage, &status);
        send.wait(5000);
        return std::vector<double>{-1};
    });
    try {
        results[1].get();
        FAIL() << "rank 1 accepted a malformed norm message";
    } catch (const ContributionCheckError& e) {
        EXPECT_EQ(e.status, PANGEA_ERR_CORRUPT);
        EXPECT_THAT(e.what(), HasSubstr("malformed norm message"));
    }
    // Rank 2 waits on rank 1, which aborted its links: it fails too, without hanging.
    EXPECT_THROW(results[2].get(), ContributionCheckError);
    results[0].get();
}

}  // namespace
}  // namespace pangea
