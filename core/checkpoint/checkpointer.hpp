// Saving checkpoints without stalling training. At an outer-step boundary the trainer copies its
// state into host memory (a TrainingState) and hands it over; a background thread writes it
// through the storage plugin while training goes on. So there are two buffers: the one being
// written and the one being filled. When the next save is due while one is still being written,
// `wait_when_busy` decides: wait for it (every due checkpoint is written) or skip this one.
// Failures are logged and counted; the previous checkpoint stays the latest and usable.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "checkpoint/checkpoint.hpp"

namespace pangea {

struct CheckpointerOptions {
    std::string prefix;         // where the checkpoints go in the store ("demo/node-0/")
    CheckpointContext context;  // for the headers
    int keep = 3;               // complete checkpoints kept (older ones are deleted)
    bool async = true;          // false: save() writes before returning
    bool wait_when_busy = true; // false: a save due while one is in flight is skipped
};

struct CheckpointStats {
    int saved = 0;
    int skipped = 0;
    int failed = 0;
    double write_seconds = 0;  // the writer's time, over all saves
    uint64_t bytes = 0;
    int64_t last_step = -1;    // of the last checkpoint saved
    std::string last_error;
};

class Checkpointer {
public:
    Checkpointer(const ObjectStore& store, CheckpointerOptions options);
    ~Checkpointer();  // waits for a save in flight
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;

    // Saves `state` (taken over). Returns false when it was skipped (a save still in flight and
    // wait_when_busy is off).
    bool save(TrainingState state);
    // A state to fill for the next save: the last one written, whose buffers are already the
    // right size (double buffering: one being written, one being filled), or an empty one.
    TrainingState spare();
    void wait();  // until no save is in flight
    CheckpointStats stats() const;

private:
    void run();                          // the writer thread
    void write(const TrainingState& state);  // one checkpoint, with retention and logging

    const ObjectStore& store_;
    CheckpointerOptions options_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::optional<TrainingState> pending_;  // handed over, not yet written
    TrainingState spare_;                   // written, kept for its buffers
    bool writing_ = false;
    bool stop_ = false;
    CheckpointStats stats_;
    std::thread writer_;
};

}  // namespace pangea
