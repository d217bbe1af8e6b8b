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

// The reference: an optimizer instance of `count` parameters stepping `values` with `average`.
struct Reference {
    explicit Reference(size_t count, const std::map<std::string, SettingValue>& settings)
        : optimizer(test::make_plugin(PANGEA_KIND_OPTIM, "nesterov", settings)) {
        EXPECT_EQ(vt().init(optimizer.handle(), count), PANGEA_OK);
    }
    void step(std::span<float> values, std::span<const float> average) {
        ASSERT_EQ(vt().step(optimizer.handle(), values.data(), average.data(), values.size()), PANGEA_OK);
    }
    const pangea_optim_vtable& vt() const { return optimizer.vtable<pangea_optim_vtable>(); }
    PluginInstance optimizer;
};

const std::map<std::string, SettingValue> kNesterov = {{"lr", 0.7}, {"momentum", 0.9}};

// One node: the "average" is the node's own contribution, recorded. Written from the loop's
// background thread in overlap mode; each entry is read only after the sync() that waited for it.
struct OwnAverage {
    std::vector<std::vector<float>> sent = std::vector<std::vector<float>>(16);
    std::atomic<int> calls = 0;
    AverageFn fn() {
        return [this](std::span<float> data, std::span<float>, const ContributionFn& contribution) {
            contribution(data);
            sent.at(calls++).assign(data.begin(), data.end());
            return AllReduceResult{};
        };
    }
};

// Overlap: round r's average lands at the end of round r + 1, stepping its fragment of the
// synced parameters, and the model's values of that fragment become the synced ones (alpha 0);
// round r's fragment then leaves, taken against its synced values. The optimizer sees only real
// averages, each fragment's in its range.
TEST(OuterLoop, OverlapLandsEachFragmentsAverageOneRoundLate) {
    const PluginInstance optimizer = test::make_plugin(PANGEA_KIND_OPTIM, "nesterov", kNesterov);
    std::vector<Reference> references;
    references.emplace_back(2, kNesterov);
    references.emplace_back(2, kNesterov);
    std::vector<float> params = {1.0f, -2.0f, 0.5f, 3.0f};  // fragments [0, 2) and [2, 4)
    std::vector<float> expected = params;
    OwnAverage average;
    HostParameters model(params);
    OuterLoop loop(model, optimizer, average.fn(), OuterLoopOptions{.overlap = true, .fragments = 2});
    const auto fragment = [&](std::vector<float>& values, int round) {
        return std::span<float>(values).subspan(round % 2 == 0 ? 0 : 2, 2);
    };
    std::vector<std::vector<float>> own;
    for (int round = 0; round < 4; ++round) {
        for (size_t i = 0; i < params.size(); ++i) params[i] -= 0.1f * static_cast<float>(i + 1);
        std::vector<float> local = params;
        own.emplace_back(2);
        for (size_t i = 0; i < 2; ++i) own.back()[i] = fragment(expected, round)[i] - fragment(params, round)[i];
        const auto report = loop.sync(round);
        EXPECT_EQ(report.applied, round > 0);
        EXPECT_TRUE(loop.in_flight());
        if (round > 0) {
            EXPECT_EQ(average.sent[round - 1], own[round - 1]) << "round " << round;
            references[(round - 1) % 2].step(fragment(expected, round - 1), average.sent[round - 1]);
            const auto landed = fragment(expected, round - 1);
            EXPECT_EQ(std::vector<float>(fragment(params, round - 1).begin(), fragment(params, round - 1).end()),
                      std::vector<float>(landed.begin(), landed.end()))
                << "round " << round;
        }
        EXPECT_EQ(std::vector<float>(fragment(params, round).begin(), fragment(params, round).end()),
                  std::vector<float>(fragment(local, round).begin(), fragment(local, round).end()))
            << "round " << round << ": the fragment that left keeps its local values";
        EXPECT_EQ(std::vector<float>(loop.synced().begin(), loop.synced().end()), expected) << "round " << round;
    }
    loop.drain();
    EXPECT_FALSE(loop.in_flight());
    EXPECT_EQ(average.calls, 4);
    references[1].step(fragment(expected, 3), average.sent[3]);
    EXPECT_EQ(std::vector<float>(loop.synced().begin(), loop.synced().end()), expected);
    loop.finish();  // (nothing left in flight: the model takes the synced parameters)
    EXPECT_EQ(params, expected);
    EXPECT_EQ(loop.applied_steps(), 4);
    EXPECT_THROW(OuterLoop(model, optimizer, average.fn(), OuterLoopOptions{.overlap = true}), OuterLoopError);
}

