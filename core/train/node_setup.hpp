// What a node builds from the manifest before it meets any other node: its part of the data, the
// model, and the plugin instances. Whatever is wrong in the manifest fails here, before any node
// waits for another.
#pragma once

#include <memory>
#include <string>

#include "common/process.hpp"
#include "data/sampler.hpp"
#include "plugin_host/plugin_instance.hpp"
#include "train/learner.hpp"
#include "train/model_shape.hpp"

namespace pangea {

struct Manifest;
class PluginRegistry;
class WorkerGroup;

struct NodeSetup {
    // Throws ManifestError / std::runtime_error naming what is wrong (data, model shape, plugins).
    // `workers`: the node's workers, when it has several (the learner sums their gradients).
    NodeSetup(const Manifest& manifest, PluginRegistry& registry, int node, WorkerGroup* workers = nullptr);
    NodeSetup(const NodeSetup&) = delete;
    NodeSetup& operator=(const NodeSetup&) = delete;

    int node;
    int nodes;         // [mesh] nodes
    std::string tag;   // "node-<i>", for log lines
    Sampler sampler;   // this node's share of the training windows, and the held-out ones
    ModelShape shape;  // [model], with the data's vocabulary
    MemoryUse baseline;  // the process, LibTorch and the data, before the model
    std::unique_ptr<Learner> learner;
    PluginInstance optimizer, transport, codec;  // [optim] (nesterov), [transport] (tcp), [compress] (none)
};

}  // namespace pangea
