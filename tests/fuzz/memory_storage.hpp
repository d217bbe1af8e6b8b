// A storage plugin in memory, written with the SDK's Storage class: the checkpoint target reads
// checkpoints through the core's real ObjectStore without touching the disk.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "pangea/sdk.hpp"

namespace pangea::fuzz {

class MemoryStorage final : public pangea::sdk::Storage {
public:
    static constexpr const char* name = "memory";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description = "objects in memory (fuzz targets)";
    static std::vector<pangea_setting> settings() { return {}; }

    explicit MemoryStorage(const pangea::sdk::Host& /*host*/) {}

    pangea_storage_writer* open_write(const char* key) override {
        return reinterpret_cast<pangea_storage_writer*>(new Writer{key, {}});
    }
    void write(pangea_storage_writer* writer, const void* data, size_t bytes) override {
        auto* w = reinterpret_cast<Writer*>(writer);
        const auto* in = static_cast<const uint8_t*>(data);
        w->bytes.insert(w->bytes.end(), in, in + bytes);
    }
    void commit(pangea_storage_writer* writer) override {
        std::unique_ptr<Writer> w(reinterpret_cast<Writer*>(writer));
        std::lock_guard lock(mutex_);
        objects_[w->key] = std::move(w->bytes);
    }
    void abort(pangea_storage_writer* writer) noexcept override { delete reinterpret_cast<Writer*>(writer); }
    size_t read(const char* key, uint64_t offset, void* dst, size_t bytes) override {
        std::lock_guard lock(mutex_);
        const std::vector<uint8_t>& object = find(key);
        if (offset >= object.size()) return 0;
        const size_t n = std::min<uint64_t>(bytes, object.size() - offset);
        std::copy_n(object.data() + offset, n, static_cast<uint8_t*>(dst));
        return n;
    }
    uint64_t stat(const char* key) override {
        std::lock_guard lock(mutex_);
        return find(key).size();
    }
    void list(const char* prefix, pangea_storage_list_fn fn, void* user) override {
        std::lock_guard lock(mutex_);
        const std::string start = prefix;
        for (auto it = objects_.lower_bound(start); it != objects_.end() && it->first.starts_with(start); ++it)
            if (fn(user, it->first.c_str(), it->second.size()) != 0) break;
    }
    void remove(const char* key) override {
        std::lock_guard lock(mutex_);
        if (objects_.erase(key) == 0) throw pangea::sdk::Error(PANGEA_ERR_NOT_FOUND, std::string("no object ") + key);
    }

private:
    struct Writer {
        std::string key;
        std::vector<uint8_t> bytes;
    };
    const std::vector<uint8_t>& find(const char* key) const {
        const auto found = objects_.find(key);
        if (found == objects_.end()) throw pangea::sdk::Error(PANGEA_ERR_NOT_FOUND, std::string("no object ") + key);
        return found->second;
    }
    std::mutex mutex_;
    std::map<std::string, std::vector<uint8_t>> objects_;
};

inline PluginInstance memory_storage() {
    return instance_of(*pangea::sdk::detail::describe<MemoryStorage>());
}

}  // namespace pangea::fuzz
