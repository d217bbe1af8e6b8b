// What the built-in transports (tcp, gloo, ucx) share for their sockets: an owning descriptor,
// deadlines, addresses, and the handshake's whole-buffer reads and writes. Header-only: plugins
// link nothing of the core.
//
// Every error is a pangea::sdk::Error whose text starts with `who`, the transport's name, so a
// log line says which plugin failed.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pangea/sdk.hpp"

namespace pangea::transport {

using pangea::sdk::Error;

using Clock = std::chrono::steady_clock;

inline std::string system_error_text(int error) { return std::strerror(error); }

// Owns a file descriptor; closes it once.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    // Wakes every thread blocked on the socket (their calls fail) without closing it.
    void shutdown() const {
        if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    }

private:
    int fd_ = -1;
};

// A deadline; a negative timeout means none.
class Deadline {
public:
    explicit Deadline(int timeout_ms)
        : forever_(timeout_ms < 0), end_(Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0))) {}
    // Milliseconds left for poll(): -1 for forever, 0 when passed.
    int remaining_ms() const {
        if (forever_) return -1;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end_ - Clock::now()).count();
        return left > 0 ? static_cast<int>(std::min<long long>(left, 1 << 30)) : 0;
    }
    bool passed() const { return !forever_ && Clock::now() >= end_; }
    // The earlier of this deadline and `cap_ms` from now.
    Deadline capped(int cap_ms) const {
        const int left = remaining_ms();
        return Deadline(left < 0 ? cap_ms : std::min(left, cap_ms));
    }

private:
    bool forever_;
    Clock::time_point end_;
};

// ------------------------------------------------------------------ addresses

// "host:port" or "[v6addr]:port" into host and port. Throws PANGEA_ERR_INVALID_ARGUMENT naming
// the address.
inline std::pair<std::string, std::string> split_address(const char* who, const std::string& address) {
    std::string host, port;
    if (!address.empty() && address.front() == '[') {
        const size_t close = address.find(']');
        if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, std::string(who) + ": bad address '" + address + "': expected [v6]:port");
        host = address.substr(1, close - 1);
        port = address.substr(close + 2);
    } else {
        const size_t colon = address.rfind(':');
        if (colon == std::string::npos || colon == 0)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, std::string(who) + ": bad address '" + address + "': expected host:port");
        host = address.substr(0, colon);
        port = address.substr(colon + 1);
    }
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(port) > 65535)
        throw Error(PANGEA_ERR_INVALID_ARGUMENT, std::string(who) + ": bad port in address '" + address + "'");
    return {host, port};
}

// Resolves an address (numeric or by name) to its first result. A name that does not resolve is
// PANGEA_ERR_IO: it may resolve later (DNS), unlike a malformed address.
inline sockaddr_storage resolve(const char* who, const std::string& address, socklen_t* length) {
    const auto [host, port] = split_address(who, address);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0 || found == nullptr)
        throw Error(PANGEA_ERR_IO, std::string(who) + ": cannot resolve '" + address + "': " + ::gai_strerror(rc));
    sockaddr_storage out{};
    std::memcpy(&out, found->ai_addr, found->ai_addrlen);
    *length = found->ai_addrlen;
    ::freeaddrinfo(found);
    return out;
}

inline std::string format_address(const sockaddr_storage& address) {
    char host[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET6) {
        const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
        ::inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof host);
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(v6.sin6_port));
    }
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    ::inet_ntop(AF_INET, &v4.sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(v4.sin_port));
}

// The peer's address, for log lines.
inline std::string peer_of(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "(unknown peer)";
    return format_address(address);
}

// ------------------------------------------------------------------ socket options

// TCP_NODELAY (messages are written whole; Nagle only delays them), keepalive, and optionally
// fixed socket buffers (0 keeps Linux's autotuning, which grows buffers on long fat links; set
// before connect() so that the window scale is negotiated for them).
inline void tune(int fd, int buffer_bytes = 0) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (buffer_bytes > 0) {
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    }
}

inline void set_blocking(int fd, bool blocking) {
    const int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

// ------------------------------------------------------------------ handshake I/O

// Waits for fd to become readable (POLLIN) or writable (POLLOUT); PANGEA_ERR_TIMEOUT "timed out
// <what>" when the deadline passes first.
inline void wait_ready(const char* who, int fd, short events, const Deadline& deadline, const std::string& what) {
    while (true) {
        pollfd entry{fd, events, 0};
        const int rc = ::poll(&entry, 1, deadline.remaining_ms());
        if (rc > 0) return;
        if (rc == 0) throw Error(PANGEA_ERR_TIMEOUT, std::string(who) + ": timed out " + what);
        if (errno != EINTR) throw Error(PANGEA_ERR_IO, std::string(who) + ": poll: " + system_error_text(errno));
    }
}

// Reads exactly `bytes` by the deadline, whether the socket blocks or not. The peer closing or
// failing is PANGEA_ERR_PEER_LOST.
inline void read_exact(const char* who, int fd, void* data, size_t bytes, const Deadline& deadline,
                       const std::string& what) {
    auto* out = static_cast<uint8_t*>(data);
    while (bytes > 0) {
        wait_ready(who, fd, POLLIN, deadline, what);
        const ssize_t got = ::recv(fd, out, bytes, MSG_DONTWAIT);
        if (got > 0) {
            out += got;
            bytes -= static_cast<size_t>(got);
        } else if (got == 0) {
            throw Error(PANGEA_ERR_PEER_LOST, std::string(who) + ": the peer closed the connection while " + what);
        } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            throw Error(PANGEA_ERR_PEER_LOST, std::string(who) + ": " + what + ": " + system_error_text(errno));
        }
    }
}

