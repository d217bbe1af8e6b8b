#include "bench/allreduce_bench.hpp"

#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>
#include <string_view>
#include <functional>
#include <random>
#include <thread>

#include "bench/plugin_config.hpp"
#include "collective/ring_allreduce.hpp"
#include "common/shard_range.hpp"
#include "common/files.hpp"
#include "common/process.hpp"
#include "workers/worker_group.hpp"
#include "topology/ring.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

std::string host_of(const AllReduceBenchOptions& options, int rank, int ring = 0) {
    std::string host = options.host_template;
    for (const auto& [field, value] : {std::pair{"{r}", rank + 1}, std::pair{"{k}", ring}})
        if (const size_t at = host.find(field); at != std::string::npos) host.replace(at, 3, std::to_string(value));
    return host;
}

std::vector<std::string> in_namespace(const AllReduceBenchOptions& options, int rank, std::vector<std::string> argv) {
    if (options.netns_prefix.empty()) return argv;
    std::vector<std::string> wrapped = {"/usr/bin/env", "ip", "netns", "exec", options.netns_prefix + std::to_string(rank + 1)};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
}

// Starts one process per rank and waits for all; returns 0 when all succeeded. Once one node
// has failed, the others get `grace` to finish (they fail too, within their stall timeout, if
// they depended on it); any still running then (frozen, say) are killed, so the run always ends.
int run_nodes(const AllReduceBenchOptions& options, const std::function<std::vector<std::string>(int)>& argv_of,
              const char* what) {
    const auto grace = std::chrono::milliseconds(options.stall_timeout_ms) + std::chrono::seconds(5);
    std::vector<ChildProcess> nodes;
    for (int r = 0; r < options.nodes; ++r) nodes.emplace_back(in_namespace(options, r, argv_of(r)));
    std::vector<std::optional<int>> codes(nodes.size());
    constexpr auto kNever = std::chrono::steady_clock::time_point::max();
    auto give_up = kNever;
    size_t running = nodes.size();
    while (running > 0) {
        for (size_t r = 0; r < nodes.size(); ++r) {
            if (codes[r]) continue;
            codes[r] = nodes[r].wait_for(std::chrono::milliseconds(0));
            if (!codes[r]) continue;
            --running;
            if (*codes[r] != 0) {
                std::fprintf(stderr, "%s: node %zu exited with status %d\n", what, r, *codes[r]);
                if (give_up == kNever) give_up = std::chrono::steady_clock::now() + grace;
            }
        }
        if (std::chrono::steady_clock::now() > give_up) {
            for (size_t r = 0; r < nodes.size(); ++r)
                if (!codes[r]) {
                    std::fprintf(stderr, "%s: node %zu still running %lld s after a failure; killing it\n", what, r,
                                 static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(grace).count()));
                    nodes[r].signal(SIGKILL);
                }
            give_up = kNever;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (const auto& code : codes)
        if (code.value_or(1) != 0) return 1;
    return 0;
}

// Rank 0's report line; sizes in bytes, times in seconds.
// `hops`: the share of the buffer each rank moves, over n-1 of n: 2 for an all-reduce (reduce-scatter
// then all-gather), 1 for either half.
void print_row(const AllReduceBenchOptions& options, const std::string& config, int rings, size_t mib, double best,
               double median, uint64_t sent, double hops = 2) {
    const double bytes = double(mib) * 1048576.0;
    const double bus = hops * (options.nodes - 1) / options.nodes * bytes / best;
    std::printf("%-22s %5d %7zuMiB %9.3f %9.3f %11.1f %11.1f %10.1f %9s\n", config.c_str(), rings, mib, best, median,
                bytes / best * 8 / 1e6, bus * 8 / 1e6, double(sent) / 1048576.0,
                options.link_mbit > 0 ? (std::to_string(int(bus * 8 / 1e6 / options.link_mbit * 100 + 0.5)) + "%").c_str() : "-");
    std::fflush(stdout);
}

// Best times of each config over the baseline's, per size.
void print_speedups(const fs::path& results) {
    std::map<std::pair<std::string, size_t>, double> best;
    std::vector<std::string> configs;
    std::ifstream in(results);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string config;
        size_t mib = 0;
        double seconds = 0;
        if (!std::getline(fields, config, '\t') || !(fields >> mib >> seconds)) continue;
        best[{config, mib}] = seconds;
        if (config != "c10d" && std::find(configs.begin(), configs.end(), config) == configs.end())
            configs.push_back(config);
    }
    std::printf("\nspeed-up over the c10d Gloo baseline (its best time / ours):\n");
    for (const auto& [key, seconds] : best) {
        if (key.first != "c10d") continue;
        std::printf("  %5zu MiB:", key.second);
        for (const auto& config : configs)
            if (const auto found = best.find({config, key.second}); found != best.end())
                std::printf("  %s %.2fx", config.c_str(), seconds / found->second);
        std::printf("\n");
    }
}

