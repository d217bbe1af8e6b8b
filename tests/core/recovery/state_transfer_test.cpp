// Live recovery's transfer over the real tcp plugin on loopback: a whole snapshot, a joiner
// asking before any snapshot exists, and a source that dies halfway (a peer that speaks the
// documented wire format, then hangs up) with the joiner finishing from another member.
#include <gtest/gtest.h>

#include <cstring>
#include <future>

#include "collective/link.hpp"
#include "common/crc32.hpp"
#include "topology/peers.hpp"
#include "recovery/state_transfer.hpp"

#include "support/builtin_plugins.hpp"

namespace pangea {
namespace {

constexpr uint64_t kRun = 77;
constexpr uint64_t kMaxBytes = uint64_t{1} << 30;  // far above what these snapshots hold

std::shared_ptr<StateSnapshot> make_snapshot(int64_t step, uint8_t per_node) {
    auto s = std::make_shared<StateSnapshot>();
    s->step = step;
    std::vector<uint8_t> params(5 * (1 << 20) + 123), optimizer(1000), inner(3 * (1 << 20));
    for (size_t i = 0; i < params.size(); ++i) params[i] = static_cast<uint8_t>(i * 31 + 7);
    for (size_t i = 0; i < optimizer.size(); ++i) optimizer[i] = static_cast<uint8_t>(i);
    std::fill(inner.begin(), inner.end(), per_node);
    s->sections = {{"params", params, true}, {"outer_optimizer", optimizer, true}, {"inner_optimizer", inner, false}};
    return s;
}

// A member: its listener, acceptor and state server.
struct Source {
    explicit Source(std::string run_secret = "") : secret(std::move(run_secret)) {}
    std::string secret;
    PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    OwnedListener listener{transport, "127.0.0.1:0"};
    StateServer server;
    PeerAcceptor acceptor{transport, listener, 1, kRun, secret,
                          [this](OwnedConnection c, const pangea_hello& peer) { server.serve(transport, std::move(c), peer); }};
    ~Source() { server.stop(); }
};

TEST(StateTransfer, AJoinerGetsEveryByteOfTheSnapshot) {
    Source source;
    const auto snapshot = make_snapshot(4, 9);
    source.server.publish(snapshot);
    const PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    FetchReport report;
    const StateSnapshot got =
        fetch_state(transport, {{1, source.listener.address()}}, 5, kRun, "", 3, std::chrono::seconds(30), kMaxBytes, &report);
    EXPECT_EQ(got.step, 4);
    ASSERT_EQ(got.sections.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(got.sections[i].name, snapshot->sections[i].name);
        EXPECT_TRUE(got.sections[i].bytes == snapshot->sections[i].bytes) << got.sections[i].name;
        EXPECT_EQ(got.sections[i].shared, snapshot->sections[i].shared);
    }
    EXPECT_EQ(report.sources, std::vector<int>{1});
    EXPECT_EQ(report.bytes, 5u * (1 << 20) + 123 + 1000 + 3 * (1 << 20));
}

TEST(StateTransfer, OnlyAJoinerWithTheRunsSecretGetsTheState) {
    Source source("run secret");
    source.server.publish(make_snapshot(4, 9));
    const PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    FetchReport report;
    try {
        fetch_state(transport, {{1, source.listener.address()}}, 5, kRun, "a guess", 0, std::chrono::seconds(3), kMaxBytes, &report);
        FAIL() << "a stranger got the state";
    } catch (const MeshError& e) {
        EXPECT_NE(std::string(e.what()).find("authentication failed"), std::string::npos) << e.what();
    }
    EXPECT_EQ(report.bytes, 0u);
    const StateSnapshot got = fetch_state(transport, {{1, source.listener.address()}}, 5, kRun, "run secret", 0,
                                          std::chrono::seconds(30), kMaxBytes, &report);
    EXPECT_EQ(got.step, 4);
}

TEST(StateTransfer, AJoinerWaitsForASnapshotNewEnough) {
    Source source;
    source.server.publish(make_snapshot(2, 1));  // older than asked for
    const PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    auto later = std::async(std::launch::async, [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));
        source.server.publish(make_snapshot(3, 1));
    });
    FetchReport report;
    const StateSnapshot got =
        fetch_state(transport, {{1, source.listener.address()}}, 5, kRun, "", 3, std::chrono::seconds(30), kMaxBytes, &report);
    EXPECT_EQ(got.step, 3);
}

TEST(StateTransfer, NoSourceAnsweringIsAnErrorNamingThem) {
    const PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    FetchReport report;
    try {
        fetch_state(transport, {{3, "127.0.0.1:1"}}, 5, kRun, "", 0, std::chrono::seconds(2), kMaxBytes, &report);
        FAIL() << "no error";
    } catch (const MeshError& e) {
        EXPECT_NE(std::string(e.what()).find("node 3 (127.0.0.1:1)"), std::string::npos) << e.what();
    }
}

