#include "train/live_recovery.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "common/log.hpp"

namespace pangea {

LiveRecovery::LiveRecovery(MeshSession& mesh, TransferableState& state, bool overlap)
    : mesh_(mesh), state_(state), overlap_(overlap) {
    // (The outer step waiting leaves the committed state untouched: the snapshot is of it.)
    mesh_.on_joiners_blocked([this] {
        if (overlap_)
            blocked_ = true;  // (the training thread may be changing the inner state now)
        else
            mesh_.offer(state_.snapshot(mesh_.committed_step()));
    });
}

int64_t LiveRecovery::start(int64_t held) {
    const JoinResult& joined = mesh_.joined();
    if (joined.role == Role::kRecover)
        return recover({"node-" + std::to_string(mesh_.node()) + " joins a run in progress", joined.step, joined.sources});
    return held;
}

int64_t LiveRecovery::recover(Rejoin from) {
    const std::string tag = "node-" + std::to_string(mesh_.node()) + ": ";
    while (true) {
        FetchReport report;
        const StateSnapshot snapshot = mesh_.fetch(from, state_.max_snapshot_bytes(), &report);
        state_.take_up(snapshot);
        std::string sources;
        for (const int source : report.sources) sources += (sources.empty() ? "" : ", ") + std::to_string(source);
        char line[256];
        std::snprintf(line, sizeof line,
                      "%srecovered the state of outer step %lld from node %s: %.1f MiB in %.2f s (%.2f MB/s), "
                      "after %.1f s waiting for a snapshot",
                      tag.c_str(), static_cast<long long>(snapshot.step), sources.c_str(), report.bytes / 1048576.0, report.seconds,
                      report.bytes / 1e6 / std::max(report.seconds, 1e-9), report.waited_seconds);
        log(PANGEA_LOG_INFO, "train", line);
        if (std::optional<Rejoin> moved_on = mesh_.admit(snapshot.step)) {
            log(PANGEA_LOG_INFO, "train", tag + "the run moved on while this node recovered; fetching again");
            from = std::move(*moved_on);
            continue;
        }
        recoveries_.push_back(
            {{"step", snapshot.step}, {"from", report.sources}, {"bytes", report.bytes}, {"seconds", report.seconds}});
        return snapshot.step;
    }
}

void LiveRecovery::offer_when_blocked() {
    if (blocked_.exchange(false)) mesh_.offer(state_.snapshot(mesh_.committed_step()));
}

void LiveRecovery::offer_state(bool settled) {
    mesh_.offer(settled && mesh_.joiners_waiting() ? state_.snapshot(mesh_.committed_step()) : nullptr);
}

}  // namespace pangea
