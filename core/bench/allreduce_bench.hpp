// `pangea bench allreduce`: N node processes run the ring all-reduce over a transport plugin for
// each size and compressor, and rank 0 prints time, algorithm and bus bandwidth. The nodes find
// each other through files in a rendezvous directory, so they can run on loopback or each in its
// own network namespace (bench/wan.sh). Optionally the same nodes then run LibTorch's c10d
// ProcessGroupGloo all-reduce (fp32) as the baseline, and the ratio is printed.
//
// With --rings R the buffer is cut into R byte ranges, each all-reduced over a ring of its own
// (its own listener and connections: separate flows), all R at once: the W rings of a node of W
// workers, each all-reducing its shard with the same-rank workers of the other nodes. Ring k of
// node r binds the host template with {k} = k, so that each ring can have a link of its own
// (bench/wan.sh --lanes).
//
// With --worker-group the same processes then time the collectives of a node's workers
// (core/workers/worker_group.hpp: Gloo over loopback TCP): all-reduce, reduce-scatter and
// all-gather, beside Pangea's own ring over the transport on the same machine.
#pragma once

#include <string>
#include <vector>

namespace pangea {

struct AllReduceBenchOptions {
    int nodes = 4;
    std::vector<size_t> sizes_mib = {1, 16, 256, 1024};
    std::vector<std::string> configs = {"none", "int8", "fp16"};  // compressor[:key=value,...]
    std::string transport = "tcp";                               // transport[:key=value,...]
    std::vector<int> rings = {1};  // rings in parallel over byte ranges, each value measured
    int repeat = 3;
    size_t piece_kib = 1024;  // fp32 data per piece on the wire
    size_t depth = 4;         // pieces in flight per direction
    int stall_timeout_ms = 120000;
    std::string ring_order = "rank";  // "rank", or "measured": by pairwise bandwidth probes
    size_t probe_kib = 4096;          // bytes of each bandwidth probe
    // Node r's ring k binds <host_template with {r} replaced by r + 1 and {k} by k>:0, inside
    // namespace <netns_prefix><r + 1> when netns_prefix is set.
    std::string host_template = "127.0.0.1";
    std::string netns_prefix;
    double link_mbit = 0;     // the emulated link rate, for the "of link" column (0: none)
    std::string baseline;     // path to the pangea-bench-c10d binary, or "" for no baseline
    std::string baseline_device;  // its Gloo device: "if:NAME" or "host:ADDR" ("" = node's host)
    bool worker_group = false;    // also time the workers' collectives (WorkerGroup, Gloo)

    // Set for the node processes only.
    int rank = -1;
    std::string rendezvous;
    uint64_t run_id = 0;
};

// Parent: starts the nodes, waits, returns the exit code. Node: runs one rank.
int run_allreduce_bench(const AllReduceBenchOptions& options);

}  // namespace pangea
