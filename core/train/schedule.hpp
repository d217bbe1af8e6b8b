// The inner learning rate: warmup-stable-decay. Linear warmup over warmup_steps, then the peak
// rate, then over the last decay_fraction of all steps a decay to min_lr_ratio x peak, linear or
// by the square root (1 - sqrt(progress)), as in MiniCPM and INTELLECT-1's WSD runs.
#pragma once

#include <cstdint>
#include <string>

namespace pangea {

struct LearningRateSchedule {
    double peak = 1e-3;
    int64_t warmup_steps = 0;
    int64_t total_steps = 1;
    double decay_fraction = 0.2;
    bool sqrt_decay = false;
    double min_ratio = 0.1;

    double at(int64_t step) const;  // step counts from 0
};

}  // namespace pangea