// Writes exactly `bytes` by the deadline, whether the socket blocks or not.
inline void write_exact(const char* who, int fd, const void* data, size_t bytes, const Deadline& deadline,
                        const std::string& what) {
    const auto* in = static_cast<const uint8_t*>(data);
    while (bytes > 0) {
        wait_ready(who, fd, POLLOUT, deadline, what);
        const ssize_t sent = ::send(fd, in, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent > 0) {
            in += sent;
            bytes -= static_cast<size_t>(sent);
        } else if (sent < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            throw Error(PANGEA_ERR_PEER_LOST, std::string(who) + ": " + what + ": " + system_error_text(errno));
        }
    }
}

// ------------------------------------------------------------------ connecting and listening

// Connects by the deadline; the socket is tuned (see tune()) and left non-blocking.
inline Fd connect_to(const char* who, const std::string& address, const Deadline& deadline, int buffer_bytes = 0) {
    socklen_t length = 0;
    const sockaddr_storage target = resolve(who, address, &length);
    Fd fd(::socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw Error(PANGEA_ERR_IO, std::string(who) + ": socket: " + system_error_text(errno));
    tune(fd.get(), buffer_bytes);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&target), length) != 0) {
        if (errno != EINPROGRESS)
            throw Error(PANGEA_ERR_PEER_LOST, std::string(who) + ": connect to " + address + ": " + system_error_text(errno));
        wait_ready(who, fd.get(), POLLOUT, deadline, "connecting to " + address);
        int error = 0;
        socklen_t size = sizeof error;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size);
        if (error != 0)
            throw Error(PANGEA_ERR_PEER_LOST, std::string(who) + ": connect to " + address + ": " + system_error_text(error));
    }
    return fd;
}

// A listening socket and the address peers should connect to.
struct ListeningSocket {
    Fd fd;
    std::string bound;

    // Copies the bound address for listen()'s caller (NUL-terminated); PANGEA_ERR_CAPACITY when
    // it does not fit. `out` may be NULL.
    void copy_bound(const char* who, char* out, size_t capacity) const {
        if (out == nullptr) return;
        if (capacity <= bound.size())
            throw Error(PANGEA_ERR_CAPACITY, std::string(who) + ": the bound address " + bound + " needs " +
                                                 std::to_string(bound.size() + 1) + " bytes");
        std::memcpy(out, bound.c_str(), bound.size() + 1);
    }
};

inline ListeningSocket listen_on(const char* who, const std::string& address) {
    socklen_t length = 0;
    const sockaddr_storage local = resolve(who, address, &length);
    Fd fd(::socket(local.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw Error(PANGEA_ERR_IO, std::string(who) + ": socket: " + system_error_text(errno));
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), length) != 0)
        throw Error(PANGEA_ERR_IO, std::string(who) + ": bind " + address + ": " + system_error_text(errno));
    if (::listen(fd.get(), 128) != 0)
        throw Error(PANGEA_ERR_IO, std::string(who) + ": listen " + address + ": " + system_error_text(errno));
    sockaddr_storage actual{};
    socklen_t actual_length = sizeof actual;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&actual), &actual_length);
    return {std::move(fd), format_address(actual)};
}

// Incoming sockets still saying hello, read side by side: a client that connects and says
// nothing delays nobody (reading each new socket's hello in turn, it held up every connection
// behind it by the handshake timeout); it is dropped once its time is up. An accept()
// implementation keeps one per listener (whose socket must be non-blocking, as listen_on()'s is)
// and loops on next(), so that it notices a closed listener or expires half-done handshakes in
// between; it reports no_connection() once the deadline has passed.
class Greetings {
public:
    // How many bytes a greeting has, given those that arrived (always more than zero of them):
    // at least their count; e.g. a fixed hello's size, then that plus the length it announces.
    // Throws Error for garbage, which drops the socket without waiting for more.
    using Length = std::function<size_t(const std::vector<uint8_t>& arrived)>;
    // Says why a socket was dropped (for the log).
    using Dropped = std::function<void(const std::string& from, const std::string& why)>;