// One ring of the node: its listener, its connections to its neighbours and its links.
struct BenchRing {
    std::unique_ptr<OwnedListener> listener;
    Ring ring;
    std::unique_ptr<Link> next, previous;
};

// Ring k (k > 0) goes in ring 0's order (measured or not), over its own listener and rendezvous.
BenchRing form_bench_ring(const AllReduceBenchOptions& options, const PluginInstance& transport, int k,
                          const std::vector<int>* order) {
    BenchRing lane;
    lane.listener = std::make_unique<OwnedListener>(transport, host_of(options, options.rank, k) + ":0");
    const fs::path directory = fs::path(options.rendezvous) / ("ring-" + std::to_string(k));
    fs::create_directories(directory);
    FileRendezvous rendezvous(directory);
    rendezvous.publish(options.rank, lane.listener->address());
    std::vector<std::string> addresses = rendezvous.wait_all(options.nodes, std::chrono::seconds(60));
    if (!order) {
        lane.ring = form_ring(transport, *lane.listener, options.rank, addresses, options.run_id, options.ring_order,
                              options.probe_kib * 1024, std::chrono::seconds(120));
    } else {
        std::vector<std::string> in_order;
        for (int r : *order) in_order.push_back(addresses[r]);
        const int position = static_cast<int>(std::find(order->begin(), order->end(), options.rank) - order->begin());
        lane.ring = form_ring(transport, *lane.listener, position, in_order, options.run_id, "rank", 0,
                              std::chrono::seconds(120));
        lane.ring.order = *order;
    }
    lane.next = std::make_unique<Link>(transport, lane.ring.connections.next.handle());
    lane.previous = std::make_unique<Link>(transport, lane.ring.connections.previous.handle());
    return lane;
}

// The collectives among a node's workers (core/workers: Gloo over loopback TCP), between the same
// processes: what a node of W workers spends gathering weights and summing gradients.
int run_worker_group(const AllReduceBenchOptions& options) {
    const int rank = options.rank, world = options.nodes;
    const fs::path meeting = fs::path(options.rendezvous) / "workers";
    fs::create_directories(meeting);
    const auto group = join_worker_group(meeting, rank, world, std::chrono::seconds(120));
    if (rank == 0) std::printf("\nthe node's workers' collectives (WorkerGroup: Gloo over loopback TCP), fp32\n");
    for (size_t mib : options.sizes_mib) {
        const size_t n = mib * 1048576 / sizeof(float);
        std::vector<float> work(n, 1.0f);
        std::vector<size_t> counts;
        for (int k = 0; k < world; ++k) counts.push_back(shard_range(n, world, k).size());
        const std::pair<const char*, std::function<void()>> calls[] = {
            {"workers all-reduce", [&] { group->all_reduce_sum(work); }},
            {"workers reduce-scatter", [&] { group->reduce_scatter_sum(work, counts); }},
            {"workers all-gather", [&] { group->all_gather(work, counts); }},
        };
        for (const auto& [name, call] : calls) {
            std::vector<double> times;
            for (int round = 0; round < options.repeat; ++round) {
                float token = 0;
                group->all_reduce_sum(std::span<float>(&token, 1));  // (a barrier)
                const auto start = std::chrono::steady_clock::now();
                call();
                times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            }
            std::sort(times.begin(), times.end());
            const bool all_reduce = std::string_view(name) == "workers all-reduce";
            if (rank == 0) {
                print_row(options, name, 1, mib, times.front(), times[times.size() / 2], 0, all_reduce ? 2 : 1);
                std::ofstream(fs::path(options.rendezvous) / "results.tsv", std::ios::app)
                    << name << '\t' << mib << '\t' << times.front() << '\n';
            }
        }
    }
    return 0;
}

