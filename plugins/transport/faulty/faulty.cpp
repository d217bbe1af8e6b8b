// transport/faulty: wraps another transport (`inner`, default tcp) and fails chosen calls of
// listen, accept, connect, isend, irecv, test and wait (see plugins/shared/faulty.hpp,
// docs/plugins/faulty.md). Listeners, connections and requests are the inner plugin's own.
// An injected failure of test or wait must still release the request (its buffer may be freed
// once the call returns): the wrapper aborts the request's connection, waits for the request
// to end, and then returns the injected status, as if the connection had broken.
#include <cstddef>
#include <unordered_map>

#include "../../shared/faulty.hpp"
#include "pangea/transport.h"

namespace {

using faulty::Instance;

enum Function { kListen, kAccept, kConnect, kIsend, kIrecv, kTest, kWait, kAllreduceSumF32 };

struct Spec {
    static constexpr const char* default_inner = "tcp";
    static const faulty::KindSpec& spec() {
        static const faulty::KindSpec s{PANGEA_KIND_TRANSPORT, "transport", default_inner,
                                        {"listen", "accept", "connect", "isend", "irecv", "test", "wait",
                                         "allreduce_sum_f32"},
                                        sizeof(pangea_transport_vtable)};
        return s;
    }
};

const pangea_transport_vtable& inner_vt(Instance& f) { return f.vt<pangea_transport_vtable>(); }

// The connection of each pending request, kept only when test or wait may be failed. One table
// per process, keyed by instance and request.
struct Pending {
    std::mutex mutex;
    std::unordered_map<const pangea_request*, std::pair<const Instance*, pangea_connection*>> requests;
};
Pending& pending() {
    static Pending* table = new Pending;  // never destroyed: may be used while the process exits
    return *table;
}
bool tracks(const Instance& f) { return f.targets(kTest) || f.targets(kWait); }

void remember(const Instance& f, pangea_request* request, pangea_connection* connection) {
    if (!tracks(f) || request == nullptr) return;
    std::lock_guard<std::mutex> lock(pending().mutex);
    pending().requests[request] = {&f, connection};
}
void forget(const Instance& f, pangea_request* request) {
    if (!tracks(f)) return;
    std::lock_guard<std::mutex> lock(pending().mutex);
    pending().requests.erase(request);
}
void forget_connection(const Instance& f, pangea_connection* connection) {
    if (!tracks(f)) return;
    std::lock_guard<std::mutex> lock(pending().mutex);
    for (auto it = pending().requests.begin(); it != pending().requests.end();)
        it = it->second.first == &f && it->second.second == connection ? pending().requests.erase(it) : std::next(it);
}

// test or wait: an injected failure ends the request for real first.
pangea_status complete(Instance& f, Function function, pangea_request* request, int timeout_ms) {
    if (f.targets(function) && request != nullptr) {
        pangea_connection* connection = nullptr;
        {
            std::lock_guard<std::mutex> lock(pending().mutex);
            const auto found = pending().requests.find(request);
            if (found != pending().requests.end() && found->second.first == &f) connection = found->second.second;
        }
        if (connection != nullptr) {  // else not ours to fail: forwarded below
            if (const pangea_status s = f.inject(function); s != PANGEA_OK) {
                inner_vt(f).abort(f.inner(), connection);
                inner_vt(f).wait(f.inner(), request, -1);
                forget(f, request);
                return s;
            }
        }
    }
    f.forget_error();
    const pangea_status status = function == kTest ? inner_vt(f).test(f.inner(), request)
                                                   : inner_vt(f).wait(f.inner(), request, timeout_ms);
    if (status != PANGEA_ERR_AGAIN && status != PANGEA_ERR_TIMEOUT) forget(f, request);
    return status;
}

// In a namespace of their own: listen, accept, connect, close and wait are also libc's.
namespace forward {

pangea_status listen(void* self, const char* address, pangea_listener** out_listener, char* bound_address,
                     size_t bound_capacity) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kListen); s != PANGEA_OK) return s;
    return inner_vt(f).listen(f.inner(), address, out_listener, bound_address, bound_capacity);
}

