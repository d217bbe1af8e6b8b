// The elastic all-reduce's weighing of unequal members ([diloco] quorum): a real coordinator and
// real membership clients over loopback; the rings are this test's, so that what each member
// hands the ring can be read back exactly.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "collective/elastic_allreduce.hpp"
#include "membership/coordinator.hpp"
#include "membership/coordinator_client.hpp"

namespace pangea {
namespace {

constexpr const char* kRun = "00000000000000ac";

// Rings that keep what the member contributed and hand it back as the "average".
class KeepingRings final : public NodeRings {
public:
    AllReduceResult attempt(const Epoch&, std::span<float> data, std::span<float>,
                            const std::function<void(std::span<float>)>& contribution) override {
        contribution(data);
        return {};
    }
    void ended(End, const std::string&) override {}
    void abort() override {}
    void disconnect() override {}
};

TEST(ElasticAllReduceWeights, EachContributionIsScaledByItsShareOfTheInnerSteps) {
    CoordinatorServer server("127.0.0.1:0");
    std::atomic<bool> stop{false};
    std::thread serving([&] { server.serve(CoordinatorOptions{kRun, std::chrono::milliseconds(3000), 2}, stop); });
    struct Node {
        std::unique_ptr<CoordinatorClient> membership;
        KeepingRings rings;
        std::unique_ptr<ElasticAllReduce> allreduce;
        std::vector<float> data = std::vector<float>(4);
    };
    Node nodes[2];
    for (int i = 0; i < 2; ++i) {
        CoordinatorClientOptions o;
        o.coordinator = server.address();
        o.run = kRun;
        o.node = i;
        o.address = "127.0.0.1:" + std::to_string(7100 + i);
        nodes[i].membership = std::make_unique<CoordinatorClient>(o);
    }
    auto joined = std::async(std::launch::async, [&] { return nodes[0].membership->join(); });
    nodes[1].membership->join();
    joined.get();
    for (int i = 0; i < 2; ++i)
        nodes[i].allreduce = std::make_unique<ElasticAllReduce>(*nodes[i].membership, nodes[i].rings, i, 0);

    // Step 1: node 0 trained 30 inner steps and moved by 1, node 1 was cut short at 10 and moved by 3.
    // The average of what they hand the ring is (30 x 1 + 10 x 3) / 40 = 1.5, not (1 + 3) / 2.
    nodes[0].allreduce->set_inner_steps(30);
    nodes[1].allreduce->set_inner_steps(10);
    auto average = [&](int i, float moved) {
        return nodes[i].allreduce->average(nodes[i].data, {}, [moved](std::span<float> out) {
            std::fill(out.begin(), out.end(), moved);
        });
    };
    auto first = std::async(std::launch::async, [&] { return average(0, 1.0f); });
    ASSERT_EQ(average(1, 3.0f).status, PANGEA_OK);
    ASSERT_EQ(first.get().status, PANGEA_OK);
    EXPECT_FLOAT_EQ(nodes[0].data[0], 2 * 30 / 40.0f * 1.0f);
    EXPECT_FLOAT_EQ(nodes[1].data[3], 2 * 10 / 40.0f * 3.0f);
    EXPECT_FLOAT_EQ((nodes[0].data[0] + nodes[1].data[0]) / 2, 1.5f);

    // Step 2: equal counts: contributions pass unscaled, bit for bit.
    nodes[0].allreduce->set_inner_steps(30);
    nodes[1].allreduce->set_inner_steps(30);
    auto second = std::async(std::launch::async, [&] { return average(0, 1.0f / 3); });
    ASSERT_EQ(average(1, 3.0f).status, PANGEA_OK);
    ASSERT_EQ(second.get().status, PANGEA_OK);
    EXPECT_EQ(nodes[0].data[0], 1.0f / 3);
    EXPECT_EQ(nodes[1].data[0], 3.0f);
    for (Node& node : nodes) node.membership->leave();
    stop = true;
    serving.join();
}

}  // namespace
}  // namespace pangea
