// The outer loop on its own: one node (the "average" is the node's own pseudo-gradient), a fixed
// descent direction for the inner steps, and a second optimizer instance as the reference.
#include <gtest/gtest.h>

#include <atomic>
#include <utility>

#include "diloco/outer_loop.hpp"
#include "pangea/optim.h"

#include "support/builtin_plugins.hpp"

namespace pangea {
namespace {

std::vector<uint8_t> state_of(const PluginInstance& optimizer) {
    const auto& vt = optimizer.vtable<pangea_optim_vtable>();
    std::vector<uint8_t> bytes(vt.state_size(optimizer.handle()));
    size_t written = 0;
    EXPECT_EQ(vt.save_state(optimizer.handle(), bytes.data(), bytes.size(), &written), PANGEA_OK);
    bytes.resize(written);
    return bytes;
}

// Overlap mode previews the outer step on the local pseudo-gradient to pick the next round's
// start; that preview must leave no trace in the optimizer state or the synced parameters.
TEST(OuterLoop, OverlapPreviewLeavesOnlyRealAveragesInTheOptimizer) {
    const std::map<std::string, SettingValue> nesterov = {{"lr", 0.7}, {"momentum", 0.9}};
    const PluginInstance optimizer = test::make_plugin(PANGEA_KIND_OPTIM, "nesterov", nesterov);
    const PluginInstance reference = test::make_plugin(PANGEA_KIND_OPTIM, "nesterov", nesterov);
    std::vector<float> params = {1.0f, -2.0f, 0.5f, 3.0f};
    std::vector<float> expected = params;
    // What the loop sent, in order. Written from the loop's background thread; each entry is read
    // only after the sync() that waited for it.
    std::vector<std::vector<float>> averaged(4);
    std::atomic<int> calls = 0;
    HostParameters model(params);
    OuterLoop loop(model, optimizer,
                   [&](std::span<float> data, std::span<float>, const ContributionFn& contribution) {
                       contribution(data);
                       averaged.at(calls++).assign(data.begin(), data.end());
                       return AllReduceResult{};
                   },
                   OuterLoopOptions{.overlap = true});
    const auto& vt = reference.vtable<pangea_optim_vtable>();
    ASSERT_EQ(vt.init(reference.handle(), expected.size()), PANGEA_OK);
    for (int round = 0; round < 4; ++round) {
        std::vector<float> own = params;  // this round's progress, as the loop computes it
        for (size_t i = 0; i < params.size(); ++i) params[i] -= 0.1f * static_cast<float>(i + 1);
        for (size_t i = 0; i < params.size(); ++i) own[i] -= params[i];
        const auto report = loop.sync();
        EXPECT_EQ(report.applied, round > 0);
        if (round > 0) {
            ASSERT_EQ(vt.step(reference.handle(), expected.data(), averaged[round - 1].data(), 4), PANGEA_OK);
        }
        EXPECT_EQ(std::vector<float>(loop.synced().begin(), loop.synced().end()), expected) << "round " << round;
        EXPECT_EQ(state_of(optimizer), state_of(reference)) << "round " << round;
        // The next round starts where the outer step on this round's own progress would lead.
        std::vector<float> preview = expected;
        std::vector<uint8_t> saved = state_of(reference);
        ASSERT_EQ(vt.step(reference.handle(), preview.data(), own.data(), 4), PANGEA_OK);
        ASSERT_EQ(vt.load_state(reference.handle(), saved.data(), saved.size()), PANGEA_OK);
        EXPECT_EQ(params, preview) << "round " << round;
    }
    loop.finish();
    EXPECT_EQ(calls, 4);
    ASSERT_EQ(vt.step(reference.handle(), expected.data(), averaged.back().data(), 4), PANGEA_OK);
    EXPECT_EQ(params, expected);
    EXPECT_EQ(loop.applied_steps(), 4);
}

// Error feedback: an all-reduce that "loses" half of each contribution (says so in the residual)
// and records what it was given.
struct LossyAverage {
    std::vector<std::vector<float>> contributions;
    bool fail_next = false;
    AllReduceResult operator()(std::span<float> data, std::span<float> residual, const ContributionFn& contribution) {
        contribution(data);
        contributions.emplace_back(data.begin(), data.end());
        EXPECT_EQ(residual.size(), data.size());
        for (size_t i = 0; i < data.size(); ++i) residual[i] = 0.5f * data[i];
        AllReduceResult result;
        if (std::exchange(fail_next, false)) {
            result.status = PANGEA_ERR_IO;
            result.error = "a test failure";
        }
        return result;
    }
};

TEST(OuterLoop, ErrorFeedbackAddsWhatTheLastContributionLostToTheNextAndKeepsItThroughAFailure) {
    const PluginInstance optimizer = test::make_plugin(PANGEA_KIND_OPTIM, "nesterov", {{"lr", 1.0}, {"momentum", 0.0}});
    std::vector<float> params = {1.0f, 2.0f};
    HostParameters model(params);
    LossyAverage average;
    OuterLoop loop(model, optimizer, [&](auto data, auto residual, const auto& c) { return average(data, residual, c); },
                   OuterLoopOptions{.error_feedback = true});
    ASSERT_EQ(loop.residual_count(), 2u);
    params = {0.5f, 1.0f};  // round 1: pseudo-gradient (0.5, 1)
    loop.sync();
    EXPECT_EQ(average.contributions.back(), (std::vector<float>{0.5f, 1.0f}));
    EXPECT_EQ(std::vector<float>(loop.residual().begin(), loop.residual().end()), (std::vector<float>{0.25f, 0.5f}));
    // synced = (1, 2) - (0.5, 1) = (0.5, 1); round 2 moves by (0.25, 0.25) and carries the residual.
    params = {0.25f, 0.75f};
    average.fail_next = true;
    EXPECT_THROW(loop.sync(), OuterLoopError);
    EXPECT_EQ(average.contributions.back(), (std::vector<float>{0.5f, 0.75f}));
    // The failed step kept the old residual: the retry sends the same contribution.
    EXPECT_EQ(std::vector<float>(loop.residual().begin(), loop.residual().end()), (std::vector<float>{0.25f, 0.5f}));
    params = {0.25f, 0.75f};
    loop.sync();
    EXPECT_EQ(average.contributions.back(), (std::vector<float>{0.5f, 0.75f}));
    EXPECT_EQ(std::vector<float>(loop.residual().begin(), loop.residual().end()), (std::vector<float>{0.25f, 0.375f}));
}

TEST(OuterLoop, TakingUpAnotherNodesStateKeepsThisNodesResidual) {
    const PluginInstance optimizer = test::make_plugin(PANGEA_KIND_OPTIM, "nesterov");
    std::vector<float> params = {1.0f, 2.0f, 3.0f};
    HostParameters model(params);
    LossyAverage average;
    OuterLoop loop(model, optimizer, [&](auto data, auto residual, const auto& c) { return average(data, residual, c); },
                   OuterLoopOptions{.error_feedback = true});
    const std::vector<float> own = {0.125f, -1.0f, 4.0f};
    loop.restore_residual(own);
    const std::vector<float> synced = {7.0f, 8.0f, 9.0f};
    loop.restore(synced, loop.optimizer_state());  // live recovery: a peer's synced state
    EXPECT_EQ(std::vector<float>(loop.residual().begin(), loop.residual().end()), own);
    EXPECT_EQ(params, synced);
    const std::vector<float> short_one = {1.0f};
    EXPECT_THROW(loop.restore_residual(short_one), OuterLoopError);
    EXPECT_EQ(std::vector<float>(loop.residual().begin(), loop.residual().end()), own);
}

TEST(OuterLoop, WithoutErrorFeedbackThereIsNoResidual) {
    const PluginInstance optimizer = test::make_plugin(PANGEA_KIND_OPTIM, "nesterov");
    std::vector<float> params = {1.0f};
    HostParameters model(params);
    OuterLoop loop(model, optimizer,
                   [&](std::span<float> data, std::span<float> residual, const ContributionFn& contribution) {
                       EXPECT_TRUE(residual.empty());
                       contribution(data);
                       return AllReduceResult{};
                   },
                   OuterLoopOptions{});
    EXPECT_EQ(loop.residual_count(), 0u);
    loop.sync();
    EXPECT_THROW(loop.restore_residual(std::vector<float>{1.0f}), OuterLoopError);
}

}  // namespace
}  // namespace pangea
