// `pangea bench train`: tokens/s of the inner step for the manifest's model and batch, beside a
// PyTorch eager reference of the same shape run in the same invocation (bench/train_reference.py
// with Debian's python3, which sees python3-torch: the LibTorch version the node links).
#pragma once

#include <string>
#include <vector>

namespace pangea {

struct Manifest;

struct TrainBenchOptions {
    int warmup = 2;            // untimed steps first (allocation, thread pools)
    int steps = 5;             // timed steps
    int rounds = 2;            // ours and the reference in turn, this many times; the best of each counts
    std::string reference;     // path of bench/train_reference.py ("": ours only)
    std::string python = "/usr/bin/python3";
};

// Prints a row for Pangea, one for the reference and their ratio. Returns the exit status.
int run_train_bench(const Manifest& manifest, const TrainBenchOptions& options);

}  // namespace pangea
