// A node's side of the run's checkpoints ([checkpoint]): the one to resume from (--resume), and
// saving its part every `interval` outer steps and at the end, in the background
// (checkpoint/checkpointer.hpp). For the C++ node and the Python node alike: the model's side
// comes in as a CheckpointContext (its tensors' names) and a TransferableState.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/checkpointer.hpp"
#include "checkpoint/object_store.hpp"
#include "train/node_state.hpp"

namespace pangea {

struct Manifest;
struct NodeOptions;
class PluginRegistry;

class NodeCheckpoints {
public:
    // What a node settles first, before it joins the mesh, with one look at the storage: the
    // outer step of the checkpoint options.resume names ("latest": the newest step the whole run
    // committed; CheckpointError when there is none). Starting afresh (not joining a run in
    // progress), so that forgetting --resume never loses a run: std::runtime_error when the
    // storage holds checkpoints of the run, unless options.fresh, which deletes them. Empty when
    // starting afresh.
    static std::optional<int64_t> prepare_start(const Manifest& manifest, PluginRegistry& registry,
                                                const NodeOptions& options);

    // Opens the storage plugin when checkpoints are saved or options.resume asks for one.
    // Throws std::runtime_error for a setup that cannot save them.
    NodeCheckpoints(const Manifest& manifest, PluginRegistry& registry, const NodeOptions& options,
                    CheckpointContext context);
    NodeCheckpoints(const NodeCheckpoints&) = delete;
    NodeCheckpoints& operator=(const NodeCheckpoints&) = delete;

    // This node's checkpoint of the step --resume names, read and verified (every part's
    // SHA-256, the tensors' names and shapes); empty without --resume.
    std::optional<TrainingState> read_resume_point();

    // Whether a checkpoint is due after `steps` rounds of `total` (with fragments, rounds; see
    // rounds_of()): every [checkpoint] interval outer steps and at the end.
    bool due(int64_t steps, int64_t total) const;
    // After `steps` rounds of `total`, committed by `members` (ascending node ids): saves this
    // node's part when one is due. With nothing in flight (OuterLoop::drain()).
    void after_outer_step(const TransferableState& state, int64_t steps, int64_t total, std::vector<int> members);

    // Waits until the last checkpoint is on storage; returns the totals.
    CheckpointStats finish();
    // The saves so far (one in flight not yet counted); empty when this node saves none.
    std::optional<CheckpointStats> so_far() const;
    // Training time lost to saving: the copy into host memory, and any wait for the writer.
    double stall_seconds() const { return stall_seconds_; }

private:
    std::string tag_;  // "node-<i>"
    int node_;
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
