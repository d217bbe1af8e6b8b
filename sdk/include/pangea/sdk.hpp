// pangea/sdk.hpp: write a Pangea plugin as a C++ class and export it with one macro.
//
//   class Trim16 : public pangea::sdk::Compressor {
//    public:
//     static constexpr const char* name = "trim16";
//     static constexpr const char* version = "1.0.0";
//     static constexpr const char* description = "keeps the top 16 bits of each float";
//     static std::vector<pangea_setting> settings() { return {}; }
//     explicit Trim16(const pangea::sdk::Host& host);
//     ... the Compressor methods ...
//   };
//   PANGEA_EXPORT_PLUGINS(Trim16)
//
// The helper builds the C descriptors and vtables, and stands at the ABI boundary: a
// pangea::sdk::Error thrown by the class becomes its status and last_error() text; any other
// exception becomes PANGEA_ERR_INTERNAL (std::bad_alloc: PANGEA_ERR_NO_MEMORY). No exception
// crosses into the host. Header-only; needs C++17.
#ifndef PANGEA_SDK_HPP
#define PANGEA_SDK_HPP

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "pangea/compress.h"
#include "pangea/optim.h"
#include "pangea/plugin.h"
#include "pangea/storage.h"
#include "pangea/transport.h"

namespace pangea::sdk {

// What a plugin throws to fail a call with a chosen status.
class Error : public std::runtime_error {
public:
    Error(pangea_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    pangea_status status() const noexcept { return status_; }

private:
    pangea_status status_;
};

// ------------------------------------------------------------------ settings declarations

constexpr pangea_setting string_setting(const char* name, const char* default_value,
                                        const char* help, const char* choices = nullptr) {
    return {name, PANGEA_SETTING_STRING, default_value, help, 1.0, 0.0, choices};
}
constexpr pangea_setting int_setting(const char* name, const char* default_value,
                                     const char* help, double min_value = 1.0,
                                     double max_value = 0.0) {
    return {name, PANGEA_SETTING_INT, default_value, help, min_value, max_value, nullptr};
}
constexpr pangea_setting float_setting(const char* name, const char* default_value,
                                       const char* help, double min_value = 1.0,
                                       double max_value = 0.0) {
    return {name, PANGEA_SETTING_FLOAT, default_value, help, min_value, max_value, nullptr};
}
constexpr pangea_setting bool_setting(const char* name, const char* default_value,
                                      const char* help) {
    return {name, PANGEA_SETTING_BOOL, default_value, help, 1.0, 0.0, nullptr};
}

// ------------------------------------------------------------------ host services

// The host's services for one instance, with typed settings that throw Error on failure.
class Host {
public:
    explicit Host(const pangea_host* host) : host_(host) {}

    void log(pangea_log_level level, const std::string& message) const {
        host_->log(host_->context, level, message.c_str());
    }
    void report_error(pangea_status status, const std::string& message) const {
        host_->report_error(host_->context, status, message.c_str());
    }

    std::string get_string(const char* key) const {
        const char* value = nullptr;
        check(host_->config_string(host_->context, key, &value), key, "a string");
        return value;
    }
    int64_t get_int(const char* key) const {
        int64_t value = 0;
        check(host_->config_int(host_->context, key, &value), key, "an integer");
        return value;
    }
    double get_float(const char* key) const {
        double value = 0;
        check(host_->config_float(host_->context, key, &value), key, "a float");
        return value;
    }
    bool get_bool(const char* key) const {
        int value = 0;
        check(host_->config_bool(host_->context, key, &value), key, "a boolean");
        return value != 0;
    }

    const pangea_host* raw() const noexcept { return host_; }

private:
    static void check(pangea_status status, const char* key, const char* expected) {
        if (status == PANGEA_OK) return;
        std::string why = status == PANGEA_ERR_NOT_FOUND ? "is not set"
                          : status == PANGEA_ERR_CONFIG  ? std::string("is not ") + expected
                                                         : "cannot be read (status " +
                                                               std::to_string(status) + ")";
        throw Error(PANGEA_ERR_CONFIG, std::string("setting '") + key + "' " + why);
    }

