#include "bench/storage_bench.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include "bench/plugin_config.hpp"
#include "checkpoint/object_store.hpp"

namespace pangea {

void run_storage_bench(PluginRegistry& registry, const StorageBenchOptions& options) {
    using Clock = std::chrono::steady_clock;
    const size_t chunk_bytes = 8u << 20;
    const uint64_t total = static_cast<uint64_t>(options.mib) << 20;
    std::vector<uint8_t> chunk(chunk_bytes);
    std::mt19937_64 random(7);
    for (size_t i = 0; i + 8 <= chunk.size(); i += 8) {
        const uint64_t x = random();
        std::memcpy(chunk.data() + i, &x, 8);
    }
    std::printf("%-60s %10s %12s %12s\n", "storage", "MiB", "write MB/s", "read MB/s");
    for (const std::string& config : options.configs) {
        const ObjectStore store(make_configured(registry, PANGEA_KIND_STORAGE, config));
        const std::string key = "pangea-bench/object-" + std::to_string(std::random_device()());
        double best_write = 0, best_read = 0;
        for (int r = 0; r < std::max(1, options.repeats); ++r) {
            auto start = Clock::now();
            ObjectStore::Writer writer = store.open(key);
            for (uint64_t at = 0; at < total; at += chunk_bytes)
                writer.write({chunk.data(), static_cast<size_t>(std::min<uint64_t>(chunk_bytes, total - at))});
            writer.commit();
            best_write = std::max(best_write, total / 1e6 / std::chrono::duration<double>(Clock::now() - start).count());
            start = Clock::now();
            std::vector<uint8_t> back(chunk_bytes);
            for (uint64_t at = 0; at < total; at += chunk_bytes) store.read(key, at, back);
            best_read = std::max(best_read, total / 1e6 / std::chrono::duration<double>(Clock::now() - start).count());
            store.remove(key);
        }
        std::printf("%-60s %10zu %12.1f %12.1f\n", config.c_str(), options.mib, best_write, best_read);
        std::fflush(stdout);
    }
}

}  // namespace pangea
