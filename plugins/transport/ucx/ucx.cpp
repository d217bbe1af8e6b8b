// transport/ucx: a Pangea transport over UCX's UCP tag API, so RDMA, shared memory or TCP are used
// as UCX chooses (UCX_TLS, UCX_NET_DEVICES and the other UCX_* variables apply as usual).
//
// Connections are set up over a plain TCP socket: the two sides exchange hellos that carry their
// UCP worker addresses and a connection id, then each makes a UCP endpoint to the other's
// worker. The socket stays open as the connection's liveness signal: a peer that closes sends a
// "bye" with the number of messages it sent, then closes; a socket that ends without one means the
// peer died. Message k from A to B carries the tag (B's connection id, k), so receives match
// sends in order per connection and direction wherever the bytes were buffered.
//
// One UCP worker per instance, driven by one progress thread that sleeps on the worker's event
// fd. Every worker call is made under the instance's mutex (the worker is SERIALIZED), and UCX
// callbacks run inside ucp_worker_progress() with that mutex held. A request completes only once
// UCX has finished with its buffer, so a caller may free the buffer after any final status.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../shared/handles.hpp"
#include "../shared/socket.hpp"
#include "pangea/sdk.hpp"

namespace pangea::ucx {
namespace {

using pangea::sdk::Error;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kProtocolVersion = 1;
constexpr uint32_t kMaxWorkerAddress = 1u << 20;  // a hello may not make us allocate more
constexpr int kSequenceBits = 40;                 // a tag is (connection id: 24 bits, sequence: 40)
constexpr uint64_t kSequenceMask = (uint64_t{1} << kSequenceBits) - 1;
constexpr uint32_t kMaxConnectionId = (1u << (64 - kSequenceBits)) - 1;

enum HelloStatus : uint32_t { kHelloRequest = 0, kHelloAccepted = 1, kHelloWrongRun = 2 };

// The handshake, both ways; the worker address (address_bytes) follows it on the socket.
struct Hello {
    char magic[4];  // "PGUH"
    uint32_t version;
    uint32_t status;
    uint32_t node_id;
    uint32_t channel;
    uint32_t connection_id;  // the sender's id for this connection: the high bits of tags it receives
    uint64_t run_id;
    uint32_t address_bytes;
    uint32_t reserved;
};
static_assert(sizeof(Hello) == 40);

// Sent on the TCP socket by a side that closes in an orderly way.
struct Bye {
    char magic[4];  // "PGUB"
    uint32_t reserved;
    uint64_t messages_sent;
};
static_assert(sizeof(Bye) == 16);

// ------------------------------------------------------------------ sockets

constexpr const char* kWho = "ucx";  // starts every error text

using pangea::transport::connect_to;
using pangea::transport::Deadline;
using pangea::transport::Fd;
using pangea::transport::Greetings;
using pangea::transport::listen_on;
using pangea::transport::ListeningSocket;
using pangea::transport::no_connection;
using pangea::transport::peer_of;
using pangea::transport::system_error_text;

// The handshake's reads and writes, with this transport's name in their errors.
void read_exact(int fd, void* data, size_t bytes, const Deadline& deadline, const std::string& what) {
    pangea::transport::read_exact(kWho, fd, data, bytes, deadline, what);
}
void write_exact(int fd, const void* data, size_t bytes, const Deadline& deadline, const std::string& what) {
    pangea::transport::write_exact(kWho, fd, data, bytes, deadline, what);
}


// ------------------------------------------------------------------ UCX objects

std::string ucs_text(ucs_status_t status) { return ucs_status_string(status); }

struct ConfigDeleter {
    void operator()(ucp_config_t* config) const { ucp_config_release(config); }
};
struct ContextDeleter {
    void operator()(ucp_context* context) const { ucp_cleanup(context); }
};
struct WorkerDeleter {
    void operator()(ucp_worker* worker) const { ucp_worker_destroy(worker); }
};
using ConfigPtr = std::unique_ptr<ucp_config_t, ConfigDeleter>;
using ContextPtr = std::unique_ptr<ucp_context, ContextDeleter>;
using WorkerPtr = std::unique_ptr<ucp_worker, WorkerDeleter>;

// The worker's own address, released back to the worker.
class WorkerAddress {
public:
    explicit WorkerAddress(ucp_worker_h worker) : worker_(worker) {
        if (const ucs_status_t s = ucp_worker_get_address(worker, &address_, &length_); s != UCS_OK)
            throw Error(PANGEA_ERR_INTERNAL, "ucx: ucp_worker_get_address: " + ucs_text(s));
    }
    ~WorkerAddress() { ucp_worker_release_address(worker_, address_); }
    WorkerAddress(const WorkerAddress&) = delete;
    WorkerAddress& operator=(const WorkerAddress&) = delete;
    const void* data() const { return address_; }
    size_t size() const { return length_; }

private:
    ucp_worker_h worker_;
    ucp_address_t* address_ = nullptr;
    size_t length_ = 0;
};

// ------------------------------------------------------------------ connections and requests

struct Connection;

// One isend or irecv. `request` is UCX's request while UCX still owns the buffer.
struct Op {
    Connection* connection = nullptr;
    bool is_send = false;
    uint64_t sequence = 0;
    size_t bytes = 0;
    void* request = nullptr;
    bool done = false;
    pangea_status status = PANGEA_OK;
    pangea_status forced = PANGEA_OK;  // set when the connection fails while the op is pending
    std::string error;
};

struct Connection {
    Fd control;  // the handshake socket, kept as the liveness signal
    std::string peer;
    uint32_t local_id = 0;   // tags of messages we receive
    uint32_t remote_id = 0;  // tags of messages we send
    ucp_ep_h ep = nullptr;
    void* close_request = nullptr;  // ucp_ep_close_nbx in flight
    uint64_t next_send = 0;
    uint64_t next_receive = 0;
    std::map<Op*, std::shared_ptr<Op>> pending;  // ops UCX still holds
    bool failed = false;
    pangea_status failure = PANGEA_OK;
    std::string failure_text;
    bool endpoint_failed = false;    // UCX reported the endpoint broken: no new sends
    bool peer_closed = false;        // a bye arrived: the peer sent `peer_sent` messages in all
    uint64_t peer_sent = 0;
    bool control_done = false;       // the socket ended or failed: stop polling it
    bool closing = false;
    std::string corrupt;             // why a receive found the stream corrupt (failed after progress)
    uint8_t bye_buffer[sizeof(Bye)] = {};
    size_t bye_bytes = 0;
};

struct Listener {
    Listener(ListeningSocket bound, Greetings greeting) : socket(std::move(bound)), greetings(std::move(greeting)) {}

