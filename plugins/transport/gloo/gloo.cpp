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
//
// Where Gloo falls short, the plugin watches each pair's socket itself (PairSocket): close()
// waits until the peer has acknowledged every byte sent (Gloo's close resets the connection and
// would drop them), and a watcher thread fails a connection whose socket Gloo closed (a peer
// gone), since Gloo wakes neither a receive it is reading into nor queued sends. SIGPIPE is
// blocked in every thread that writes through Gloo.
//
// With allreduce = "gloo" the instance also offers the optional slot allreduce_sum_f32: Gloo's
// ring all-reduce over pairs of its own, set up through the caller's two ring connections (see
// "Gloo's own ring all-reduce" below).
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gloo/allreduce.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/context.h>
#include <gloo/math.h>
#include <gloo/transport/context.h>
#include <gloo/transport/device.h>
#include <gloo/transport/pair.h>
#include <gloo/transport/tcp/address.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

#include "../shared/handles.hpp"
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

constexpr const char* kWho = "gloo";  // starts every error text

using pangea::transport::Deadline;
using pangea::transport::Fd;
using pangea::transport::format_address;
using pangea::transport::Greetings;
using pangea::transport::ListeningSocket;
using pangea::transport::no_connection;
using pangea::transport::peer_of;
using pangea::transport::system_error_text;

// "host:port" or "[v6]:port" to a socket address; unlike the shared resolve(), an empty host
// (":port") means any local address, as the `interface`/`hostname` settings may leave it.
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

std::string local_host_of(int fd) {
    sockaddr_storage a{};
    socklen_t length = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) != 0)
        throw Error(PANGEA_ERR_IO, "gloo: getsockname: " + system_error_text(errno));
    return host_of(a);
}

// The handshake's waits, reads and writes, with this transport's name in their errors.
void wait_ready(int fd, short events, const Deadline& deadline, const std::string& what) {
    pangea::transport::wait_ready(kWho, fd, events, deadline, what);
}
void read_exact(int fd, void* data, size_t bytes, const Deadline& deadline, const std::string& what) {
    pangea::transport::read_exact(kWho, fd, data, bytes, deadline, what);
}
void write_exact(int fd, const void* data, size_t bytes, const Deadline& deadline, const std::string& what) {
    pangea::transport::write_exact(kWho, fd, data, bytes, deadline, what);
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
                wait_ready(fd.get(), POLLOUT, deadline, "connecting to " + address);
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
    int close_timeout_ms;
    uint64_t max_message;
    bool gloo_allreduce;  // allreduce = "gloo": allreduce_sum_f32 runs Gloo's ring all-reduce
};

// What Gloo's TCP pair does not say through its interface. Gloo completes a send once its bytes
// are in the kernel's socket buffer (which it sizes to the message, up to 32 MiB), and
// Pair::close() resets the connection (SO_LINGER 0), which drops what the kernel has not
// delivered yet: on a slow link, the last messages before a close were lost. And a pair that fails
// (the peer reset or closed the connection) wakes neither the receive it was reading into nor
// unbound sends in its queue. So the plugin watches the pair's socket itself: its unacknowledged
// bytes before a close, and whether Gloo has closed it (which Gloo does on every failure, after
// reading what had arrived). The socket is found once, after the pair connected, by its local
// address (unique: the pair's own listening port, or an ephemeral one); every later look checks
// that the descriptor still names that socket, so a number Gloo closed and the system reused is
// never mistaken for it.
class PairSocket {
public:
    PairSocket() = default;
    explicit PairSocket(const gloo::transport::Address& address) {
        const auto* tcp = dynamic_cast<const gloo::transport::tcp::Address*>(&address);
        if (tcp == nullptr) return;
        local_ = tcp->getSockaddr();
        // Not found (no /proc): no drain before close, no watch; Gloo's own behaviour remains.
        std::error_code error;
        for (std::filesystem::directory_iterator it("/proc/self/fd", error), end; !error && it != end; it.increment(error)) {
            const std::string name = it->path().filename().string();
            if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
            const int fd = std::atoi(name.c_str());
            sockaddr_storage peer{};
            if (same_local(fd) && peer_of(fd, &peer)) {
                fd_ = fd;
                peer_ = peer;
                return;
            }
        }
    }
    bool found() const { return fd_ >= 0; }

