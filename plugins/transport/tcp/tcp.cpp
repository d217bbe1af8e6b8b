// transport/tcp: Pangea's own TCP transport. Each connection is `streams` TCP sockets; a message
// is cut into chunks that the streams take in turn as each becomes free, so the chunks travel in
// parallel (which fills long fat links that one TCP stream cannot) and a slow stream carries
// less. Every stream has a sender and a receiver thread that block on their socket; abort()
// shuts the sockets down, which wakes them all.
//
// A request completes only once every stream thread is done with its buffer, so a caller that
// frees the buffer after a failed wait() is safe. Received bytes land directly in the caller's
// buffer after the frame header is checked: a peer cannot make this side allocate.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "../shared/handles.hpp"
#include "frames.hpp"
#include "socket.hpp"

namespace pangea::tcp {
namespace {

struct Settings {
    uint32_t streams;
    int socket_buffer;
    bool checksum;
    int handshake_timeout_ms;
    uint64_t max_message;
    uint64_t chunk_bytes;
};

// One isend or irecv. Stream threads move its chunks; it completes when every byte has moved
// (or, after a failure, once no stream thread is still inside its buffer).
class Op {
public:
    Op(uint8_t* data, uint64_t bytes) : data_(data), bytes_(bytes), left_(bytes) {}

    uint8_t* data() const { return data_; }
    uint64_t bytes() const { return bytes_; }

    // A stream thread is about to read or write `count` bytes of the buffer; false if the op has
    // already failed (then it must not touch the buffer).
    bool begin_io() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (status_ != PANGEA_OK) return false;
        ++active_;
        return true;
    }
    // ... and is done with them; `moved` bytes count towards completion.
    void end_io(uint64_t moved) {
        std::lock_guard<std::mutex> lock(mutex_);
        --active_;
        left_ -= std::min(left_, moved);
        settle();
    }
    // Fails the op; it completes once no stream thread is inside its buffer.
    void fail(pangea_status status, const std::string& why) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (done_ || status_ != PANGEA_OK) return;
        status_ = status;
        error_ = why;
        settle();
    }
    bool done() {
        std::lock_guard<std::mutex> lock(mutex_);
        return done_;
    }

    // Marks bytes [offset, offset + count) of a receive as arriving: false if any of them already
    // arrived or is arriving. A correct sender never sends a byte twice, and one counted twice
    // would complete the message with a hole. Adjacent ranges merge: a correct sender leaves a
    // few, a hostile one at most one per kMinChunk bytes of the posted buffer.
    bool claim(uint64_t offset, uint64_t count) {
        if (count == 0) return true;  // (only an empty message has an empty chunk)
        std::lock_guard<std::mutex> lock(mutex_);
        uint64_t end = offset + count;
        auto next = claimed_.lower_bound(offset);
        if (next != claimed_.end() && next->first < end) return false;
        if (next != claimed_.begin()) {
            const auto previous = std::prev(next);
            if (previous->second > offset) return false;
            if (previous->second == offset) {
                offset = previous->first;
                claimed_.erase(previous);
            }
        }
        if (next != claimed_.end() && next->first == end) {
            end = next->second;
            claimed_.erase(next);
        }
        claimed_[offset] = end;
        return true;
    }

    // PANGEA_ERR_TIMEOUT while pending; else the final status.
    pangea_status wait(int timeout_ms, std::string* error) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (timeout_ms < 0)
            done_cv_.wait(lock, [&] { return done_; });
        else if (!done_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return done_; }))
            return PANGEA_ERR_TIMEOUT;
        *error = error_;
        return status_;
    }

private:
    // Done once no stream thread is inside the buffer and every byte has moved or it failed.
    // (Called only after a chunk moved or a failure, so an empty message waits for its frame.)
    void settle() {  // mutex_ held
        if (done_ || active_ > 0 || (status_ == PANGEA_OK && left_ > 0)) return;
        done_ = true;
        done_cv_.notify_all();
    }

    uint8_t* data_;
    uint64_t bytes_;
    std::mutex mutex_;
    std::condition_variable done_cv_;
    uint64_t left_;
    int active_ = 0;
    bool done_ = false;
    pangea_status status_ = PANGEA_OK;
    std::string error_;
    std::map<uint64_t, uint64_t> claimed_;  // a receive's arrived byte ranges: start -> end, disjoint
};

