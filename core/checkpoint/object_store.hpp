// The core's side of a storage plugin (pangea/storage.h): whole-object and streaming calls that
// throw CheckpointError naming the plugin, the call and the key.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "plugin_host/plugin_instance.hpp"

struct pangea_storage_vtable;
struct pangea_storage_writer;

namespace pangea {

class CheckpointError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class ObjectStore {
public:
    explicit ObjectStore(PluginInstance instance);

    // A streaming write: visible under its key only after commit(); dropped if destroyed first.
    class Writer {
    public:
        ~Writer();
        Writer(Writer&& other) noexcept;
        Writer& operator=(Writer&&) = delete;
        void write(std::span<const uint8_t> bytes);
        void commit();

    private:
        friend class ObjectStore;
        Writer(const ObjectStore& store, std::string key, pangea_storage_writer* writer)
            : store_(&store), key_(std::move(key)), writer_(writer) {}
        const ObjectStore* store_;
        std::string key_;
        pangea_storage_writer* writer_;
    };

    Writer open(const std::string& key) const;
    void put(const std::string& key, std::span<const uint8_t> bytes) const;
    void put(const std::string& key, const std::string& text) const;
    // Reads up to dst.size() bytes at offset; returns the count (less only at the end).
    size_t read(const std::string& key, uint64_t offset, std::span<uint8_t> dst) const;
    std::vector<uint8_t> get(const std::string& key) const;  // the whole object
    // The whole object, or nullopt when there is none (also when it goes while being read).
    std::optional<std::vector<uint8_t>> get_if_present(const std::string& key) const;
    std::optional<uint64_t> size(const std::string& key) const;  // nullopt: no such object
    std::vector<std::pair<std::string, uint64_t>> list(const std::string& prefix) const;  // sorted
    void remove(const std::string& key) const;  // a missing key is not an error

    std::string name() const { return instance_.plugin().id(); }  // "storage/local"

private:
    [[noreturn]] void fail(const std::string& call, const std::string& key, int status) const;
    PluginInstance instance_;
    const pangea_storage_vtable* vt_;
};

}  // namespace pangea