int run_node(const AllReduceBenchOptions& options) {
    const int rank = options.rank, world = options.nodes;
    PluginRegistry registry(default_search_path());
    const PluginInstance transport = make_configured(registry, PANGEA_KIND_TRANSPORT, options.transport);
    const PluginInstance barrier_codec = make_configured(registry, PANGEA_KIND_COMPRESS, "none");
    const int ring_count = *std::max_element(options.rings.begin(), options.rings.end());
    std::vector<BenchRing> lanes;
    for (int k = 0; k < ring_count; ++k) lanes.push_back(form_bench_ring(options, transport, k, k ? &lanes[0].ring.order : nullptr));
    const int position = lanes[0].ring.position;
    const std::vector<int>& order = lanes[0].ring.order;
    const std::string& order_note = lanes[0].ring.order_note;
    RingOptions ring_options;
    ring_options.stall_timeout_ms = options.stall_timeout_ms;
    ring_options.piece_values = std::max<size_t>(1, options.piece_kib * 1024 / sizeof(float));
    ring_options.depth = options.depth;
    RingAllReduce barrier(position, world, *lanes[0].next, *lanes[0].previous, barrier_codec, ring_options);

    if (rank == 0) {
        std::string ring_text;
        for (int r : order) ring_text += std::to_string(r) + " ";
        std::printf("%d nodes, transport %s, ring %s(%s)\n", world, options.transport.c_str(), ring_text.c_str(),
                    order_note.c_str());
        std::printf("bus bandwidth = 2(n-1)/n x bytes / time; times are the best and the median of %d\n\n",
                    options.repeat);
        std::printf("%-22s %5s %10s %9s %9s %11s %11s %10s %9s\n", "config", "rings", "size", "best s", "median s",
                    "alg Mbit/s", "bus Mbit/s", "sent MiB", "of link");
    }
    for (size_t mib : options.sizes_mib) {
        const size_t n = mib * 1048576 / sizeof(float);
        std::vector<float> input(n), work(n);
        std::mt19937 rng(7 + rank);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (auto& v : input) v = normal(rng);
        for (const auto& config : options.configs)
        for (const int rings : options.rings) {
            std::vector<PluginInstance> codecs;  // one per ring: an instance serves one thread at a time
            std::vector<RingAllReduce> allreduce;
            allreduce.reserve(static_cast<size_t>(rings));
            for (int k = 0; k < rings; ++k) codecs.push_back(make_configured(registry, PANGEA_KIND_COMPRESS, config));
            for (int k = 0; k < rings; ++k)
                allreduce.emplace_back(position, world, *lanes[k].next, *lanes[k].previous, codecs[k], ring_options);
            std::vector<double> times;
            uint64_t sent = 0;
            bool native = false;
            for (int round = 0; round < options.repeat; ++round) {
                float token = 0;
                const AllReduceResult synced = barrier.run(std::span<float>(&token, 1), ReduceOp::kSum);
                work = input;
                std::vector<std::span<float>> ranges;
                for (int k = 0; k < rings; ++k) {
                    const ShardRange range = shard_range(work.size(), rings, k);
                    ranges.push_back(std::span<float>(work).subspan(range.begin, range.size()));
                }
                const AllReduceResult result =
                    synced.status == PANGEA_OK ? run_rings(allreduce, ranges, ReduceOp::kSum) : synced;
                if (result.status != PANGEA_OK) {
                    std::fprintf(stderr, "rank %d: all-reduce of %zu MiB with %s failed after %.2f s (%d ring(s)): %s: %s\n",
                                 rank, mib, config.c_str(), result.seconds, rings, status_name(result.status),
                                 result.error.c_str());
                    return 1;
                }
                times.push_back(result.seconds);
                sent = result.bytes_sent;
                native = result.native;
            }
            std::sort(times.begin(), times.end());
            if (rank == 0) {
                // The transport's own all-reduce (e.g. --transport gloo:allreduce=gloo) is labelled as such.
                const std::string label = native ? config + " (" + transport.plugin().name + "'s)" : config;
                print_row(options, label, rings, mib, times.front(), times[times.size() / 2], sent);
                std::ofstream(fs::path(options.rendezvous) / "results.tsv", std::ios::app)
                    << label + (rings > 1 ? " x" + std::to_string(rings) : "") << '\t' << mib << '\t' << times.front() << '\n';
            }
        }
    }
    return options.worker_group ? run_worker_group(options) : 0;
}

}  // namespace

int run_allreduce_bench(const AllReduceBenchOptions& options) {
    if (options.rank >= 0) return run_node(options);

    const TemporaryDirectory rendezvous("pangea-bench-");
    const fs::path& directory = rendezvous.path();
    const std::string exe = current_executable();
    const uint64_t run_id = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
    std::vector<std::string> sizes;
    for (size_t mib : options.sizes_mib) sizes.push_back(std::to_string(mib));

    int status = run_nodes(options, [&](int r) {
        std::vector<std::string> argv = {exe, "bench", "allreduce", "--rank", std::to_string(r),
                                         "--nodes", std::to_string(options.nodes), "--rendezvous", directory.string(),
                                         "--run-id", std::to_string(run_id), "--transport", options.transport,
                                         "--repeat", std::to_string(options.repeat), "--piece-kib",
                                         std::to_string(options.piece_kib), "--depth", std::to_string(options.depth),
                                         "--ring-order", options.ring_order, "--probe-kib",
                                         std::to_string(options.probe_kib), "--stall-timeout-ms",
                                         std::to_string(options.stall_timeout_ms), "--hosts", options.host_template,
                                         "--link-mbit", std::to_string(options.link_mbit)};
        for (const auto& size : sizes) argv.insert(argv.end(), {"--sizes", size});
        for (const auto& config : options.configs) argv.insert(argv.end(), {"--config", config});
        for (const int rings : options.rings) argv.insert(argv.end(), {"--rings", std::to_string(rings)});
        if (options.worker_group) argv.push_back("--worker-group");
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
                                                std::to_string(options.repeat), std::to_string(options.link_mbit),
                                                (directory / "results.tsv").string()};
            }, "c10d baseline");
        }
        if (status == 0) print_speedups(directory / "results.tsv");
    }
    return status;
}

}  // namespace pangea
