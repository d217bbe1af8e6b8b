// A node's checkpoints ([checkpoint]): the one to resume from (--resume), and saving every
// `interval` outer steps and at the end, in the background (checkpoint/checkpointer.hpp). For the
// C++ node and the Python node alike: the model's side comes in as a CheckpointContext (its
// tensors' names) and a TransferableState.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "checkpoint/checkpointer.hpp"
#include "checkpoint/object_store.hpp"
#include "train/node_state.hpp"

namespace pangea {

struct Manifest;
class PluginRegistry;

class NodeCheckpoints {
public:
    // Opens the storage plugin when checkpoints are saved or `resume` ("latest" or a step; empty:
    // start afresh) asks for one. Throws std::runtime_error for a setup that cannot save them,
    // and, so that forgetting --resume never loses a run, when checkpoints are to be saved
    // afresh where this node's checkpoints of the run already are, unless `fresh` says to delete
    // them (it does, before anything is saved).
    NodeCheckpoints(const Manifest& manifest, PluginRegistry& registry, int node, CheckpointContext context,
                    const std::string& resume, bool fresh);
    NodeCheckpoints(const NodeCheckpoints&) = delete;
    NodeCheckpoints& operator=(const NodeCheckpoints&) = delete;

    // What the constructor settles first, for a node that must know it before it joins the mesh
    // (a Python node, whose model comes later), with one look at the storage: the outer step of
    // the checkpoint `resume` names ("latest" or a step; CheckpointError when there is none), or,
    // starting afresh, the refusal to overwrite this node's checkpoints unless `fresh`, which
    // deletes them. Empty when starting afresh.
    static std::optional<int64_t> prepare_start(const Manifest& manifest, PluginRegistry& registry, int node,
                                                const std::string& resume, bool fresh);

    // The checkpoint --resume names, read and verified (every part's SHA-256, the tensors'
    // names and shapes); empty without --resume.
    std::optional<TrainingState> read_resume_point();

    // After `steps` outer steps of `total`: saves when one is due.
    void after_outer_step(const TransferableState& state, int64_t steps, int64_t total);

    // Waits until the last checkpoint is on storage; returns the totals.
    CheckpointStats finish();
    // Training time lost to saving: the copy into host memory, and any wait for the writer.
    double stall_seconds() const { return stall_seconds_; }

private:
    std::string tag_;  // "node-<i>"
    std::string resume_;
    std::string prefix_;
    int64_t interval_;
    CheckpointContext context_;
    std::string manifest_text_;  // saved with each checkpoint
    std::unique_ptr<ObjectStore> store_;
    std::unique_ptr<Checkpointer> checkpointer_;
    double stall_seconds_ = 0;
};

}  // namespace pangea