class Connection {
public:
    Connection(std::vector<Fd> sockets, const Settings& settings, std::string peer, const pangea::sdk::Host& host)
        : sockets_(std::move(sockets)), settings_(settings), peer_(std::move(peer)), host_(host),
          closed_by_peer_(sockets_.size(), false) {
        for (uint32_t k = 0; k < sockets_.size(); ++k) {
            threads_.emplace_back([this, k] { send_loop(k); });
            threads_.emplace_back([this, k] { receive_loop(k); });
        }
    }

    ~Connection() {
        fail(PANGEA_ERR_ABORTED, "the connection was closed");
        for (auto& thread : threads_) thread.join();
    }

    // The message is cut into chunks; each stream's sender takes the next chunk when it is free,
    // so faster streams carry more.
    std::shared_ptr<Op> send(const void* data, uint64_t bytes) {
        auto op = std::make_shared<Op>(static_cast<uint8_t*>(const_cast<void*>(data)), bytes);
        std::lock_guard<std::mutex> lock(mutex_);
        if (failed_) return failed_op(op);
        const uint64_t sequence = next_send_sequence_++;
        uint64_t offset = 0;
        do {  // an empty message still sends one (empty) chunk
            const uint64_t length = std::min(settings_.chunk_bytes, bytes - offset);
            send_queue_.push_back({op, sequence, offset, length});
            offset += length;
        } while (offset < bytes);
        cv_.notify_all();
        return op;
    }

    std::shared_ptr<Op> receive(void* data, uint64_t bytes) {
        auto op = std::make_shared<Op>(static_cast<uint8_t*>(data), bytes);
        std::lock_guard<std::mutex> lock(mutex_);
        if (failed_) return failed_op(op);
        receives_[next_receive_sequence_++] = op;
        cv_.notify_all();
        return op;
    }

    // Fails every pending and future operation with `status` and wakes every thread.
    void fail(pangea_status status, const std::string& why) {
        std::vector<std::shared_ptr<Op>> pending;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (failed_) return;
            failed_ = true;
            failure_ = status;
            failure_text_ = "tcp: connection to " + peer_ + ": " + why;
            // An orderly close by the peer is news, not an error: the mesh decides what it means.
            if (status != PANGEA_ERR_ABORTED)
                host_.log(status == PANGEA_ERR_PEER_LOST ? PANGEA_LOG_INFO : PANGEA_LOG_WARN, failure_text_);
            for (auto& socket : sockets_) socket.shutdown();
            for (auto& chunk : send_queue_) pending.push_back(chunk.op);
            send_queue_.clear();
            for (auto& [sequence, op] : receives_) pending.push_back(op);
            receives_.clear();
            cv_.notify_all();
        }
        for (auto& op : pending) op->fail(status, failure_text_);
    }

