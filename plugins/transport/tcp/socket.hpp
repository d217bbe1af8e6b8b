// The tcp transport's stream I/O: whole-buffer blocking reads and writes for its per-stream
// threads. Addresses, handshake I/O with deadlines and descriptors are shared/socket.hpp's.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "../shared/socket.hpp"
#include "pangea/sdk.hpp"

namespace pangea::tcp {

constexpr const char* kWho = "tcp";  // starts every error text

using pangea::sdk::Error;
using pangea::transport::Clock;
using pangea::transport::connect_to;
using pangea::transport::Deadline;
using pangea::transport::Fd;
using pangea::transport::Greetings;
using pangea::transport::listen_on;
using pangea::transport::ListeningSocket;
using pangea::transport::no_connection;
using pangea::transport::peer_of;
using pangea::transport::read_exact;
using pangea::transport::set_blocking;
using pangea::transport::system_error_text;

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