    // Whether the descriptor still is the pair's connected socket (Gloo closes it on failure).
    bool open() const {
        sockaddr_storage peer{};
        return fd_ >= 0 && same_local(fd_) && peer_of(fd_, &peer) && same(peer, peer_);
    }
    // Ends the connection under Gloo (its loop then fails the pair and what waits on it).
    void shut_down() const {
        if (open()) ::shutdown(fd_, SHUT_RDWR);
    }
    // Bytes written to the socket that the peer's kernel has not acknowledged yet.
    size_t unacknowledged() const {
        int queued = 0;
        if (!open() || ::ioctl(fd_, SIOCOUTQ, &queued) != 0 || queued < 0) return 0;
        return static_cast<size_t>(queued);
    }

private:
    static bool same(const sockaddr_storage& a, const sockaddr_storage& b) {
        if (a.ss_family != b.ss_family) return false;
        if (a.ss_family == AF_INET) {
            const auto& x = reinterpret_cast<const sockaddr_in&>(a);
            const auto& y = reinterpret_cast<const sockaddr_in&>(b);
            return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
        }
        if (a.ss_family == AF_INET6) {
            const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
            const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
            return x.sin6_port == y.sin6_port && std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
        }
        return false;
    }
    bool same_local(int fd) const {
        sockaddr_storage a{};
        socklen_t length = sizeof a;
        return ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) == 0 && same(a, local_);
    }
    static bool peer_of(int fd, sockaddr_storage* out) {
        socklen_t length = sizeof *out;
        return ::getpeername(fd, reinterpret_cast<sockaddr*>(out), &length) == 0;
    }

    int fd_ = -1;  // owned by Gloo's pair
    sockaddr_storage local_{}, peer_{};
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

// Gloo writes to its sockets with writev(), without MSG_NOSIGNAL: a write after the peer reset
// raises SIGPIPE, which kills the process. So every thread that may write through Gloo blocks
// SIGPIPE (the write then fails with EPIPE, which Gloo handles as a lost peer): the plugin's own
// threads from their start, and Gloo's event-loop thread, which inherits the signal mask of the
// thread that creates its device (create_device).
void block_sigpipe(sigset_t* old = nullptr) {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, old);
}

// A Gloo TCP device whose pairs listen on the configured interface or host, else on
// `local_host` (the local address that reached the peer).
std::shared_ptr<gloo::transport::Device> create_device(const Settings& settings, const std::string& local_host) {
    gloo::transport::tcp::attr attr;
    if (!settings.interface.empty())
        attr.iface = settings.interface;
    else
        attr.hostname = settings.hostname.empty() ? local_host : settings.hostname;
    sigset_t old;
    block_sigpipe(&old);  // for the event-loop thread it starts; the caller's mask comes back below
    try {
        auto device = gloo::transport::tcp::CreateDevice(attr);
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        return device;
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        throw;
    }
}

// Gloo's device, context and pair for one peer.
struct GlooLink {
    std::shared_ptr<gloo::transport::Device> device;
    std::shared_ptr<gloo::transport::Context> context;
    gloo::transport::Pair* pair = nullptr;  // owned by context
    int peer_rank = 0;

    std::string local_host;  // the interface that reached the peer

    GlooLink(const Settings& settings, const std::string& local_host, int rank, int timeout_ms)
        : local_host(local_host) {
        device = create_device(settings, local_host);
        context = device->createContext(rank, 2);
        context->setTimeout(std::chrono::milliseconds(timeout_ms));
        peer_rank = 1 - rank;
        pair = context->createPair(peer_rank).get();
    }
    std::vector<char> address() const { return pair->address().bytes(); }
    PairSocket socket;  // found once the pair is connected (connect_pair)

    void connect_pair(const std::vector<char>& peer_address) {
        pair->connect(peer_address);
        socket = PairSocket(pair->address());  // the connected socket's local address
    }
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
        sender_ = std::thread([this] {
            block_sigpipe();
            send_loop();
        });
        receiver_ = std::thread([this] {
            block_sigpipe();
            receive_loop();
        });
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

