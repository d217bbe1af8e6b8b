// transport/gloo: Pangea's transport ABI on Gloo's TCP transport.
//
// Gloo pairs are normally wired up for a whole group through a rendezvous store; Pangea's ABI is
// point-to-point. So listen/accept/connect and the hello exchange run over a plain TCP socket,
// which also carries the Gloo pair addresses. Each Pangea connection then owns its own Gloo
// device, a 2-rank context and one pair (acceptor rank 0, connector rank 1); the socket is closed
// once the pair is up.
//
// Every message is a fixed 16-byte header (magic, length) on one slot, then the payload on
// another. Gloo matches messages per slot in order, and the receiver posts the payload receive
// with exactly the announced length: a length mismatch becomes PANGEA_ERR_CORRUPT here instead of
// an enforce failure inside Gloo's event loop.
//
// One sender and one receiver thread per connection drive Gloo and block in its waitSend /
// waitRecv. Pangea's own timeouts never reach Gloo: a Gloo wait that times out poisons the whole
// context. abort() closes the pair (after which Gloo touches no buffer) and then wakes the
// threads with abortWaitSend / abortWaitRecv; a request completes only once its thread is out of
// the caller's buffer.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/transport/context.h>
#include <gloo/transport/device.h>
#include <gloo/transport/pair.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

#include "../shared/socket.hpp"
#include "pangea/sdk.hpp"

namespace pangea::gloo_transport {
namespace {

using pangea::sdk::Error;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kProtocolVersion = 1;
constexpr uint32_t kHelloRequest = 0, kHelloAccepted = 1, kHelloWrongRun = 2;
constexpr uint32_t kMaxAddressBytes = 4096;  // a Gloo tcp address is ~150 bytes
constexpr uint64_t kHeaderSlot = 1, kDataSlot = 2;
// Gloo's own waits get a timeout that never fires in practice: Pangea's waits time out above it.
constexpr auto kGlooForever = std::chrono::hours(24 * 365);

// The handshake on the plain TCP socket, followed by `address_bytes` of Gloo pair address.
struct WireHello {
    char magic[4];
    uint32_t version;
    uint32_t status;
    uint32_t node_id;
    uint32_t channel;
    uint32_t address_bytes;
    uint64_t run_id;
};
static_assert(sizeof(WireHello) == 32);

// Precedes every message on the Gloo pair.
struct MessageHeader {
    char magic[8];
    uint64_t bytes;
};
static_assert(sizeof(MessageHeader) == 16);

using pangea::transport::Deadline;
using pangea::transport::Fd;
using pangea::transport::system_error_text;

// "host:port" or "[v6]:port" to a socket address.
sockaddr_storage resolve(const std::string& address, socklen_t* length) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon + 1 == address.size())
        throw Error(PANGEA_ERR_INVALID_ARGUMENT, "gloo: address '" + address + "' is not host:port");
    std::string host = address.substr(0, colon);
    const std::string port = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = host.empty() ? AI_PASSIVE : 0;
    addrinfo* found = nullptr;
    const int error = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
    if (error != 0 || found == nullptr)
        throw Error(PANGEA_ERR_INVALID_ARGUMENT, "gloo: cannot resolve '" + address + "': " + ::gai_strerror(error));
    sockaddr_storage out{};
    std::memcpy(&out, found->ai_addr, found->ai_addrlen);
    *length = found->ai_addrlen;
    ::freeaddrinfo(found);
    return out;
}

std::string host_of(const sockaddr_storage& a) {
    char text[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, text, sizeof text);
    else
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, text, sizeof text);
    return text;
}

std::string format_address(const sockaddr_storage& a) {
    const uint16_t port = ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(a).sin6_port
                                                        : reinterpret_cast<const sockaddr_in&>(a).sin_port);
    const std::string host = host_of(a);
    return (a.ss_family == AF_INET6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string peer_of(int fd) {
    sockaddr_storage a{};
    socklen_t length = sizeof a;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &length) != 0) return "?";
    return format_address(a);
}

std::string local_host_of(int fd) {
    sockaddr_storage a{};
    socklen_t length = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) != 0)
        throw Error(PANGEA_ERR_IO, "gloo: getsockname: " + system_error_text(errno));
    return host_of(a);
}

