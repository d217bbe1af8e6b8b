#include "train/schedule.hpp"

#include <algorithm>
#include <cmath>

namespace pangea {

double LearningRateSchedule::at(int64_t step) const {
    if (step < warmup_steps) return peak * double(step + 1) / double(warmup_steps);
    const int64_t decay_steps = static_cast<int64_t>(std::llround(decay_fraction * double(total_steps)));
    const int64_t decay_start = std::max(warmup_steps, total_steps - decay_steps);
    if (step < decay_start || decay_steps == 0) return peak;
    const double progress = std::min(1.0, double(step - decay_start + 1) / double(total_steps - decay_start));
    const double shape = sqrt_decay ? 1.0 - std::sqrt(progress) : 1.0 - progress;
    return peak * (min_ratio + (1.0 - min_ratio) * shape);
}

}  // namespace pangea
