// What the built-in transports (tcp, gloo, ucx) share for their sockets: an owning descriptor
// and deadlines. Header-only: plugins link nothing of the core.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <utility>

namespace pangea::transport {

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

}  // namespace pangea::transport