// Waits until fd is ready for `events`; PANGEA_ERR_TIMEOUT when the deadline passes first.
void wait_ready(int fd, short events, const Deadline& deadline, const char* what) {
    while (true) {
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, deadline.remaining_ms());
        if (n > 0) return;
        if (n == 0) throw Error(PANGEA_ERR_TIMEOUT, std::string("gloo: timed out ") + what);
        if (errno != EINTR) throw Error(PANGEA_ERR_IO, std::string("gloo: poll: ") + system_error_text(errno));
    }
}

void read_exact(int fd, void* data, size_t bytes, const Deadline& deadline, const char* what) {
    auto* p = static_cast<uint8_t*>(data);
    while (bytes > 0) {
        wait_ready(fd, POLLIN, deadline, what);
        const ssize_t n = ::recv(fd, p, bytes, MSG_DONTWAIT);
        if (n == 0) throw Error(PANGEA_ERR_PEER_LOST, std::string("gloo: the peer closed the socket while ") + what);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            throw Error(PANGEA_ERR_PEER_LOST, std::string("gloo: ") + what + ": " + system_error_text(errno));
        }
        p += n;
        bytes -= static_cast<size_t>(n);
    }
}

void write_exact(int fd, const void* data, size_t bytes, const Deadline& deadline, const char* what) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (bytes > 0) {
        wait_ready(fd, POLLOUT, deadline, what);
        const ssize_t n = ::send(fd, p, bytes, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            throw Error(PANGEA_ERR_PEER_LOST, std::string("gloo: ") + what + ": " + system_error_text(errno));
        }
        p += n;
        bytes -= static_cast<size_t>(n);
    }
}

// A connected socket to `address`, retrying refusals until the deadline (the peer may not listen
// yet).
Fd connect_to(const std::string& address, const Deadline& deadline) {
    socklen_t length = 0;
    const sockaddr_storage target = resolve(address, &length);
    while (true) {
        Fd fd(::socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd) throw Error(PANGEA_ERR_IO, "gloo: socket: " + system_error_text(errno));
        int error = 0;
        if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&target), length) != 0) {
            error = errno;
            if (error == EINPROGRESS) {
                wait_ready(fd.get(), POLLOUT, deadline, ("connecting to " + address).c_str());
                socklen_t size = sizeof error;
                ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size);
            }
        }
        if (error == 0) {
            const int one = 1;
            ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        if ((error != ECONNREFUSED && error != ETIMEDOUT) || deadline.passed())
            throw Error(error == ECONNREFUSED ? PANGEA_ERR_PEER_LOST : PANGEA_ERR_IO,
                        "gloo: connect " + address + ": " + system_error_text(error));
        std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp(deadline.remaining_ms(), 0, 50)));
    }
}

struct Settings {
    std::string hostname;
    std::string interface;
    int handshake_timeout_ms;
    uint64_t max_message;
};

// One isend or irecv. Completed by its connection's thread, waited on by the caller.
class Op {
public:
    Op(uint8_t* data, uint64_t bytes) : data_(data), bytes_(bytes) {}
    uint8_t* data() const { return data_; }
    uint64_t bytes() const { return bytes_; }

    void finish(pangea_status status, const std::string& why) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (done_) return;
        done_ = true;
        status_ = status;
        error_ = why;
        cv_.notify_all();
    }
    // PANGEA_ERR_TIMEOUT while pending; else the final status.
    pangea_status wait(int timeout_ms, std::string* error) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (timeout_ms < 0)
            cv_.wait(lock, [&] { return done_; });
        else if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return done_; }))
            return PANGEA_ERR_TIMEOUT;
        *error = error_;
        return status_;
    }

private:
    uint8_t* data_;
    uint64_t bytes_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool done_ = false;
    pangea_status status_ = PANGEA_OK;
    std::string error_;
};

// Gloo's device, context and pair for one peer.
struct GlooLink {
    std::shared_ptr<gloo::transport::Device> device;
    std::shared_ptr<gloo::transport::Context> context;
    gloo::transport::Pair* pair = nullptr;  // owned by context
    int peer_rank = 0;