// Fragments: sync(step) averages and steps fragment step mod F alone, as an optimizer of that
// fragment would; the optimizer of all parameters ends with each fragment's state in its range.
TEST(OuterLoop, FragmentsSyncInTurnAndStepOnlyTheirRange) {
    const PluginInstance optimizer = test::make_plugin(PANGEA_KIND_OPTIM, "nesterov", kNesterov);
    std::vector<float> params = {1.0f, -2.0f, 0.5f, 3.0f, 7.0f};  // fragments [0, 2) and [2, 5)
    std::vector<float> expected = params;
    std::vector<Reference> references;
    references.emplace_back(2, kNesterov);
    references.emplace_back(3, kNesterov);
    OwnAverage average;
    HostParameters model(params);
    OuterLoop loop(model, optimizer, average.fn(), OuterLoopOptions{.fragments = 2});
    for (int round = 0; round < 4; ++round) {
        for (size_t i = 0; i < params.size(); ++i) params[i] -= 0.1f * static_cast<float>(i + 1);
        const std::vector<float> local = params;
        const size_t begin = round % 2 == 0 ? 0 : 2, size = round % 2 == 0 ? 2 : 3;
        std::vector<float> own(size);
        for (size_t i = 0; i < size; ++i) own[i] = expected[begin + i] - params[begin + i];
        loop.sync(round);
        EXPECT_EQ(average.sent[round], own) << "round " << round;
        references[round % 2].step(std::span<float>(expected).subspan(begin, size), own);
        EXPECT_EQ(std::vector<float>(loop.synced().begin(), loop.synced().end()), expected) << "round " << round;
        for (size_t i = 0; i < params.size(); ++i)  // the synced fragment; the other keeps its progress
            EXPECT_EQ(params[i], i >= begin && i < begin + size ? expected[i] : local[i]) << "round " << round << ", " << i;
    }
    const auto& vt = optimizer.vtable<pangea_optim_vtable>();
    for (size_t k = 0; k < 2; ++k) {
        const size_t begin = k == 0 ? 0 : 2, size = k == 0 ? 2 : 3;
        std::vector<uint8_t> range(vt.range_state_size(optimizer.handle(), size));
        size_t written = 0;
        ASSERT_EQ(vt.save_state_range(optimizer.handle(), begin, size, range.data(), range.size(), &written), PANGEA_OK);
        range.resize(written);
        EXPECT_EQ(range, state_of(references[k].optimizer)) << "fragment " << k;
    }
    EXPECT_THROW(OuterLoop(model, optimizer, average.fn(), OuterLoopOptions{.fragments = 6}), OuterLoopError);
}

// Overlap with fragments and alpha: the fragment that lands keeps alpha of its local values.
TEST(OuterLoop, OverlapMixesTheLandedFragmentWithAlpha) {
    const PluginInstance optimizer = test::make_plugin(PANGEA_KIND_OPTIM, "nesterov", kNesterov);
    Reference first(2, kNesterov);
    std::vector<float> params = {1.0f, -2.0f, 0.5f, 3.0f};  // fragments [0, 2) and [2, 4)
    std::vector<float> synced = params;
    OwnAverage average;
    HostParameters model(params);
    OuterLoop loop(model, optimizer, average.fn(), OuterLoopOptions{.overlap = true, .fragments = 2, .overlap_alpha = 0.25f});
    for (float& p : params) p -= 0.5f;
    loop.sync(0);  // fragment 0 leaves
    for (float& p : params) p -= 0.25f;
    const std::vector<float> local = params;
    loop.sync(1);  // fragment 1 leaves; fragment 0 lands
    first.step(std::span<float>(synced).first(2), average.sent[0]);
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(loop.synced()[i], synced[i]);
        EXPECT_FLOAT_EQ(params[i], 0.25f * local[i] + 0.75f * synced[i]);
    }
    EXPECT_EQ(params[2], local[2]);
    EXPECT_EQ(params[3], local[3]);
    loop.drain();
    EXPECT_EQ(average.sent[1], (std::vector<float>{0.75f, 0.75f}));
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
    loop.sync(0);
    EXPECT_EQ(average.contributions.back(), (std::vector<float>{0.5f, 1.0f}));
    EXPECT_EQ(std::vector<float>(loop.residual().begin(), loop.residual().end()), (std::vector<float>{0.25f, 0.5f}));
    // synced = (1, 2) - (0.5, 1) = (0.5, 1); round 2 moves by (0.25, 0.25) and carries the residual.
    params = {0.25f, 0.75f};
    average.fail_next = true;
    EXPECT_THROW(loop.sync(0), OuterLoopError);
    EXPECT_EQ(average.contributions.back(), (std::vector<float>{0.5f, 0.75f}));
    // The failed step kept the old residual: the retry sends the same contribution.
    EXPECT_EQ(std::vector<float>(loop.residual().begin(), loop.residual().end()), (std::vector<float>{0.25f, 0.5f}));
    params = {0.25f, 0.75f};
    loop.sync(0);
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
    loop.sync(0);
    EXPECT_THROW(loop.restore_residual(std::vector<float>{1.0f}), OuterLoopError);
}

}  // namespace
}  // namespace pangea