    const pangea_host* host_;
};

// ------------------------------------------------------------------ plugin base classes

// Every plugin class derives from one kind's base, which derives from this. The last error is
// kept per calling thread, so kinds whose instances serve several threads at once (transport,
// storage) report each thread its own failure.
class PluginBase {
public:
    virtual ~PluginBase() = default;

    // The oldest host ABI minor the class works with. A class whose behaviour an older host would
    // misread (a compressor with PANGEA_COMPRESS_CAP_GATHER needs 4) declares its own
    // `static constexpr uint32_t min_host_abi_minor`; the handshake then refuses older hosts.
    static constexpr uint32_t min_host_abi_minor = 0;

    // The calling thread's most recent failure on this instance, or "". Valid until that
    // thread's next call on the instance.
    const char* last_error() const noexcept {
        std::lock_guard<std::mutex> lock(error_mutex_);
        const auto found = last_error_.find(std::this_thread::get_id());
        return found == last_error_.end() ? "" : found->second.c_str();
    }
    void set_last_error(const char* text) noexcept {
        std::lock_guard<std::mutex> lock(error_mutex_);
        try {
            last_error_[std::this_thread::get_id()] = text;
        } catch (...) {
            last_error_.erase(std::this_thread::get_id());  // out of memory: keep the status only
        }
    }