    // close(): waits up to timeout_ms until the bytes of completed sends have reached the peer
    // (the socket holds no unacknowledged byte; a completed send is wholly in the socket), so
    // that the hard close after it cannot cut off the last messages. Returns at once when the
    // connection already failed.
    void drain(int timeout_ms) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (failed_) return;
        }
        const Deadline deadline(timeout_ms);
        auto pause = std::chrono::milliseconds(1);
        while (true) {
            const size_t unsent = link_->socket.unacknowledged();
            if (unsent == 0) return;  // delivered, or the socket is gone (nothing left to wait for)
            if (deadline.passed()) {
                host_.log(PANGEA_LOG_WARN, "gloo: closing the connection to " + peer_ + " with " + std::to_string(unsent) +
                                               " bytes the peer has not acknowledged after " +
                                               std::to_string(timeout_ms) + " ms (close_timeout_ms)");
                return;
            }
            std::this_thread::sleep_for(std::min(pause, std::chrono::milliseconds(std::max(deadline.remaining_ms(), 1))));
            pause = std::min(pause * 2, std::chrono::milliseconds(20));
        }
    }

    // Runs `hook` once, when the connection fails (at once if it has), outside its lock.
    void on_failure(std::function<void(pangea_status, const std::string&)> hook) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (failed_) {
            const pangea_status status = failure_;
            const std::string text = failure_text_;
            lock.unlock();
            hook(status, text);
            return;
        }
        hooks_.push_back(std::move(hook));
    }
    // PANGEA_OK while usable, else the failure (and its text in *why).
    pangea_status status(std::string* why) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (failed_) *why = failure_text_;
        return failed_ ? failure_ : PANGEA_OK;
    }
    const std::string& local_host() const { return link_->local_host; }

    // The instance's watcher: a pair that failed underneath (peer reset or closed) fails the
    // connection, which wakes the threads Gloo itself would leave waiting.
    void watch() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (failed_) return;
        }
        if (link_->socket.found() && !link_->socket.open())
            fail(PANGEA_ERR_PEER_LOST, "the peer reset or closed the connection (Gloo closed the pair's socket)");
    }

    // Fails every pending and future operation with `status`, stops Gloo's IO and wakes the
    // threads. Ops a thread holds are finished by that thread once it is out of their buffer.
    void fail(pangea_status status, const std::string& why) {
        std::deque<std::shared_ptr<Op>> pending;
        std::vector<std::function<void(pangea_status, const std::string&)>> hooks;
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
            hooks.swap(hooks_);
            cv_.notify_all();
        }
        for (auto& op : pending) op->finish(status, failure_text_);
        for (auto& hook : hooks) hook(status, failure_text_);
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
    std::vector<std::function<void(pangea_status, const std::string&)>> hooks_;  // on_failure()
    std::thread sender_, receiver_;  // last: started once everything above exists
};

// ------------------------------------------------------------------ Gloo's own ring all-reduce
//
// allreduce_sum_f32 with allreduce = "gloo": gloo::allreduce (the ring algorithm PyTorch's gloo
// backend runs for CPU tensors) over a Gloo context of its own per ring, whose two pairs (one,
// for world 2) are set up through the caller's two connections at the ring's first call and
// kept while those connections live. Every call starts with a hello on both connections (rank,
// world, count, call number; the pair addresses in the first), so ranks that disagree fail
// before Gloo starts. Gloo runs on a worker thread over the ring's own copy of the data, and the
// caller waits for it, for abort() or failure of either connection, or for a ring socket that
// Gloo closed (a neighbour gone): Gloo does not wake a receive it is in the middle of reading, so
// the caller cannot count on Gloo to return promptly. Whatever fails, the ring is shut down
// (its sockets, which makes the neighbours' Gloo fail too) and both connections are aborted; a
// worker still inside Gloo ends within the call's timeout and is joined later.

// A gloo::Context holding one ring's device and transport context (a rendezvous store would
// connect every pair of ranks; a ring needs its two neighbours only).
class RingContext final : public gloo::Context {
public:
    RingContext(int rank, int size, std::shared_ptr<gloo::transport::Device> device,
                std::shared_ptr<gloo::transport::Context> transport)
        : gloo::Context(rank, size) {
        device_ = std::move(device);
        transportContext_ = std::move(transport);
    }
};

// Said on both connections at the start of every call.
struct RingHello {
    char magic[4];  // "PGGR"
    uint32_t version;
    uint32_t rank, world;
    uint64_t count;
    uint64_t call;           // 1, 2, ... per ring
    uint32_t address_bytes;  // the sender's Gloo pair toward the receiver; first call only
    uint32_t reserved;
    char address[256];
};
static_assert(sizeof(RingHello) == 296);