private:
    struct Chunk {
        std::shared_ptr<Op> op;
        uint64_t sequence;
        uint64_t offset;
        uint64_t bytes;
    };

    uint32_t streams() const { return static_cast<uint32_t>(sockets_.size()); }

    std::shared_ptr<Op> failed_op(std::shared_ptr<Op> op) const {  // mutex_ held
        op->fail(failure_, failure_text_);
        return op;
    }

    void send_loop(uint32_t k) {
        while (true) {
            Chunk chunk;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                cv_.wait(lock, [&] { return failed_ || !send_queue_.empty(); });
                if (failed_) return;
                chunk = std::move(send_queue_.front());
                send_queue_.pop_front();
            }
            if (!chunk.op->begin_io()) continue;
            DataHeader header{};
            std::memcpy(header.magic, "PGTD", 4);
            header.version = kProtocolVersion;
            header.stream_index = static_cast<uint16_t>(k);
            header.sequence = chunk.sequence;
            header.message_bytes = chunk.op->bytes();
            header.offset = chunk.offset;
            header.part_bytes = chunk.bytes;
            const uint8_t* payload = chunk.op->data() + chunk.offset;
            if (settings_.checksum) {
                header.flags = kFlagChecksum;
                header.checksum = crc32c(payload, chunk.bytes);
            }
            const int error = send_all(sockets_[k].get(), &header, sizeof header, payload, chunk.bytes);
            if (error != 0) {  // failed before end_io(), which would complete an empty message (no bytes to move)
                fail(PANGEA_ERR_PEER_LOST, "send: " + system_error_text(error));  // a no-op if it failed already
                // The chunk in flight (off the queue, so fail() did not reach it) ends as the
                // connection did: PANGEA_ERR_ABORTED when an abort() shut the socket under it.
                pangea_status status;
                std::string text;
                {
                    std::lock_guard<std::mutex> lock(mutex_);
                    status = failure_;
                    text = failure_text_;
                }
                chunk.op->fail(status, text);
            }
            chunk.op->end_io(error == 0 ? chunk.bytes : 0);
            if (error != 0) return;
        }
    }

    void receive_loop(uint32_t k) {
        while (true) {
            DataHeader header;
            if (const int error = recv_all(sockets_[k].get(), &header, sizeof header); error != 0) {
                if (error == kPeerClosed) {
                    // An orderly close between frames. Other streams may still be bringing the
                    // rest of the peer's last message; once every stream is closed, it is gone.
                    std::lock_guard<std::mutex> lock(mutex_);
                    closed_by_peer_[k] = true;
                    if (std::count(closed_by_peer_.begin(), closed_by_peer_.end(), true) < streams()) return;
                }
                fail(PANGEA_ERR_PEER_LOST, error == kPeerClosed      ? "the peer closed the connection"
                                           : error == ECONNRESET ? "the peer closed the connection mid-frame"
                                                                 : "receive: " + system_error_text(error));
                return;
            }
            if (const std::string bad = check_data_header(header, k, settings_.max_message); !bad.empty()) {
                fail(PANGEA_ERR_CORRUPT, bad);
                return;
            }
            std::shared_ptr<Op> op;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                if (header.sequence < next_receive_sequence_ && receives_.count(header.sequence) == 0 && !failed_) {
                    lock.unlock();
                    fail(PANGEA_ERR_CORRUPT, "a chunk for message " + std::to_string(header.sequence) + ", which is complete");
                    return;
                }
                // Wait for the caller to post the receive: nothing is buffered on this side.
                cv_.wait(lock, [&] { return failed_ || receives_.count(header.sequence) != 0; });
                if (failed_) return;
                op = receives_.at(header.sequence);
            }
            if (header.message_bytes != op->bytes()) {
                fail(PANGEA_ERR_CORRUPT, "a message of " + std::to_string(header.message_bytes) +
                                             " bytes arrived for a receive of " + std::to_string(op->bytes()));
                return;
            }
            if (!op->claim(header.offset, header.part_bytes)) {
                fail(PANGEA_ERR_CORRUPT, "chunk [" + std::to_string(header.offset) + ", +" + std::to_string(header.part_bytes) +
                                             ") of message " + std::to_string(header.sequence) + " overlaps bytes already received");
                return;
            }
            if (!op->begin_io()) return;
            uint8_t* target = op->data() + header.offset;
            const int error = recv_all(sockets_[k].get(), target, header.part_bytes);
            const bool intact = error == 0 && (!(header.flags & kFlagChecksum) || crc32c(target, header.part_bytes) == header.checksum);
            if (!intact)  // failed before end_io(), which would complete an empty message (no bytes to move)
                fail(error != 0 ? PANGEA_ERR_PEER_LOST : PANGEA_ERR_CORRUPT,
                     error == 0 ? "checksum mismatch on stream " + std::to_string(k)
                     : error == ECONNRESET || error == kPeerClosed ? "the peer closed the connection mid-frame"
                                                                  : "receive: " + system_error_text(error));
            op->end_io(intact ? header.part_bytes : 0);
            if (!intact) return;
            if (op->done()) {
                std::lock_guard<std::mutex> lock(mutex_);
                receives_.erase(header.sequence);
            }
        }
    }

    std::vector<Fd> sockets_;
    Settings settings_;
    std::string peer_;
    pangea::sdk::Host host_;

    std::mutex mutex_;
    std::condition_variable cv_;
    bool failed_ = false;
    pangea_status failure_ = PANGEA_OK;
    std::string failure_text_;
    std::deque<Chunk> send_queue_;
    uint64_t next_send_sequence_ = 0;
    std::map<uint64_t, std::shared_ptr<Op>> receives_;  // posted and not yet complete, by sequence
    uint64_t next_receive_sequence_ = 0;
    std::vector<bool> closed_by_peer_;  // per stream
    std::vector<std::thread> threads_;  // last: started once everything above exists
};

