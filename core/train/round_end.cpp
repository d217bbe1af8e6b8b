#include "train/round_end.hpp"

#include "train/checkpoints.hpp"
#include "train/live_recovery.hpp"
#include "train/metrics.hpp"

namespace pangea {

OuterStepReport land_before_handing_over(OuterLoop& loop, int64_t round, int64_t rounds,
                                         const NodeCheckpoints& checkpoints, const LiveRecovery* recovery,
                                         NodeMetrics& metrics) {
    const bool handing_over = checkpoints.due(round + 1, rounds) || (recovery && recovery->joiners_waiting());
    if (!loop.in_flight() || !handing_over) return {};
    OuterStepReport drained = loop.drain();
    if (!drained.dropped()) metrics.landed(drained);
    return drained;
}

}  // namespace pangea