struct NativeRing {
    NativeRing(pangea_connection* next, pangea_connection* previous, uint32_t rank, uint32_t world)
        : next(next), previous(previous), rank(rank), world(world) {}
    ~NativeRing() {
        if (worker.joinable()) worker.join();  // ends within the last call's timeout
    }

    // Fails the ring once: wakes the waiting caller and ends the ring's connections under Gloo.
    void kill(pangea_status status, const std::string& why) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (killed) return;
            killed = true;
            kill_status = status;
            kill_reason = why;
            cv.notify_all();
        }
        for (const PairSocket& socket : sockets) socket.shut_down();
    }
    bool busy() {
        std::lock_guard<std::mutex> lock(mutex);
        return running;
    }

    pangea_connection* const next;
    pangea_connection* const previous;
    const uint32_t rank, world;
    uint64_t calls = 0;
    std::shared_ptr<gloo::transport::Device> device;
    std::shared_ptr<gloo::transport::Context> transport;
    std::shared_ptr<RingContext> context;
    std::vector<PairSocket> sockets;  // set before the first run, read-only after
    std::vector<float> work;          // what Gloo reduces: never the caller's buffer
    std::thread worker;

    std::mutex mutex;
    std::condition_variable cv;
    bool running = false;
    bool killed = false;
    pangea_status kill_status = PANGEA_OK;
    std::string kill_reason;
    pangea_status result = PANGEA_OK;  // of the last run
    std::string error;
};

struct Listener {
    Listener(ListeningSocket bound, Greetings greeting) : socket(std::move(bound)), greetings(std::move(greeting)) {}