    GlooLink(const Settings& settings, const std::string& local_host, int rank, int timeout_ms) {
        gloo::transport::tcp::attr attr;
        if (!settings.interface.empty())
            attr.iface = settings.interface;
        else
            attr.hostname = settings.hostname.empty() ? local_host : settings.hostname;
        device = gloo::transport::tcp::CreateDevice(attr);
        context = device->createContext(rank, 2);
        context->setTimeout(std::chrono::milliseconds(timeout_ms));
        peer_rank = 1 - rank;
        pair = context->createPair(peer_rank).get();
    }
    std::vector<char> address() const { return pair->address().bytes(); }
};

// Maps what Gloo throws to a status; IoException is what a lost peer looks like.
template <class F>
void gloo_call(const char* what, F&& f) {
    try {
        f();
    } catch (const Error&) {
        throw;
    } catch (const gloo::IoException& e) {
        throw Error(PANGEA_ERR_PEER_LOST, std::string("gloo: ") + what + ": " + e.what());
    } catch (const std::exception& e) {
        throw Error(PANGEA_ERR_IO, std::string("gloo: ") + what + ": " + e.what());
    }
}

class Connection {
public:
    Connection(std::unique_ptr<GlooLink> link, std::string peer, const pangea::sdk::Host& host)
        : link_(std::move(link)), peer_(std::move(peer)), host_(host) {
        sender_ = std::thread([this] { send_loop(); });
        receiver_ = std::thread([this] { receive_loop(); });
    }

    ~Connection() {
        fail(PANGEA_ERR_ABORTED, "the connection was closed");
        sender_.join();
        receiver_.join();
        link_.reset();  // pair, context, then the device and its event loop
    }

    std::shared_ptr<Op> post(bool send, const void* data, uint64_t bytes) {
        auto op = std::make_shared<Op>(static_cast<uint8_t*>(const_cast<void*>(data)), bytes);
        std::lock_guard<std::mutex> lock(mutex_);
        if (failed_) {
            op->finish(failure_, failure_text_);
            return op;
        }
        (send ? sends_ : receives_).push_back(op);
        cv_.notify_all();
        return op;
    }

    // Fails every pending and future operation with `status`, stops Gloo's IO and wakes the
    // threads. Ops a thread holds are finished by that thread once it is out of their buffer.
    void fail(pangea_status status, const std::string& why) {
        std::deque<std::shared_ptr<Op>> pending;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (failed_) return;
            failed_ = true;
            failure_ = status;
            failure_text_ = "gloo: connection to " + peer_ + ": " + why;
            if (status != PANGEA_ERR_ABORTED)
                host_.log(status == PANGEA_ERR_PEER_LOST ? PANGEA_LOG_INFO : PANGEA_LOG_WARN, failure_text_);
            // Closing first: once close() returns, Gloo's loop no longer reads into or writes
            // from any buffer of this pair, so waking the threads cannot race with IO.
            try {
                link_->pair->close();
            } catch (const std::exception& e) {
                host_.log(PANGEA_LOG_WARN, "gloo: closing the pair to " + peer_ + ": " + e.what());
            }
            for (auto* buffer : active_sends_) buffer->abortWaitSend();
            for (auto* buffer : active_receives_) buffer->abortWaitRecv();
            pending = std::move(sends_);
            for (auto& op : receives_) pending.push_back(op);
            sends_.clear();
            receives_.clear();
            cv_.notify_all();
        }
        for (auto& op : pending) op->finish(status, failure_text_);
    }

