// Live recovery, as a node runs it: a late joiner or a dropped node takes up the state of a live
// member and asks to take part in the next outer step, fetching again if the run moved on
// meanwhile; a member keeps a snapshot for whoever waits to recover.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "train/mesh_session.hpp"
#include "train/node_state.hpp"

namespace pangea {

class LiveRecovery {
public:
    // Both must outlive this object. Below [mesh] min_members the run cannot commit until
    // joiners take part, so a member that waits for them hands them its committed state then
    // (they would wait on it while it waits on them), at the start as in mid-run. With `overlap`
    // (diloco.overlap) that wait is on the all-reduce's thread while the training thread trains:
    // the training thread hands the state over when it waits too, in offer_when_blocked().
    LiveRecovery(MeshSession& mesh, TransferableState& state, bool overlap);
    ~LiveRecovery() { mesh_.on_joiners_blocked(nullptr); }
    LiveRecovery(const LiveRecovery&) = delete;
    LiveRecovery& operator=(const LiveRecovery&) = delete;

    // Where this node starts, once its own state (if any) is taken up: a node that joins a run
    // in progress recovers (below); a member returns `held`, the outer steps its state holds.
    int64_t start(int64_t held);

    // Takes up the run's state from a peer; returns the outer steps it had committed (this node
    // goes on with the next one). Throws std::runtime_error / MeshError when no source could
    // give a state that fits, within [mesh] recovery_timeout_ms.
    int64_t recover(Rejoin from);

    // After each commit: keeps this node's state for joiners while anyone waits, when it is
    // `settled` (no average in flight: OuterLoop::drain()); drops the one kept before otherwise.
    void offer_state(bool settled = true);
    bool joiners_waiting() const { return mesh_.joiners_waiting(); }
    // Overlap: called on the training thread while it waits for the average in flight
    // (OuterLoop::while_waiting()): hands joiners the committed state if the run waits for them.
    void offer_when_blocked();

    // One JSON object per recovery: {"step", "from", "bytes", "seconds"}.
    const std::vector<Json>& recoveries() const { return recoveries_; }

private:
    MeshSession& mesh_;
    TransferableState& state_;
    bool overlap_;
    std::atomic<bool> blocked_ = false;  // overlap: the all-reduce waits for joiners
    std::vector<Json> recoveries_;
};

}  // namespace pangea