    ListeningSocket socket;
    Greetings greetings;  // sockets still sending their hello and Gloo address
    std::mutex mutex;     // one accept() at a time
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
            int_setting("close_timeout_ms", "10000",
                        "how long close() waits for sent bytes to reach the peer", 0, 600000),
            int_setting("max_message", "17179869184", "largest message accepted, in bytes", 1, 1099511627776.0),
            string_setting("allreduce", "pangea",
                           "uncompressed fp32 all-reduces: \"pangea\" (the core's ring) or \"gloo\" (Gloo's ring all-reduce)",
                           "pangea|gloo"),
        };
    }

    explicit GlooTransport(const pangea::sdk::Host& host)
        : host_(host),
          settings_{host.get_string("hostname"), host.get_string("interface"),
                    static_cast<int>(host.get_int("handshake_timeout_ms")),
                    static_cast<int>(host.get_int("close_timeout_ms")),
                    static_cast<uint64_t>(host.get_int("max_message")), host.get_string("allreduce") == "gloo"} {
        watcher_ = std::thread([this] {
            block_sigpipe();
            watch_loop();
        });
    }

    ~GlooTransport() override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
            watch_cv_.notify_all();
        }
        watcher_.join();
        rings_.clear();  // each joins its Gloo worker, which ends within its call's timeout
        retired_.clear();
        // Handles the caller did not release: close them so no thread outlives the instance.
        connections_.take_all();
        listeners_.take_all();
    }

    pangea_listener* listen(const char* address, char* bound, size_t capacity) override {
        socklen_t length = 0;
        const sockaddr_storage local = resolve(address, &length);
        Fd fd(::socket(local.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
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
        // A greeting is a hello, then the Gloo address it announces.
        auto greeting_bytes = [](const std::vector<uint8_t>& arrived) {
            if (arrived.size() < sizeof(WireHello)) return sizeof(WireHello);
            WireHello hello;
            std::memcpy(&hello, arrived.data(), sizeof hello);
            if (const std::string bad = check_hello(hello); !bad.empty()) throw Error(PANGEA_ERR_CORRUPT, "gloo: " + bad);
            if (hello.status != kHelloRequest || hello.address_bytes == 0)
                throw Error(PANGEA_ERR_CORRUPT, "gloo: unexpected handshake status");
            return sizeof(WireHello) + hello.address_bytes;
        };
        auto listener = std::make_shared<Listener>(ListeningSocket{std::move(fd), format_address(actual)},
                                                   Greetings(kWho, sizeof(WireHello), greeting_bytes, settings_.handshake_timeout_ms));
        listener->socket.copy_bound(kWho, bound, capacity);
        return listeners_.add(std::move(listener));
    }

    pangea_connection* accept(pangea_listener* handle, const pangea_hello& self, int timeout_ms,
                              pangea_hello* peer) override {
        const auto held = listeners_.get(handle);  // alive until we return, even past close_listener()
        Listener& listener = *held;
        std::lock_guard<std::mutex> accepting(listener.mutex);
        const Deadline deadline(timeout_ms);
        while (true) {
            auto greeting = listener.greetings.next(listener.socket, deadline, 0, [&](const std::string& from, const std::string& why) {
                host_.log(PANGEA_LOG_WARN, "gloo: dropped a connection from " + from + ": " + why);
            });
            if (!greeting) {
                if (deadline.passed()) throw no_connection(kWho, listener.socket, timeout_ms);
                continue;
            }
            const std::string from = greeting->from;
            try {
                if (auto* connection = answer(std::move(*greeting), self, peer)) return connection;
            } catch (const Error& e) {
                host_.log(PANGEA_LOG_WARN, "gloo: dropped a connection from " + from + ": " + e.what());
            }
        }
    }

    pangea_connection* connect(const char* address, const pangea_hello& self, int timeout_ms,
                               pangea_hello* peer) override {
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
        gloo_call("connecting the pair", [&] { link->connect_pair(peer_address); });
        *peer = to_api(answer);
        return add_connection(std::move(link), address);
    }

    pangea_request* isend(pangea_connection* handle, const void* data, size_t bytes) override {
        check_size(bytes);
        return requests_.add(connections_.get(handle)->post(true, data, bytes));
    }

    pangea_request* irecv(pangea_connection* handle, void* data, size_t bytes) override {
        check_size(bytes);
        return requests_.add(connections_.get(handle)->post(false, data, bytes));
    }

    pangea_status test(pangea_request* request) override { return wait(request, 0); }

    pangea_status wait(pangea_request* request, int timeout_ms) override {
        const std::shared_ptr<Op> op = requests_.get(request);
        std::string error;
        const pangea_status status = op->wait(timeout_ms, &error);
        if (status == PANGEA_ERR_TIMEOUT) return timeout_ms == 0 ? PANGEA_ERR_AGAIN : PANGEA_ERR_TIMEOUT;
        requests_.take(request);
        // Nothing below may throw: the request is released.
        if (status != PANGEA_OK) set_last_error(error.c_str());
        return status;
    }

    // The reference held keeps the connection alive through fail() even if close() runs now.
    void abort(pangea_connection* handle) noexcept override {
        if (const auto connection = connections_.find(handle)) connection->fail(PANGEA_ERR_ABORTED, "aborted");
    }

    // The last reference joins the connection's threads and tears Gloo down: here, or in a call
    // still holding one.
    void close(pangea_connection* handle) noexcept override {
        const auto doomed = connections_.take(handle);
        if (!doomed) return;
        retire_rings(handle);
        doomed->drain(settings_.close_timeout_ms);
        doomed->fail(PANGEA_ERR_ABORTED, "the connection was closed");
    }

    void allreduce_sum_f32(pangea_connection* next, pangea_connection* previous, uint32_t rank, uint32_t world,
                           float* data, size_t count, int timeout_ms) override {
        if (!settings_.gloo_allreduce)
            throw Error(PANGEA_ERR_UNSUPPORTED, "gloo: allreduce_sum_f32 needs the setting allreduce = \"gloo\"");
        if (world == 0 || rank >= world || next == previous)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "gloo: allreduce_sum_f32: rank " + std::to_string(rank) + " of world " +
                                                         std::to_string(world) + (next == previous ? " with next == previous" : ""));
        const auto held_next = connections_.get(next), held_previous = connections_.get(previous);
        Connection& to_next = *held_next;
        Connection& to_previous = *held_previous;
        if (world == 1 || count == 0) return;
        std::shared_ptr<NativeRing> ring;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            reap_retired();
            auto& cached = rings_[{next, previous}];
            if (!cached) cached = std::make_shared<NativeRing>(next, previous, rank, world);
            ring = cached;
        }
        if (ring->rank != rank || ring->world != world)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "gloo: allreduce_sum_f32: these connections formed a ring as rank " +
                                                         std::to_string(ring->rank) + " of " + std::to_string(ring->world));
        try {
            run_ring(*ring, to_next, to_previous, data, count, timeout_ms);
        } catch (const Error& e) {
            // The neighbours must fail too, and the connections' message streams are out of step.
            ring->kill(e.status(), e.what());
            to_next.fail(PANGEA_ERR_ABORTED, std::string("the all-reduce failed: ") + e.what());
            to_previous.fail(PANGEA_ERR_ABORTED, std::string("the all-reduce failed: ") + e.what());
            throw;
        }
    }

    void close_listener(pangea_listener* handle) noexcept override { listeners_.take(handle); }