private:
    // Takes the next op of `queue`, or nullptr once the connection failed.
    std::shared_ptr<Op> next(std::deque<std::shared_ptr<Op>>& queue) {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return failed_ || !queue.empty(); });
        if (failed_) return nullptr;
        auto op = std::move(queue.front());
        queue.pop_front();
        return op;
    }

    // Makes a Gloo buffer that abort() can wake; false if the connection already failed.
    std::unique_ptr<gloo::transport::UnboundBuffer> track(std::vector<gloo::transport::UnboundBuffer*>& active,
                                                          void* data, size_t bytes) {
        auto buffer = link_->context->createUnboundBuffer(data, bytes);
        std::lock_guard<std::mutex> lock(mutex_);
        if (failed_) throw Error(failure_, failure_text_);
        active.push_back(buffer.get());
        return buffer;
    }
    void untrack(std::vector<gloo::transport::UnboundBuffer*>& active) {
        std::lock_guard<std::mutex> lock(mutex_);
        active.clear();
    }

    // The op's final status after a failure seen by a thread: the connection's first failure.
    void finish_failed(Op& op, pangea_status status, const std::string& why) {
        fail(status, why);
        std::lock_guard<std::mutex> lock(mutex_);
        op.finish(failure_, failure_text_);
    }

    void send_loop() {
        while (auto op = next(sends_)) {
            MessageHeader header{};
            std::memcpy(header.magic, "PGGLOOM1", 8);
            header.bytes = op->bytes();
            std::unique_ptr<gloo::transport::UnboundBuffer> head, body;
            try {
                gloo_call("send", [&] {
                    head = track(active_sends_, &header, sizeof header);
                    if (op->bytes() > 0) body = track(active_sends_, op->data(), op->bytes());
                    head->send(link_->peer_rank, kHeaderSlot, 0, sizeof header);
                    if (body) body->send(link_->peer_rank, kDataSlot, 0, op->bytes());
                    int rank = 0;
                    if (!head->waitSend(&rank, kGlooForever) || (body && !body->waitSend(&rank, kGlooForever)))
                        throw Error(PANGEA_ERR_ABORTED, "aborted");
                });
                untrack(active_sends_);
                op->finish(PANGEA_OK, "");
            } catch (const Error& e) {
                untrack(active_sends_);
                finish_failed(*op, e.status(), e.what());
            }
            // head and body go here, after the pair is closed or the send is complete.
        }
    }

    void receive_loop() {
        while (auto op = next(receives_)) {
            MessageHeader header{};
            std::unique_ptr<gloo::transport::UnboundBuffer> head, body;
            try {
                gloo_call("receive", [&] {
                    int rank = 0;
                    head = track(active_receives_, &header, sizeof header);
                    head->recv(link_->peer_rank, kHeaderSlot, 0, sizeof header);
                    if (!head->waitRecv(&rank, kGlooForever)) throw Error(PANGEA_ERR_ABORTED, "aborted");
                    if (std::memcmp(header.magic, "PGGLOOM1", 8) != 0)
                        throw Error(PANGEA_ERR_CORRUPT, "bad message header (garbage on the pair?)");
                    if (header.bytes != op->bytes())
                        throw Error(PANGEA_ERR_CORRUPT, "a message of " + std::to_string(header.bytes) +
                                                            " bytes arrived for a receive of " +
                                                            std::to_string(op->bytes()));
                    if (op->bytes() == 0) return;
                    body = track(active_receives_, op->data(), op->bytes());
                    body->recv(link_->peer_rank, kDataSlot, 0, op->bytes());
                    if (!body->waitRecv(&rank, kGlooForever)) throw Error(PANGEA_ERR_ABORTED, "aborted");
                });
                untrack(active_receives_);
                op->finish(PANGEA_OK, "");
            } catch (const Error& e) {
                untrack(active_receives_);
                finish_failed(*op, e.status(), e.what());
            }
        }
    }

    std::unique_ptr<GlooLink> link_;
    std::string peer_;
    pangea::sdk::Host host_;

    std::mutex mutex_;
    std::condition_variable cv_;
    bool failed_ = false;
    pangea_status failure_ = PANGEA_OK;
    std::string failure_text_;
    std::deque<std::shared_ptr<Op>> sends_, receives_;
    std::vector<gloo::transport::UnboundBuffer*> active_sends_, active_receives_;  // what abort wakes
    std::thread sender_, receiver_;  // last: started once everything above exists
};

struct Listener {
    Fd fd;
    std::string bound;
    std::mutex mutex;  // one accept() at a time
};

struct RequestHandle {
    std::shared_ptr<Op> op;
};

WireHello make_hello(const pangea_hello& self, uint32_t status, size_t address_bytes) {
    WireHello hello{};
    std::memcpy(hello.magic, "PGGH", 4);
    hello.version = kProtocolVersion;
    hello.status = status;
    hello.node_id = self.node_id;
    hello.channel = self.channel;
    hello.address_bytes = static_cast<uint32_t>(address_bytes);
    hello.run_id = self.run_id;
    return hello;
}

