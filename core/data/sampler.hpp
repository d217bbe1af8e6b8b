// What each node trains on: several sources mixed by weight, each cut into windows of
// seq_len + 1 tokens; every 20th window is held out for evaluation. Node k of N reads a
// disjoint, deterministic part of the rest: draw c of a source is the (c*N + k)-th entry of a
// seeded permutation of its windows (a new permutation each epoch). Which source serves draw d
// is a seeded hash of (seed, node, d) against the weights, so the whole read position is a few
// counters (SamplerState), saved with the training state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/token_shard.hpp"

namespace pangea {

// One [[data.sources]] entry: a shard file, a directory of *.tok shards, or "builtin:NAME".
struct DataSource {
    std::string path;
    double weight = 1.0;
    std::string origin;  // "run.toml:12:1", or "default" for the built-in mixture
};

// The built-in corpus mixed 55/20/20/5 (prose, code, arithmetic, lists), as the reference run
// mixed its four datasets.
std::vector<DataSource> default_data_sources();

struct SamplerState {
    uint64_t draws = 0;              // sequences drawn so far
    std::vector<uint64_t> per_source;  // of which from each source
};

class Sampler {
public:
    // Opens every source. Throws DataError naming the source's origin for a missing path, an
    // empty directory, a bad shard, weights that do not sum to > 0, or a source too small to
    // hold one training and one held-out window.
    Sampler(const std::vector<DataSource>& sources, int64_t seq_len, uint64_t seed, int node, int nodes);
    ~Sampler();

    uint32_t vocab() const { return vocab_; }  // one more than the largest token id any source can hold
    int64_t seq_len() const { return seq_len_; }

    // Fills `out` (sequences x (seq_len + 1) tokens) with the next training windows.
    void next(std::span<int32_t> out);
    // Held-out window i of the evaluation set (the same on every node).
    void held_out(uint64_t index, std::span<int32_t> out) const;

    const SamplerState& state() const { return state_; }
    void restore(const SamplerState& state);  // throws DataError if it does not fit the sources
    // The read position after `draws` sequences from the start: what a node that joins mid-run
    // takes up for its own part of the data (the choice of source per draw is a pure function).
    void skip_to(uint64_t draws);

    std::string describe() const;  // "prose 55% (1.0M tokens), ..."

private:
    struct Source;
    size_t pick_source(uint64_t hash) const;  // by the weights, from a uniform 64-bit hash
    std::vector<std::unique_ptr<Source>> sources_;
    std::vector<double> cumulative_;  // normalized weights, running sum
    int64_t seq_len_;
    uint64_t seed_;
    int node_, nodes_;
    uint32_t vocab_ = 0;
    SamplerState state_;
};

}  // namespace pangea