// Serves the snapshot per the wire format in state_transfer.hpp, but only `chunks` chunks of
// section 0 (and, with `corrupt`, the last of them damaged), then hangs up.
void serve_partly(const PluginInstance& transport, const OwnedListener& listener, const StateSnapshot& s, int chunks,
                  bool corrupt, uint64_t claimed_params_bytes = 0) {
    const auto& vt = transport.vtable<pangea_transport_vtable>();
    pangea_hello self{sizeof(pangea_hello), 2, kRun, 0}, peer{};
    pangea_connection* handle = nullptr;
    ASSERT_EQ(vt.accept(transport.handle(), listener.handle(), &self, 10000, &peer, &handle), PANGEA_OK);
    OwnedConnection connection(&transport, handle);
    const Link link(transport, handle);
    auto send = [&](const void* data, size_t bytes) {
        pangea_status status = PANGEA_OK;
        Request r = link.send(data, bytes, &status);
        ASSERT_EQ(r.wait(10000), PANGEA_OK);
    };
    std::vector<uint8_t> request(40);
    pangea_status status = PANGEA_OK;
    Request r = link.receive(request.data(), request.size(), &status);
    ASSERT_EQ(r.wait(10000), PANGEA_OK);
    std::vector<uint8_t> preamble(16), table(48 * s.sections.size());
    const uint32_t magic = 0x54534750, count = static_cast<uint32_t>(s.sections.size());
    std::memcpy(&preamble[0], &magic, 4);
    std::memcpy(&preamble[4], &count, 4);
    std::memcpy(&preamble[8], &s.step, 8);
    for (size_t i = 0; i < s.sections.size(); ++i) {
        std::memcpy(&table[i * 48], s.sections[i].name.c_str(), s.sections[i].name.size());
        const uint64_t size = i == 0 && claimed_params_bytes ? claimed_params_bytes : s.sections[i].bytes.size();
        const uint32_t crc = crc32(s.sections[i].bytes.data(), s.sections[i].bytes.size()), shared = s.sections[i].shared;
        std::memcpy(&table[i * 48 + 32], &size, 8);
        std::memcpy(&table[i * 48 + 40], &crc, 4);
        std::memcpy(&table[i * 48 + 44], &shared, 4);
    }
    send(preamble.data(), preamble.size());
    send(table.data(), table.size());
    for (int c = 0; c < chunks; ++c) {
        std::vector<uint8_t> payload(s.sections[0].bytes.begin() + c * (1 << 20), s.sections[0].bytes.begin() + (c + 1) * (1 << 20));
        std::vector<uint8_t> header(8);
        const uint32_t length = 1 << 20, crc = crc32(payload.data(), payload.size());
        std::memcpy(&header[0], &length, 4);
        std::memcpy(&header[4], &crc, 4);
        if (corrupt && c + 1 == chunks) payload[100] ^= 1;
        send(header.data(), header.size());
        send(payload.data(), payload.size());
    }
}

TEST(StateTransfer, ASourceThatDiesHalfwayIsReplacedAndSharedBytesAreNotFetchedTwice) {
    const auto snapshot = make_snapshot(6, 4);
    const PluginInstance half_transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    const OwnedListener half_listener(half_transport, "127.0.0.1:0");
    Source whole;
    whole.server.publish(snapshot);
    auto half = std::async(std::launch::async, [&] { serve_partly(half_transport, half_listener, *snapshot, 3, false); });
    const PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    FetchReport report;
    const StateSnapshot got = fetch_state(transport, {{2, half_listener.address()}, {1, whole.listener.address()}}, 5,
                                          kRun, "", 6, std::chrono::seconds(60), kMaxBytes, &report);
    half.get();
    EXPECT_EQ(report.sources, (std::vector<int>{2, 1}));
    for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(got.sections[i].bytes == snapshot->sections[i].bytes) << got.sections[i].name;
    // Every byte once: the 3 MiB from the first source were kept.
    EXPECT_EQ(report.bytes, 5u * (1 << 20) + 123 + 1000 + 3 * (1 << 20));
}

TEST(StateTransfer, ADamagedChunkIsRefetchedFromAnotherSource) {
    const auto snapshot = make_snapshot(6, 4);
    const PluginInstance bad_transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    const OwnedListener bad_listener(bad_transport, "127.0.0.1:0");
    Source whole;
    whole.server.publish(snapshot);
    auto bad = std::async(std::launch::async, [&] { serve_partly(bad_transport, bad_listener, *snapshot, 2, true); });
    const PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    FetchReport report;
    const StateSnapshot got = fetch_state(transport, {{2, bad_listener.address()}, {1, whole.listener.address()}}, 5,
                                          kRun, "", 6, std::chrono::seconds(60), kMaxBytes, &report);
    bad.get();
    EXPECT_TRUE(got.sections[0].bytes == snapshot->sections[0].bytes);
}

TEST(StateTransfer, ASourceClaimingAnAbsurdSizeIsRefusedBeforeAnyAllocation) {
    const auto snapshot = make_snapshot(6, 4);
    const PluginInstance liar_transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    const OwnedListener liar_listener(liar_transport, "127.0.0.1:0");
    Source whole;
    whole.server.publish(snapshot);
    // 2^62 bytes of parameters: allocating that would abort the process.
    auto liar = std::async(std::launch::async,
                           [&] { serve_partly(liar_transport, liar_listener, *snapshot, 0, false, uint64_t{1} << 62); });
    const PluginInstance transport = test::make_plugin(PANGEA_KIND_TRANSPORT, "tcp");
    FetchReport report;
    const StateSnapshot got = fetch_state(transport, {{2, liar_listener.address()}, {1, whole.listener.address()}}, 5,
                                          kRun, "", 6, std::chrono::seconds(60), kMaxBytes, &report);
    liar.get();
    EXPECT_EQ(report.sources, std::vector<int>{1});
    EXPECT_TRUE(got.sections[0].bytes == snapshot->sections[0].bytes);
}

}  // namespace
}  // namespace pangea
