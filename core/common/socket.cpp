#include "common/socket.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pangea {
namespace {

constexpr size_t kMaxMessage = 1 << 20;

std::pair<std::string, std::string> split_address(const std::string& address) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
        throw SocketError("address '" + address + "' is not host:port");
    return {address.substr(0, colon), address.substr(colon + 1)};
}

struct AddressList {
    addrinfo* list = nullptr;
    ~AddressList() {
        if (list != nullptr) freeaddrinfo(list);
    }
};

void resolve(const std::string& address, bool passive, AddressList* out) {
    const auto [host, port] = split_address(address);
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (passive) hints.ai_flags = AI_PASSIVE;
    if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &out->list); rc != 0)
        throw SocketError("cannot resolve " + address + ": " + gai_strerror(rc));
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

void Fd::reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

TcpListener::TcpListener(const std::string& address) {
    AddressList resolved;
    resolve(address, true, &resolved);
    fd_ = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd_) throw SocketError("socket for " + address + ": " + errno_text());
    const int one = 1;
    setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd_.get(), resolved.list->ai_addr, resolved.list->ai_addrlen) != 0)
        throw SocketError("cannot listen on " + address + ": " + errno_text());
    if (::listen(fd_.get(), 128) != 0) throw SocketError("cannot listen on " + address + ": " + errno_text());
    sockaddr_in bound{};
    socklen_t length = sizeof bound;
    getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&bound), &length);
    address_ = split_address(address).first + ":" + std::to_string(ntohs(bound.sin_port));
}

Fd TcpListener::accept(std::chrono::milliseconds timeout) const {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return Fd();
    return Fd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
}

Fd connect_tcp(const std::string& address, std::chrono::milliseconds timeout) {
    AddressList resolved;
    resolve(address, false, &resolved);
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw SocketError("socket for " + address + ": " + errno_text());
    if (::connect(fd.get(), resolved.list->ai_addr, resolved.list->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) throw SocketError("cannot connect to " + address + ": " + errno_text());
        pollfd p{fd.get(), POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0)
            throw SocketError("cannot connect to " + address + ": no answer within " + std::to_string(timeout.count()) +
                              " ms");
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) throw SocketError("cannot connect to " + address + ": " + std::strerror(error));
    }
    fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
    const int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

LineSocket::LineSocket(Fd fd) : fd_(std::move(fd)) {
    const int one = 1;
    setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bool LineSocket::send(const std::string& message) {
    const std::string line = message + "\n";
    std::lock_guard lock(send_mutex_);
    size_t sent = 0;
    while (sent < line.size()) {
        const ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        sent += static_cast<size_t>(n);
    }
    return true;
}

bool LineSocket::take_message(std::string* message) {
    const size_t end = buffer_.find('\n');
    if (end == std::string::npos) return false;
    *message = buffer_.substr(0, end);
    buffer_.erase(0, end + 1);
    return true;
}

LineSocket::Received LineSocket::receive(std::string* message, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!take_message(message)) {
        int wait = -1;
        if (timeout_ms >= 0) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return Received::kTimeout;
            wait = static_cast<int>(left.count());
        }
        pollfd p{fd_.get(), POLLIN, 0};
        const int ready = ::poll(&p, 1, wait);
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) return Received::kTimeout;
        char chunk[4096];
        const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || buffer_.size() + static_cast<size_t>(n) > kMaxMessage) return Received::kClosed;
        buffer_.append(chunk, static_cast<size_t>(n));
    }
    return Received::kMessage;
}

bool LineSocket::receive_available(std::vector<std::string>* out) {
    char chunk[4096];
    bool open = true;
    while (open) {
        const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) {
            open = false;  // what came before the close still counts
            break;
        }
        buffer_.append(chunk, static_cast<size_t>(n));
        if (buffer_.size() > kMaxMessage) return false;
    }
    std::string message;
    while (take_message(&message)) out->push_back(std::move(message));
    return open;
}

void LineSocket::shutdown() { ::shutdown(fd_.get(), SHUT_RDWR); }

}  // namespace pangea
