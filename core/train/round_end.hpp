// The end of a round in overlap mode, for the C++ node and the Python node alike: when the node
// is about to hand its state over (a checkpoint is due, joiners wait for a snapshot), it waits
// for the average still in flight and lands it, so that what is handed over holds every average
// sent. (In blocking mode nothing is in flight.)
#pragma once

#include <cstdint>

#include "diloco/outer_loop.hpp"

namespace pangea {

class LiveRecovery;
class NodeCheckpoints;
class NodeMetrics;

// After sync() of round `round` of `rounds`; `recovery` may be null (one node). Returns the
// drain's report, whose average went into `metrics`' totals (nothing applied when there was
// nothing to do; dropped: the node recovers). Throws like OuterLoop::drain().
OuterStepReport land_before_handing_over(OuterLoop& loop, int64_t round, int64_t rounds,
                                         const NodeCheckpoints& checkpoints, const LiveRecovery* recovery,
                                         NodeMetrics& metrics);

}  // namespace pangea
