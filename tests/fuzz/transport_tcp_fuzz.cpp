// transport/tcp's connection handshake and frame parser (plugins/transport/tcp/tcp.cpp, compiled
// in), through the plugin's C vtable over loopback, against raw sockets that send the input: the
// wire format is docs/plugins/transport.md's (frames.hpp).
//
// Input: a mode byte, then by mode:
// - accept (bits 4-5 clear): the plugin listens on 127.0.0.1:0; one raw client socket (two with
//   bit 1) connects and sends a Hello, then data, then nothing more (a socket that sent less
//   than a Hello is reset: accept() would wait for the rest). The plugin accept()s.
// - connect (bit 4): the plugin (one stream, two with bit 1) connect()s to a raw listener, which
//   reads its Hellos and answers each with a Hello, then data, then shuts its sending side.
// - both: on a connection, the plugin irecv()s 1 + b % 3 messages (b: the byte after the mode;
//   the sizes: a u16 each after it). The Hellos (accept) or answers (connect) come next: a length
//   byte, then up to 40 bytes of the input; bit 0: valid ones written here instead (accept: of a
//   connection of as many streams as sockets; connect: the status a byte of the input). Data: the
//   rest of the input (with two sockets, cut where a u16 says); with bit 2 (valid Hellos, and
//   accepting answers, too), what a correct sender sends for the posted sizes: chunks of a u16
//   size (at least 4096 and size / 64), each on the stream a bit of a u64 picks, checksummed with bit 3,
//   the payload the rest of the input.
// - unit (bit 5): check_hello and check_data_header on a raw 40-byte Hello, a 48-byte DataHeader,
//   a u16 stream and a u64 max_message.
//
// Properties:
// - the checks agree with the documented format, written out again here (spec_hello,
//   spec_header: the models below use these, not the plugin's own checks);
// - accept() returns a connection exactly when a model of the handshake says (the first stream
//   set of our run completed by a Hello of the right status, stream numbers and nonce), with the
//   first Hello's node, run and channel, else PANGEA_ERR_TIMEOUT; every socket in the set gets an
//   answer (accepted, or wrong run) that passes check_hello and carries its stream index, the
//   set's nonce and our node, run and channel; dropped and refused sockets are closed at once,
//   half-done sets when the listener closes;
// - connect() returns what a model of the answers says: PANGEA_OK (the peer: the last answer's
//   node, run, channel), PANGEA_ERR_CORRUPT (also an answer for another stream or nonce, or one
//   accepting for another run or node), PANGEA_ERR_CONFIG (wrong run), PANGEA_ERR_PEER_LOST (a
//   short answer); its own Hellos pass check_hello, numbered, with one nonce (which valid answers
//   carry back);
// - one stream of raw data: each receive ends as a reading of the stream by the wire format
//   says (PANGEA_OK holding exactly the chunks' bytes, PANGEA_ERR_CORRUPT (also for a byte sent
//   twice, or a short chunk that is not its message's last), PANGEA_ERR_PEER_LOST
//   when the peer closes first), or stays pending (the stream goes silent, or holds a chunk of a
//   message never posted);
// - what a correct sender sends (one or two streams): every receive PANGEA_OK with its bytes;
// - two streams of raw data: PANGEA_OK, PANGEA_ERR_CORRUPT, PANGEA_ERR_PEER_LOST, or pending;
// - abort() then ends every pending receive with PANGEA_ERR_ABORTED; a receive buffer is freed
//   as soon as its receive has ended (ASan catches a stream thread writing to it later);
// - nothing outlives an input: as many sockets open after it as before (connections, listeners
//   and every raw socket closed), and no thread left (each is joined).
// Waits for what must happen have 10 s (past that, a hang is a finding); nothing else waits.
//
// Sockets: hundreds of inputs a second would leave as many TIME_WAIT sockets (on the side that
// closes first with a FIN) and use up the machine's ephemeral ports within a minute. So the raw
// sockets close with a reset, and in accept mode never send a FIN: the plugin closes first and
// the reset clears its side too. The peer closing first (end of stream: PEER_LOST) is connect
// mode's, whose TIME_WAIT sockets all sit on the one port of its raw listener.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <memory>
#include <thread>
#include <utility>

#include "../../plugins/transport/tcp/frames.hpp"
#include "fuzz_support.hpp"
#include "pangea/transport.h"

extern "C" pangea_status pangea_plugin_entry_v1(uint32_t, const pangea_library**);

