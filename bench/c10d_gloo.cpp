// pangea-bench-c10d: the baseline for `pangea bench allreduce`. One rank of LibTorch's c10d
// ProcessGroupGloo all-reduce (fp32 sum), the collective most PyTorch users would reach for,
// run on the same nodes and links as Pangea's. Rank 0 prints a row in the same format.
//
//   pangea-bench-c10d RANK WORLD file:STORE_PATH SIZE_MIB if:IFACE|host:ADDR REPEAT LINK_MBIT [RESULTS]
//
// With RESULTS, rank 0 also appends "c10d<TAB>SIZE_MIB<TAB>BEST_SECONDS" to that file.
//
// Built only where Debian's libtorch-dev (and libgloo-dev) are installed; kept out of core/.
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 8 && argc != 9) {
        std::fprintf(stderr, "usage: %s RANK WORLD file:STORE SIZE_MIB if:IFACE|host:ADDR REPEAT LINK_MBIT [RESULTS]\n", argv[0]);
        return 2;
    }
    const int rank = std::atoi(argv[1]);
    const int world = std::atoi(argv[2]);
    const std::string store_spec = argv[3];
    const long mib = std::atol(argv[4]);
    const std::string device = argv[5];
    const int repeat = std::max(1, std::atoi(argv[6]));
    const double link_mbit = std::atof(argv[7]);
    if (store_spec.rfind("file:", 0) != 0 || (device.rfind("if:", 0) != 0 && device.rfind("host:", 0) != 0)) {
        std::fprintf(stderr, "pangea-bench-c10d: store must be file:PATH, device if:NAME or host:ADDR\n");
        return 2;
    }
    const auto timeout = std::chrono::minutes(30);  // one all-reduce on a slow link takes minutes
    try {
        auto store = c10::make_intrusive<c10d::FileStore>(store_spec.substr(5), world);
        store->setTimeout(timeout);
        auto options = c10d::ProcessGroupGloo::Options::create(timeout);
        // Not the default device: the hostname may resolve to loopback inside a namespace.
        options->devices.push_back(device.rfind("if:", 0) == 0
                                       ? c10d::ProcessGroupGloo::createDeviceForInterface(device.substr(3))
                                       : c10d::ProcessGroupGloo::createDeviceForHostname(device.substr(5)));
        options->threads = 2;
        auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);

        const int64_t numel = mib * 1048576 / static_cast<int64_t>(sizeof(float));
        std::vector<at::Tensor> tensors{at::empty({numel}, at::kFloat)};
        c10d::AllreduceOptions sum;
        sum.reduceOp = c10d::ReduceOp::SUM;
        std::vector<double> times;
        for (int round = 0; round < repeat; ++round) {
            tensors[0].fill_(static_cast<float>(rank + 1));
            group->barrier()->wait();
            const auto start = std::chrono::steady_clock::now();
            group->allreduce(tensors, sum)->wait();
            times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            const float expected = world * (world + 1) / 2.0f;
            if (tensors[0][0].item<float>() != expected || tensors[0][numel - 1].item<float>() != expected) {
                std::fprintf(stderr, "pangea-bench-c10d rank %d: wrong result\n", rank);
                return 1;
            }
        }
        std::sort(times.begin(), times.end());
        if (rank == 0) {
            const double bytes = double(mib) * 1048576.0, best = times.front();
            const double bus = 2.0 * (world - 1) / world * bytes / best;
            std::string of_link = "-";
            if (link_mbit > 0) of_link = std::to_string(int(bus * 8 / 1e6 / link_mbit * 100 + 0.5)) + "%";
            std::printf("%-22s %7ldMiB %9.3f %9.3f %11.1f %11.1f %10s %9s\n", "c10d gloo (fp32)", mib, best,
                        times[times.size() / 2], bytes / best * 8 / 1e6, bus * 8 / 1e6, "-", of_link.c_str());
            std::fflush(stdout);
            if (argc == 9) {
                if (FILE* results = std::fopen(argv[8], "a")) {
                    std::fprintf(results, "c10d\t%ld\t%.9f\n", mib, best);
                    std::fclose(results);
                }
            }
        }
        group->barrier()->wait();  // keep every rank up until all are done
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pangea-bench-c10d rank %d: %s\n", rank, e.what());
        return 1;
    }
    return 0;
}
