// Every built-in transport reads incoming hellos side by side (plugins/transport/shared/socket.hpp,
// Greetings): clients that connect and say nothing hold up nobody (read in turn, each held up
// every connection behind it for the whole handshake timeout, here 60 s), and no more than 64
// wait at once (beyond that, the oldest is closed).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <vector>

#include "topology/ring_setup.hpp"
#include "support/builtin_plugins.hpp"
#include "transport/shared/socket.hpp"

namespace pangea {
namespace {

using transport::Fd;

// A client that connects to `address` ("127.0.0.1:port") and says nothing.
Fd silent_client(const std::string& address) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) ADD_FAILURE() << "connect";
    return fd;
}

// What a socket shows within 5 s: 0 when the other side closed it, -1 (EAGAIN) when still open.
ssize_t closed_or_waiting(const Fd& fd, bool wait) {
    char byte = 0;
    const timeval limit{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    return ::recv(fd.get(), &byte, 1, wait ? 0 : MSG_DONTWAIT);
}

class SilentClients : public ::testing::TestWithParam<const char*> {};

TEST_P(SilentClients, HoldUpNobody) {
    const std::map<std::string, SettingValue> settings{{"handshake_timeout_ms", int64_t{60000}}};
    PluginInstance listening = test::make_plugin(PANGEA_KIND_TRANSPORT, GetParam(), settings);
    PluginInstance connecting = test::make_plugin(PANGEA_KIND_TRANSPORT, GetParam(), settings);
    const OwnedListener listener(listening, "127.0.0.1:0");
    std::vector<Fd> silent;
    for (int k = 0; k < 65; ++k) silent.push_back(silent_client(listener.address()));

    const auto started = std::chrono::steady_clock::now();
    const pangea_hello self{sizeof(pangea_hello), 1, 42, 0}, other{sizeof(pangea_hello), 2, 42, 0};
    const auto& accepting_vt = listening.vtable<pangea_transport_vtable>();
    const auto& connecting_vt = connecting.vtable<pangea_transport_vtable>();
    auto connect = std::async(std::launch::async, [&] {
        pangea_hello peer{};
        pangea_connection* connection = nullptr;
        const pangea_status status =
            connecting_vt.connect(connecting.handle(), listener.address().c_str(), &other, 20000, &peer, &connection);
        if (status == PANGEA_OK) connecting_vt.close(connecting.handle(), connection);
        return status;
    });
    pangea_hello peer{};
    pangea_connection* accepted = nullptr;
    ASSERT_EQ(accepting_vt.accept(listening.handle(), listener.handle(), &self, 20000, &peer, &accepted), PANGEA_OK)
        << listening.last_error();
    EXPECT_EQ(connect.get(), PANGEA_OK);
    accepting_vt.close(listening.handle(), accepted);
    EXPECT_EQ(peer.node_id, 2u);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));  // not the 60 s timeout

    // 65 silent sockets and the real one: the first two were pushed out, the last still waits.
    EXPECT_EQ(closed_or_waiting(silent.front(), true), 0);
    EXPECT_EQ(closed_or_waiting(silent.back(), false), -1);
}

INSTANTIATE_TEST_SUITE_P(Transports, SilentClients, ::testing::Values("tcp", "gloo", "ucx"));

}  // namespace
}  // namespace pangea
