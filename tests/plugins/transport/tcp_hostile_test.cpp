// transport/tcp against a hostile peer: a raw socket that completes a valid handshake (the
// documented wire format, plugins/transport/tcp/frames.hpp) and then sends what no Pangea node
// would. Each case fails the posted receive with a status and a text naming what was wrong,
// closes only that connection, and leaves the instance serving others.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <ostream>
#include <future>
#include <vector>

#include "collective/link.hpp"
#include "topology/ring_setup.hpp"
#include "support/builtin_plugins.hpp"
#include "transport/tcp/frames.hpp"

namespace pangea {
namespace {

using ::testing::HasSubstr;
using tcp::DataHeader;
using tcp::Hello;

constexpr uint64_t kRun = 42;

// A connected raw socket, closed at the end.
struct RawPeer {
    int fd = -1;
    explicit RawPeer(const std::string& address) {
        const size_t colon = address.rfind(':');
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
        ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &to.sin_addr);
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) throw std::runtime_error("connect");
    }
    ~RawPeer() { close(); }
    void close() {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
    void send(const void* data, size_t bytes) const { ASSERT_EQ(::send(fd, data, bytes, MSG_NOSIGNAL), static_cast<ssize_t>(bytes)); }
    void handshake() const {
        Hello hello{};
        std::memcpy(hello.magic, "PGTH", 4);
        hello.version = tcp::kProtocolVersion;
        hello.stream_count = 1;
        hello.node_id = 9;
        hello.status = tcp::kHelloRequest;
        hello.run_id = kRun;
        hello.nonce = 1234;
        send(&hello, sizeof hello);
        Hello answer{};
        ASSERT_EQ(::recv(fd, &answer, sizeof answer, MSG_WAITALL), static_cast<ssize_t>(sizeof answer));
        ASSERT_EQ(answer.status, tcp::kHelloAccepted);
    }
};

DataHeader frame(uint64_t message_bytes, uint64_t offset, uint64_t part_bytes) {
    DataHeader h{};
    std::memcpy(h.magic, "PGTD", 4);
    h.version = tcp::kProtocolVersion;
    h.message_bytes = message_bytes;
    h.offset = offset;
    h.part_bytes = part_bytes;
    return h;
}

struct Case {
    const char* name;
    std::function<void(RawPeer&)> send;
    pangea_status status;
    const char* says;
    size_t receive_bytes = 64;  // the receive posted before the peer sends
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.name; }  // not a byte dump in test names

class TcpHostilePeer : public ::testing::TestWithParam<Case> {};

TEST_P(TcpHostilePeer, FailsThatConnectionOnlyAndSaysWhy) {
    const Case& c = GetParam();
    PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp", {{"streams", int64_t{1}}});
    const OwnedListener listener(transport, "127.0.0.1:0");
    const auto& vt = transport.vtable<pangea_transport_vtable>();
    pangea_hello self{sizeof(pangea_hello), 1, kRun, 0}, peer{};

    // The plugin answers the hello from inside accept(): the raw peer waits for it meanwhile.
    RawPeer hostile(listener.address());
    auto shake = std::async(std::launch::async, [&] { hostile.handshake(); });
    pangea_connection* handle = nullptr;
    ASSERT_EQ(vt.accept(transport.handle(), listener.handle(), &self, 5000, &peer, &handle), PANGEA_OK);
    shake.get();
    OwnedConnection connection(&transport, handle);
    std::vector<uint8_t> buffer(c.receive_bytes);
    pangea_status status = PANGEA_OK;
    Request receive = Link(transport, handle).receive(buffer.data(), buffer.size(), &status);
    ASSERT_EQ(status, PANGEA_OK);
    c.send(hostile);
    EXPECT_EQ(receive.wait(5000), c.status) << c.name;
    EXPECT_THAT(receive.error(), HasSubstr(c.says)) << c.name;

    // The same instance still serves a well-behaved peer.
    RawPeer honest(listener.address());
    auto honest_shake = std::async(std::launch::async, [&] { honest.handshake(); });
    pangea_connection* second = nullptr;
    ASSERT_EQ(vt.accept(transport.handle(), listener.handle(), &self, 5000, &peer, &second), PANGEA_OK);
    honest_shake.get();
    OwnedConnection good(&transport, second);
    Request ok = Link(transport, second).receive(buffer.data(), 4, &status);
    const DataHeader header = frame(4, 0, 4);
    honest.send(&header, sizeof header);
    honest.send("ping", 4);
    EXPECT_EQ(ok.wait(5000), PANGEA_OK);
    EXPECT_EQ(std::memcmp(buffer.data(), "ping", 4), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TcpHostilePeer,
    ::testing::Values(
        Case{"garbage after the handshake",
             [](RawPeer& p) { const char g[48] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n"; p.send(g, sizeof g); },
             PANGEA_ERR_CORRUPT, "bad frame magic"},
        Case{"a frame of another protocol version",
             [](RawPeer& p) { DataHeader h = frame(4, 0, 4); h.version = 9; p.send(&h, sizeof h); },
             PANGEA_ERR_CORRUPT, "frame version 9"},
        Case{"reserved bits set",
             [](RawPeer& p) { DataHeader h = frame(4, 0, 4); h.flags = 0x80; p.send(&h, sizeof h); },
             PANGEA_ERR_CORRUPT, "reserved frame bits"},
        Case{"an oversized length (2^62 bytes)",
             [](RawPeer& p) { const DataHeader h = frame(uint64_t{1} << 62, 0, 4); p.send(&h, sizeof h); },
             PANGEA_ERR_CORRUPT, "exceeds max_message"},
        Case{"a message longer than the posted receive",
             [](RawPeer& p) { const DataHeader h = frame(1000, 0, 1000); p.send(&h, sizeof h); },
             PANGEA_ERR_CORRUPT, "arrived for a receive of 64"},
        Case{"a chunk outside its message",
             [](RawPeer& p) { const DataHeader h = frame(64, 60, 10); p.send(&h, sizeof h); },
             PANGEA_ERR_CORRUPT, "lies outside its message"},
        Case{"a frame for another stream",
             [](RawPeer& p) { DataHeader h = frame(4, 0, 4); h.stream_index = 3; p.send(&h, sizeof h); },
             PANGEA_ERR_CORRUPT, "frame for stream 3 on stream 0"},
        Case{"a truncated frame, then the peer hangs up",
             [](RawPeer& p) { const DataHeader h = frame(64, 0, 64); p.send(&h, sizeof h); p.send("half", 4); p.close(); },
             PANGEA_ERR_PEER_LOST, "mid-frame"},
        Case{"half a header, then the peer hangs up",
             [](RawPeer& p) { const DataHeader h = frame(64, 0, 64); p.send(&h, 20); p.close(); },
             PANGEA_ERR_PEER_LOST, "mid-frame"},
        Case{"a bad checksum",
             [](RawPeer& p) {
                 DataHeader h = frame(64, 0, 64);
                 h.flags = tcp::kFlagChecksum;
                 h.checksum = 12345;
                 p.send(&h, sizeof h);
                 const std::vector<uint8_t> zeros(64);
                 p.send(zeros.data(), zeros.size());
             },
             PANGEA_ERR_CORRUPT, "checksum mismatch"},
        // Counted twice, the same bytes would complete the message with a hole.
        Case{"the same bytes twice",
             [](RawPeer& p) {
                 const DataHeader h = frame(2 * tcp::kMinChunk, 0, tcp::kMinChunk);
                 const std::vector<uint8_t> chunk(tcp::kMinChunk, 7);
                 for (int twice = 0; twice < 2; ++twice) {
                     p.send(&h, sizeof h);
                     p.send(chunk.data(), chunk.size());
                 }
             },
             PANGEA_ERR_CORRUPT, "overlaps bytes already received", 2 * tcp::kMinChunk},
        Case{"a short chunk that is not its message's last",
             [](RawPeer& p) { const DataHeader h = frame(64, 0, 4); p.send(&h, sizeof h); p.send("abcd", 4); },
             PANGEA_ERR_CORRUPT, "not its message's last"},
        Case{"an empty chunk of a message that is not empty",
             [](RawPeer& p) { const DataHeader h = frame(64, 64, 0); p.send(&h, sizeof h); },
             PANGEA_ERR_CORRUPT, "an empty chunk"}),
    [](const auto& info) {
        std::string name;
        for (const char* c = info.param.name; *c; ++c) name += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
        return name;
    });

// connect() checks the answers too: each must be for its own stream of this connection (the
// nonce it sent), and an acceptance must name our run.
TEST(TcpHostileListener, AnswersForAnotherConnectionOrRunAreRefused) {
    struct Answer {
        const char* name;
        std::function<void(Hello&)> change;
        const char* says;
    };
    const std::vector<Answer> answers = {
        {"another nonce", [](Hello& h) { h.nonce ^= 1; }, "for another stream or connection"},
        {"another stream", [](Hello& h) { h.stream_count = 2, h.stream_index = 1; }, "for another stream or connection"},
        {"another run", [](Hello& h) { h.run_id = kRun + 1; }, "names another run"},
    };
    PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp", {{"streams", int64_t{1}}});
    const auto& vt = transport.vtable<pangea_transport_vtable>();
    for (const Answer& a : answers) {
        const int server = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in at{};
        at.sin_family = AF_INET;
        at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof at;
        ASSERT_EQ(::bind(server, reinterpret_cast<const sockaddr*>(&at), sizeof at), 0);
        ASSERT_EQ(::listen(server, 1), 0);
        ::getsockname(server, reinterpret_cast<sockaddr*>(&at), &length);
        auto answering = std::async(std::launch::async, [&] {
            const int fd = ::accept(server, nullptr, nullptr);
            Hello hello{};
            if (::recv(fd, &hello, sizeof hello, MSG_WAITALL) == static_cast<ssize_t>(sizeof hello)) {
                hello.status = tcp::kHelloAccepted;
                a.change(hello);
                ::send(fd, &hello, sizeof hello, MSG_NOSIGNAL);
            }
            return fd;
        });
        const pangea_hello self{sizeof(pangea_hello), 1, kRun, 0};
        pangea_hello peer{};
        pangea_connection* connection = nullptr;
        const std::string address = "127.0.0.1:" + std::to_string(ntohs(at.sin_port));
        EXPECT_EQ(vt.connect(transport.handle(), address.c_str(), &self, 5000, &peer, &connection), PANGEA_ERR_CORRUPT) << a.name;
        EXPECT_THAT(transport.last_error(), HasSubstr(a.says)) << a.name;
        EXPECT_EQ(connection, nullptr);
        ::close(answering.get());
        ::close(server);
    }
}

}  // namespace
}  // namespace pangea
