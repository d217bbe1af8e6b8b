// One node of a training run (`pangea run MANIFEST --node-id I`): reads its part of the data,
// builds the model, registers with the coordinator (several nodes), and runs the DiLoCo loop: H
// inner steps, then an outer step through the compression, transport and outer optimizer
// plugins, outer_steps times. A node that finds the run in progress, or that was dropped,
// recovers the state from a live member first. With [checkpoint] interval, it saves checkpoints
// in the background (checkpoint/checkpointer.hpp); --resume starts from one.
// Writes metrics into the run directory (train/metrics.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pangea {

struct Manifest;
class PluginRegistry;

struct NodeOptions {
    int node_id = 0;
    uint64_t run_id = 0;  // 0: derived from [run] name
    bool join = false;    // start as a late joiner: fetch the state from the members first
    std::string resume;   // "latest" or an outer step: start from the run's checkpoint ("": afresh)
    bool fresh = false;   // start afresh although the storage holds the run's checkpoints: delete them
    // Serve the run's builtin coordinator at [mesh] coordinator from this process (rank 0 of a
    // torchrun job, which names no coordinator: MASTER_ADDR:MASTER_PORT + 1).
    bool host_coordinator = false;
    // Where the manifest came from, for the workers this node starts ([node] workers > 1).
    std::string manifest_path;
    std::vector<std::string> set_arguments;
    // A worker other than the node's first (started by it): its number and where they meet.
    int worker = 0;
    std::string worker_dir;
};

struct ModelShape;
class Sampler;

// Opens the data and resolves the model's shape against it, as a node does before training:
// a missing or bad data file, weights that do not sum to > 0 or a shape that does not divide
// fail here with the manifest location. Returns the shape (vocabulary filled in).
ModelShape check_training_inputs(const Manifest& manifest);
// The same against data already opened.
ModelShape check_training_inputs(const Manifest& manifest, const Sampler& sampler);

// Returns the process exit status (0 on success). Throws for errors before training starts
// (bad data, bad model shape, plugins); the caller prints them.
int run_training_node(const Manifest& manifest, PluginRegistry& registry, const NodeOptions& options);

}  // namespace pangea
