// The handle tables the built-in transports (tcp, gloo, ucx) share: the objects behind one kind
// of opaque handle (listener, connection, request) of an instance.
//
// Every function of a transport may be called from any thread (transport.h), close() and abort()
// of one connection included. So a call looks its object up under the table's lock and holds a
// reference for the call's duration; close() takes the object out of the table, and the last
// reference, wherever it is dropped, frees it. A handle that was taken out is unknown from then
// on: an abort() that comes after the close does nothing.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "pangea/sdk.hpp"

namespace pangea::transport {

template <class Handle, class Object>
class HandleTable {
public:
    // `who` and `what` name the transport and the handle in errors ("tcp", "connection").
    HandleTable(const char* who, const char* what) : who_(who), what_(what) {}
    HandleTable(const HandleTable&) = delete;
    HandleTable& operator=(const HandleTable&) = delete;

    // The handle is the object's address: unique while the object lives.
    Handle* add(std::shared_ptr<Object> object) {
        auto* handle = reinterpret_cast<Handle*>(object.get());
        std::lock_guard<std::mutex> lock(mutex_);
        objects_.emplace(handle, std::move(object));
        return handle;
    }

    // The object, or nullptr for an unknown handle.
    std::shared_ptr<Object> find(Handle* handle) const {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = objects_.find(handle);
        return found != objects_.end() ? found->second : nullptr;
    }

    // The object; PANGEA_ERR_INVALID_ARGUMENT for an unknown handle.
    std::shared_ptr<Object> get(Handle* handle) const {
        auto object = find(handle);
        if (!object)
            throw pangea::sdk::Error(PANGEA_ERR_INVALID_ARGUMENT, std::string(who_) + ": unknown " + what_ + " handle");
        return object;
    }

    // Takes the object out of the table (nullptr if it is not there).
    std::shared_ptr<Object> take(Handle* handle) {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = objects_.find(handle);
        if (found == objects_.end()) return nullptr;
        auto object = std::move(found->second);
        objects_.erase(found);
        return object;
    }

    // Every object, for a look outside the lock.
    std::vector<std::shared_ptr<Object>> snapshot() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<std::shared_ptr<Object>> out;
        out.reserve(objects_.size());
        for (const auto& [handle, object] : objects_) out.push_back(object);
        return out;
    }

    // Empties the table; the objects go with the returned references, outside the lock.
    std::vector<std::shared_ptr<Object>> take_all() {
        std::vector<std::shared_ptr<Object>> out;
        std::lock_guard<std::mutex> lock(mutex_);
        out.reserve(objects_.size());
        for (auto& [handle, object] : objects_) out.push_back(std::move(object));
        objects_.clear();
        return out;
    }

private:
    const char* who_;
    const char* what_;
    mutable std::mutex mutex_;
    std::map<Handle*, std::shared_ptr<Object>> objects_;
};

}  // namespace pangea::transport