    ListeningSocket socket;
    Greetings greetings;              // sockets still sending their Hello and worker address
    std::mutex mutex;                 // one accept() at a time
    std::atomic<bool> closed{false};  // close_listener() ends a waiting accept() with this
};

pangea_status from_ucs(ucs_status_t status) {
    switch (status) {
        case UCS_OK: return PANGEA_OK;
        case UCS_ERR_CANCELED: return PANGEA_ERR_ABORTED;
        case UCS_ERR_MESSAGE_TRUNCATED: return PANGEA_ERR_CORRUPT;
        case UCS_ERR_NO_MEMORY: return PANGEA_ERR_NO_MEMORY;
        case UCS_ERR_TIMED_OUT:
        case UCS_ERR_ENDPOINT_TIMEOUT:
        case UCS_ERR_CONNECTION_RESET:
        case UCS_ERR_UNREACHABLE:
        case UCS_ERR_REJECTED:
        case UCS_ERR_NOT_CONNECTED: return PANGEA_ERR_PEER_LOST;
        default: return PANGEA_ERR_IO;
    }
}

pangea_hello to_api(const Hello& hello) {
    pangea_hello out{};
    out.struct_size = sizeof out;
    out.node_id = hello.node_id;
    out.run_id = hello.run_id;
    out.channel = hello.channel;
    return out;
}

Hello make_hello(const pangea_hello& self, uint32_t status, uint32_t connection_id, size_t address_bytes) {
    Hello hello{};
    std::memcpy(hello.magic, "PGUH", 4);
    hello.version = kProtocolVersion;
    hello.status = status;
    hello.node_id = self.node_id;
    hello.channel = self.channel;
    hello.connection_id = connection_id;
    hello.run_id = self.run_id;
    hello.address_bytes = static_cast<uint32_t>(address_bytes);
    return hello;
}

std::string check_hello(const Hello& h) {
    if (std::memcmp(h.magic, "PGUH", 4) != 0) return "not a Pangea ucx handshake (bad magic)";
    if (h.version != kProtocolVersion)
        return "handshake version " + std::to_string(h.version) + ", this side speaks " + std::to_string(kProtocolVersion);
    if (h.reserved != 0 || h.status > kHelloWrongRun) return "malformed handshake";
    if (h.status != kHelloWrongRun && (h.address_bytes == 0 || h.address_bytes > kMaxWorkerAddress))
        return "worker address of " + std::to_string(h.address_bytes) + " bytes";
    if (h.connection_id == 0 || h.connection_id > kMaxConnectionId) return "bad connection id in the handshake";
    return "";
}

// ------------------------------------------------------------------ the plugin

class UcxTransport final : public pangea::sdk::Transport {
public:
    static constexpr const char* name = "ucx";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "UCX (UCP tag messages): RDMA, shared memory or TCP as UCX selects; TCP handshake";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            string_setting("tls", "", "UCX transports (as UCX_TLS) used when UCX_TLS is not set; empty: UCX's choice"),
            string_setting("net_devices", "", "UCX devices (as UCX_NET_DEVICES) used when UCX_NET_DEVICES is not set; empty: all"),
            int_setting("handshake_timeout_ms", "5000", "how long an incoming socket may take to say hello", 10, 600000),
            int_setting("close_timeout_ms", "10000", "how long close() waits for sent data to leave before dropping it", 0, 600000),
            int_setting("max_message", "17179869184", "largest message accepted, in bytes", 1, 1099511627776.0),
        };
    }