std::string check_hello(const WireHello& h) {
    if (std::memcmp(h.magic, "PGGH", 4) != 0) return "not a Pangea gloo handshake (bad magic)";
    if (h.version != kProtocolVersion)
        return "handshake version " + std::to_string(h.version) + ", this side speaks " + std::to_string(kProtocolVersion);
    if (h.status > kHelloWrongRun) return "unknown handshake status " + std::to_string(h.status);
    if (h.address_bytes > kMaxAddressBytes) return "a Gloo address of " + std::to_string(h.address_bytes) + " bytes";
    return "";
}

pangea_hello to_api(const WireHello& hello) {
    pangea_hello out{};
    out.struct_size = sizeof out;
    out.node_id = hello.node_id;
    out.run_id = hello.run_id;
    out.channel = hello.channel;
    return out;
}

void send_hello(int fd, const WireHello& hello, const std::vector<char>& address, const Deadline& deadline) {
    write_exact(fd, &hello, sizeof hello, deadline, "sending the handshake");
    if (!address.empty()) write_exact(fd, address.data(), address.size(), deadline, "sending the Gloo address");
}

// Reads and checks a handshake; throws PANGEA_ERR_CORRUPT for garbage.
WireHello read_hello(int fd, std::vector<char>* address, const Deadline& deadline) {
    WireHello hello{};
    read_exact(fd, &hello, sizeof hello, deadline, "reading the handshake");
    if (const std::string bad = check_hello(hello); !bad.empty()) throw Error(PANGEA_ERR_CORRUPT, "gloo: " + bad);
    address->resize(hello.address_bytes);
    if (hello.address_bytes > 0) read_exact(fd, address->data(), address->size(), deadline, "reading the Gloo address");
    return hello;
}

void check_self(const pangea_hello& self) {
    if (self.struct_size < sizeof(pangea_hello))
        throw Error(PANGEA_ERR_INVALID_ARGUMENT, "gloo: pangea_hello.struct_size is too small");
}

