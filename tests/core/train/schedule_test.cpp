#include "train/schedule.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace pangea {
namespace {

TEST(Schedule, WarmupStableDecay) {
    LearningRateSchedule s;
    s.peak = 1.0;
    s.warmup_steps = 10;
    s.total_steps = 100;
    s.decay_fraction = 0.2;
    s.min_ratio = 0.1;
    EXPECT_DOUBLE_EQ(s.at(0), 0.1);
    EXPECT_DOUBLE_EQ(s.at(9), 1.0);
    EXPECT_DOUBLE_EQ(s.at(50), 1.0);
    EXPECT_DOUBLE_EQ(s.at(79), 1.0);
    EXPECT_NEAR(s.at(89), 0.1 + 0.9 * 0.5, 1e-12);  // halfway through the decay
    EXPECT_NEAR(s.at(99), 0.1, 1e-12);
    s.sqrt_decay = true;
    EXPECT_NEAR(s.at(89), 0.1 + 0.9 * (1 - std::sqrt(0.5)), 1e-12);
}

TEST(Schedule, NoDecayKeepsThePeak) {
    LearningRateSchedule s;
    s.peak = 0.5;
    s.total_steps = 10;
    s.decay_fraction = 0;
    EXPECT_DOUBLE_EQ(s.at(9), 0.5);
}

}  // namespace
}  // namespace pangea