private:
    // One call of allreduce_sum_f32 on `ring`; throws Error.
    void run_ring(NativeRing& ring, Connection& next, Connection& previous, float* data, size_t count, int timeout_ms) {
        for (Connection* c : {&next, &previous}) {
            std::string why;
            if (const pangea_status status = c->status(&why); status != PANGEA_OK) throw Error(status, why);
        }
        {
            std::lock_guard<std::mutex> lock(ring.mutex);
            if (ring.killed) throw Error(ring.kill_status, ring.kill_reason);
        }
        const Deadline deadline(timeout_ms);
        const bool setup = ring.calls == 0;
        ++ring.calls;
        const uint32_t next_rank = (ring.rank + 1) % ring.world, previous_rank = (ring.rank + ring.world - 1) % ring.world;
        gloo::transport::Pair* to_next = nullptr;
        gloo::transport::Pair* to_previous = nullptr;  // the same pair for world 2
        if (setup) {
            gloo_call("creating the ring's pairs", [&] {
                ring.device = create_device(settings_, next.local_host());
                ring.transport = ring.device->createContext(static_cast<int>(ring.rank), static_cast<int>(ring.world));
                ring.transport->setTimeout(std::chrono::milliseconds(settings_.handshake_timeout_ms));
                to_next = ring.transport->createPair(static_cast<int>(next_rank)).get();
                to_previous = ring.world == 2 ? to_next : ring.transport->createPair(static_cast<int>(previous_rank)).get();
                ring.context = std::make_shared<RingContext>(static_cast<int>(ring.rank), static_cast<int>(ring.world),
                                                             ring.device, ring.transport);
            });
        }
        // Hellos: what this rank says to each neighbour, and what each says back.
        auto hello = [&](gloo::transport::Pair* pair) {
            RingHello h{};
            std::memcpy(h.magic, "PGGR", 4);
            h.version = 1;
            h.rank = ring.rank;
            h.world = ring.world;
            h.count = count;
            h.call = ring.calls;
            if (pair != nullptr) {
                std::vector<char> address;
                gloo_call("pair address", [&] { address = pair->address().bytes(); });
                if (address.size() > sizeof h.address)
                    throw Error(PANGEA_ERR_INTERNAL, "gloo: a pair address of " + std::to_string(address.size()) + " bytes");
                h.address_bytes = static_cast<uint32_t>(address.size());
                std::memcpy(h.address, address.data(), address.size());
            }
            return h;
        };
        const RingHello to_next_hello = hello(to_next), to_previous_hello = hello(to_previous);
        RingHello from_next{}, from_previous{};
        const std::shared_ptr<Op> ops[] = {
            next.post(true, &to_next_hello, sizeof to_next_hello),
            previous.post(true, &to_previous_hello, sizeof to_previous_hello),
            next.post(false, &from_next, sizeof from_next), previous.post(false, &from_previous, sizeof from_previous)};
        // Until all four are done, one fails, either connection fails (abort() included) or the
        // deadline passes; the hellos live on this stack, so every op ends before this returns.
        pangea_status failed = PANGEA_OK;
        std::string why;
        for (size_t done = 0; done < std::size(ops) && failed == PANGEA_OK;) {
            std::string error;
            const pangea_status status = ops[done]->wait(std::clamp(deadline.remaining_ms(), 0, 20), &error);
            if (status == PANGEA_OK) {
                ++done;
                continue;
            }
            if (status != PANGEA_ERR_TIMEOUT) {
                failed = status;
                why = error;
            } else if (const pangea_status a = next.status(&why); a != PANGEA_OK) {
                failed = a;
            } else if (const pangea_status b = previous.status(&why); b != PANGEA_OK) {
                failed = b;
            } else if (deadline.passed()) {
                failed = PANGEA_ERR_TIMEOUT;
                why = "gloo: the all-reduce's neighbours did not start it within " + std::to_string(timeout_ms) + " ms";
            }
        }
        if (failed != PANGEA_OK) {
            next.fail(PANGEA_ERR_ABORTED, "the all-reduce failed: " + why);
            previous.fail(PANGEA_ERR_ABORTED, "the all-reduce failed: " + why);
            std::string ignored;
            for (const auto& op : ops) op->wait(-1, &ignored);
            throw Error(failed, why);
        }
        auto check = [&](const RingHello& h, uint32_t expected_rank, const char* side) {
            if (std::memcmp(h.magic, "PGGR", 4) != 0 || h.version != 1)
                throw Error(PANGEA_ERR_CORRUPT, std::string("gloo: the ") + side +
                                                    " neighbour is not in a Gloo all-reduce (did every rank set allreduce = \"gloo\"?)");
            if (h.rank != expected_rank || h.world != ring.world || h.count != count || h.call != ring.calls ||
                (setup && (h.address_bytes == 0 || h.address_bytes > sizeof h.address)))
                throw Error(PANGEA_ERR_INVALID_ARGUMENT,
                            std::string("gloo: the ranks disagree: the ") + side + " neighbour is rank " + std::to_string(h.rank) +
                                " of " + std::to_string(h.world) + " summing " + std::to_string(h.count) + " values (call " +
                                std::to_string(h.call) + "), this is rank " + std::to_string(ring.rank) + " of " +
                                std::to_string(ring.world) + " summing " + std::to_string(count) + " (call " +
                                std::to_string(ring.calls) + ")");
        };
        check(from_next, next_rank, "next");
        check(from_previous, previous_rank, "previous");
        if (setup) {
            // Both at once: the listening side of a pair waits for its peer's connect, around the ring.
            std::exception_ptr other;
            std::thread connecting;
            if (to_previous != to_next)
                connecting = std::thread([&] {
                    try {
                        gloo_call("connecting the ring's pair", [&] {
                            to_previous->connect(std::vector<char>(from_previous.address,
                                                                   from_previous.address + from_previous.address_bytes));
                        });
                    } catch (...) {
                        other = std::current_exception();
                    }
                });
            std::exception_ptr own;
            try {
                gloo_call("connecting the ring's pair", [&] {
                    to_next->connect(std::vector<char>(from_next.address, from_next.address + from_next.address_bytes));
                });
            } catch (...) {
                own = std::current_exception();
            }
            if (connecting.joinable()) connecting.join();
            if (own) std::rethrow_exception(own);
            if (other) std::rethrow_exception(other);
            ring.sockets.emplace_back(to_next->address());
            if (to_previous != to_next) ring.sockets.emplace_back(to_previous->address());
            // A failure of either connection (abort(), peer lost) ends the ring's Gloo call.
            const std::weak_ptr<NativeRing> weak = find_ring(ring);
            for (Connection* c : {&next, &previous})
                c->on_failure([weak](pangea_status status, const std::string& text) {
                    if (auto alive = weak.lock()) alive->kill(status, text);
                });
        }
        // Gloo's turn, on a worker thread over the ring's copy.
        if (ring.worker.joinable()) ring.worker.join();  // the last call's, done
        ring.work.assign(data, data + count);
        const auto gloo_timeout = timeout_ms < 0 ? std::chrono::milliseconds(kGlooForever)
                                                 : std::chrono::milliseconds(std::max(timeout_ms, 1));
        {
            std::lock_guard<std::mutex> lock(ring.mutex);
            if (ring.killed) throw Error(ring.kill_status, ring.kill_reason);
            ring.running = true;
        }
        ring.worker = std::thread([&ring, count, gloo_timeout, tag = static_cast<uint32_t>(ring.calls)] {
            block_sigpipe();
            pangea_status status = PANGEA_OK;
            std::string error;
            try {
                gloo::AllreduceOptions options(ring.context);
                options.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
                options.setOutput(ring.work.data(), count);
                options.setReduceFunction(
                    static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
                options.setTimeout(gloo_timeout);
                options.setTag(tag);
                gloo::allreduce(options);
            } catch (const std::exception& e) {
                error = std::string("gloo: Gloo's all-reduce: ") + e.what();
                status = error.find("Timed out") != std::string::npos ? PANGEA_ERR_TIMEOUT : PANGEA_ERR_PEER_LOST;
            }
            std::lock_guard<std::mutex> lock(ring.mutex);
            ring.running = false;
            ring.result = status;
            ring.error = error;
            ring.cv.notify_all();
        });
        std::unique_lock<std::mutex> lock(ring.mutex);
        while (ring.running && !ring.killed) {
            ring.cv.wait_for(lock, std::chrono::milliseconds(100));
            if (!ring.running || ring.killed) break;
            for (const PairSocket& socket : ring.sockets)
                if (!socket.open()) {
                    lock.unlock();
                    ring.kill(PANGEA_ERR_PEER_LOST,
                              "gloo: a neighbour of the all-reduce went away (Gloo closed the ring's pair)");
                    lock.lock();
                    break;
                }
        }
        if (ring.killed) throw Error(ring.kill_status, ring.kill_reason);  // the worker ends on its own
        if (ring.result != PANGEA_OK) throw Error(ring.result, ring.error);
        std::copy(ring.work.begin(), ring.work.end(), data);
    }

    std::weak_ptr<NativeRing> find_ring(const NativeRing& ring) {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = rings_.find({ring.next, ring.previous});
        return found != rings_.end() && found->second.get() == &ring ? found->second : std::shared_ptr<NativeRing>();
    }

    // A connection closes: its rings go; one whose Gloo call still runs waits in retired_.
    void retire_rings(pangea_connection* handle) {
        std::vector<std::shared_ptr<NativeRing>> done;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (auto it = rings_.begin(); it != rings_.end();) {
                if (it->first.first != handle && it->first.second != handle) {
                    ++it;
                    continue;
                }
                it->second->kill(PANGEA_ERR_ABORTED, "gloo: the ring's connection was closed");
                (it->second->busy() ? retired_ : done).push_back(std::move(it->second));
                it = rings_.erase(it);
            }
            reap_retired();
        }
        done.clear();  // outside the lock: joins finished workers, tears down Gloo
    }
    // Drops retired rings whose worker has ended (their Gloo teardown is quick). Under mutex_.
    void reap_retired() {
        retired_.erase(std::remove_if(retired_.begin(), retired_.end(), [](const auto& r) { return !r->busy(); }),
                       retired_.end());
    }

    // Every 100 ms: connections whose Gloo pair failed underneath are failed (Connection::watch).
    // Outside mutex_: a watched connection may be closed meanwhile (its last reference may then
    // be the snapshot's, and its teardown happen here).
    void watch_loop() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (!stopping_) {
            watch_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_; });
            if (stopping_) break;
            lock.unlock();
            for (const auto& connection : connections_.snapshot()) connection->watch();
            lock.lock();
        }
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

    // Answers a client's greeting (a checked hello and its Gloo address): a connection, nullptr
    // when it was refused (another run).
    pangea_connection* answer(Greetings::Greeting greeting, const pangea_hello& self, pangea_hello* peer) {
        const Deadline handshake(settings_.handshake_timeout_ms);
        const int socket = greeting.socket.get();
        const std::string& from = greeting.from;
        WireHello hello;
        std::memcpy(&hello, greeting.bytes.data(), sizeof hello);
        const std::vector<char> peer_address(greeting.bytes.begin() + sizeof hello, greeting.bytes.end());
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
        gloo_call("connecting the pair", [&] { link->connect_pair(peer_address); });
        *peer = to_api(hello);
        return add_connection(std::move(link), from);
    }

    pangea_connection* add_connection(std::unique_ptr<GlooLink> link, const std::string& peer) {
        return connections_.add(std::make_shared<Connection>(std::move(link), peer, host_));
    }

    pangea::sdk::Host host_;
    Settings settings_;
    pangea::transport::HandleTable<pangea_listener, Listener> listeners_{kWho, "listener"};
    pangea::transport::HandleTable<pangea_connection, Connection> connections_{kWho, "connection"};
    pangea::transport::HandleTable<pangea_request, Op> requests_{kWho, "or already completed request"};
    std::mutex mutex_;  // rings_, retired_, stopping_
    std::map<std::pair<pangea_connection*, pangea_connection*>, std::shared_ptr<NativeRing>> rings_;  // (next, previous)
    std::vector<std::shared_ptr<NativeRing>> retired_;  // closed, their Gloo call still running
    std::condition_variable watch_cv_;
    bool stopping_ = false;
    std::thread watcher_;  // last: started once everything above exists
};

}  // namespace
}  // namespace pangea::gloo_transport

PANGEA_EXPORT_PLUGINS(pangea::gloo_transport::GlooTransport)
