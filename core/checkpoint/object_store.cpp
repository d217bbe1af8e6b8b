#include "checkpoint/object_store.hpp"

#include "pangea/storage.h"

namespace pangea {

ObjectStore::ObjectStore(PluginInstance instance)
    : instance_(std::move(instance)), vt_(&instance_.vtable<pangea_storage_vtable>()) {}

void ObjectStore::fail(const std::string& call, const std::string& key, int status) const {
    throw CheckpointError(instance_.describe_failure(call + " of " + key, static_cast<pangea_status>(status)));
}

ObjectStore::Writer::~Writer() {
    if (writer_ != nullptr) store_->vt_->abort(store_->instance_.handle(), writer_);
}

ObjectStore::Writer::Writer(Writer&& other) noexcept
    : store_(other.store_), key_(std::move(other.key_)), writer_(std::exchange(other.writer_, nullptr)) {}

void ObjectStore::Writer::write(std::span<const uint8_t> bytes) {
    if (const pangea_status s = store_->vt_->write(store_->instance_.handle(), writer_, bytes.data(), bytes.size()); s != PANGEA_OK)
        store_->fail("write", key_, s);
}

void ObjectStore::Writer::commit() {
    // commit() releases the writer whatever it returns.
    if (const pangea_status s = store_->vt_->commit(store_->instance_.handle(), std::exchange(writer_, nullptr));
        s != PANGEA_OK)
        store_->fail("commit", key_, s);
}

ObjectStore::Writer ObjectStore::open(const std::string& key) const {
    pangea_storage_writer* writer = nullptr;
    if (const pangea_status s = vt_->open_write(instance_.handle(), key.c_str(), &writer); s != PANGEA_OK)
        fail("open_write", key, s);
    return Writer(*this, key, writer);
}

void ObjectStore::put(const std::string& key, std::span<const uint8_t> bytes) const {
    Writer writer = open(key);
    writer.write(bytes);
    writer.commit();
}

void ObjectStore::put(const std::string& key, const std::string& text) const {
    put(key, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

size_t ObjectStore::read(const std::string& key, uint64_t offset, std::span<uint8_t> dst) const {
    size_t read = 0;
    if (const pangea_status s = vt_->read(instance_.handle(), key.c_str(), offset, dst.data(), dst.size(), &read);
        s != PANGEA_OK)
        fail("read", key, s);
    return read;
}

std::vector<uint8_t> ObjectStore::get(const std::string& key) const {
    auto out = get_if_present(key);
    if (!out) throw CheckpointError(name() + ": no object " + key);
    return std::move(*out);
}

std::optional<std::vector<uint8_t>> ObjectStore::get_if_present(const std::string& key) const {
    const auto bytes = size(key);
    if (!bytes) return std::nullopt;
    std::vector<uint8_t> out(*bytes);
    size_t got = 0;
    const pangea_status s = vt_->read(instance_.handle(), key.c_str(), 0, out.data(), out.size(), &got);
    if (s == PANGEA_ERR_NOT_FOUND) return std::nullopt;  // removed since the stat
    if (s != PANGEA_OK) fail("read", key, s);
    if (got != out.size())
        throw CheckpointError(name() + ": " + key + " is " + std::to_string(*bytes) + " bytes but only " +
                              std::to_string(got) + " could be read");
    return out;
}

std::optional<uint64_t> ObjectStore::size(const std::string& key) const {
    uint64_t bytes = 0;
    const pangea_status s = vt_->stat(instance_.handle(), key.c_str(), &bytes);
    if (s == PANGEA_ERR_NOT_FOUND) return std::nullopt;
    if (s != PANGEA_OK) fail("stat", key, s);
    return bytes;
}

std::vector<std::pair<std::string, uint64_t>> ObjectStore::list(const std::string& prefix) const {
    std::vector<std::pair<std::string, uint64_t>> out;
    const pangea_status s = vt_->list(instance_.handle(), prefix.c_str(),
                                      [](void* user, const char* key, uint64_t bytes) {
                                          static_cast<decltype(out)*>(user)->emplace_back(key, bytes);
                                          return 0;
                                      },
                                      &out);
    if (s != PANGEA_OK) fail("list", prefix + "*", s);
    return out;
}

void ObjectStore::remove(const std::string& key) const {
    const pangea_status s = vt_->remove(instance_.handle(), key.c_str());
    if (s != PANGEA_OK && s != PANGEA_ERR_NOT_FOUND) fail("remove", key, s);
}

}  // namespace pangea
