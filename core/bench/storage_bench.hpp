// `pangea bench storage`: write and read throughput of storage plugins, one object of a set size
// streamed in 8 MiB chunks (as checkpoints are), each configuration measured in the same run.
#pragma once

#include <string>
#include <vector>

#include "plugin_host/plugin_registry.hpp"

namespace pangea {

struct StorageBenchOptions {
    // "plugin:key=value,key=value", e.g. "local:path=/tmp/x" or "s3:endpoint=...,bucket=b"
    std::vector<std::string> configs;
    size_t mib = 512;
    int repeats = 2;  // the best of these is reported
};

// Prints one row per configuration to stdout. Throws CheckpointError (a failing store) or
// PluginError (a bad configuration).
void run_storage_bench(PluginRegistry& registry, const StorageBenchOptions& options);

}  // namespace pangea
