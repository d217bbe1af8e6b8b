// Metrics a node writes into the run directory:
//   metrics/node-<i>.jsonl   one JSON object per outer step
//   status/node-<i>.json     where the node is right now (rewritten atomically, for `pangea launch`)
//   summary/node-<i>.json    totals at the end
// Field names are documented in docs/training.md.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "common/json.hpp"
#include "diloco/outer_loop.hpp"

namespace pangea {

// One node's reporting: the totals of the run, the status file, a line per outer step, the summary.
class NodeMetrics {
public:
    // Creates the run directory's metrics/, status/ and summary/; `append` carries on the metrics
    // file of a resumed node.
    NodeMetrics(const std::filesystem::path& run_dir, int node, int64_t outer_steps, int64_t inner_steps, bool append);

    // The status file, at most 4 times a second unless `force`. A failure to write it is warned
    // about once and never stops training.
    void status(const char* state, int64_t outer, int64_t inner, double tokens_per_s, bool force);

    // Starts the run's clock (wall time and utilization count from here: after any recovery).
    void begin() { start_ = Clock::now(); }
    // Stops it (the final evaluation and the summary do not count).
    void end() { end_ = Clock::now(); }

    void inner_step(double loss, double seconds) { last_loss_ = loss, compute_total_ += seconds; }
    void evaluated(double loss) { last_eval_ = loss; }

    // The outer step's line, with the all-reduce's outcome added to the totals. `line` holds the
    // caller's fields; this adds the all-reduce's, the utilization, and the totals' state.
    void outer_step(Json line, const OuterStepReport& report, double compute, double wall);

    // An average that landed outside sync() (OuterLoop::drain(), finish()): into the totals.
    void landed(const OuterStepReport& report);

    // summary/node-<i>.json: the totals and `extra` (what only the caller knows).
    void summary(const Json& extra) const;

    double last_loss() const { return last_loss_; }
    double last_eval() const { return last_eval_; }
    double seconds() const {
        return std::chrono::duration<double>((end_ ? *end_ : Clock::now()) - start_).count();
    }
    double compute_utilization() const { return compute_total_ / std::max(1e-9, seconds()); }

private:
    using Clock = std::chrono::steady_clock;
    static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

    int node_;
    int64_t outer_steps_, inner_steps_;
    std::filesystem::path status_path_, summary_path_;
    std::ofstream lines_;
    Clock::time_point start_ = Clock::now();
    std::optional<Clock::time_point> end_;
    Clock::time_point last_status_ = Clock::now() - std::chrono::seconds(10);
    bool status_failed_ = false;  // warned once
    double compute_total_ = 0, blocked_total_ = 0, allreduce_total_ = 0, last_loss_ = 0, last_eval_ = -1;
    uint64_t bytes_total_ = 0;
    int64_t excluded_total_ = 0;  // contributions the mesh left out (NaN/Inf or outsized), over the run
    AllReduceResult last_allreduce_;
};

}  // namespace pangea