// Streams that have said hello, waiting for the rest of their connection.
struct PendingConnection {
    Hello first;
    std::vector<Fd> sockets;
    uint32_t arrived = 0;
    Clock::time_point started;
};

struct Listener {
    Listener(ListeningSocket bound, Greetings greeting) : socket(std::move(bound)), greetings(std::move(greeting)) {}

    ListeningSocket socket;
    Greetings greetings;  // sockets still sending their Hello (it has a fixed size)
    std::mutex mutex;     // one accept() at a time
    std::map<uint64_t, PendingConnection> pending;
};

pangea_hello to_api(const Hello& hello) {
    pangea_hello out{};
    out.struct_size = sizeof out;
    out.node_id = hello.node_id;
    out.run_id = hello.run_id;
    out.channel = hello.channel;
    return out;
}

Hello make_hello(const pangea_hello& self, uint16_t index, uint16_t count, uint64_t nonce, uint32_t status) {
    Hello hello{};
    std::memcpy(hello.magic, "PGTH", 4);
    hello.version = kProtocolVersion;
    hello.stream_index = index;
    hello.stream_count = count;
    hello.node_id = self.node_id;
    hello.channel = self.channel;
    hello.status = status;
    hello.run_id = self.run_id;
    hello.nonce = nonce;
    return hello;
}

class TcpTransport final : public pangea::sdk::Transport {
public:
    static constexpr const char* name = "tcp";
    static constexpr const char* version = "1.0.0";
    static constexpr const char* description =
        "TCP with several streams per connection, messages striped across them";
    static std::vector<pangea_setting> settings() {
        using namespace pangea::sdk;
        return {
            int_setting("streams", "2", "TCP connections per peer; messages are spread over them in chunks", 1, kMaxStreams),
            int_setting("socket_buffer", "0", "SO_SNDBUF/SO_RCVBUF in bytes (0: the kernel's autotuning)", 0, 1 << 30),
            bool_setting("checksum", "false", "add a CRC-32C of every part and check it on receipt"),
            int_setting("handshake_timeout_ms", "5000", "how long an incoming socket may take to say hello", 10, 600000),
            int_setting("max_message", "17179869184", "largest message accepted, in bytes", 1, 1099511627776.0),
            int_setting("chunk_bytes", "262144", "a message is cut into chunks of this size, spread over the streams",
                        static_cast<double>(kMinChunk), 67108864),
        };
    }

    explicit TcpTransport(const pangea::sdk::Host& host)
        : host_(host),
          settings_{static_cast<uint32_t>(host.get_int("streams")), static_cast<int>(host.get_int("socket_buffer")),
                    host.get_bool("checksum"), static_cast<int>(host.get_int("handshake_timeout_ms")),
                    static_cast<uint64_t>(host.get_int("max_message")), static_cast<uint64_t>(host.get_int("chunk_bytes"))} {}

    ~TcpTransport() override {
        // Handles the caller did not release: close them so no thread outlives the instance.
        connections_.take_all();
        listeners_.take_all();
    }