class GlooTransport final : public pangea::sdk::Transport {
public:
    static constexpr const char* name = "gloo";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "Gloo's TCP transport (one Gloo pair per connection), set up over a plain TCP handshake";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            string_setting("hostname", "",
                           "address Gloo's pair listens on (\"\": the local address of the handshake socket)"),
            string_setting("interface", "", "network interface for Gloo's pair, e.g. eth0 (overrides hostname)"),
            int_setting("handshake_timeout_ms", "10000",
                        "how long a handshake, and the Gloo pair's connection, may take", 10, 600000),
            int_setting("max_message", "17179869184", "largest message accepted, in bytes", 1, 1099511627776.0),
        };
    }

    explicit GlooTransport(const pangea::sdk::Host& host)
        : host_(host),
          settings_{host.get_string("hostname"), host.get_string("interface"),
                    static_cast<int>(host.get_int("handshake_timeout_ms")),
                    static_cast<uint64_t>(host.get_int("max_message"))} {}

    ~GlooTransport() override {
        // Handles the caller did not release: close them so no thread outlives the instance.
        connections_.clear();
        listeners_.clear();
    }

    pangea_listener* listen(const char* address, char* bound, size_t capacity) override {
        socklen_t length = 0;
        const sockaddr_storage local = resolve(address, &length);
        Fd fd(::socket(local.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd) throw Error(PANGEA_ERR_IO, "gloo: socket: " + system_error_text(errno));
        const int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), length) != 0)
            throw Error(PANGEA_ERR_IO, std::string("gloo: bind ") + address + ": " + system_error_text(errno));
        if (::listen(fd.get(), 128) != 0)
            throw Error(PANGEA_ERR_IO, std::string("gloo: listen ") + address + ": " + system_error_text(errno));
        sockaddr_storage actual{};
        socklen_t actual_length = sizeof actual;
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&actual), &actual_length);
        auto listener = std::make_unique<Listener>();
        listener->fd = std::move(fd);
        listener->bound = format_address(actual);
        if (bound != nullptr) {
            if (capacity <= listener->bound.size())
                throw Error(PANGEA_ERR_CAPACITY, "gloo: the bound address " + listener->bound + " needs " +
                                                     std::to_string(listener->bound.size() + 1) + " bytes");
            std::memcpy(bound, listener->bound.c_str(), listener->bound.size() + 1);
        }
        auto* handle = reinterpret_cast<pangea_listener*>(listener.get());
        std::lock_guard<std::mutex> lock(mutex_);
        listeners_[handle] = std::move(listener);
        return handle;
    }

    pangea_connection* accept(pangea_listener* handle, const pangea_hello& self, int timeout_ms,
                              pangea_hello* peer) override {
        check_self(self);
        Listener& listener = find(listeners_, handle, "listener");
        std::lock_guard<std::mutex> accepting(listener.mutex);
        const Deadline deadline(timeout_ms);
        while (true) {
            try {
                wait_ready(listener.fd.get(), POLLIN, deadline, "waiting for a connection");
            } catch (const Error& e) {
                if (e.status() != PANGEA_ERR_TIMEOUT) throw;
                throw Error(PANGEA_ERR_TIMEOUT, "gloo: no connection arrived at " + listener.bound + " within " +
                                                    std::to_string(timeout_ms) + " ms");
            }
            Fd socket(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!socket) continue;  // the client gave up already
            const std::string from = peer_of(socket.get());
            // A bad or slow client costs at most one handshake timeout, and is dropped.
            try {
                if (auto* connection = answer(socket.get(), from, self, peer)) return connection;
            } catch (const Error& e) {
                host_.log(PANGEA_LOG_WARN, "gloo: dropped a connection from " + from + ": " + e.what());
            }
        }
    }

    pangea_connection* connect(const char* address, const pangea_hello& self, int timeout_ms,
                               pangea_hello* peer) override {
        check_self(self);
        const Deadline deadline(timeout_ms);
        Fd socket = connect_to(address, deadline);
        const Deadline handshake = deadline.capped(settings_.handshake_timeout_ms);
        auto link = make_link(local_host_of(socket.get()), 1, handshake);
        std::vector<char> own_address;
        gloo_call("pair address", [&] { own_address = link->address(); });
        send_hello(socket.get(), make_hello(self, kHelloRequest, own_address.size()), own_address, handshake);
        std::vector<char> peer_address;
        const WireHello answer = read_hello(socket.get(), &peer_address, handshake);
        if (answer.status == kHelloWrongRun)
            throw Error(PANGEA_ERR_CONFIG, std::string("gloo: ") + address + " refused the connection: it belongs to another run");
        if (answer.status != kHelloAccepted || peer_address.empty())
            throw Error(PANGEA_ERR_CORRUPT, std::string("gloo: ") + address + " refused the handshake");
        gloo_call("connecting the pair", [&] { link->pair->connect(peer_address); });
        *peer = to_api(answer);
        return add_connection(std::move(link), address);
    }

    pangea_request* isend(pangea_connection* handle, const void* data, size_t bytes) override {
        check_size(bytes);
        return wrap(find(connections_, handle, "connection").post(true, data, bytes));
    }

    pangea_request* irecv(pangea_connection* handle, void* data, size_t bytes) override {
        check_size(bytes);
        return wrap(find(connections_, handle, "connection").post(false, data, bytes));
    }

    pangea_status test(pangea_request* request) override { return wait(request, 0); }

    pangea_status wait(pangea_request* request, int timeout_ms) override {
        std::shared_ptr<Op> op;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto found = requests_.find(request);
            if (found == requests_.end())
                throw Error(PANGEA_ERR_INVALID_ARGUMENT, "gloo: unknown or already completed request");
            op = found->second->op;
        }
        std::string error;
        const pangea_status status = op->wait(timeout_ms, &error);
        if (status == PANGEA_ERR_TIMEOUT) return timeout_ms == 0 ? PANGEA_ERR_AGAIN : PANGEA_ERR_TIMEOUT;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            requests_.erase(request);
        }
        // Nothing below may throw: the request is released.
        if (status != PANGEA_OK) set_last_error(error.c_str());
        return status;
    }

    void abort(pangea_connection* handle) noexcept override {
        Connection* connection = nullptr;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto found = connections_.find(handle);
            if (found != connections_.end()) connection = found->second.get();
        }
        if (connection != nullptr) connection->fail(PANGEA_ERR_ABORTED, "aborted");
    }

    void close(pangea_connection* handle) noexcept override {
        std::unique_ptr<Connection> doomed;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto found = connections_.find(handle);
            if (found == connections_.end()) return;
            doomed = std::move(found->second);
            connections_.erase(found);
        }
        doomed.reset();  // joins its threads outside the lock
    }

    void close_listener(pangea_listener* handle) noexcept override {
        std::lock_guard<std::mutex> lock(mutex_);
        listeners_.erase(handle);
    }