    // A status this instance's host knows: hosts older than ABI 1.2 get PANGEA_ERR_IO for
    // PANGEA_ERR_NO_SPACE. The helper applies it to everything it returns.
    pangea_status for_host(pangea_status status) const noexcept {
        return for_host(status, host_abi_version_);
    }
    static pangea_status for_host(pangea_status status, uint32_t host_abi_version) noexcept {
        const bool knows_no_space = PANGEA_ABI_VERSION_MINOR(host_abi_version) >= 2;
        return status == PANGEA_ERR_NO_SPACE && !knows_no_space ? PANGEA_ERR_IO : status;
    }
    void set_host_abi_version(uint32_t version) noexcept { host_abi_version_ = version; }

private:
    mutable std::mutex error_mutex_;
    std::map<std::thread::id, std::string> last_error_;
    uint32_t host_abi_version_ = PANGEA_ABI_VERSION;
};

class Compressor : public PluginBase {
public:
    static constexpr pangea_plugin_kind kind = PANGEA_KIND_COMPRESS;
    virtual size_t max_encoded_size(size_t n) = 0;
    // Each returns normally on success and throws Error on failure.
    virtual void encode(const float* src, size_t n, uint8_t* dst, size_t dst_capacity,
                        size_t* written) = 0;
    virtual void decode(const uint8_t* src, size_t bytes, float* dst, size_t n) = 0;
    virtual void decode_accumulate(const uint8_t* src, size_t bytes, float* acc, size_t n) = 0;
    virtual uint64_t capabilities() { return 0; }
    // The relative L2 error of a round trip this instance promises (compress.h, error_bound).
    virtual double error_bound() { return PANGEA_COMPRESS_DEFAULT_ERROR_BOUND; }
};

class OuterOptimizer : public PluginBase {
public:
    static constexpr pangea_plugin_kind kind = PANGEA_KIND_OPTIM;
    virtual void init(size_t n) = 0;
    virtual void step(float* params, const float* pseudo_grad, size_t n) = 0;
    virtual size_t state_size() = 0;
    virtual void save_state(uint8_t* dst, size_t capacity, size_t* written) = 0;
    virtual void load_state(const uint8_t* src, size_t bytes) = 0;
    // Optional (optim.h has the contract): the state of a range of the parameters, for an
    // optimizer whose state is per parameter. The defaults say it cannot be split.
    virtual size_t range_state_size(size_t count) {
        (void)count;
        return 0;
    }
    virtual void save_state_range(size_t begin, size_t count, uint8_t* dst, size_t capacity, size_t* written) {
        (void)begin, (void)count, (void)dst, (void)capacity, (void)written;
        throw Error(PANGEA_ERR_UNSUPPORTED, "save_state_range: this optimizer's state cannot be split by range");
    }
    virtual void load_state_range(size_t begin, size_t count, const uint8_t* src, size_t bytes) {
        (void)begin, (void)count, (void)src, (void)bytes;
        throw Error(PANGEA_ERR_UNSUPPORTED, "load_state_range: this optimizer's state cannot be split by range");
    }
};

// Transports hand out opaque handles: the class decides what they point to. Functions return the
// handle they make and throw Error on failure; test() and wait() return the request's status
// (PANGEA_ERR_AGAIN / PANGEA_ERR_TIMEOUT while pending) and call set_last_error() themselves
// for a request that failed. test() and wait() must not throw once they have released a request:
// the helper turns an exception into a final status, and the caller then frees the buffer.
class Transport : public PluginBase {
public:
    static constexpr pangea_plugin_kind kind = PANGEA_KIND_TRANSPORT;
    virtual pangea_listener* listen(const char* address, char* bound_address,
                                    size_t bound_capacity) = 0;
    virtual pangea_connection* accept(pangea_listener* listener, const pangea_hello& self,
                                      int timeout_ms, pangea_hello* peer) = 0;
    virtual pangea_connection* connect(const char* address, const pangea_hello& self,
                                       int timeout_ms, pangea_hello* peer) = 0;
    virtual pangea_request* isend(pangea_connection* connection, const void* data, size_t bytes) = 0;
    virtual pangea_request* irecv(pangea_connection* connection, void* data, size_t bytes) = 0;
    virtual pangea_status test(pangea_request* request) = 0;
    virtual pangea_status wait(pangea_request* request, int timeout_ms) = 0;
    virtual void abort(pangea_connection* connection) noexcept = 0;
    virtual void close(pangea_connection* connection) noexcept = 0;
    virtual void close_listener(pangea_listener* listener) noexcept = 0;
    // Optional (the vtable slot allreduce_sum_f32; transport.h has the contract). The default
    // answers PANGEA_ERR_UNSUPPORTED, and the caller runs its own all-reduce.
    virtual void allreduce_sum_f32(pangea_connection* next, pangea_connection* previous, uint32_t rank,
                                   uint32_t world, float* data, size_t count, int timeout_ms) {
        (void)next, (void)previous, (void)rank, (void)world, (void)data, (void)count, (void)timeout_ms;
        throw Error(PANGEA_ERR_UNSUPPORTED, "allreduce_sum_f32: this transport has no all-reduce of its own");
    }
};

// Storage plugins hand out writers: the class decides what they point to. commit() and abort()
// release the writer whatever happens (commit() throws only after releasing it). read() returns
// the count read; stat() the size. A missing key is Error(PANGEA_ERR_NOT_FOUND, ...).
class Storage : public PluginBase {
public:
    static constexpr pangea_plugin_kind kind = PANGEA_KIND_STORAGE;
    virtual pangea_storage_writer* open_write(const char* key) = 0;
    virtual void write(pangea_storage_writer* writer, const void* data, size_t bytes) = 0;
    virtual void commit(pangea_storage_writer* writer) = 0;
    virtual void abort(pangea_storage_writer* writer) noexcept = 0;
    virtual size_t read(const char* key, uint64_t offset, void* dst, size_t bytes) = 0;
    virtual uint64_t stat(const char* key) = 0;
    virtual void list(const char* prefix, pangea_storage_list_fn fn, void* user) = 0;
    virtual void remove(const char* key) = 0;
};

// ------------------------------------------------------------------ the boundary

namespace detail {

// Runs f, turning any exception into a status and the instance's last_error().
template <class F>
pangea_status guarded(void* instance, F&& f) noexcept {
    auto* self = static_cast<PluginBase*>(instance);
    if (self == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
    try {
        f();
        return PANGEA_OK;
    } catch (const Error& e) {
        self->set_last_error(e.what());
        return self->for_host(e.status());
    } catch (const std::bad_alloc&) {
        self->set_last_error("out of memory");
        return PANGEA_ERR_NO_MEMORY;
    } catch (const std::exception& e) {
        self->set_last_error(e.what());
        return PANGEA_ERR_INTERNAL;
    } catch (...) {
        self->set_last_error("unknown exception");
        return PANGEA_ERR_INTERNAL;
    }
}

// Like guarded(), for functions that return their own status.
template <class F>
pangea_status guarded_status(void* instance, F&& f) noexcept {
    pangea_status status = PANGEA_OK;
    const pangea_status thrown = guarded(instance, [&] { status = f(); });
    return thrown != PANGEA_OK ? thrown : static_cast<PluginBase*>(instance)->for_host(status);
}

template <class Base>
Base* as(void* instance) {
    return static_cast<Base*>(static_cast<PluginBase*>(instance));
}

template <class T>
pangea_status create(const pangea_host* host, void** out_instance) noexcept {
    if (host == nullptr || out_instance == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
    // Reported from inside the handler: the exception (and its what()) lives until it ends.
    try {
        std::unique_ptr<PluginBase> made = std::make_unique<T>(Host(host));
        made->set_host_abi_version(host->abi_version);
        *out_instance = made.release();
        return PANGEA_OK;
    } catch (const Error& e) {
        const pangea_status status = PluginBase::for_host(e.status(), host->abi_version);
        host->report_error(host->context, status, e.what());
        return status;
    } catch (const std::bad_alloc&) {
        host->report_error(host->context, PANGEA_ERR_NO_MEMORY, "out of memory");
        return PANGEA_ERR_NO_MEMORY;
    } catch (const std::exception& e) {
        host->report_error(host->context, PANGEA_ERR_INTERNAL, e.what());
        return PANGEA_ERR_INTERNAL;
    } catch (...) {
        host->report_error(host->context, PANGEA_ERR_INTERNAL, "unknown exception");
        return PANGEA_ERR_INTERNAL;
    }
}

inline void destroy(void* instance) noexcept {
    std::unique_ptr<PluginBase> owned(static_cast<PluginBase*>(instance));
}

inline const char* last_error(void* instance) noexcept {
    return instance == nullptr ? "" : static_cast<PluginBase*>(instance)->last_error();
}

template <class T>
pangea_vtable_header header_for(uint32_t vtable_size) {
    return {vtable_size, &create<T>, &destroy, &last_error};
}

template <class T>
const void* vtable_for(std::integral_constant<pangea_plugin_kind, PANGEA_KIND_COMPRESS>) {
    static const pangea_compress_vtable vtable = {
        header_for<T>(sizeof(pangea_compress_vtable)),
        [](void* self, size_t n) noexcept -> size_t {
            if (self == nullptr) return 0;
            try {
                return as<Compressor>(self)->max_encoded_size(n);
            } catch (...) {
                return 0;
            }
        },
        [](void* self, const float* src, size_t n, uint8_t* dst, size_t cap,
           size_t* written) noexcept {
            return guarded(self, [&] { as<Compressor>(self)->encode(src, n, dst, cap, written); });
        },
        [](void* self, const uint8_t* src, size_t bytes, float* dst, size_t n) noexcept {
            return guarded(self, [&] { as<Compressor>(self)->decode(src, bytes, dst, n); });
        },
        [](void* self, const uint8_t* src, size_t bytes, float* acc, size_t n) noexcept {
            return guarded(self,
                           [&] { as<Compressor>(self)->decode_accumulate(src, bytes, acc, n); });
        },
        [](void* self) noexcept -> uint64_t {
            if (self == nullptr) return 0;
            try {
                return as<Compressor>(self)->capabilities();
            } catch (...) {
                return 0;
            }
        },
        [](void* self) noexcept -> double {
            if (self == nullptr) return PANGEA_COMPRESS_DEFAULT_ERROR_BOUND;
            try {
                return as<Compressor>(self)->error_bound();
            } catch (...) {
                return PANGEA_COMPRESS_DEFAULT_ERROR_BOUND;
            }
        },
    };
    return &vtable;
}

template <class T>
const void* vtable_for(std::integral_constant<pangea_plugin_kind, PANGEA_KIND_OPTIM>) {
    static const pangea_optim_vtable vtable = {
        header_for<T>(sizeof(pangea_optim_vtable)),
        [](void* self, size_t n) noexcept {
            return guarded(self, [&] { as<OuterOptimizer>(self)->init(n); });
        },
        [](void* self, float* params, const float* grad, size_t n) noexcept {
            return guarded(self, [&] { as<OuterOptimizer>(self)->step(params, grad, n); });
        },
        [](void* self) noexcept -> size_t {
            if (self == nullptr) return 0;
            try {
                return as<OuterOptimizer>(self)->state_size();
            } catch (...) {
                return 0;
            }
        },
        [](void* self, uint8_t* dst, size_t cap, size_t* written) noexcept {
            return guarded(self, [&] { as<OuterOptimizer>(self)->save_state(dst, cap, written); });
        },
        [](void* self, const uint8_t* src, size_t bytes) noexcept {
            return guarded(self, [&] { as<OuterOptimizer>(self)->load_state(src, bytes); });
        },
        [](void* self, size_t count) noexcept -> size_t {
            if (self == nullptr) return 0;
            try {
                return as<OuterOptimizer>(self)->range_state_size(count);
            } catch (...) {
                return 0;
            }
        },
        [](void* self, size_t begin, size_t count, uint8_t* dst, size_t cap, size_t* written) noexcept {
            return guarded(self, [&] { as<OuterOptimizer>(self)->save_state_range(begin, count, dst, cap, written); });
        },
        [](void* self, size_t begin, size_t count, const uint8_t* src, size_t bytes) noexcept {
            return guarded(self, [&] { as<OuterOptimizer>(self)->load_state_range(begin, count, src, bytes); });
        },
    };
    return &vtable;
}

// pangea_hello is size-led both ways (transport.h): the class sees a whole hello of this header
// (fields beyond the caller's struct_size zero) and fills a whole one for the peer, of which the
// caller gets no more than its struct_size.
static_assert(sizeof(pangea_hello) >= PANGEA_HELLO_SIZE_1_0, "pangea_hello shrank below ABI 1.0");

inline pangea_hello hello_in(const pangea_hello& given) {
    if (given.struct_size < PANGEA_HELLO_SIZE_1_0)
        throw Error(PANGEA_ERR_INVALID_ARGUMENT, "pangea_hello.struct_size is " + std::to_string(given.struct_size) +
                                                     ", less than ABI 1.0's " + std::to_string(PANGEA_HELLO_SIZE_1_0));
    pangea_hello hello{};
    std::memcpy(&hello, &given, given.struct_size < sizeof hello ? given.struct_size : sizeof hello);
    hello.struct_size = sizeof hello;
    return hello;
}

inline void hello_out(pangea_hello hello, pangea_hello* out) {
    const size_t room = out->struct_size < PANGEA_HELLO_SIZE_1_0 ? PANGEA_HELLO_SIZE_1_0 : out->struct_size;
    hello.struct_size = static_cast<uint32_t>(room < sizeof hello ? room : sizeof hello);
    std::memcpy(out, &hello, hello.struct_size);
}

template <class T>
const void* vtable_for(std::integral_constant<pangea_plugin_kind, PANGEA_KIND_TRANSPORT>) {
    static const pangea_transport_vtable vtable = {
        header_for<T>(sizeof(pangea_transport_vtable)),
        [](void* self, const char* address, pangea_listener** out, char* bound, size_t cap) noexcept {
            return guarded(self, [&] {
                if (address == nullptr || out == nullptr)
                    throw Error(PANGEA_ERR_INVALID_ARGUMENT, "listen: NULL address or out_listener");
                *out = as<Transport>(self)->listen(address, bound, cap);
            });
        },
        [](void* self, pangea_listener* listener, const pangea_hello* hello, int timeout_ms,
           pangea_hello* peer, pangea_connection** out) noexcept {
            return guarded(self, [&] {
                if (listener == nullptr || hello == nullptr || peer == nullptr || out == nullptr)
                    throw Error(PANGEA_ERR_INVALID_ARGUMENT, "accept: NULL argument");
                pangea_hello seen{};
                *out = as<Transport>(self)->accept(listener, hello_in(*hello), timeout_ms, &seen);
                hello_out(seen, peer);
            });
        },
        [](void* self, const char* address, const pangea_hello* hello, int timeout_ms,
           pangea_hello* peer, pangea_connection** out) noexcept {
            return guarded(self, [&] {
                if (address == nullptr || hello == nullptr || peer == nullptr || out == nullptr)
                    throw Error(PANGEA_ERR_INVALID_ARGUMENT, "connect: NULL argument");
                pangea_hello seen{};
                *out = as<Transport>(self)->connect(address, hello_in(*hello), timeout_ms, &seen);
                hello_out(seen, peer);
            });
        },
        [](void* self, pangea_connection* connection, const void* data, size_t bytes,
           pangea_request** out) noexcept {
            return guarded(self, [&] {
                if (connection == nullptr || out == nullptr || (data == nullptr && bytes > 0))
                    throw Error(PANGEA_ERR_INVALID_ARGUMENT, "isend: NULL argument");
                *out = as<Transport>(self)->isend(connection, data, bytes);
            });
        },
        [](void* self, pangea_connection* connection, void* data, size_t bytes,
           pangea_request** out) noexcept {
            return guarded(self, [&] {
                if (connection == nullptr || out == nullptr || (data == nullptr && bytes > 0))
                    throw Error(PANGEA_ERR_INVALID_ARGUMENT, "irecv: NULL argument");
                *out = as<Transport>(self)->irecv(connection, data, bytes);
            });
        },
        [](void* self, pangea_request* request) noexcept {
            if (request == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
            return guarded_status(self, [&] { return as<Transport>(self)->test(request); });
        },
        [](void* self, pangea_request* request, int timeout_ms) noexcept {
            if (request == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
            return guarded_status(self, [&] { return as<Transport>(self)->wait(request, timeout_ms); });
        },
        [](void* self, pangea_connection* connection) noexcept {
            if (self != nullptr && connection != nullptr) as<Transport>(self)->abort(connection);
        },
        [](void* self, pangea_connection* connection) noexcept {
            if (self != nullptr && connection != nullptr) as<Transport>(self)->close(connection);
        },
        [](void* self, pangea_listener* listener) noexcept {
            if (self != nullptr && listener != nullptr) as<Transport>(self)->close_listener(listener);
        },
        [](void* self, pangea_connection* next, pangea_connection* previous, uint32_t rank, uint32_t world,
           float* data, size_t count, int timeout_ms) noexcept {
            return guarded(self, [&] {
                if (next == nullptr || previous == nullptr || (data == nullptr && count > 0))
                    throw Error(PANGEA_ERR_INVALID_ARGUMENT, "allreduce_sum_f32: NULL connection or data");
                as<Transport>(self)->allreduce_sum_f32(next, previous, rank, world, data, count, timeout_ms);
            });
        },
    };
    return &vtable;
}

template <class T>
const void* vtable_for(std::integral_constant<pangea_plugin_kind, PANGEA_KIND_STORAGE>) {
    static const pangea_storage_vtable vtable = {
        header_for<T>(sizeof(pangea_storage_vtable)),
        [](void* self, const char* key, pangea_storage_writer** out) noexcept {
            return guarded(self, [&] {
                if (key == nullptr || out == nullptr) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "open_write: NULL argument");
                *out = as<Storage>(self)->open_write(key);
            });
        },
        [](void* self, pangea_storage_writer* writer, const void* data, size_t bytes) noexcept {
            return guarded(self, [&] {
                if (writer == nullptr || (data == nullptr && bytes > 0))
                    throw Error(PANGEA_ERR_INVALID_ARGUMENT, "write: NULL argument");
                as<Storage>(self)->write(writer, data, bytes);
            });
        },
        [](void* self, pangea_storage_writer* writer) noexcept {
            return guarded(self, [&] {
                if (writer == nullptr) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "commit: NULL writer");
                as<Storage>(self)->commit(writer);
            });
        },
        [](void* self, pangea_storage_writer* writer) noexcept {
            if (self != nullptr && writer != nullptr) as<Storage>(self)->abort(writer);
        },
        [](void* self, const char* key, uint64_t offset, void* dst, size_t bytes, size_t* read) noexcept {
            return guarded(self, [&] {
                if (key == nullptr || read == nullptr || (dst == nullptr && bytes > 0))
                    throw Error(PANGEA_ERR_INVALID_ARGUMENT, "read: NULL argument");
                *read = 0;
                *read = as<Storage>(self)->read(key, offset, dst, bytes);
            });
        },
        [](void* self, const char* key, uint64_t* size) noexcept {
            return guarded(self, [&] {
                if (key == nullptr || size == nullptr) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "stat: NULL argument");
                *size = as<Storage>(self)->stat(key);
            });
        },
        [](void* self, const char* prefix, pangea_storage_list_fn fn, void* user) noexcept {
            return guarded(self, [&] {
                if (prefix == nullptr || fn == nullptr) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "list: NULL argument");
                as<Storage>(self)->list(prefix, fn, user);
            });
        },
        [](void* self, const char* key) noexcept {
            return guarded(self, [&] {
                if (key == nullptr) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "remove: NULL key");
                as<Storage>(self)->remove(key);
            });
        },
    };
    return &vtable;
}

template <class T>
const pangea_plugin_info* describe() {
    static const std::vector<pangea_setting> settings = T::settings();
    static const pangea_plugin_info info = {
        sizeof(pangea_plugin_info),
        PANGEA_ABI_VERSION,
        T::kind,
        T::name,
        T::version,
        T::description,
        settings.empty() ? nullptr : settings.data(),
        static_cast<uint32_t>(settings.size()),
        sizeof(pangea_setting),
        vtable_for<T>(std::integral_constant<pangea_plugin_kind, T::kind>{}),
    };
    return &info;
}

// The handshake: answers the host's offer with the older of it and the version built here.
// Any 1.x host at or past every class's min_host_abi_minor will do: its vtables are prefixes of
// ours, and for_host() keeps statuses to what it knows.
template <class... Ts>
pangea_status export_library(uint32_t host_abi_version, const pangea_library** out) noexcept {
    if (out == nullptr) return PANGEA_ERR_INVALID_ARGUMENT;
    if (PANGEA_ABI_VERSION_MAJOR(host_abi_version) != PANGEA_ABI_MAJOR) return PANGEA_ERR_VERSION;
    constexpr uint32_t needed = std::max({uint32_t{0}, Ts::min_host_abi_minor...});
    if (PANGEA_ABI_VERSION_MINOR(host_abi_version) < needed) return PANGEA_ERR_VERSION;
    try {
        static const pangea_plugin_info* const plugins[] = {describe<Ts>()...};
        static const auto answers = [] {
            std::array<pangea_library, PANGEA_ABI_MINOR + 1> all{};
            for (uint32_t minor = 0; minor <= PANGEA_ABI_MINOR; ++minor)
                all[minor] = {sizeof(pangea_library), (PANGEA_ABI_MAJOR << 16) | minor,
                              static_cast<uint32_t>(sizeof...(Ts)), plugins};
            return all;
        }();
        const uint32_t offered = PANGEA_ABI_VERSION_MINOR(host_abi_version);
        *out = &answers[offered < PANGEA_ABI_MINOR ? offered : PANGEA_ABI_MINOR];
        return PANGEA_OK;
    } catch (...) {
        return PANGEA_ERR_INTERNAL;
    }
}

}  // namespace detail
}  // namespace pangea::sdk

// Defines the library's entry point, exporting the plugin classes listed.
#define PANGEA_EXPORT_PLUGINS(...)                                                       \
    extern "C" PANGEA_EXPORT pangea_status pangea_plugin_entry_v1(                       \
        uint32_t host_abi_version, const pangea_library** out_library) {                 \
        return ::pangea::sdk::detail::export_library<__VA_ARGS__>(host_abi_version,      \
                                                                  out_library);          \
    }

#endif  // PANGEA_SDK_HPP
