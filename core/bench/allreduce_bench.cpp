#include "bench/allreduce_bench.hpp"

#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "bench/plugin_config.hpp"
#include "collective/ring_allreduce.hpp"
#include "common/process.hpp"
#include "mesh/ring_setup.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

std::string host_of(const AllReduceBenchOptions& options, int rank) {
    std::string host = options.host_template;
    const size_t at = host.find("{r}");
    if (at != std::string::npos) host.replace(at, 3, std::to_string(rank + 1));
    return host;
}

std::vector<std::string> in_namespace(const AllReduceBenchOptions& options, int rank, std::vector<std::string> argv) {
    if (options.netns_prefix.empty()) return argv;
    std::vector<std::string> wrapped = {"/usr/bin/env", "ip", "netns", "exec", options.netns_prefix + std::to_string(rank + 1)};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
}

// Starts one process per rank and waits for all; returns 0 when all succeeded.
int run_nodes(const AllReduceBenchOptions& options, const std::function<std::vector<std::string>(int)>& argv_of,
              const char* what) {
    std::vector<ChildProcess> nodes;
    for (int r = 0; r < options.nodes; ++r) nodes.emplace_back(in_namespace(options, r, argv_of(r)));
    int failures = 0;
    for (int r = 0; r < options.nodes; ++r) {
        const auto code = nodes[r].wait_for(std::chrono::hours(24));
        if (code.value_or(1) != 0) {
            std::fprintf(stderr, "%s: node %d exited with status %d\n", what, r, code.value_or(-1));
            ++failures;
        }
    }
    return failures == 0 ? 0 : 1;
}

// Rank 0's report line; sizes in bytes, times in seconds.
void print_row(const AllReduceBenchOptions& options, const std::string& config, size_t mib, double best, double median,
               uint64_t sent) {
    const double bytes = double(mib) * 1048576.0;
    const double bus = 2.0 * (options.nodes - 1) / options.nodes * bytes / best;
    std::printf("%-22s %7zuMiB %9.3f %9.3f %11.1f %11.1f %10.1f %9s\n", config.c_str(), mib, best, median,
                bytes / best * 8 / 1e6, bus * 8 / 1e6, double(sent) / 1048576.0,
                options.link_mbit > 0 ? (std::to_string(int(bus * 8 / 1e6 / options.link_mbit * 100 + 0.5)) + "%").c_str() : "-");
    std::fflush(stdout);
}

int run_node(const AllReduceBenchOptions& options) {
    const int rank = options.rank, world = options.nodes;
    PluginRegistry registry(default_search_path());
    const PluginInstance transport = make_configured(registry, PANGEA_KIND_TRANSPORT, options.transport);
    const PluginInstance barrier_codec = make_configured(registry, PANGEA_KIND_COMPRESS, "none");
    OwnedListener listener(transport, host_of(options, rank) + ":0");
    FileRendezvous rendezvous(options.rendezvous);
    rendezvous.publish(rank, listener.address());
    const auto addresses = rendezvous.wait_all(world, std::chrono::seconds(60));
    const RingConnections ring = connect_ring(transport, listener, rank, addresses, options.run_id, std::chrono::seconds(60));
    RingOptions ring_options;
    ring_options.stall_timeout_ms = options.stall_timeout_ms;
    const Link next(transport, ring.next.handle()), previous(transport, ring.previous.handle());
    RingAllReduce barrier(rank, world, next, previous, barrier_codec, ring_options);

    if (rank == 0) {
        std::printf("%d nodes, transport %s; bus bandwidth = 2(n-1)/n x bytes / time; times are the best and the median of %d\n\n",
                    world, options.transport.c_str(), options.repeat);
        std::printf("%-22s %10s %9s %9s %11s %11s %10s %9s\n", "config", "size", "best s", "median s", "alg Mbit/s",
                    "bus Mbit/s", "sent MiB", "of link");
    }
    for (size_t mib : options.sizes_mib) {
        const size_t n = mib * 1048576 / sizeof(float);
        std::vector<float> input(n), work(n);
        std::mt19937 rng(7 + rank);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (auto& v : input) v = normal(rng);
        for (const auto& config : options.configs) {
            const PluginInstance codec = make_configured(registry, PANGEA_KIND_COMPRESS, config);
            RingAllReduce allreduce(rank, world, next, previous, codec, ring_options);
            std::vector<double> times;
            uint64_t sent = 0;
            for (int round = 0; round < options.repeat; ++round) {
                float token = 0;
                const AllReduceResult synced = barrier.run(std::span<float>(&token, 1), ReduceOp::kSum);
                work = input;
                const AllReduceResult result = synced.status == PANGEA_OK ? allreduce.run(work, ReduceOp::kSum) : synced;
                if (result.status != PANGEA_OK) {
                    const bool intact = synced.status != PANGEA_OK || work == input;
                    std::fprintf(stderr, "rank %d: all-reduce of %zu MiB with %s failed after %.2f s: %s: %s; input %s\n",
                                 rank, mib, config.c_str(), result.seconds, status_name(result.status),
                                 result.error.c_str(), intact ? "intact" : "CHANGED");
                    return 1;
                }
                times.push_back(result.seconds);
                sent = result.bytes_sent;
            }
            std::sort(times.begin(), times.end());
            if (rank == 0) print_row(options, config, mib, times.front(), times[times.size() / 2], sent);
        }
    }
    return 0;
}

}  // namespace

int run_allreduce_bench(const AllReduceBenchOptions& options) {
    if (options.rank >= 0) return run_node(options);

    char pattern[] = "/tmp/pangea-bench-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("cannot create a rendezvous directory in /tmp");
    const fs::path directory = pattern;
    const std::string exe = current_executable();
    const uint64_t run_id = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
    std::vector<std::string> sizes;
    for (size_t mib : options.sizes_mib) sizes.push_back(std::to_string(mib));

    int status = run_nodes(options, [&](int r) {
        std::vector<std::string> argv = {exe, "bench", "allreduce", "--rank", std::to_string(r),
                                         "--nodes", std::to_string(options.nodes), "--rendezvous", directory.string(),
                                         "--run-id", std::to_string(run_id), "--transport", options.transport,
                                         "--repeat", std::to_string(options.repeat), "--stall-timeout-ms",
                                         std::to_string(options.stall_timeout_ms), "--hosts", options.host_template,
                                         "--link-mbit", std::to_string(options.link_mbit)};
        for (const auto& size : sizes) argv.insert(argv.end(), {"--sizes", size});
        for (const auto& config : options.configs) argv.insert(argv.end(), {"--config", config});
        return argv;
    }, "pangea");

    if (status == 0 && !options.baseline.empty()) {
        std::printf("\nbaseline: LibTorch c10d ProcessGroupGloo all-reduce, fp32, same nodes and links\n");
        std::fflush(stdout);
        for (size_t mib : options.sizes_mib) {
            const fs::path store = directory / ("c10d-store-" + std::to_string(mib));
            status |= run_nodes(options, [&](int r) {
                const std::string device = options.baseline_device.empty() ? "host:" + host_of(options, r) : options.baseline_device;
                return std::vector<std::string>{options.baseline, std::to_string(r), std::to_string(options.nodes),
                                                "file:" + store.string(), std::to_string(mib), device,
                                                std::to_string(options.repeat), std::to_string(options.link_mbit)};
            }, "c10d baseline");
        }
    }
    std::error_code ignored;
    fs::remove_all(directory, ignored);
    return status;
}

}  // namespace pangea
