#include "checkpoint/checkpointer.hpp"

#include <chrono>
#include <cstdio>
#include <utility>

#include "common/log.hpp"

namespace pangea {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void note(pangea_log_level level, const std::string& message) { log(level, "checkpoint", message); }

}  // namespace

Checkpointer::Checkpointer(const ObjectStore& store, CheckpointerOptions options)
    : store_(store), options_(std::move(options)) {
    if (options_.async) writer_ = std::thread([this] { run(); });
}

Checkpointer::~Checkpointer() {
    {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return !pending_ && !writing_; });
        stop_ = true;
    }
    changed_.notify_all();
    if (writer_.joinable()) writer_.join();
}

bool Checkpointer::save(TrainingState state) {
    if (!options_.async) {
        write(state);
        return true;
    }
    std::unique_lock lock(mutex_);
    if ((pending_ || writing_) && !options_.wait_when_busy) {
        ++stats_.skipped;
        note(PANGEA_LOG_WARN, "skipped the checkpoint of step " + std::to_string(state.step) +
                                  ": the previous one is still being written (checkpoint.when_busy = \"skip\")");
        return false;
    }
    changed_.wait(lock, [&] { return !pending_ && !writing_; });
    pending_ = std::move(state);
    changed_.notify_all();
    return true;
}

TrainingState Checkpointer::spare() {
    std::lock_guard lock(mutex_);
    return std::exchange(spare_, {});
}

void Checkpointer::wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !pending_ && !writing_; });
}

CheckpointStats Checkpointer::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

void Checkpointer::run() {
    std::unique_lock lock(mutex_);
    while (true) {
        changed_.wait(lock, [&] { return pending_ || stop_; });
        if (!pending_) return;
        TrainingState state = std::move(*pending_);
        pending_.reset();
        writing_ = true;
        lock.unlock();
        write(state);
        state.inner_optimizer_later = nullptr;  // lets the learner reuse its copy
        lock.lock();
        spare_ = std::move(state);
        writing_ = false;
        changed_.notify_all();
    }
}

void Checkpointer::write(const TrainingState& state) {
    const auto start = Clock::now();
    auto last_note = start;
    const std::string where = store_.name() + " " + checkpoint_dir(options_.prefix, state.step);
    uint64_t bytes = 0;
    try {
        const bool completed = write_checkpoint(store_, options_.prefix, state, options_.context, [&](uint64_t written) {
            bytes = written;
            if (seconds_since(last_note) < 10) return;  // long saves say how far they are
            last_note = Clock::now();
            note(PANGEA_LOG_INFO, "writing " + where + ": " + std::to_string(written >> 20) + " MiB so far");
        });
        // This node's part is in. The member that completes a step moves `latest` and removes
        // older checkpoints: a failed clean-up is only a warning (retried at the next completion).
        std::vector<int64_t> pruned;
        try {
            if (completed) pruned = prune_checkpoints(store_, options_.prefix, options_.keep);
        } catch (const std::exception& e) {
            note(PANGEA_LOG_WARN, "saved " + where + ", but could not remove older checkpoints (checkpoint.keep = " +
                                      std::to_string(options_.keep) + "): " + e.what());
        }
        const double seconds = seconds_since(start);
        char line[160];
        std::snprintf(line, sizeof line, ": %.1f MiB in %.2f s (%.1f MB/s)", bytes / 1048576.0, seconds,
                      bytes / 1e6 / std::max(seconds, 1e-9));
        std::string removed;
        for (int64_t step : pruned) removed += (removed.empty() ? "" : ", ") + std::to_string(step);
        note(PANGEA_LOG_INFO, "saved " + where + line +
                                  (completed ? "; the step is complete (latest)" : "; waiting for the other members' parts") +
                                  (removed.empty() ? "" : "; removed step(s) " + removed));
        std::lock_guard lock(mutex_);
        ++stats_.saved;
        stats_.bytes += bytes;
        stats_.write_seconds += seconds;
        stats_.last_step = state.step;
    } catch (const std::exception& e) {
        note(PANGEA_LOG_ERROR, "could not save " + where + ": " + e.what() +
                                   " (the previous checkpoint stays the latest; training goes on)");
        std::lock_guard lock(mutex_);
        ++stats_.failed;
        stats_.last_error = e.what();
    }
}

}  // namespace pangea
