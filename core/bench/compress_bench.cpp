#include "bench/compress_bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>

#include "pangea/compress.h"
#include "bench/plugin_config.hpp"

namespace pangea {
namespace {

using Clock = std::chrono::steady_clock;

// Runs op repeatedly for about `seconds` (at least 3 times) and returns the best time in
// seconds: the least disturbed by other work on a shared machine.
template <class Op>
double best_seconds(double seconds, const Op& op) {
    double best = 1e30, spent = 0;
    for (int run = 0; run < 3 || spent < seconds; ++run) {
        const auto start = Clock::now();
        op();
        const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
        best = std::min(best, elapsed);
        spent += elapsed;
        if (run >= 1000) break;
    }
    return best;
}

void check(const PluginInstance& instance, pangea_status status, const char* what) {
    if (status != PANGEA_OK) throw std::runtime_error(instance.describe_failure(what, status));
}

}  // namespace

void run_compress_bench(PluginRegistry& registry, const CompressBenchOptions& options) {
    std::vector<PluginInstance> instances;
    for (const auto& config : options.configs)
        instances.push_back(make_configured(registry, PANGEA_KIND_COMPRESS, config));

    std::printf("GB/s of fp32 data (4 bytes per value) on one call's thread(s); 'x memcpy' divides by\n"
                "a memcpy of the same fp32 buffer measured just before, in the same run.\n\n");
    std::printf("%-22s %8s %10s %8s %10s %8s %10s %8s %9s %11s\n", "config", "size", "encode", "x memcpy",
                "decode", "x memcpy", "dec+acc", "x memcpy", "ratio", "rel error");
    for (size_t mib : options.sizes_mib) {
        const size_t n = mib * (size_t{1} << 20) / sizeof(float);
        std::vector<float> input(n), output(n), accumulator(n);
        std::mt19937 rng(42);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (auto& v : input) v = normal(rng);
        std::fill(output.begin(), output.end(), 0.0f);
        std::fill(accumulator.begin(), accumulator.end(), 0.0f);

        const double bytes = 4.0 * double(n);
        const double memcpy_seconds = best_seconds(options.seconds_per_measurement, [&] {
            std::memcpy(output.data(), input.data(), 4 * n);
        });
        const double memcpy_rate = bytes / memcpy_seconds / 1e9;
        std::printf("%-22s %6zuMiB %10.2f %8s %10s %8s %10s %8s %9s %11s\n", "memcpy", mib, memcpy_rate,
                    "1.00", "", "", "", "", "", "");
        std::fflush(stdout);

        for (size_t c = 0; c < instances.size(); ++c) {
            const PluginInstance& instance = instances[c];
            const auto& vt = instance.vtable<pangea_compress_vtable>();
            void* handle = instance.handle();
            std::vector<uint8_t> encoded(vt.max_encoded_size(handle, n));
            size_t written = 0;
            pangea_status status = PANGEA_OK;
            const double encode_s = best_seconds(options.seconds_per_measurement, [&] {
                status = vt.encode(handle, input.data(), n, encoded.data(), encoded.size(), &written);
            });
            check(instance, status, "encode");
            const double decode_s = best_seconds(options.seconds_per_measurement, [&] {
                status = vt.decode(handle, encoded.data(), written, output.data(), n);
            });
            check(instance, status, "decode");
            const double accumulate_s = best_seconds(options.seconds_per_measurement, [&] {
                status = vt.decode_accumulate(handle, encoded.data(), written, accumulator.data(), n);
            });
            check(instance, status, "decode_accumulate");

            double error = 0, norm = 0;
            for (size_t i = 0; i < n; ++i) {
                error += (double(output[i]) - input[i]) * (double(output[i]) - input[i]);
                norm += double(input[i]) * input[i];
            }
            auto rate = [&](double seconds) { return bytes / seconds / 1e9; };
            std::printf("%-22s %6zuMiB %10.2f %8.2f %10.2f %8.2f %10.2f %8.2f %9.2f %11.2e\n",
                        options.configs[c].c_str(), mib, rate(encode_s), rate(encode_s) / memcpy_rate,
                        rate(decode_s), rate(decode_s) / memcpy_rate, rate(accumulate_s),
                        rate(accumulate_s) / memcpy_rate, bytes / double(written),
                        std::sqrt(error / norm));
            std::fflush(stdout);
        }
    }
}

}  // namespace pangea
