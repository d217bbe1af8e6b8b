#include "topology/ring_order.hpp"

#include <gtest/gtest.h>

#include <future>

namespace pangea {
namespace {

// Two sites joined by a slow link: ranks {0, 2, 4, ...} at one, {1, 3, ...} at the other.
BandwidthMatrix two_sites(int n, double fast, double slow) {
    BandwidthMatrix m(n, std::vector<double>(n, 0.0));
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) m[i][j] = i == j ? 0 : (i % 2 == j % 2 ? fast : slow);
    return m;
}

int site_crossings(const std::vector<int>& order) {
    int crossings = 0;
    for (size_t i = 0; i < order.size(); ++i) crossings += order[i] % 2 != order[(i + 1) % order.size()] % 2;
    return crossings;
}

TEST(RingOrder, CrossesASlowSharedLinkOnlyTwice) {
    for (int n : {4, 6, 9, 12, 16}) {  // exhaustive up to 10, greedy + 2-opt beyond
        const auto order = best_ring_order(two_sites(n, 1000, 100));
        ASSERT_EQ(static_cast<int>(order.size()), n);
        EXPECT_EQ(order[0], 0);
        EXPECT_EQ(site_crossings(order), 2) << "n = " << n;
        std::vector<int> sorted = order;
        std::sort(sorted.begin(), sorted.end());
        for (int i = 0; i < n; ++i) EXPECT_EQ(sorted[i], i);  // a permutation
    }
}

TEST(RingOrder, MaximizesTheSlowestHop) {
    // Rank 2 reaches rank 3 fast but everything else slowly: it must sit just before rank 3.
    BandwidthMatrix m(5, std::vector<double>(5, 100.0));
    for (int i = 0; i < 5; ++i) m[i][i] = 0;
    for (int j = 0; j < 5; ++j) m[2][j] = j == 3 ? 100 : 1;
    const auto order = best_ring_order(m);
    const size_t at = std::find(order.begin(), order.end(), 2) - order.begin();
    EXPECT_EQ(order[(at + 1) % order.size()], 3);
    EXPECT_EQ(slowest_hop(m, order), 100);
}

TEST(RingOrder, IsDeterministicAndStartsAtRankZero) {
    const auto m = two_sites(8, 5, 5);  // all equal: the lexicographically first ring
    EXPECT_EQ(best_ring_order(m), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
    EXPECT_EQ(best_ring_order(two_sites(2, 1, 1)), (std::vector<int>{0, 1}));
}

}  // namespace
}  // namespace pangea