pangea_status accept(void* self, pangea_listener* listener, const pangea_hello* hello, int timeout_ms,
                     pangea_hello* peer, pangea_connection** out_connection) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kAccept); s != PANGEA_OK) return s;
    return inner_vt(f).accept(f.inner(), listener, hello, timeout_ms, peer, out_connection);
}

pangea_status connect(void* self, const char* address, const pangea_hello* hello, int timeout_ms,
                      pangea_hello* peer, pangea_connection** out_connection) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kConnect); s != PANGEA_OK) return s;
    return inner_vt(f).connect(f.inner(), address, hello, timeout_ms, peer, out_connection);
}

pangea_status isend(void* self, pangea_connection* connection, const void* data, size_t bytes,
                    pangea_request** out_request) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kIsend); s != PANGEA_OK) return s;
    const pangea_status status = inner_vt(f).isend(f.inner(), connection, data, bytes, out_request);
    if (status == PANGEA_OK && out_request != nullptr) remember(f, *out_request, connection);
    return status;
}

pangea_status irecv(void* self, pangea_connection* connection, void* data, size_t bytes,
                    pangea_request** out_request) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kIrecv); s != PANGEA_OK) return s;
    const pangea_status status = inner_vt(f).irecv(f.inner(), connection, data, bytes, out_request);
    if (status == PANGEA_OK && out_request != nullptr) remember(f, *out_request, connection);
    return status;
}

pangea_status test(void* self, pangea_request* request) { return complete(Instance::of(self), kTest, request, 0); }

pangea_status wait(void* self, pangea_request* request, int timeout_ms) {
    return complete(Instance::of(self), kWait, request, timeout_ms);
}

void abort(void* self, pangea_connection* connection) {
    Instance& f = Instance::of(self);
    f.forget_error();
    inner_vt(f).abort(f.inner(), connection);
}

void close(void* self, pangea_connection* connection) {
    Instance& f = Instance::of(self);
    f.forget_error();
    forget_connection(f, connection);
    inner_vt(f).close(f.inner(), connection);
}

void close_listener(void* self, pangea_listener* listener) {
    Instance& f = Instance::of(self);
    f.forget_error();
    inner_vt(f).close_listener(f.inner(), listener);
}

// The transport's own all-reduce: the host's default answers PANGEA_ERR_UNSUPPORTED (the core
// then runs its ring) when the inner plugin lacks it. An injected failure other than that one fails both connections first,
// as the contract asks of any failure (so the neighbours fail too).
pangea_status allreduce_sum_f32(void* self, pangea_connection* next, pangea_connection* previous, uint32_t rank,
                                uint32_t world, float* data, size_t count, int timeout_ms) {
    Instance& f = Instance::of(self);
    if (const pangea_status s = f.inject(kAllreduceSumF32); s != PANGEA_OK) {
        if (s != PANGEA_ERR_UNSUPPORTED) {
            inner_vt(f).abort(f.inner(), next);
            inner_vt(f).abort(f.inner(), previous);
        }
        return s;
    }
    return inner_vt(f).allreduce_sum_f32(f.inner(), next, previous, rank, world, data, count, timeout_ms);
}

}  // namespace forward

const pangea_transport_vtable vtable = {faulty::header<Spec>(), &forward::listen, &forward::accept,
                                        &forward::connect,      &forward::isend,  &forward::irecv,
                                        &forward::test,         &forward::wait,   &forward::abort,
                                        &forward::close,        &forward::close_listener,
                                        &forward::allreduce_sum_f32};

}  // namespace

PANGEA_FAULTY_PLUGIN(Spec, vtable, PANGEA_KIND_TRANSPORT,
                     "fault injection: wraps another transport and fails chosen calls (for tests)")
