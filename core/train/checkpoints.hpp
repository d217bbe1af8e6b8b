// A node's checkpoints ([checkpoint]): the one to resume from (--resume), and saving every
// `interval` outer steps and at the end, in the background (checkpoint/checkpointer.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "checkpoint/checkpointer.hpp"
#include "checkpoint/object_store.hpp"
#include "train/model_shape.hpp"
#include "train/node_state.hpp"

namespace pangea {

struct Manifest;
class PluginRegistry;

class NodeCheckpoints {
public:
    // Opens the storage plugin when checkpoints are saved or `resume` ("latest" or a step; empty:
    // start afresh) asks for one. Throws std::runtime_error for a setup that cannot save them.
    NodeCheckpoints(const Manifest& manifest, PluginRegistry& registry, int node, const ModelShape& shape,
                    const std::string& resume);
    NodeCheckpoints(const NodeCheckpoints&) = delete;
    NodeCheckpoints& operator=(const NodeCheckpoints&) = delete;

    // The checkpoint --resume names, read and verified (every part's SHA-256); empty without
    // --resume. Read before the node joins the mesh: the run hears which step it holds.
    std::optional<TrainingState> read_resume_point();

    // After `steps` outer steps of `total`: saves when one is due.
    void after_outer_step(const NodeState& state, int64_t steps, int64_t total);

    // Waits until the last checkpoint is on storage; returns the totals.
    CheckpointStats finish();
    // Training time lost to saving: the copy into host memory, and any wait for the writer.
    double stall_seconds() const { return stall_seconds_; }

private:
    std::string tag_;  // "node-<i>"
    ModelShape shape_;  // what a checkpoint read back must hold
    std::string resume_;
    std::string prefix_;
    int64_t interval_;
    std::string manifest_text_;  // saved with each checkpoint
    std::unique_ptr<ObjectStore> store_;
    std::unique_ptr<Checkpointer> checkpointer_;
    double stall_seconds_ = 0;
};

}  // namespace pangea