private:
    template <class Handle, class Object>
    Object& find(std::map<Handle*, std::unique_ptr<Object>>& table, Handle* handle, const char* what) {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = table.find(handle);
        if (found == table.end()) throw Error(PANGEA_ERR_INVALID_ARGUMENT, std::string("gloo: unknown ") + what + " handle");
        return *found->second;
    }

    void check_size(size_t bytes) const {
        if (bytes > settings_.max_message)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "gloo: message of " + std::to_string(bytes) +
                                                         " bytes exceeds max_message " + std::to_string(settings_.max_message));
    }

    std::unique_ptr<GlooLink> make_link(const std::string& local_host, int rank, const Deadline& deadline) {
        std::unique_ptr<GlooLink> link;
        const int timeout = std::max(deadline.remaining_ms(), 1);
        gloo_call("creating the pair", [&] { link = std::make_unique<GlooLink>(settings_, local_host, rank, timeout); });
        return link;
    }

    // Handles one incoming socket: a connection, nullptr when it was refused (another run).
    pangea_connection* answer(int socket, const std::string& from, const pangea_hello& self, pangea_hello* peer) {
        const Deadline handshake(settings_.handshake_timeout_ms);
        std::vector<char> peer_address;
        const WireHello hello = read_hello(socket, &peer_address, handshake);
        if (hello.status != kHelloRequest || peer_address.empty())
            throw Error(PANGEA_ERR_CORRUPT, "gloo: unexpected handshake status");
        if (hello.run_id != self.run_id) {
            send_hello(socket, make_hello(self, kHelloWrongRun, 0), {}, handshake);
            host_.log(PANGEA_LOG_WARN, "gloo: refused a connection from " + from + " (node " +
                                           std::to_string(hello.node_id) + "): it belongs to another run");
            return nullptr;
        }
        auto link = make_link(local_host_of(socket), 0, handshake);
        std::vector<char> own_address;
        gloo_call("pair address", [&] { own_address = link->address(); });
        send_hello(socket, make_hello(self, kHelloAccepted, own_address.size()), own_address, handshake);
        gloo_call("connecting the pair", [&] { link->pair->connect(peer_address); });
        *peer = to_api(hello);
        return add_connection(std::move(link), from);
    }

    pangea_request* wrap(std::shared_ptr<Op> op) {
        auto request = std::make_unique<RequestHandle>(RequestHandle{std::move(op)});
        auto* handle = reinterpret_cast<pangea_request*>(request.get());
        std::lock_guard<std::mutex> lock(mutex_);
        requests_[handle] = std::move(request);
        return handle;
    }

    pangea_connection* add_connection(std::unique_ptr<GlooLink> link, const std::string& peer) {
        auto connection = std::make_unique<Connection>(std::move(link), peer, host_);
        auto* handle = reinterpret_cast<pangea_connection*>(connection.get());
        std::lock_guard<std::mutex> lock(mutex_);
        connections_[handle] = std::move(connection);
        return handle;
    }

    pangea::sdk::Host host_;
    Settings settings_;
    std::mutex mutex_;
    std::map<pangea_listener*, std::unique_ptr<Listener>> listeners_;
    std::map<pangea_connection*, std::unique_ptr<Connection>> connections_;
    std::map<pangea_request*, std::unique_ptr<RequestHandle>> requests_;
};

}  // namespace
}  // namespace pangea::gloo_transport

PANGEA_EXPORT_PLUGINS(pangea::gloo_transport::GlooTransport)
