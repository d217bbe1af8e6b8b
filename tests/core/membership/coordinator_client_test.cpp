// The membership client against a real coordinator over real sockets: a node that lost its place
// in the run hears it as a value (a Rejoin saying where the run is), never as an exception.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "membership/coordinator.hpp"
#include "membership/coordinator_client.hpp"

namespace pangea {
namespace {

constexpr const char* kRun = "00000000000000ab";

class CoordinatorClientTest : public ::testing::Test {
protected:
    void SetUp() override {
        CoordinatorOptions options{kRun, std::chrono::milliseconds(3000), /*min_members=*/2};
        serving = std::thread([this, options] { server.serve(options, stop); });
    }
    void TearDown() override {
        stop = true;
        serving.join();
    }
    std::unique_ptr<CoordinatorClient> client(int node) {
        CoordinatorClientOptions options;
        options.coordinator = server.address();
        options.run = kRun;
        options.node = node;
        options.address = "127.0.0.1:" + std::to_string(7000 + node);
        options.reconnect_for = std::chrono::milliseconds(5000);
        return std::make_unique<CoordinatorClient>(options);
    }
    // Both nodes report ready for `step` and then succeed: the step commits.
    static void commit(CoordinatorClient& a, CoordinatorClient& b, int64_t step) {
        auto a_ready = std::async(std::launch::async, [&] { return a.ready(step, kInnerStepsUnknown); });
        auto b_epoch = b.ready(step, kInnerStepsUnknown);
        auto a_epoch = a_ready.get();
        ASSERT_TRUE(std::holds_alternative<Epoch>(a_epoch) && std::holds_alternative<Epoch>(b_epoch));
        std::string why;
        auto a_done = std::async(std::launch::async, [&] { return a.done(std::get<Epoch>(a_epoch), "", &why); });
        std::string b_why;
        const auto b_end = b.done(std::get<Epoch>(b_epoch), "", &b_why);
        const auto a_end = a_done.get();
        ASSERT_TRUE(std::holds_alternative<EpochEnd>(a_end) && std::holds_alternative<EpochEnd>(b_end));
        EXPECT_EQ(std::get<EpochEnd>(a_end), EpochEnd::kCommitted);
        EXPECT_EQ(std::get<EpochEnd>(b_end), EpochEnd::kCommitted);
    }

    CoordinatorServer server{"127.0.0.1:0"};
    std::atomic<bool> stop{false};
    std::thread serving;
};

TEST_F(CoordinatorClientTest, ADroppedNodeGetsWhereTheRunIsAsAValueAndIsAdmittedAgain) {
    auto a = client(0);
    auto b = client(1);
    auto a_joined = std::async(std::launch::async, [&] { return a->join(); });
    EXPECT_EQ(b->join().role, Role::kMember);
    EXPECT_EQ(a_joined.get().role, Role::kMember);
    commit(*a, *b, 1);

    // Node 1 asks for a step the run has passed: it is dropped, and ready() says so.
    const auto answer = b->ready(1, kInnerStepsUnknown);
    ASSERT_TRUE(std::holds_alternative<Rejoin>(answer)) << "an epoch came instead of the news";
    const Rejoin& rejoin = std::get<Rejoin>(answer);
    EXPECT_EQ(rejoin.run_step, 1);
    ASSERT_EQ(rejoin.sources.size(), 1u);
    EXPECT_EQ(rejoin.sources[0].node, 0) << "the member to recover from";
    EXPECT_NE(rejoin.why.find("dropped"), std::string::npos) << rejoin.why;

    // Asking for a step that is not the next: the run has moved on, as a value again.
    const std::optional<Rejoin> too_late = b->admit(5);
    ASSERT_TRUE(too_late.has_value());
    EXPECT_EQ(too_late->run_step, 1);

    // With the state of step 1 taken up, it takes part in step 2.
    EXPECT_FALSE(b->admit(2).has_value());
    commit(*a, *b, 2);
    a->leave();
    b->leave();
}

// [diloco] quorum over real sockets: the straggler hears "wrap up" on the client's own thread,
// says how many inner steps it trained, and both members' epochs carry both counts.
TEST(CoordinatorClientQuorum, TheStragglerIsToldToWrapUpAndItsInnerStepsReachEveryMember) {
    CoordinatorServer server("127.0.0.1:0");
    std::atomic<bool> stop{false};
    CoordinatorOptions options{kRun, std::chrono::milliseconds(3000), /*min_members=*/2};
    options.quorum = 1;
    options.grace = std::chrono::milliseconds(100);
    std::thread serving([&] { server.serve(options, stop); });
    auto client = [&](int node) {
        CoordinatorClientOptions o;
        o.coordinator = server.address();
        o.run = kRun;
        o.node = node;
        o.address = "127.0.0.1:" + std::to_string(7000 + node);
        return std::make_unique<CoordinatorClient>(o);
    };
    auto a = client(0);
    auto b = client(1);
    std::promise<int64_t> told;
    std::atomic<int> times{0};
    b->on_wrap_up([&](int64_t step) {
        if (times++ == 0) told.set_value(step);
    });
    auto a_joined = std::async(std::launch::async, [&] { return a->join(); });
    b->join();
    a_joined.get();

    auto a_ready = std::async(std::launch::async, [&] { return a->ready(1, 20); });
    auto wrap_up = told.get_future();
    ASSERT_EQ(wrap_up.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "no wrap_up reached node 1";
    EXPECT_EQ(wrap_up.get(), 1);
    const auto b_epoch = b->ready(1, 7);
    const auto a_epoch = a_ready.get();
    ASSERT_TRUE(std::holds_alternative<Epoch>(a_epoch) && std::holds_alternative<Epoch>(b_epoch));
    for (const Epoch& epoch : {std::get<Epoch>(a_epoch), std::get<Epoch>(b_epoch)}) {
        EXPECT_EQ(epoch.inner_steps, (std::map<int, int64_t>{{0, 20}, {1, 7}}));
        EXPECT_FLOAT_EQ(epoch.weight_of(1), 2.0f * 7 / 27);
    }
    EXPECT_EQ(times.load(), 1);
    a->leave();
    b->leave();
    stop = true;
    serving.join();
}

}  // namespace
}  // namespace pangea
