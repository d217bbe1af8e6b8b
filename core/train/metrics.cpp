#include "train/metrics.hpp"

#include "common/files.hpp"
#include "common/log.hpp"

namespace fs = std::filesystem;

namespace pangea {

NodeMetrics::NodeMetrics(const fs::path& run_dir, int node, int64_t outer_steps, int64_t inner_steps, bool append)
    : node_(node), outer_steps_(outer_steps), inner_steps_(inner_steps) {
    for (const char* sub : {"metrics", "status", "summary"}) fs::create_directories(run_dir / sub);
    const std::string name = "node-" + std::to_string(node);
    status_path_ = run_dir / "status" / (name + ".json");
    summary_path_ = run_dir / "summary" / (name + ".json");
    lines_.open(run_dir / "metrics" / (name + ".jsonl"), append ? std::ios::app : std::ios::trunc);
}

void NodeMetrics::status(const char* state, int64_t outer, int64_t inner, double tokens_per_s, bool force) {
    if (!force && seconds_since(last_status_) < 0.25) return;
    last_status_ = Clock::now();
    try {
        write_file_atomically(status_path_, to_json(Json{{"node", node_},
                                                         {"state", state},
                                                         {"outer_step", outer},
                                                         {"outer_steps", outer_steps_},
                                                         {"inner_step", inner},
                                                         {"inner_steps", inner_steps_},
                                                         {"loss", last_loss_},
                                                         {"eval_loss", last_eval_},
                                                         {"tokens_per_s", tokens_per_s},
                                                         {"allreduce_seconds", last_allreduce_.seconds},
                                                         {"allreduce_bytes", last_allreduce_.bytes_sent},
                                                         {"compute_utilization", compute_utilization()}}),
                             Durability::kReadersOnly);  // (4 times a second, on the training thread)
    } catch (const std::exception& e) {
        // A full disk must not stop training: the status is for watching the run.
        if (!status_failed_)
            log(PANGEA_LOG_WARN, "train", "node-" + std::to_string(node_) + ": cannot write the status file: " + e.what());
        status_failed_ = true;
    }
}

void NodeMetrics::outer_step(Json line, const OuterStepReport& report, double compute, double wall) {
    if (report.applied) {
        last_allreduce_ = report.allreduce;
        allreduce_total_ += report.allreduce.seconds;
        bytes_total_ += report.allreduce.bytes_sent;
    }
    blocked_total_ += report.blocked_seconds;
    line.update(Json{{"inner_seconds", compute},
                     {"wall_seconds", wall},
                     {"allreduce_applied", report.applied},
                     {"allreduce_seconds", report.applied ? report.allreduce.seconds : 0.0},
                     {"allreduce_bytes_sent", report.applied ? report.allreduce.bytes_sent : 0},
                     {"blocked_seconds", report.blocked_seconds},
                     {"compute_utilization", compute / wall}});
    if (report.applied && !report.allreduce.excluded_nodes.empty()) {
        line["excluded_nodes"] = report.allreduce.excluded_nodes;
        excluded_total_ += static_cast<int64_t>(report.allreduce.excluded_nodes.size());
    }
    lines_ << to_json(line) << "\n" << std::flush;
}

void NodeMetrics::landed(const OuterStepReport& report) {
    if (report.applied) {
        allreduce_total_ += report.allreduce.seconds;
        bytes_total_ += report.allreduce.bytes_sent;
        excluded_total_ += static_cast<int64_t>(report.allreduce.excluded_nodes.size());
    }
    blocked_total_ += report.blocked_seconds;
}

void NodeMetrics::summary(const Json& extra) const {
    const double wall = seconds();
    Json out{{"node", node_},
             {"final_loss", last_loss_},
             {"final_eval_loss", last_eval_},
             {"wall_seconds", wall},
             {"inner_seconds", compute_total_},
             {"compute_utilization", compute_total_ / wall},
             {"allreduce_seconds", allreduce_total_},
             {"blocked_seconds", blocked_total_},
             {"bytes_sent", bytes_total_},
             {"excluded_contributions", excluded_total_}};
    out.update(extra);
    write_file_atomically(summary_path_, to_json(out));
}

}  // namespace pangea
