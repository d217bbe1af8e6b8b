// The outer loop on its own: one node (the "average" is the node's own pseudo-gradient), a fixed
// descent direction for the inner steps, and a second optimizer instance as the reference.
#include <gtest/gtest.h>

#include <atomic>

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
                   [&](std::span<float> data, const ContributionFn& contribution) {
                       contribution(data);
                       averaged.at(calls++).assign(data.begin(), data.end());
                       return AllReduceResult{};
                   },
                   /*overlap=*/true);
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

}  // namespace
}  // namespace pangea
