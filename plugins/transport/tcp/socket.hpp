// POSIX TCP sockets for the tcp transport: address parsing, and whole-buffer reads and writes
// with deadlines (the descriptor and deadline types are shared/socket.hpp's). Errors are pangea::sdk::Error with the system's own text.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <utility>

#include "../shared/socket.hpp"
#include "pangea/sdk.hpp"

namespace pangea::tcp {

using pangea::sdk::Error;
using Clock = std::chrono::steady_clock;

using pangea::transport::Deadline;
using pangea::transport::Fd;
using pangea::transport::system_error_text;

// "host:port", "[v6addr]:port". Throws PANGEA_ERR_INVALID_ARGUMENT naming the address.
inline std::pair<std::string, std::string> split_address(const std::string& address) {
    std::string host, port;
    if (!address.empty() && address.front() == '[') {
        const size_t close = address.find(']');
        if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "tcp: bad address '" + address + "': expected [v6]:port");
        host = address.substr(1, close - 1);
        port = address.substr(close + 2);
    } else {
        const size_t colon = address.rfind(':');
        if (colon == std::string::npos || colon == 0)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "tcp: bad address '" + address + "': expected host:port");
        host = address.substr(0, colon);
        port = address.substr(colon + 1);
    }
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
        throw Error(PANGEA_ERR_INVALID_ARGUMENT, "tcp: bad port in address '" + address + "'");
    return {host, port};
}

// Resolves an address to its first result (numeric or by name).
inline sockaddr_storage resolve(const std::string& address, socklen_t* length) {
    const auto [host, port] = split_address(address);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0 || found == nullptr)
        throw Error(PANGEA_ERR_IO, "tcp: cannot resolve '" + address + "': " + gai_strerror(rc));
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

inline std::string peer_of(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "(unknown peer)";
    return format_address(address);
}

// TCP_NODELAY (frames are written whole; Nagle only delays them), keepalive, and optionally
// fixed socket buffers (0 leaves Linux's autotuning, which grows buffers for long fat links).
inline void tune(int fd, int buffer_bytes) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (buffer_bytes > 0) {
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    }
}

// Waits for fd to become readable or writable; throws PANGEA_ERR_TIMEOUT when the deadline
// passes first.
inline void wait_ready(int fd, short events, const Deadline& deadline, const char* what) {
    while (true) {
        pollfd entry{fd, events, 0};
        const int rc = ::poll(&entry, 1, deadline.remaining_ms());
        if (rc > 0) return;
        if (rc == 0) throw Error(PANGEA_ERR_TIMEOUT, std::string("tcp: timed out ") + what);
        if (errno != EINTR) throw Error(PANGEA_ERR_IO, std::string("tcp: poll: ") + system_error_text(errno));
    }
}

// Connects with a deadline.
inline Fd connect_to(const std::string& address, const Deadline& deadline, int buffer_bytes) {
    socklen_t length = 0;
    const sockaddr_storage target = resolve(address, &length);
    Fd fd(::socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw Error(PANGEA_ERR_IO, "tcp: socket: " + system_error_text(errno));
    tune(fd.get(), buffer_bytes);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&target), length) != 0) {
        if (errno != EINPROGRESS)
            throw Error(PANGEA_ERR_PEER_LOST, "tcp: connect to " + address + ": " + system_error_text(errno));
        wait_ready(fd.get(), POLLOUT, deadline, ("connecting to " + address).c_str());
        int error = 0;
        socklen_t size = sizeof error;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size);
        if (error != 0)
            throw Error(PANGEA_ERR_PEER_LOST, "tcp: connect to " + address + ": " + system_error_text(error));
    }
    ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
    return fd;
}

// Reads exactly `bytes`, waiting at most until the deadline (used for handshakes).
inline void read_exact(int fd, void* data, size_t bytes, const Deadline& deadline, const char* what) {
    auto* out = static_cast<uint8_t*>(data);
    while (bytes > 0) {
        wait_ready(fd, POLLIN, deadline, what);
        const ssize_t got = ::recv(fd, out, bytes, MSG_DONTWAIT);
        if (got > 0) {
            out += got;
            bytes -= static_cast<size_t>(got);
        } else if (got == 0) {
            throw Error(PANGEA_ERR_PEER_LOST, std::string("tcp: peer closed the connection while ") + what);
        } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            throw Error(PANGEA_ERR_PEER_LOST, std::string("tcp: ") + what + ": " + system_error_text(errno));
        }
    }
}

// Blocking whole-buffer I/O for the stream threads. They return 0 on success, or the errno,
// with kPeerClosed for an orderly close by the peer before the first byte and ECONNRESET for
// one in the middle of the buffer.
constexpr int kPeerClosed = -1;

inline int recv_all(int fd, void* data, size_t bytes) {
    auto* out = static_cast<uint8_t*>(data);
    const size_t wanted = bytes;
    while (bytes > 0) {
        const ssize_t got = ::recv(fd, out, bytes, 0);
        if (got > 0) {
            out += got;
            bytes -= static_cast<size_t>(got);
        } else if (got == 0) {
            return bytes == wanted ? kPeerClosed : ECONNRESET;
        } else if (errno != EINTR) {
            return errno;
        }
    }
    return 0;
}

// Writes a header and a payload with as few system calls as possible.
inline int send_all(int fd, const void* header, size_t header_bytes, const void* payload, size_t bytes) {
    iovec parts[2] = {{const_cast<void*>(header), header_bytes}, {const_cast<void*>(payload), bytes}};
    int count = bytes > 0 ? 2 : 1;
    iovec* next = parts;
    while (count > 0) {
        msghdr message{};
        message.msg_iov = next;
        message.msg_iovlen = static_cast<size_t>(count);
        const ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        size_t left = static_cast<size_t>(sent);
        while (count > 0 && left >= next->iov_len) {
            left -= next->iov_len;
            ++next;
            --count;
        }
        if (count > 0) {
            next->iov_base = static_cast<uint8_t*>(next->iov_base) + left;
            next->iov_len -= left;
        }
    }
    return 0;
}

}  // namespace pangea::tcp
