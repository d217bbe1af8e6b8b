// Plain TCP for the control plane (the coordinator and its clients): newline-delimited text
// messages, timeouts on everything. Bulk data goes through transport plugins, not through here.
#pragma once

#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pangea {

class SocketError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// An owned file descriptor.
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
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    void reset();

private:
    int fd_ = -1;
};

class TcpListener {
public:
    // "host:port" (port 0: any free one). Throws SocketError naming the address.
    explicit TcpListener(const std::string& address);
    const std::string& address() const { return address_; }  // with the port filled in
    int fd() const { return fd_.get(); }
    // One incoming connection, or an empty Fd when none came within the timeout.
    Fd accept(std::chrono::milliseconds timeout) const;

private:
    Fd fd_;
    std::string address_;
};

// Throws SocketError naming the address when it cannot connect within the timeout.
Fd connect_tcp(const std::string& address, std::chrono::milliseconds timeout);

// A connected socket carrying one message per line. send() may be called from several threads;
// receiving is for one thread.
class LineSocket {
public:
    explicit LineSocket(Fd fd);
    int fd() const { return fd_.get(); }

    // Sends one message (no newline inside). False when the peer is gone.
    bool send(const std::string& message);

    enum class Received { kMessage, kTimeout, kClosed };
    // Waits up to timeout_ms (negative: forever) for one whole message.
    Received receive(std::string* message, int timeout_ms);
    // Reads what is available without waiting and appends the whole messages to `out`; false
    // once the peer closed (or a message grew past 1 MiB, which no peer of ours sends).
    bool receive_available(std::vector<std::string>* out);

    // Wakes a thread blocked in receive() (it returns kClosed) and stops further sends.
    void shutdown();

private:
    bool take_message(std::string* message);
    Fd fd_;
    std::string buffer_;
    std::mutex send_mutex_;
};

}  // namespace pangea