    struct Greeting {
        Fd socket;  // non-blocking, tuned
        std::string from;
        std::vector<uint8_t> bytes;  // exactly the greeting: nothing after it is read
    };

    Greetings(const char* who, size_t first_bytes, Length length, int timeout_ms, size_t max_waiting = 64)
        : who_(who), first_bytes_(first_bytes), length_(std::move(length)), timeout_ms_(timeout_ms), max_waiting_(max_waiting) {}

    // Accepts what is queued on `listener` and reads what the waiting sockets sent, for at most
    // 100 ms (less when the deadline is nearer): the first socket, in arrival order, whose
    // greeting is complete; or nullopt. Sockets that close, fail, send garbage or take longer
    // than the timeout are dropped (closed) and reported to `dropped`; beyond `max_waiting` the
    // oldest is.
    std::optional<Greeting> next(const ListeningSocket& listener, const Deadline& deadline, int buffer_bytes,
                                 const Dropped& dropped) {
        if (auto done = take_complete()) return done;
        std::vector<pollfd> polled{{listener.fd.get(), POLLIN, 0}};
        for (const Waiting& w : waiting_) polled.push_back({w.greeting.socket.get(), POLLIN, 0});
        int wait_ms = deadline.capped(100).remaining_ms();
        for (const Waiting& w : waiting_) wait_ms = std::min(wait_ms, std::max(w.expires.remaining_ms(), 0));
        if (::poll(polled.data(), polled.size(), wait_ms) < 0 && errno != EINTR)
            throw Error(PANGEA_ERR_IO, std::string(who_) + ": poll: " + system_error_text(errno));
        if (polled[0].revents != 0) accept_queued(listener, buffer_bytes, dropped);
        for (Waiting& w : waiting_) read_some(w);  // (non-blocking: cheaper than matching poll's answers)
        for (auto it = waiting_.begin(); it != waiting_.end();) {
            if (it->failed.empty() && !it->complete() && it->expires.passed())
                it->failed = "no handshake within " + std::to_string(timeout_ms_) + " ms";
            if (!it->failed.empty()) {
                dropped(it->greeting.from, it->failed);
                it = waiting_.erase(it);
            } else {
                ++it;
            }
        }
        return take_complete();
    }

private:
    struct Waiting {
        Greeting greeting;
        size_t wanted;
        Deadline expires;
        std::string failed;  // why it is to be dropped, once it is
        bool complete() const { return greeting.bytes.size() == wanted; }
    };

    std::optional<Greeting> take_complete() {
        for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
            if (!it->failed.empty() || !it->complete()) continue;
            Greeting done = std::move(it->greeting);
            waiting_.erase(it);
            return done;
        }
        return std::nullopt;
    }

    void accept_queued(const ListeningSocket& listener, int buffer_bytes, const Dropped& dropped) {
        while (true) {
            Fd socket(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
            if (!socket) return;  // none left (or the client gave up already)
            tune(socket.get(), buffer_bytes);
            if (waiting_.size() >= max_waiting_) {
                dropped(waiting_.front().greeting.from,
                        "more than " + std::to_string(max_waiting_) + " connections are saying hello at once");
                waiting_.erase(waiting_.begin());
            }
            std::string from = peer_of(socket.get());
            waiting_.push_back({{std::move(socket), std::move(from), {}}, first_bytes_, Deadline(timeout_ms_), ""});
        }
    }

    // Reads what arrived, never past the greeting's end.
    void read_some(Waiting& w) {
        if (!w.failed.empty() || w.complete()) return;
        std::vector<uint8_t>& bytes = w.greeting.bytes;
        const size_t had = bytes.size();
        bytes.resize(w.wanted);
        const ssize_t got = ::recv(w.greeting.socket.get(), bytes.data() + had, w.wanted - had, MSG_DONTWAIT);
        const int error = errno;
        bytes.resize(had + static_cast<size_t>(std::max<ssize_t>(got, 0)));
        if (got == 0) {
            w.failed = "the peer closed the connection during the handshake";
        } else if (got < 0) {
            if (error != EINTR && error != EAGAIN && error != EWOULDBLOCK) w.failed = "reading a handshake: " + system_error_text(error);
        } else {
            try {
                w.wanted = std::max(length_(bytes), bytes.size());
            } catch (const Error& e) {
                w.failed = e.what();
            }
        }
    }

    const char* who_;
    size_t first_bytes_;
    Length length_;
    int timeout_ms_;
    size_t max_waiting_;
    std::vector<Waiting> waiting_;  // in arrival order
};

inline Error no_connection(const char* who, const ListeningSocket& listener, int timeout_ms) {
    return Error(PANGEA_ERR_TIMEOUT, std::string(who) + ": no connection arrived at " + listener.bound + " within " +
                                         std::to_string(timeout_ms) + " ms");
}

}  // namespace pangea::transport
