// `pangea bench compress`: throughput of compression plugins beside memcpy, measured in the
// same run on the same buffers, with the compression ratio and error of each configuration.
#pragma once

#include <string>
#include <vector>

#include "plugin_host/plugin_registry.hpp"

namespace pangea {

struct CompressBenchOptions {
    std::vector<size_t> sizes_mib = {1, 64, 512};
    // "plugin" or "plugin:key=value,key=value"
    std::vector<std::string> configs = {"none", "int8", "int8:scheme=sigma", "fp16", "fp16:format=bf16"};
    double seconds_per_measurement = 1.0;  // repeat each operation for about this long
};

// Prints a table to stdout, a row as each measurement completes. Throws PluginError or
// std::runtime_error for a bad configuration.
void run_compress_bench(PluginRegistry& registry, const CompressBenchOptions& options);

}  // namespace pangea