    explicit UcxTransport(const pangea::sdk::Host& host)
        : host_(host),
          handshake_timeout_ms_(static_cast<int>(host.get_int("handshake_timeout_ms"))),
          close_timeout_ms_(static_cast<int>(host.get_int("close_timeout_ms"))),
          max_message_(static_cast<uint64_t>(host.get_int("max_message"))) {
        ucp_config_t* raw_config = nullptr;
        if (const ucs_status_t s = ucp_config_read(nullptr, nullptr, &raw_config); s != UCS_OK)
            throw Error(PANGEA_ERR_CONFIG, "ucx: ucp_config_read: " + ucs_text(s));
        const ConfigPtr config(raw_config);
        // The manifest's choices are defaults: UCX's own environment variables win.
        apply_setting(config.get(), "TLS", "UCX_TLS", host.get_string("tls"));
        apply_setting(config.get(), "NET_DEVICES", "UCX_NET_DEVICES", host.get_string("net_devices"));

        ucp_params_t params{};
        params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
        params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
        params.mt_workers_shared = 0;
        ucp_context_h context = nullptr;
        if (const ucs_status_t s = ucp_init(&params, config.get(), &context); s != UCS_OK)
            throw Error(PANGEA_ERR_IO, "ucx: ucp_init: " + ucs_text(s) +
                                           " (check UCX_TLS / UCX_NET_DEVICES or the tls / net_devices settings)");
        context_.reset(context);

        // SERIALIZED: several threads use the worker, one at a time under mutex_.
        ucp_worker_params_t worker_params{};
        worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
        worker_params.thread_mode = UCS_THREAD_MODE_SERIALIZED;
        ucp_worker_h worker = nullptr;
        if (const ucs_status_t s = ucp_worker_create(context_.get(), &worker_params, &worker); s != UCS_OK)
            throw Error(PANGEA_ERR_IO, "ucx: ucp_worker_create: " + ucs_text(s));
        worker_.reset(worker);
        if (const ucs_status_t s = ucp_worker_get_efd(worker_.get(), &worker_fd_); s != UCS_OK)
            throw Error(PANGEA_ERR_IO, "ucx: ucp_worker_get_efd: " + ucs_text(s));
        wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!wake_) throw Error(PANGEA_ERR_IO, "ucx: eventfd: " + system_error_text(errno));
        progress_thread_ = std::thread([this] { progress_loop(); });
    }

    ~UcxTransport() override {
        std::vector<pangea_connection*> open;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (auto& [handle, connection] : connections_) open.push_back(handle);
        }
        for (auto* handle : open) close(handle);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake();
        progress_thread_.join();
        // Anything still in UCX's hands (a connection that would not drain) dies with the worker.
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& connection : graveyard_)
            if (connection->close_request != nullptr) ucp_request_free(connection->close_request);
        requests_.take_all();
    }

    pangea_listener* listen(const char* address, char* bound, size_t capacity) override {
        // A greeting is a Hello, then the worker address it announces.
        auto greeting_bytes = [](const std::vector<uint8_t>& arrived) {
            if (arrived.size() < sizeof(Hello)) return sizeof(Hello);
            Hello hello;
            std::memcpy(&hello, arrived.data(), sizeof hello);
            if (const std::string bad = check_hello(hello); !bad.empty()) throw Error(PANGEA_ERR_CORRUPT, bad);
            if (hello.status != kHelloRequest) throw Error(PANGEA_ERR_CORRUPT, "unexpected handshake status");
            return sizeof(Hello) + hello.address_bytes;
        };
        auto listener = std::make_shared<Listener>(listen_on(kWho, address),
                                                   Greetings(kWho, sizeof(Hello), greeting_bytes, handshake_timeout_ms_));
        listener->socket.copy_bound(kWho, bound, capacity);
        return listeners_.add(std::move(listener));
    }

    pangea_connection* accept(pangea_listener* handle, const pangea_hello& self, int timeout_ms,
                              pangea_hello* peer) override {
        // Held: a close_listener() that comes first must not free it under us.
        const std::shared_ptr<Listener> listener = listeners_.get(handle);
        std::lock_guard<std::mutex> accepting(listener->mutex);
        const Deadline deadline(timeout_ms);
        while (true) {
            // Accept in slices, so that close_listener() from another thread is noticed.
            if (listener->closed)
                throw Error(PANGEA_ERR_IO, "ucx: the listener at " + listener->socket.bound + " was closed");
            auto greeting = listener->greetings.next(listener->socket, deadline, 0,
                                                     [&](const std::string& from, const std::string& why) {
                                                         host_.log(PANGEA_LOG_WARN, "ucx: dropped a connection from " + from + ": " + why);
                                                     });
            if (!greeting) {
                if (deadline.passed()) throw no_connection(kWho, listener->socket, timeout_ms);
                continue;
            }
            const std::string from = greeting->from;
            try {
                if (auto* connection = answer(std::move(*greeting), self, peer)) return connection;
            } catch (const Error& e) {
                // One bad client must not fail the accept: drop it and wait for the next.
                if (e.status() == PANGEA_ERR_NO_MEMORY) throw;
                host_.log(PANGEA_LOG_WARN, "ucx: dropped a connection from " + from + ": " + e.what());
            }
        }
    }

    pangea_connection* connect(const char* address, const pangea_hello& self, int timeout_ms,
                               pangea_hello* peer) override {
        const Deadline deadline(timeout_ms);
        Fd socket = connect_to(kWho, address, deadline);
        IdLease id(*this);
        send_hello(socket.get(), self, kHelloRequest, id.get(), deadline, address);
        Hello answer{};
        read_exact(socket.get(), &answer, sizeof answer, deadline, "waiting for the handshake answer");
        if (const std::string bad = check_hello(answer); !bad.empty())
            throw Error(PANGEA_ERR_CORRUPT, std::string("ucx: ") + address + ": " + bad);
        if (answer.status == kHelloWrongRun)
            throw Error(PANGEA_ERR_CONFIG, std::string("ucx: ") + address + " refused the connection: it belongs to another run");
        if (answer.status != kHelloAccepted)
            throw Error(PANGEA_ERR_CORRUPT, std::string("ucx: ") + address + " answered with a request");
        std::vector<uint8_t> remote(answer.address_bytes);
        read_exact(socket.get(), remote.data(), remote.size(), deadline, "reading the peer's worker address");
        *peer = to_api(answer);
        return add_connection(std::move(socket), address, id, answer.connection_id, remote, deadline);
    }

    pangea_request* isend(pangea_connection* handle, const void* data, size_t bytes) override {
        check_size(bytes);
        std::unique_lock<std::mutex> lock(mutex_);
        Connection& connection = find_connection(handle);
        auto op = std::make_shared<Op>();
        op->connection = &connection;
        op->is_send = true;
        op->bytes = bytes;
        op->sequence = connection.next_send++;
        if (connection.failed) return finish_now(op, connection.failure, connection.failure_text);
        if (connection.peer_closed || connection.endpoint_failed || connection.ep == nullptr)
            return finish_now(op, PANGEA_ERR_PEER_LOST, "ucx: connection to " + connection.peer + ": the peer is gone");

        ucp_request_param_t param{};
        param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
        param.datatype = ucp_dt_make_contig(1);
        param.cb.send = &on_send;
        param.user_data = op.get();
        static const uint8_t empty = 0;  // UCX wants a pointer even for an empty message
        connection.pending[op.get()] = op;
        const ucs_status_ptr_t sent = ucp_tag_send_nbx(connection.ep, bytes > 0 ? data : &empty, bytes,
                                                       tag(connection.remote_id, op->sequence), &param);
        if (sent == nullptr || UCS_PTR_IS_ERR(sent)) {
            connection.pending.erase(op.get());
            if (sent == nullptr) return finish_now(op, PANGEA_OK, "");
            return finish_now(op, from_ucs(UCS_PTR_STATUS(sent)),
                              "ucx: send to " + connection.peer + ": " + ucs_text(UCS_PTR_STATUS(sent)));
        }
        if (!op->done) op->request = sent;  // else the callback ran already and freed it
        pangea_request* request = register_op(op);
        lock.unlock();
        wake();  // the progress thread pushes the rest
        return request;
    }

    pangea_request* irecv(pangea_connection* handle, void* data, size_t bytes) override {
        check_size(bytes);
        std::unique_lock<std::mutex> lock(mutex_);
        Connection& connection = find_connection(handle);
        auto op = std::make_shared<Op>();
        op->connection = &connection;
        op->bytes = bytes;
        op->sequence = connection.next_receive++;
        if (connection.failed) return finish_now(op, connection.failure, connection.failure_text);
        if (connection.peer_closed && op->sequence >= connection.peer_sent)
            return finish_now(op, PANGEA_ERR_PEER_LOST, "ucx: connection to " + connection.peer + ": the peer closed the connection");

        ucp_request_param_t param{};
        // No immediate completion: the callback is the one place that checks the length.
        param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                             UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
        param.datatype = ucp_dt_make_contig(1);
        param.cb.recv = &on_receive;
        param.user_data = op.get();
        static uint8_t sink = 0;
        // In the pending table first: with NO_IMM_CMPL the callback may run inside the call.
        connection.pending[op.get()] = op;
        const ucs_status_ptr_t posted = ucp_tag_recv_nbx(worker_.get(), bytes > 0 ? data : &sink, bytes,
                                                         tag(connection.local_id, op->sequence), ~ucp_tag_t{0}, &param);
        if (posted == nullptr || UCS_PTR_IS_ERR(posted)) {
            connection.pending.erase(op.get());
            const ucs_status_t s = posted == nullptr ? UCS_ERR_NO_PROGRESS : UCS_PTR_STATUS(posted);
            return finish_now(op, from_ucs(s), "ucx: receive from " + connection.peer + ": " + ucs_text(s));
        }
        if (!op->done) op->request = posted;  // else the callback ran already and freed it
        pangea_request* request = register_op(op);
        lock.unlock();
        wake();
        return request;
    }

    pangea_status test(pangea_request* request) override { return wait(request, 0); }

    pangea_status wait(pangea_request* request, int timeout_ms) override {
        const std::shared_ptr<Op> op = requests_.get(request);
        std::unique_lock<std::mutex> lock(mutex_);
        const auto done = [&] { return op->done; };
        if (timeout_ms < 0)
            done_cv_.wait(lock, done);
        else if (!done_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), done))
            return timeout_ms == 0 ? PANGEA_ERR_AGAIN : PANGEA_ERR_TIMEOUT;
        lock.unlock();
        requests_.take(request);
        if (op->status != PANGEA_OK) set_last_error(op->error.c_str());
        return op->status;
    }

    void abort(pangea_connection* handle) noexcept override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto found = connections_.find(handle);
            if (found == connections_.end()) return;
            fail(*found->second, PANGEA_ERR_ABORTED, "aborted");
        }
        wake();
    }

    void close(pangea_connection* handle) noexcept override {
        std::unique_lock<std::mutex> lock(mutex_);
        const auto found = connections_.find(handle);
        if (found == connections_.end() || found->second->closing) return;
        Connection& connection = *found->second;
        connection.closing = true;
        // Receives can never complete once we are gone; unsent data must still leave, as a
        // finished node closes at once after its last send.
        bool sends_pending = false;
        for (auto& [raw, op] : connection.pending) sends_pending |= op->is_send;
        // A peer that said bye or broke has nobody left to read what we would flush.
        if (!connection.failed && !sends_pending && !connection.peer_closed && !connection.endpoint_failed)
            close_gracefully(connection, lock);
        fail(connection, PANGEA_ERR_ABORTED, "the connection was closed");
        lock.unlock();
        wake();
        lock.lock();
        // Wait for UCX to give back every buffer before the Connection (their owner) goes.
        const bool drained = done_cv_.wait_for(lock, std::chrono::milliseconds(std::max(close_timeout_ms_, 1000)), [&] {
            return connection.pending.empty() && !close_in_flight(connection);
        });
        auto owned = std::move(found->second);
        connections_.erase(found);
        used_ids_.erase(owned->local_id);
        if (!drained) {
            host_.log(PANGEA_LOG_WARN, "ucx: connection to " + owned->peer + " did not drain on close");
            graveyard_.push_back(std::move(owned));  // UCX may still call back into it
        } else if (owned->close_request != nullptr) {
            ucp_request_free(owned->close_request);
            owned->close_request = nullptr;
        }
    }

    void close_listener(pangea_listener* handle) noexcept override {
        const auto doomed = listeners_.take(handle);
        if (!doomed) return;
        doomed->closed = true;
        std::lock_guard<std::mutex> accepting(doomed->mutex);  // no accept() is still inside it
    }