namespace {

using namespace pangea;
using tcp::DataHeader;
using tcp::Hello;

constexpr uint64_t kRun = 0x5eed;
constexpr uint64_t kMaxMessage = 60000;  // the instances' max_message: some u16 sizes exceed it
constexpr int kLong = 10000;             // ms, for what must happen
const pangea_hello kSelf{sizeof(pangea_hello), 1, kRun, 7};

// Two instances (streams 1 and 2: what connect() opens; accept() takes any count), reused.
const PluginInstance& transport(int streams) {
    static const auto make = [](int64_t count) {
        return std::make_unique<PluginInstance>(fuzz::instance_of(
            fuzz::compiled_in_plugin(pangea_plugin_entry_v1),
            {{"streams", count}, {"max_message", int64_t{kMaxMessage}}, {"handshake_timeout_ms", int64_t{2000}}}));
    };
    static const auto one = make(1);
    static const auto two = make(2);
    return streams == 1 ? *one : *two;
}

// With PANGEA_FUZZ_LOG set: what each input came to, on stderr.
void trace(const std::string& line) {
    static const bool on = std::getenv("PANGEA_FUZZ_LOG") != nullptr;
    if (on) std::fprintf(stderr, "transport_tcp: %s\n", line.c_str());
}

// ------------------------------------------------------------------ the documented format

bool spec_hello(const Hello& h) {
    return std::memcmp(h.magic, "PGTH", 4) == 0 && h.version == 2 && h.stream_count >= 1 && h.stream_count <= 64 &&
           h.stream_index < h.stream_count && h.reserved == 0;
}

bool spec_header(const DataHeader& h, uint32_t stream, uint64_t max_message) {
    uint64_t end = 0;
    return std::memcmp(h.magic, "PGTD", 4) == 0 && h.version == 2 && h.stream_index == stream && h.reserved == 0 &&
           (h.flags & ~tcp::kFlagChecksum) == 0 && h.message_bytes <= max_message &&
           !__builtin_add_overflow(h.offset, h.part_bytes, &end) && end <= h.message_bytes &&
           (h.part_bytes > 0 || h.message_bytes == 0) && (h.part_bytes >= 4096 || end == h.message_bytes);
}

uint32_t spec_crc32c(const uint8_t* data, size_t bytes) { return ~tcp::crc32c_portable(~0u, data, bytes); }

template <class T>
std::string bytes_of(const T& value) {
    return std::string(reinterpret_cast<const char*>(&value), sizeof value);
}

Hello hello(uint16_t index, uint16_t count, uint32_t node, uint32_t channel, uint32_t status, uint64_t run, uint64_t nonce) {
    Hello h{};
    std::memcpy(h.magic, "PGTH", 4);
    h.version = tcp::kProtocolVersion;
    h.stream_index = index;
    h.stream_count = count;
    h.node_id = node;
    h.channel = channel;
    h.status = status;
    h.run_id = run;
    h.nonce = nonce;
    return h;
}

// ------------------------------------------------------------------ raw sockets

// A raw socket of this side, closed with a reset (see the top of the file).
class Socket {
public:
    explicit Socket(int fd = -1) : fd_(fd) {
        const linger reset{1, 0};
        if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    ~Socket() { reset(); }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Socket& operator=(Socket&&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

// The sockets this process holds (other descriptors come and go: libFuzzer's symbolizer pipes).
int open_sockets() {
    int count = 0;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return -1;
    while (const dirent* entry = ::readdir(dir)) {
        char target[64] = {};
        if (entry->d_name[0] != '.' && ::readlinkat(::dirfd(dir), entry->d_name, target, sizeof target - 1) > 0)
            count += std::strncmp(target, "socket:", 7) == 0;
    }
    ::closedir(dir);
    return count;
}

uint16_t port_of(const std::string& address) {
    return static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

Socket connect_raw(uint16_t port) {
    Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    FUZZ_CHECK(s.get() >= 0, "socket: " + std::string(std::strerror(errno)));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int error = ::connect(s.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0 ? 0 : errno;
    if (error == EINTR) {  // (libFuzzer's timer) the connection goes on: wait for it
        pollfd entry{s.get(), POLLOUT, 0};
        while (::poll(&entry, 1, kLong) < 0 && errno == EINTR) {
        }
        socklen_t size = sizeof error;
        ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &error, &size);
    }
    FUZZ_CHECK(error == 0, "connecting to a loopback listener: " + std::string(std::strerror(error)));
    return s;
}

// Sends `bytes` (then, with `fin`, shuts the sending side): at once as far as the socket buffers
// take them, the rest from a thread (the stream threads read only into posted receives). A send
// the plugin refuses by closing its side ends early.
void send_bytes(int fd, const std::string& bytes, bool fin, std::vector<std::thread>& writers) {
    size_t at = 0;
    while (at < bytes.size()) {
        const ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            at += static_cast<size_t>(n);
        else if (n < 0 && errno == EINTR)
            continue;
        else
            break;
    }
    if (at == bytes.size()) {
        if (fin) ::shutdown(fd, SHUT_WR);
        return;
    }
    writers.emplace_back([fd, fin, rest = bytes.substr(at)] {
        size_t done = 0;
        while (done < rest.size()) {
            const ssize_t n = ::send(fd, rest.data() + done, rest.size() - done, MSG_NOSIGNAL);
            if (n > 0)
                done += static_cast<size_t>(n);
            else if (n < 0 && errno == EINTR)
                continue;
            else
                return;
        }
        if (fin) ::shutdown(fd, SHUT_WR);
    });
}

// connect mode's raw listener, on 127.0.0.1, and its address; one for every input.
const std::pair<Socket, std::string>& raw_listener() {
    static const std::pair<Socket, std::string> listener = [] {
        Socket fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        FUZZ_CHECK(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0 && ::listen(fd.get(), 8) == 0 &&
                       ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0,
                   "a raw listener: " + std::string(std::strerror(errno)));
        return std::pair<Socket, std::string>(std::move(fd), "127.0.0.1:" + std::to_string(ntohs(address.sin_port)));
    }();
    return listener;
}

// Reads up to `bytes` within kLong, until the stream ends; returns how many came.
size_t read_some(int fd, void* out, size_t bytes) {
    size_t got = 0;
    while (got < bytes) {
        pollfd entry{fd, POLLIN, 0};
        const int ready = ::poll(&entry, 1, kLong);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        const ssize_t n = ::recv(fd, static_cast<char*>(out) + got, bytes - got, MSG_DONTWAIT);
        if (n > 0)
            got += static_cast<size_t>(n);
        else if (n == 0 || (errno != EINTR && errno != EAGAIN))
            break;
    }
    return got;
}

// Whether the other side closed the socket (end of stream or reset) within `timeout_ms`, with
// nothing more to read.
bool closed_by_peer(int fd, int timeout_ms) {
    pollfd entry{fd, POLLIN, 0};
    int ready;
    while ((ready = ::poll(&entry, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (ready <= 0) return false;
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
}

// ------------------------------------------------------------------ models

// What accept() does with each socket (in connection order, one accept() call).
enum class Fate { kUnseen, kDropped, kPending, kRefused, kAccepted };

struct Handshake {
    std::vector<Fate> fate;
    bool connected = false;
    Hello first{};
    std::vector<size_t> streams;  // the client socket of each stream index
};

Handshake expect_handshake(const std::vector<std::string>& hellos) {
    Handshake m;
    m.fate.assign(hellos.size(), Fate::kUnseen);
    struct Set {
        Hello first;
        std::vector<int> sockets;
        uint32_t arrived = 0;
    };
    std::map<uint64_t, Set> sets;
    for (size_t s = 0; s < hellos.size(); ++s) {
        Hello h;
        m.fate[s] = Fate::kDropped;
        if (hellos[s].size() < sizeof h) continue;
        std::memcpy(&h, hellos[s].data(), sizeof h);
        if (!spec_hello(h) || h.status != tcp::kHelloRequest) continue;
        Set& set = sets[h.nonce];
        if (set.arrived == 0) {
            set.first = h;
            set.sockets.assign(h.stream_count, -1);
        }
        if (set.first.stream_count != h.stream_count || set.first.run_id != h.run_id || set.first.node_id != h.node_id ||
            set.sockets[h.stream_index] >= 0)
            continue;
        set.sockets[h.stream_index] = static_cast<int>(s);
        m.fate[s] = Fate::kPending;
        if (++set.arrived < set.first.stream_count) continue;
        const bool ours = set.first.run_id == kRun;
        for (const int k : set.sockets) m.fate[static_cast<size_t>(k)] = ours ? Fate::kAccepted : Fate::kRefused;
        if (ours) {
            m.connected = true;
            m.first = set.first;
            for (const int k : set.sockets) m.streams.push_back(static_cast<size_t>(k));
            return m;
        }
        sets.erase(h.nonce);
    }
    return m;
}

uint8_t canary(size_t receive, size_t at) { return static_cast<uint8_t>(0xa5 ^ (receive * 37) ^ (at * 11)); }

struct Expected {
    pangea_status status = PANGEA_OK;
    bool pending = false;  // never ends by itself
    std::vector<uint8_t> bytes;
};

// One stream of data, read as the wire format says, into receives of `sizes` (posted in order,
// in buffers holding canary()); then the peer closes the stream (`closes`) or goes silent.
std::vector<Expected> expect_stream(const std::string& stream, const std::vector<size_t>& sizes, bool closes) {
    std::vector<Expected> out(sizes.size());
    std::vector<uint64_t> left(sizes.size());
    std::vector<bool> done(sizes.size(), false);
    std::vector<std::vector<bool>> arrived(sizes.size());  // per byte of each message
    for (size_t i = 0; i < sizes.size(); ++i) {
        out[i].bytes.resize(sizes[i]);
        for (size_t j = 0; j < sizes[i]; ++j) out[i].bytes[j] = canary(i, j);
        left[i] = sizes[i];
        arrived[i].assign(sizes[i], false);
    }
    // Ends every receive still open with `status`.
    const auto fail = [&](pangea_status status) {
        for (size_t i = 0; i < sizes.size(); ++i)
            if (!done[i]) out[i].status = status;
        return out;
    };
    // The stream thread waits for more: every receive still open stays pending.
    const auto block = [&] {
        for (size_t i = 0; i < sizes.size(); ++i) out[i].pending = !done[i];
        return out;
    };
    size_t at = 0;
    while (true) {
        DataHeader h;
        if (stream.size() - at < sizeof h) return closes ? fail(PANGEA_ERR_PEER_LOST) : block();  // the end, or half a header
        std::memcpy(&h, stream.data() + at, sizeof h);
        at += sizeof h;
        if (!spec_header(h, 0, kMaxMessage)) return fail(PANGEA_ERR_CORRUPT);
        if (h.sequence < sizes.size() && done[h.sequence]) return fail(PANGEA_ERR_CORRUPT);  // a complete message's
        if (h.sequence >= sizes.size()) return block();  // waits for a receive that is never posted
        const size_t i = h.sequence;
        if (h.message_bytes != sizes[i]) return fail(PANGEA_ERR_CORRUPT);
        for (uint64_t j = h.offset; j < h.offset + h.part_bytes; ++j) {  // a byte sent twice
            if (arrived[i][j]) return fail(PANGEA_ERR_CORRUPT);
            arrived[i][j] = true;
        }
        const size_t part = std::min<size_t>(h.part_bytes, stream.size() - at);
        if (part > 0) std::memcpy(out[i].bytes.data() + h.offset, stream.data() + at, part);
        at += part;
        if (part < h.part_bytes) return closes ? fail(PANGEA_ERR_PEER_LOST) : block();  // cut off mid-chunk
        if ((h.flags & tcp::kFlagChecksum) && spec_crc32c(out[i].bytes.data() + h.offset, part) != h.checksum)
            return fail(PANGEA_ERR_CORRUPT);
        left[i] -= std::min<uint64_t>(left[i], part);
        done[i] = left[i] == 0;
    }
}

// ------------------------------------------------------------------ modes

void unit(fuzz::Input& input) {
    Hello h;
    DataHeader d;
    const std::string raw_hello = input.bytes(sizeof h), raw_header = input.bytes(sizeof d);
    std::memset(&h, 0, sizeof h);
    std::memset(&d, 0, sizeof d);
    std::memcpy(&h, raw_hello.data(), raw_hello.size());
    std::memcpy(&d, raw_header.data(), raw_header.size());
    const uint32_t stream = input.integer<uint16_t>();
    const uint64_t max_message = input.integer<uint64_t>();
    const std::string hello_says = tcp::check_hello(h), header_says = tcp::check_data_header(d, stream, max_message);
    FUZZ_CHECK(hello_says.empty() == spec_hello(h), "check_hello disagrees with the wire format: '" + hello_says + "'");
    FUZZ_CHECK(header_says.empty() == spec_header(d, stream, max_message),
               "check_data_header disagrees with the wire format: '" + header_says + "'");
}

// What a correct sender writes on each stream for `messages` (sequence numbers from 0): chunks of
// chunk_bytes (at least 4096 bytes and a 64th of the message), each on the stream the next bit of `pick` says.
std::vector<std::string> correct_sender(const std::vector<std::string>& messages, uint32_t streams, uint64_t chunk_bytes,
                                        uint64_t pick, bool checksum) {
    std::vector<std::string> out(streams);
    unsigned turn = 0;
    for (size_t i = 0; i < messages.size(); ++i) {
        const std::string& m = messages[i];
        const uint64_t chunk = std::max<uint64_t>({chunk_bytes, 4096, (m.size() + 63) / 64});
        uint64_t offset = 0;
        do {  // an empty message is one empty chunk
            const uint64_t length = std::min<uint64_t>(chunk, m.size() - offset);
            const uint32_t k = streams == 1 ? 0 : static_cast<uint32_t>((pick >> (turn++ % 64)) & 1);
            DataHeader h{};
            std::memcpy(h.magic, "PGTD", 4);
            h.version = tcp::kProtocolVersion;
            h.stream_index = static_cast<uint16_t>(k);
            h.sequence = i;
            h.message_bytes = m.size();
            h.offset = offset;
            h.part_bytes = length;
            if (checksum) {
                h.flags = tcp::kFlagChecksum;
                h.checksum = spec_crc32c(reinterpret_cast<const uint8_t*>(m.data()) + offset, length);
            }
            out[k] += bytes_of(h) + m.substr(offset, length);
            offset += length;
        } while (offset < m.size());
    }
    return out;
}

// What a peer sends after the handshake, and what the plugin must make of it.
struct Data {
    std::vector<size_t> sizes;                 // the receives asked for, in order
    std::vector<size_t> posted;                // those irecv() takes (max_message bounds them)
    bool generated = false;                    // a correct sender's, of `messages`
    std::vector<std::string> messages;
    std::vector<std::string> streams;          // the bytes of each socket
};

std::vector<size_t> read_sizes(fuzz::Input& input) {
    std::vector<size_t> sizes(1 + input.byte() % 3);
    for (auto& size : sizes) size = input.integer<uint16_t>();
    return sizes;
}

// A Hello or answer from the input: valid (written by `make`), else raw (a length byte, the bytes).
template <class Make>
std::string read_hello(fuzz::Input& input, bool valid, Make make) {
    return valid ? bytes_of(make()) : input.bytes(std::min<size_t>(input.byte(), sizeof(Hello)));
}

Data read_data(fuzz::Input& input, std::vector<size_t> sizes, size_t sockets, bool generated, bool checksum) {
    Data d;
    d.sizes = std::move(sizes);
    for (const size_t size : d.sizes)
        if (size <= kMaxMessage) d.posted.push_back(size);
    d.generated = generated;
    if (generated) {
        const uint64_t chunk_bytes = std::max<uint16_t>(input.integer<uint16_t>(), 1);
        const uint64_t pick = input.integer<uint64_t>();
        const std::string payload = input.rest();
        for (size_t i = 0; i < d.posted.size(); ++i) {
            std::string m(d.posted[i], '\0');
            for (size_t j = 0; j < m.size(); ++j)
                m[j] = payload.empty() ? static_cast<char>(j * 131 + i) : static_cast<char>(payload[(j + i * 7) % payload.size()] + i);
            d.messages.push_back(std::move(m));
        }
        d.streams = correct_sender(d.messages, static_cast<uint32_t>(sockets), chunk_bytes, pick, checksum);
    } else if (sockets == 2) {
        d.streams.push_back(input.bytes(input.integer<uint16_t>()));
        d.streams.push_back(input.rest());
    } else {
        d.streams.push_back(input.rest());
    }
    return d;
}

// Posts the receives on a new connection and checks how they end. `streams`: the bytes after
// the Hello on each stream of the connection, in stream order; `closes`: whether the peer closes
// them after.
void exercise(const PluginInstance& plugin, pangea_connection* connection, const Data& data,
              const std::vector<std::string>& streams, bool closes) {
    const auto& v = plugin.vtable<pangea_transport_vtable>();
    std::vector<Expected> expected(data.posted.size());
    const bool predictable = data.generated || streams.size() == 1;
    if (data.generated) {
        for (size_t i = 0; i < data.posted.size(); ++i) expected[i].bytes.assign(data.messages[i].begin(), data.messages[i].end());
    } else if (streams.size() == 1) {
        expected = expect_stream(streams[0], data.posted, closes);
    }
    std::vector<std::unique_ptr<uint8_t[]>> buffers;
    std::vector<pangea_request*> requests;
    for (const size_t size : data.sizes) {
        auto buffer = std::make_unique<uint8_t[]>(size + 1);
        for (size_t j = 0; j < size; ++j) buffer[j] = canary(requests.size(), j);
        pangea_request* request = nullptr;
        const pangea_status status = v.irecv(plugin.handle(), connection, buffer.get(), size, &request);
        if (size > kMaxMessage) {
            FUZZ_CHECK(status == PANGEA_ERR_INVALID_ARGUMENT, "irecv() above max_message");
            continue;
        }
        FUZZ_CHECK(status == PANGEA_OK && request != nullptr, "irecv(): " + plugin.last_error());
        buffers.push_back(std::move(buffer));
        requests.push_back(request);
    }
    const auto end = [&](size_t i, pangea_status status) {
        trace("receive " + std::to_string(i) + " of " + std::to_string(data.posted[i]) + " bytes: status " + std::to_string(status));
        if (status == PANGEA_OK && predictable && data.posted[i] > 0)
            FUZZ_CHECK(std::memcmp(buffers[i].get(), expected[i].bytes.data(), data.posted[i]) == 0,
                       "a receive holds other bytes than the peer sent");
        requests[i] = nullptr;
        buffers[i].reset();  // a stream thread writing here now is a use after free
    };
    for (size_t i = 0; i < requests.size(); ++i) {
        if (!predictable) {
            const pangea_status status = v.wait(plugin.handle(), requests[i], 100);
            FUZZ_CHECK(status == PANGEA_OK || status == PANGEA_ERR_CORRUPT || status == PANGEA_ERR_PEER_LOST ||
                           status == PANGEA_ERR_TIMEOUT,
                       "wait(): undocumented status " + std::to_string(status));
            if (status != PANGEA_ERR_TIMEOUT) end(i, status);
        } else if (expected[i].pending) {
            FUZZ_CHECK(v.test(plugin.handle(), requests[i]) == PANGEA_ERR_AGAIN, "a receive ended though the stream waits for more");
        } else {
            const pangea_status status = v.wait(plugin.handle(), requests[i], kLong);
            FUZZ_CHECK(status != PANGEA_ERR_TIMEOUT, "a receive hangs");
            FUZZ_CHECK(status == expected[i].status, "receive " + std::to_string(i) + " ended with status " + std::to_string(status) +
                                                         ", expected " + std::to_string(expected[i].status) + ": " + plugin.last_error());
            end(i, status);
        }
    }
    v.abort(plugin.handle(), connection);
    for (size_t i = 0; i < requests.size(); ++i) {
        if (requests[i] == nullptr) continue;
        const pangea_status status = v.wait(plugin.handle(), requests[i], kLong);
        // (Unpredicted ones may have ended by themselves since their wait.)
        FUZZ_CHECK(status == PANGEA_ERR_ABORTED ||
                       (!predictable && (status == PANGEA_OK || status == PANGEA_ERR_CORRUPT || status == PANGEA_ERR_PEER_LOST)),
                   "a pending receive after abort(): status " + std::to_string(status));
        end(i, status);
    }
    v.close(plugin.handle(), connection);
}

void accept_mode(uint8_t mode, fuzz::Input& input) {
    const size_t sockets = (mode & 2) ? 2 : 1;
    const bool generated = mode & 4;
    std::vector<size_t> sizes = read_sizes(input);
    std::vector<std::string> hellos;
    for (size_t s = 0; s < sockets; ++s)
        hellos.push_back(read_hello(input, (mode & 1) || generated, [&] {
            return hello(static_cast<uint16_t>(s), static_cast<uint16_t>(sockets), 9, 3, tcp::kHelloRequest, kRun, 0x0123456789abcdefull);
        }));
    const Data data = read_data(input, std::move(sizes), sockets, generated, mode & 8);
    // What each socket sends: accept() reads the first 40 bytes as its Hello, the stream threads
    // the rest.
    std::vector<std::string> wire(sockets), first_40(sockets);
    for (size_t s = 0; s < sockets; ++s) {
        wire[s] = hellos[s] + data.streams[s];
        first_40[s] = wire[s].substr(0, sizeof(Hello));
    }
    const Handshake model = expect_handshake(first_40);

    const auto& plugin = transport(1);
    const auto& v = plugin.vtable<pangea_transport_vtable>();
    pangea_listener* listener = nullptr;
    char bound[64] = {};
    FUZZ_CHECK(v.listen(plugin.handle(), "127.0.0.1:0", &listener, bound, sizeof bound) == PANGEA_OK, "listen: " + plugin.last_error());
    std::vector<Socket> clients;
    std::vector<std::thread> writers;
    for (size_t s = 0; s < sockets; ++s) {
        clients.push_back(connect_raw(port_of(bound)));
        send_bytes(clients[s].get(), wire[s], false, writers);
        if (wire[s].size() < sizeof(Hello)) clients[s].reset();
    }

    pangea_hello peer{};
    pangea_connection* connection = nullptr;
    trace(std::string("accept: ") + (model.connected ? "a connection of " + std::to_string(model.streams.size()) + " stream(s)" : "none"));
    if (model.connected) {
        const pangea_status status = v.accept(plugin.handle(), listener, &kSelf, kLong, &peer, &connection);
        FUZZ_CHECK(status == PANGEA_OK, "accept() refused a valid handshake: " + plugin.last_error());
        FUZZ_CHECK(peer.node_id == model.first.node_id && peer.run_id == model.first.run_id && peer.channel == model.first.channel,
                   "accept() reports another peer than its Hello said");
    } else {
        // One accept() takes every queued socket; again until those it closes show it (a socket
        // may reach the queue late), at most kLong.
        const auto shown = [&] {
            for (size_t s = 0; s < sockets; ++s) {
                if ((model.fate[s] != Fate::kDropped && model.fate[s] != Fate::kRefused) || clients[s].get() < 0) continue;
                pollfd entry{clients[s].get(), POLLIN, 0};
                if (::poll(&entry, 1, 0) <= 0) return false;
            }
            return true;
        };
        for (int tries = 0;; ++tries) {
            const pangea_status status = v.accept(plugin.handle(), listener, &kSelf, tries == 0 ? 0 : 20, &peer, &connection);
            FUZZ_CHECK(status == PANGEA_ERR_TIMEOUT,
                       "accept() on a handshake it must refuse: status " + std::to_string(status) + ": " + plugin.last_error());
            if (shown()) break;
            FUZZ_CHECK(tries < kLong / 20, "accept() did not close a socket whose handshake it refused");
        }
    }
    // The answers: one per socket of a completed set.
    for (size_t s = 0; s < sockets; ++s) {
        if (model.fate[s] != Fate::kAccepted && model.fate[s] != Fate::kRefused) continue;
        Hello sent, answer;
        std::memcpy(&sent, wire[s].data(), sizeof sent);
        FUZZ_CHECK(read_some(clients[s].get(), &answer, sizeof answer) == sizeof answer, "no answer to a complete handshake");
        FUZZ_CHECK(spec_hello(answer) && answer.stream_index == sent.stream_index && answer.stream_count == sent.stream_count &&
                       answer.nonce == sent.nonce && answer.node_id == kSelf.node_id && answer.run_id == kSelf.run_id &&
                       answer.channel == kSelf.channel,
                   "a malformed handshake answer");
        FUZZ_CHECK(answer.status == (model.fate[s] == Fate::kAccepted ? tcp::kHelloAccepted : tcp::kHelloWrongRun),
                   "a handshake answer with the wrong status");
    }
    if (connection != nullptr) {
        std::vector<std::string> streams;
        for (const size_t s : model.streams) streams.push_back(wire[s].substr(sizeof(Hello)));
        exercise(plugin, connection, data, streams, false);
    }
    v.close_listener(plugin.handle(), listener);
    for (auto& writer : writers) writer.join();
    // Every socket is closed now: the connection's, dropped and refused ones, half-done sets and
    // those never taken from the queue.
    for (size_t s = 0; s < sockets; ++s)
        FUZZ_CHECK(clients[s].get() < 0 || closed_by_peer(clients[s].get(), kLong),
                   "the plugin holds a socket after close()/close_listener()");
}

void connect_mode(uint8_t mode, fuzz::Input& input) {
    const int streams = (mode & 2) ? 2 : 1;
    const bool generated = mode & 4;
    std::vector<size_t> sizes = read_sizes(input);
    std::vector<std::string> answers;
    for (int k = 0; k < streams; ++k)
        answers.push_back(read_hello(input, (mode & 1) || generated, [&] {
            const uint32_t status = generated ? uint32_t{tcp::kHelloAccepted} : input.byte() % 4u;
            return hello(static_cast<uint16_t>(k), static_cast<uint16_t>(streams), 5, 2, status, kRun, 77);
        }));
    const Data data = read_data(input, std::move(sizes), static_cast<size_t>(streams), generated, mode & 8);
    const bool valid_answers = (mode & 1) || generated;

    const Socket& listener = raw_listener().first;
    const std::string& target = raw_listener().second;
    const auto& plugin = transport(streams);
    const auto& v = plugin.vtable<pangea_transport_vtable>();
    pangea_status status = PANGEA_OK;
    pangea_hello peer{};
    pangea_connection* connection = nullptr;
    std::atomic<bool> returned = false;
    std::thread connecting([&] {
        status = v.connect(plugin.handle(), target.c_str(), &kSelf, kLong, &peer, &connection);
        returned = true;
    });
    std::vector<Socket> server;
    std::vector<std::thread> writers;
    Hello first{};
    for (int k = 0; k < streams; ++k) {
        pollfd entry{listener.get(), POLLIN, 0};
        for (int waited = 0; ::poll(&entry, 1, 100) <= 0; waited += 100) {
            if (returned)  // (status is written before)
                FUZZ_CHECK(false, "connect() returned " + std::to_string(status) + " before opening its streams: " + plugin.last_error());
            FUZZ_CHECK(waited < kLong, "connect() opened fewer streams than its setting");
        }
        int fd;
        while ((fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC)) < 0 && errno == EINTR) {
        }
        server.emplace_back(fd);
        Hello h;
        FUZZ_CHECK(read_some(server.back().get(), &h, sizeof h) == sizeof h, "connect() sent no Hello");
        if (k == 0) first = h;
        FUZZ_CHECK(spec_hello(h) && h.status == tcp::kHelloRequest && h.stream_index == k && h.stream_count == streams &&
                       h.nonce == first.nonce && h.node_id == kSelf.node_id && h.run_id == kSelf.run_id &&
                       h.channel == kSelf.channel,
                   "connect() sent a malformed Hello");
    }
    std::vector<std::string> wire(answers.size());
    for (size_t k = 0; k < wire.size(); ++k) {
        if (valid_answers) std::memcpy(answers[k].data() + offsetof(Hello, nonce), &first.nonce, sizeof first.nonce);
        wire[k] = answers[k] + data.streams[k];
    }
    // What connect() must return: the answers are read in stream order; each must be for its
    // stream of this connection (its nonce) and, accepting, of our run and the first's node.
    pangea_status expected = PANGEA_OK;
    Hello last{}, first_answer{};
    for (size_t k = 0; k < wire.size(); ++k) {
        if (wire[k].size() < sizeof last) {
            expected = PANGEA_ERR_PEER_LOST;
            break;
        }
        std::memcpy(&last, wire[k].data(), sizeof last);
        if (k == 0) first_answer = last;
        if (!spec_hello(last) || last.stream_index != k || last.stream_count != streams || last.nonce != first.nonce) {
            expected = PANGEA_ERR_CORRUPT;
            break;
        }
        if (last.status == tcp::kHelloWrongRun) {
            expected = PANGEA_ERR_CONFIG;
            break;
        }
        if (last.status != tcp::kHelloAccepted || last.run_id != kRun || last.node_id != first_answer.node_id ||
            last.channel != first_answer.channel) {
            expected = PANGEA_ERR_CORRUPT;
            break;
        }
    }
    for (size_t k = 0; k < server.size(); ++k) send_bytes(server[k].get(), wire[k], true, writers);
    connecting.join();
    trace("connect: status " + std::to_string(status));
    FUZZ_CHECK(status == expected, "connect() returned " + std::to_string(status) + ", expected " + std::to_string(expected) +
                                       ": " + plugin.last_error());
    if (status == PANGEA_OK) {
        FUZZ_CHECK(connection != nullptr && peer.node_id == last.node_id && peer.run_id == last.run_id && peer.channel == last.channel,
                   "connect() reports another peer than the answer said");
        std::vector<std::string> after;
        for (const std::string& w : wire) after.push_back(w.substr(sizeof(Hello)));
        exercise(plugin, connection, data, after, true);
    }
    for (auto& writer : writers) writer.join();
    for (const Socket& s : server) FUZZ_CHECK(closed_by_peer(s.get(), kLong), "the plugin holds a socket after close()");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input input(data, size);
    const uint8_t mode = input.byte();
    if (mode & 0x20) {
        unit(input);
        return 0;
    }
    transport(1);  // the instances and the raw listener exist before the count
    raw_listener();
    static const int sockets = open_sockets();
    if (mode & 0x10)
        connect_mode(mode, input);
    else
        accept_mode(mode, input);
    FUZZ_CHECK(open_sockets() == sockets, "an input left sockets open");
    return 0;
}