    pangea_listener* listen(const char* address, char* bound, size_t capacity) override {
        auto listener = std::make_shared<Listener>(
            listen_on(kWho, address), Greetings(kWho, sizeof(Hello), [](const std::vector<uint8_t>&) { return sizeof(Hello); },
                                                settings_.handshake_timeout_ms));
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
            expire_pending(listener);
            if (auto connection = take_complete(listener, self, peer)) return connection;
            auto greeting = listener.greetings.next(listener.socket, deadline, settings_.socket_buffer,
                                                    [&](const std::string& from, const std::string& why) {
                                                        host_.log(PANGEA_LOG_WARN, "tcp: dropped a connection from " + from + ": " + why);
                                                    });
            if (!greeting) {
                if (deadline.passed()) throw no_connection(kWho, listener.socket, timeout_ms);
                continue;
            }
            Fd socket = std::move(greeting->socket);
            set_blocking(socket.get(), true);  // the stream threads block; handshake reads have deadlines
            const std::string& from = greeting->from;
            Hello hello;
            std::memcpy(&hello, greeting->bytes.data(), sizeof hello);
            if (const std::string bad = check_hello(hello); !bad.empty() || hello.status != kHelloRequest) {
                host_.log(PANGEA_LOG_WARN, "tcp: dropped a connection from " + from + ": " +
                                               (bad.empty() ? std::string("unexpected handshake status") : bad));
                continue;
            }
            PendingConnection& pending = listener.pending[hello.nonce];
            if (pending.arrived == 0) {
                pending.first = hello;
                pending.sockets.resize(hello.stream_count);
                pending.started = Clock::now();
            }
            if (pending.first.stream_count != hello.stream_count || pending.first.run_id != hello.run_id ||
                pending.first.node_id != hello.node_id || pending.sockets[hello.stream_index]) {
                host_.log(PANGEA_LOG_WARN, "tcp: dropped a connection from " + from + ": its streams disagree");
                continue;
            }
            pending.sockets[hello.stream_index] = std::move(socket);
            ++pending.arrived;
        }
    }

    pangea_connection* connect(const char* address, const pangea_hello& self, int timeout_ms,
                               pangea_hello* peer) override {
        const Deadline deadline(timeout_ms);
        const uint64_t nonce = (static_cast<uint64_t>(std::random_device{}()) << 32) | std::random_device{}();
        const auto count = static_cast<uint16_t>(settings_.streams);
        std::vector<Fd> sockets;
        for (uint16_t k = 0; k < count; ++k) {
            sockets.push_back(connect_to(kWho, address, deadline, settings_.socket_buffer));
            set_blocking(sockets.back().get(), true);
            const Hello hello = make_hello(self, k, count, nonce, kHelloRequest);
            if (const int error = send_all(sockets.back().get(), &hello, sizeof hello, nullptr, 0); error != 0)
                throw Error(PANGEA_ERR_PEER_LOST, std::string("tcp: handshake with ") + address + ": " + system_error_text(error));
        }
        Hello answer{}, first{};
        for (uint16_t k = 0; k < count; ++k) {
            read_exact(kWho, sockets[k].get(), &answer, sizeof answer, deadline, "waiting for the handshake answer");
            const auto corrupt = [&](const std::string& why) {
                return Error(PANGEA_ERR_CORRUPT, std::string("tcp: ") + address + ": " + why);
            };
            if (const std::string bad = check_hello(answer); !bad.empty()) throw corrupt(bad);
            if (answer.stream_index != k || answer.stream_count != count || answer.nonce != nonce)
                throw corrupt("the handshake answer on stream " + std::to_string(k) + " is for another stream or connection");
            if (answer.status == kHelloWrongRun)
                throw Error(PANGEA_ERR_CONFIG, std::string("tcp: ") + address + " refused the connection: it belongs to another run");
            if (answer.status != kHelloAccepted)
                throw Error(PANGEA_ERR_CORRUPT, std::string("tcp: ") + address + " refused the handshake");
            if (answer.run_id != self.run_id) throw corrupt("it accepted the connection but names another run");
            if (k == 0) first = answer;
            if (answer.node_id != first.node_id || answer.channel != first.channel)
                throw corrupt("the handshake answers of one connection name different nodes or channels");
        }
        *peer = to_api(answer);
        return add_connection(std::move(sockets), address);
    }

    pangea_request* isend(pangea_connection* handle, const void* data, size_t bytes) override {
        check_size(bytes);
        return requests_.add(connections_.get(handle)->send(data, bytes));
    }

    pangea_request* irecv(pangea_connection* handle, void* data, size_t bytes) override {
        check_size(bytes);
        return requests_.add(connections_.get(handle)->receive(data, bytes));
    }

    pangea_status test(pangea_request* request) override { return wait(request, 0); }

    pangea_status wait(pangea_request* request, int timeout_ms) override {
        const std::shared_ptr<Op> op = requests_.get(request);
        std::string error;
        const pangea_status status = op->wait(timeout_ms, &error);
        if (status == PANGEA_ERR_TIMEOUT) return timeout_ms == 0 ? PANGEA_ERR_AGAIN : PANGEA_ERR_TIMEOUT;
        requests_.take(request);
        if (status != PANGEA_OK) set_last_error(error.c_str());
        return status;
    }

    // The reference held keeps the connection alive through fail() even if close() runs now.
    void abort(pangea_connection* handle) noexcept override {
        if (const auto connection = connections_.find(handle)) connection->fail(PANGEA_ERR_ABORTED, "aborted");
    }

    // The last reference joins the connection's threads: here, or in a call still holding one.
    void close(pangea_connection* handle) noexcept override {
        if (const auto doomed = connections_.take(handle)) doomed->fail(PANGEA_ERR_ABORTED, "the connection was closed");
    }

    void close_listener(pangea_listener* handle) noexcept override { listeners_.take(handle); }