private:
    static ucp_tag_t tag(uint32_t connection_id, uint64_t sequence) {
        return (static_cast<uint64_t>(connection_id) << kSequenceBits) | (sequence & kSequenceMask);
    }

    static void apply_setting(ucp_config_t* config, const char* name, const char* variable, const std::string& value) {
        if (value.empty() || std::getenv(variable) != nullptr) return;
        if (const ucs_status_t s = ucp_config_modify(config, name, value.c_str()); s != UCS_OK)
            throw Error(PANGEA_ERR_CONFIG, std::string("ucx: setting ") + name + "='" + value + "': " + ucs_text(s));
    }

    void check_size(size_t bytes) const {
        if (bytes > max_message_)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "ucx: message of " + std::to_string(bytes) +
                                                         " bytes exceeds max_message " + std::to_string(max_message_));
    }

    // A connection id (the high bits of the tags a connection receives), given back unless a
    // connection takes it over. Ids are handed out round robin so that a late message for a
    // closed connection does not match a new one.
    class IdLease {
    public:
        explicit IdLease(UcxTransport& owner) : owner_(owner) {
            std::lock_guard<std::mutex> lock(owner_.mutex_);
            for (uint32_t tries = 0; tries <= kMaxConnectionId; ++tries) {
                const uint32_t id = owner_.next_connection_id_;
                owner_.next_connection_id_ = id == kMaxConnectionId ? 1 : id + 1;
                if (owner_.used_ids_.insert(id).second) {
                    id_ = id;
                    return;
                }
            }
            throw Error(PANGEA_ERR_NO_MEMORY, "ucx: out of connection ids");
        }
        ~IdLease() {
            if (id_ == 0) return;
            std::lock_guard<std::mutex> lock(owner_.mutex_);
            owner_.used_ids_.erase(id_);
        }
        IdLease(const IdLease&) = delete;
        IdLease& operator=(const IdLease&) = delete;
        uint32_t get() const { return id_; }
        uint32_t release() { return std::exchange(id_, 0); }  // mutex_ held: the connection owns it now

    private:
        UcxTransport& owner_;
        uint32_t id_ = 0;
    };

    // Writes our hello followed by our worker address (none in a refusal).
    void send_hello(int fd, const pangea_hello& self, uint32_t status, uint32_t connection_id,
                    const Deadline& deadline, const std::string& peer) {
        std::vector<uint8_t> address;
        if (status != kHelloWrongRun) {
            std::lock_guard<std::mutex> lock(mutex_);
            const WorkerAddress own(worker_.get());
            const auto* bytes = static_cast<const uint8_t*>(own.data());
            address.assign(bytes, bytes + own.size());
        }
        const Hello hello = make_hello(self, status, connection_id, address.size());
        write_exact(fd, &hello, sizeof hello, deadline, "sending the handshake to " + peer);
        write_exact(fd, address.data(), address.size(), deadline, "sending the worker address to " + peer);
    }

    // Answers a client's greeting (a checked Hello and its worker address); nullptr when refused.
    pangea_connection* answer(Greetings::Greeting greeting, const pangea_hello& self, pangea_hello* peer) {
        const Deadline deadline(handshake_timeout_ms_);
        Fd socket = std::move(greeting.socket);
        const std::string& from = greeting.from;
        Hello hello{};
        std::memcpy(&hello, greeting.bytes.data(), sizeof hello);
        const std::vector<uint8_t> remote(greeting.bytes.begin() + sizeof hello, greeting.bytes.end());
        if (hello.run_id != self.run_id) {
            try {
                send_hello(socket.get(), self, kHelloWrongRun, 1, deadline, from);
            } catch (const Error&) {
            }
            host_.log(PANGEA_LOG_WARN, "ucx: refused a connection from " + from + " (node " +
                                           std::to_string(hello.node_id) + "): it belongs to another run");
            return nullptr;
        }
        IdLease id(*this);
        send_hello(socket.get(), self, kHelloAccepted, id.get(), deadline, from);
        *peer = to_api(hello);
        return add_connection(std::move(socket), from, id, hello.connection_id, remote, deadline);
    }

    // The connection is handed out only once UCX's own wireup of the endpoint pair is over on
    // both sides. UCX 1.13 aborts the process (an assertion in ucp_request_send_state_ff) when
    // it purges a wireup REPLY still queued on a TCP lane, which a force close of the endpoint
    // and its failure both do: a connection aborted or lost right after connect() took the
    // process with it (of this side, or of the peer whose reply had not left yet). So:
    //  1. each side sends the other an empty message and receives the peer's (sequence 0 of
    //     each direction). It comes after the peer's wireup request on the same lane, so once
    //     it is in, any reply we owe is queued;
    //  2. each side flushes its endpoint: the reply has left;
    //  3. each side sends and receives a second empty message (sequence 1): the peer's reply
    //     has left too, so neither side can be aborted, closed or lost while the other still
    //     holds one. A peer that goes away in this step is no failure of the setup: the
    //     connection is handed out, and fails as any other whose peer is gone.
    // The caller's messages count from 2 in each direction.
    pangea_connection* add_connection(Fd socket, const std::string& peer, IdLease& local_id, uint32_t remote_id,
                                      const std::vector<uint8_t>& remote_address, const Deadline& deadline) {
        auto connection = std::make_unique<Connection>();
        connection->control = std::move(socket);
        connection->peer = peer;
        connection->local_id = local_id.get();
        connection->remote_id = remote_id;
        auto* handle = reinterpret_cast<pangea_connection*>(connection.get());
        std::unique_lock<std::mutex> lock(mutex_);
        ucp_ep_params_t params{};
        params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                            UCP_EP_PARAM_FIELD_ERR_HANDLER;
        params.address = reinterpret_cast<const ucp_address_t*>(remote_address.data());
        // PEER mode: a dead peer fails our sends instead of hanging them, and force close is safe.
        params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
        params.err_handler.cb = &on_endpoint_error;
        params.err_handler.arg = connection.get();
        ucp_ep_h ep = nullptr;
        if (const ucs_status_t s = ucp_ep_create(worker_.get(), &params, &ep); s != UCS_OK)
            throw Error(s == UCS_ERR_NO_MEMORY ? PANGEA_ERR_NO_MEMORY : PANGEA_ERR_CORRUPT,
                        "ucx: cannot reach the worker address of " + peer + ": " + ucs_text(s));
        connection->ep = ep;
        std::string why;
        pangea_status status = exchange(*connection, 0, lock, deadline, &why);
        if (status == PANGEA_OK) status = flush_endpoint(*connection, lock, deadline, &why);
        if (status == PANGEA_OK) {
            status = exchange(*connection, 1, lock, deadline, &why);
            if (status != PANGEA_OK && status != PANGEA_ERR_TIMEOUT) status = PANGEA_OK;  // see 3. above
        }
        if (status != PANGEA_OK) {
            abandon(std::move(connection), lock);
            throw Error(status, "ucx: connection to " + peer + ": " + why);
        }
        connection->next_send = connection->next_receive = 2;
        local_id.release();
        connections_[handle] = std::move(connection);
        lock.unlock();
        wake();  // poll the new socket
        return handle;
    }

    // Waits until done() holds, the deadline passes or the peer's socket says it is gone.
    // mutex_ held (by `lock`).
    template <class Done>
    pangea_status settle(Connection& connection, std::unique_lock<std::mutex>& lock, const Deadline& deadline,
                         const Done& done) {
        wake();  // the progress thread moves what was just posted
        while (!done()) {
            if (deadline.passed()) return PANGEA_ERR_TIMEOUT;
            if (peer_gone(connection)) return PANGEA_ERR_PEER_LOST;
            const int left = deadline.remaining_ms();
            done_cv_.wait_for(lock, std::chrono::milliseconds(left < 0 ? 50 : std::min(left, 50)), done);
        }
        return PANGEA_OK;
    }

    // One empty message each way with sequence `sequence`, during setup (add_connection()).
    // mutex_ held (by `lock`); the connection is not in connections_ yet, so only this thread
    // and UCX's callbacks touch it.
    pangea_status exchange(Connection& connection, uint64_t sequence, std::unique_lock<std::mutex>& lock,
                           const Deadline& deadline, std::string* why) {
        static uint8_t sink = 0;
        static const uint8_t empty = 0;
        auto receive = std::make_shared<Op>();
        receive->connection = &connection;
        receive->sequence = sequence;
        auto send = std::make_shared<Op>();
        send->connection = &connection;
        send->is_send = true;
        send->sequence = sequence;

        ucp_request_param_t param{};
        param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE |
                             UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
        param.datatype = ucp_dt_make_contig(1);
        param.cb.recv = &on_receive;
        param.user_data = receive.get();
        connection.pending[receive.get()] = receive;
        const ucs_status_ptr_t posted = ucp_tag_recv_nbx(worker_.get(), &sink, 0, tag(connection.local_id, sequence),
                                                         ~ucp_tag_t{0}, &param);
        if (posted == nullptr || UCS_PTR_IS_ERR(posted)) {
            connection.pending.erase(receive.get());
            const ucs_status_t s = posted == nullptr ? UCS_ERR_NO_PROGRESS : UCS_PTR_STATUS(posted);
            *why = "setting up the endpoint: receive: " + ucs_text(s);
            return from_ucs(s);
        }
        if (!receive->done) receive->request = posted;  // else the callback ran already and freed it

        param = ucp_request_param_t{};
        param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
        param.datatype = ucp_dt_make_contig(1);
        param.cb.send = &on_send;
        param.user_data = send.get();
        connection.pending[send.get()] = send;
        const ucs_status_ptr_t sent =
            ucp_tag_send_nbx(connection.ep, &empty, 0, tag(connection.remote_id, sequence), &param);
        if (sent == nullptr || UCS_PTR_IS_ERR(sent)) {
            connection.pending.erase(send.get());
            send->done = true;
            if (sent != nullptr) {
                send->status = from_ucs(UCS_PTR_STATUS(sent));
                send->error = ucs_text(UCS_PTR_STATUS(sent));
            }
        } else if (!send->done) {
            send->request = sent;
        }

        pangea_status status = settle(connection, lock, deadline, [&] { return receive->done && send->done; });
        if (status == PANGEA_OK) status = send->status != PANGEA_OK ? send->status : receive->status;
        if (status == PANGEA_ERR_TIMEOUT)
            *why = "setting up the endpoint did not complete in time";
        else if (status == PANGEA_ERR_PEER_LOST)
            *why = "the peer went away while the endpoint was being set up";
        else if (status != PANGEA_OK)
            *why = "setting up the endpoint: " + (send->status != PANGEA_OK ? send->error : receive->error);
        return status;  // what is still pending is cancelled by abandon()
    }

    // Step 2 of add_connection(). mutex_ held (by `lock`).
    pangea_status flush_endpoint(Connection& connection, std::unique_lock<std::mutex>& lock, const Deadline& deadline,
                                 std::string* why) {
        ucp_request_param_t param{};  // no callback: polled, then freed
        const ucs_status_ptr_t flushed = ucp_ep_flush_nbx(connection.ep, &param);
        if (flushed == nullptr) return PANGEA_OK;
        if (UCS_PTR_IS_ERR(flushed)) {
            *why = "flushing the new endpoint: " + ucs_text(UCS_PTR_STATUS(flushed));
            return from_ucs(UCS_PTR_STATUS(flushed));
        }
        pangea_status status =
            settle(connection, lock, deadline, [&] { return ucp_request_check_status(flushed) != UCS_INPROGRESS; });
        const ucs_status_t flush_status = ucp_request_check_status(flushed);
        ucp_request_free(flushed);  // released by UCX once complete, if it is not yet
        if (status == PANGEA_OK && flush_status != UCS_OK) status = from_ucs(flush_status);
        if (status == PANGEA_ERR_TIMEOUT)
            *why = "flushing the new endpoint did not complete in time";
        else if (status == PANGEA_ERR_PEER_LOST && flush_status == UCS_INPROGRESS)
            *why = "the peer went away while the endpoint was being set up";
        else if (status != PANGEA_OK)
            *why = "flushing the new endpoint: " + ucs_text(flush_status);
        return status;
    }

    // Whether the peer's control socket ended or failed (a bye waiting on it is no failure). mutex_ held.
    static bool peer_gone(Connection& connection) {
        uint8_t byte = 0;
        const ssize_t got = ::recv(connection.control.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        return got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }

    // Gives up on a connection that never reached connections_: its endpoint is closed and its
    // requests cancelled; it goes once UCX is done with it. mutex_ held (by `lock`).
    void abandon(std::unique_ptr<Connection> connection, std::unique_lock<std::mutex>& lock) {
        std::vector<std::shared_ptr<Op>> pending;
        for (auto& [raw, op] : connection->pending) pending.push_back(op);
        for (auto& op : pending)
            if (!op->is_send && op->request != nullptr) ucp_request_cancel(worker_.get(), op->request);
        close_endpoint(*connection, UCP_EP_CLOSE_FLAG_FORCE);
        lock.unlock();
        wake();
        lock.lock();
        const bool drained = done_cv_.wait_for(lock, std::chrono::milliseconds(1000), [&] {
            return connection->pending.empty() && !close_in_flight(*connection);
        });
        if (!drained) {
            graveyard_.push_back(std::move(connection));  // UCX may still call back into it
        } else if (connection->close_request != nullptr) {
            ucp_request_free(connection->close_request);
            connection->close_request = nullptr;
        }
    }

    Connection& find_connection(pangea_connection* handle) {  // mutex_ held
        const auto found = connections_.find(handle);
        if (found == connections_.end()) throw Error(PANGEA_ERR_INVALID_ARGUMENT, "ucx: unknown connection handle");
        return *found->second;
    }

    pangea_request* register_op(const std::shared_ptr<Op>& op) { return requests_.add(op); }

    pangea_request* finish_now(const std::shared_ptr<Op>& op, pangea_status status, const std::string& why) {
        op->done = true;
        op->status = status;
        op->error = why;
        return register_op(op);
    }

    // ---------------------------------------------------------------- UCX callbacks
    // They run inside ucp_worker_progress() (or ucp_request_cancel / ucp_ep_close_nbx) with mutex_
    // held, so they only record; anything that calls back into UCX is deferred to the progress loop.

    static void complete(Op* op, ucs_status_t status, size_t received) {
        Connection* connection = op->connection;
        std::shared_ptr<Op> keep;  // the op lives at least until this returns
        if (const auto found = connection->pending.find(op); found != connection->pending.end()) {
            keep = found->second;
            connection->pending.erase(found);
        }
        op->request = nullptr;
        if (op->forced != PANGEA_OK) {
            op->status = op->forced;
        } else if (status != UCS_OK) {
            op->status = from_ucs(status);
            op->error = "ucx: " + std::string(op->is_send ? "send to " : "receive from ") + connection->peer + ": " +
                        (status == UCS_ERR_MESSAGE_TRUNCATED ? "a message longer than the posted receive of " +
                                                                   std::to_string(op->bytes) + " bytes arrived"
                                                             : ucs_text(status));
        } else if (!op->is_send && received != op->bytes) {
            op->status = PANGEA_ERR_CORRUPT;
            op->error = "ucx: receive from " + connection->peer + ": a message of " + std::to_string(received) +
                        " bytes arrived for a receive of " + std::to_string(op->bytes);
        }
        if (op->status == PANGEA_ERR_CORRUPT && !connection->failed && connection->corrupt.empty())
            connection->corrupt = received > op->bytes || status == UCS_ERR_MESSAGE_TRUNCATED
                                      ? "a message longer than its receive arrived"
                                      : "a message shorter than its receive arrived";
        op->done = true;
    }

    static void on_send(void* request, ucs_status_t status, void* user_data) {
        complete(static_cast<Op*>(user_data), status, 0);
        ucp_request_free(request);
    }

    static void on_receive(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data) {
        complete(static_cast<Op*>(user_data), status, info != nullptr ? info->length : 0);
        ucp_request_free(request);
    }

    static void on_endpoint_error(void* arg, ucp_ep_h, ucs_status_t) {
        // Sends on the endpoint fail by themselves; receives wait for the socket's verdict, since
        // messages already delivered to the worker may still be matched.
        static_cast<Connection*>(arg)->endpoint_failed = true;
    }

    // ---------------------------------------------------------------- failure and close

    // Fails every pending and future op of the connection. mutex_ held, not inside a callback.
    void fail(Connection& connection, pangea_status status, const std::string& why) {
        if (connection.failed) return;
        connection.failed = true;
        connection.failure = status;
        connection.failure_text = "ucx: connection to " + connection.peer + ": " + why;
        if (status != PANGEA_ERR_ABORTED)
            host_.log(status == PANGEA_ERR_PEER_LOST ? PANGEA_LOG_INFO : PANGEA_LOG_WARN, connection.failure_text);
        std::vector<std::shared_ptr<Op>> pending;
        for (auto& [raw, op] : connection.pending) pending.push_back(op);
        for (auto& op : pending) {
            op->forced = status;
            op->error = connection.failure_text;
        }
        // Cancelling may call back at once, which edits `pending` of the connection: use the copy.
        for (auto& op : pending)
            if (!op->is_send && op->request != nullptr) ucp_request_cancel(worker_.get(), op->request);
        close_endpoint(connection, UCP_EP_CLOSE_FLAG_FORCE);  // completes the sends with CANCELED
        if (connection.control) ::shutdown(connection.control.get(), SHUT_RDWR);  // the peer learns at once
        done_cv_.notify_all();
    }

    void close_endpoint(Connection& connection, uint32_t flags) {  // mutex_ held
        if (connection.ep == nullptr) return;
        ucp_request_param_t param{};
        param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        param.flags = flags;
        const ucs_status_ptr_t request = ucp_ep_close_nbx(connection.ep, &param);
        connection.ep = nullptr;
        if (request != nullptr && !UCS_PTR_IS_ERR(request)) connection.close_request = request;
    }

    bool close_in_flight(Connection& connection) {  // mutex_ held
        if (connection.close_request == nullptr) return false;
        if (ucp_request_check_status(connection.close_request) == UCS_INPROGRESS) return true;
        ucp_request_free(connection.close_request);
        connection.close_request = nullptr;
        return false;
    }

    // Tells the peer how many messages we sent, then flushes them out of UCX.
    void close_gracefully(Connection& connection, std::unique_lock<std::mutex>& lock) {
        Bye bye{};
        std::memcpy(bye.magic, "PGUB", 4);
        bye.messages_sent = connection.next_send;
        try {
            write_exact(connection.control.get(), &bye, sizeof bye, Deadline(close_timeout_ms_), "saying goodbye");
        } catch (const Error&) {
            return;  // the peer is gone: nothing to flush to
        }
        close_endpoint(connection, 0);
        lock.unlock();
        wake();
        lock.lock();
        done_cv_.wait_for(lock, std::chrono::milliseconds(close_timeout_ms_), [&] { return !close_in_flight(connection); });
    }

    // ---------------------------------------------------------------- progress

    void wake() {
        const uint64_t one = 1;
        [[maybe_unused]] const ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
    }

    // Reads what the peer said on a connection's socket. mutex_ held.
    void read_control(Connection& connection) {
        while (!connection.control_done) {
            const ssize_t got = ::recv(connection.control.get(), connection.bye_buffer + connection.bye_bytes,
                                       sizeof(Bye) - connection.bye_bytes, 0);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                connection.control_done = true;
                if (!connection.peer_closed)
                    fail(connection, PANGEA_ERR_PEER_LOST,
                         got == 0 ? "the peer closed the connection without a goodbye (it aborted or died)"
                                  : "receive: " + system_error_text(errno));
                return;
            }
            connection.bye_bytes += static_cast<size_t>(got);
            if (connection.bye_bytes < sizeof(Bye)) continue;
            Bye bye;
            std::memcpy(&bye, connection.bye_buffer, sizeof bye);
            if (std::memcmp(bye.magic, "PGUB", 4) != 0 || connection.peer_closed) {
                connection.control_done = true;
                fail(connection, PANGEA_ERR_CORRUPT, "garbage on the control socket");
                return;
            }
            on_bye(connection, bye.messages_sent);
        }
    }

    // The peer closed in order after sending `sent` messages: receives beyond them can never
    // complete; the ones before may still be on their way.
    void on_bye(Connection& connection, uint64_t sent) {
        connection.peer_closed = true;
        connection.peer_sent = sent;
        const std::string why = "ucx: connection to " + connection.peer + ": the peer closed the connection";
        std::vector<std::shared_ptr<Op>> doomed;
        for (auto& [raw, op] : connection.pending)
            if (!op->is_send && op->sequence >= sent) doomed.push_back(op);
        for (auto& op : doomed) {
            op->forced = PANGEA_ERR_PEER_LOST;
            op->error = why;
            if (op->request != nullptr) ucp_request_cancel(worker_.get(), op->request);
        }
    }

    void progress_loop() {
        std::vector<pollfd> fds;
        std::vector<Connection*> polled;
        while (true) {
            bool armed = false;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (stop_) return;
                // A bounded batch: a long transfer must not keep other threads off the mutex.
                bool busy = false;
                for (int k = 0; k < 64 && (busy = ucp_worker_progress(worker_.get()) != 0); ++k) {
                }
                // Failures found inside callbacks, handled now that UCX may be called again.
                for (auto& [handle, connection] : connections_) {
                    if (!connection->corrupt.empty() && !connection->failed)
                        fail(*connection, PANGEA_ERR_CORRUPT, connection->corrupt);
                }
                done_cv_.notify_all();
                // Sleep only once the worker is armed; otherwise just glance at the sockets.
                armed = !busy && ucp_worker_arm(worker_.get()) == UCS_OK;
                fds.assign({pollfd{worker_fd_, POLLIN, 0}, pollfd{wake_.get(), POLLIN, 0}});
                polled.clear();
                for (auto& [handle, connection] : connections_) {
                    if (connection->control_done || connection->closing || connection->failed) continue;
                    fds.push_back(pollfd{connection->control.get(), POLLIN, 0});
                    polled.push_back(connection.get());
                }
            }
            // The timeout is only a safety net: the worker fd and the wake fd end the sleep.
            if (::poll(fds.data(), fds.size(), armed ? 100 : 0) <= 0) continue;
            if (fds[1].revents != 0) {
                uint64_t count = 0;
                [[maybe_unused]] const ssize_t ignored = ::read(wake_.get(), &count, sizeof count);
            }
            std::lock_guard<std::mutex> lock(mutex_);
            for (size_t k = 2; k < fds.size(); ++k) {
                if (fds[k].revents == 0) continue;
                // The connection may have been closed while we polled: look it up again.
                const auto found = connections_.find(reinterpret_cast<pangea_connection*>(polled[k - 2]));
                if (found == connections_.end() || found->second->closing) continue;
                read_control(*found->second);
            }
        }
    }

    pangea::sdk::Host host_;
    int handshake_timeout_ms_;
    int close_timeout_ms_;
    uint64_t max_message_;

    ContextPtr context_;
    WorkerPtr worker_;  // after context_: destroyed first
    int worker_fd_ = -1;
    Fd wake_;

    // With locks of their own (a call holds its listener or request while it runs).
    pangea::transport::HandleTable<pangea_listener, Listener> listeners_{kWho, "listener"};
    pangea::transport::HandleTable<pangea_request, Op> requests_{kWho, "or already completed request"};

    std::mutex mutex_;  // guards everything below and every call into the worker
    std::condition_variable done_cv_;
    bool stop_ = false;
    uint32_t next_connection_id_ = 1;
    std::set<uint32_t> used_ids_;
    // Not a shared HandleTable: UCX's callbacks edit connections inside progress, so every use,
    // abort() and close() included, is under mutex_, and only close() erases one (once: closing).
    std::map<pangea_connection*, std::unique_ptr<Connection>> connections_;
    std::vector<std::unique_ptr<Connection>> graveyard_;
    std::thread progress_thread_;  // last: started once everything above exists
};

}  // namespace
}  // namespace pangea::ucx

PANGEA_EXPORT_PLUGINS(pangea::ucx::UcxTransport)