private:

    void check_size(size_t bytes) const {
        if (bytes > settings_.max_message)
            throw Error(PANGEA_ERR_INVALID_ARGUMENT, "tcp: message of " + std::to_string(bytes) +
                                                         " bytes exceeds max_message " + std::to_string(settings_.max_message));
    }

    pangea_connection* add_connection(std::vector<Fd> sockets, const std::string& peer) {
        return connections_.add(std::make_shared<Connection>(std::move(sockets), settings_, peer, host_));
    }

    void expire_pending(Listener& listener) {
        const auto limit = std::chrono::milliseconds(settings_.handshake_timeout_ms);
        for (auto it = listener.pending.begin(); it != listener.pending.end();) {
            if (it->second.arrived < it->second.first.stream_count && Clock::now() - it->second.started > limit) {
                host_.log(PANGEA_LOG_WARN, "tcp: dropped a connection attempt: only " + std::to_string(it->second.arrived) +
                                               " of its " + std::to_string(it->second.first.stream_count) + " streams arrived");
                it = listener.pending.erase(it);
            } else {
                ++it;
            }
        }
    }

    // A pending connection whose streams have all arrived, answered and made live; or nullptr.
    pangea_connection* take_complete(Listener& listener, const pangea_hello& self, pangea_hello* peer) {
        for (auto it = listener.pending.begin(); it != listener.pending.end(); ++it) {
            PendingConnection& pending = it->second;
            if (pending.arrived < pending.first.stream_count) continue;
            const bool same_run = pending.first.run_id == self.run_id;
            const std::string from = peer_of(pending.sockets[0].get());
            bool answered = true;
            for (uint16_t k = 0; k < pending.first.stream_count; ++k) {
                const Hello answer = make_hello(self, k, pending.first.stream_count, pending.first.nonce,
                                                same_run ? kHelloAccepted : kHelloWrongRun);
                answered &= send_all(pending.sockets[k].get(), &answer, sizeof answer, nullptr, 0) == 0;
            }
            PendingConnection taken = std::move(pending);
            listener.pending.erase(it);
            if (!same_run) {
                host_.log(PANGEA_LOG_WARN, "tcp: refused a connection from " + from + " (node " +
                                               std::to_string(taken.first.node_id) + "): it belongs to another run");
                return nullptr;
            }
            if (!answered) {
                host_.log(PANGEA_LOG_WARN, "tcp: a connection from " + from + " closed during the handshake");
                return nullptr;
            }
            *peer = to_api(taken.first);
            return add_connection(std::move(taken.sockets), from);
        }
        return nullptr;
    }

    pangea::sdk::Host host_;
    Settings settings_;
    pangea::transport::HandleTable<pangea_listener, Listener> listeners_{kWho, "listener"};
    pangea::transport::HandleTable<pangea_connection, Connection> connections_{kWho, "connection"};
    pangea::transport::HandleTable<pangea_request, Op> requests_{kWho, "or already completed request"};
};

}  // namespace
}  // namespace pangea::tcp

PANGEA_EXPORT_PLUGINS(pangea::tcp::TcpTransport)
