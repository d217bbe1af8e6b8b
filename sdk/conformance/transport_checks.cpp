// Checks for transport plugins (pangea/transport.h): two instances of the plugin talk over
// loopback. Every wait has a time limit, so a broken plugin fails a check instead of hanging.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <future>
#include <numeric>
#include <thread>
#include <vector>

#include "conformance.hpp"
#include "pangea/transport.h"

namespace pangea::conformance {
namespace {

// No single step of a check may take longer than 20 s, times PANGEA_CONFORMANCE_TIME_SCALE
// (a whole number, default 1; scripts/test-sanitizers sets it under TSan, whose slowdown on a
// loaded machine can take a gigabyte past 20 s).
int limit_ms() {
    static const int limit = [] {
        const char* scale = std::getenv("PANGEA_CONFORMANCE_TIME_SCALE");
        const int factor = scale != nullptr ? std::atoi(scale) : 1;
        return 20000 * std::clamp(factor, 1, 100);
    }();
    return limit;
}
constexpr uint64_t kRunId = 0x5eed;

pangea_hello hello(uint32_t node, uint64_t run = kRunId, uint32_t channel = 7) {
    pangea_hello h{};
    h.struct_size = sizeof h;
    h.node_id = node;
    h.run_id = run;
    h.channel = channel;
    return h;
}

// One side of a test connection: an instance and its handles, released in order.
struct Side {
    PluginInstance instance;
    const pangea_transport_vtable& vt;
    pangea_listener* listener = nullptr;
    pangea_connection* connection = nullptr;

    explicit Side(const Subject& subject)
        : instance(subject.make()), vt(instance.vtable<pangea_transport_vtable>()) {}
    ~Side() {
        vt.close(instance.handle(), connection);
        vt.close_listener(instance.handle(), listener);
    }
    void* h() const { return instance.handle(); }

    pangea_request* send(const void* data, size_t bytes) {
        pangea_request* request = nullptr;
        const pangea_status status = vt.isend(h(), connection, data, bytes, &request);
        expect(status == PANGEA_OK, instance.describe_failure("isend", status));
        return request;
    }
    pangea_request* receive(void* data, size_t bytes) {
        pangea_request* request = nullptr;
        const pangea_status status = vt.irecv(h(), connection, data, bytes, &request);
        expect(status == PANGEA_OK, instance.describe_failure("irecv", status));
        return request;
    }
    pangea_status wait(pangea_request* request, int timeout_ms = limit_ms()) {
        return vt.wait(h(), request, timeout_ms);
    }
    void complete(pangea_request* request, const char* what) {
        const pangea_status status = wait(request);
        expect(status == PANGEA_OK, instance.describe_failure(what, status));
    }
};

// A listening server and a client connected to it.
struct Pair {
    Side server, client;
    std::string address;

    explicit Pair(const Subject& subject) : server(subject), client(subject) {
        char bound[128] = {};
        pangea_status status = server.vt.listen(server.h(), "127.0.0.1:0", &server.listener, bound, sizeof bound);
        expect(status == PANGEA_OK, server.instance.describe_failure("listen", status));
        address = bound;
        expect(!address.empty(), "listen wrote no bound address");
        pangea_hello server_saw{}, client_saw{};
        auto accepted = std::async(std::launch::async, [&] {
            const pangea_hello self = hello(1);
            return server.vt.accept(server.h(), server.listener, &self, limit_ms(), &server_saw, &server.connection);
        });
        const pangea_hello self = hello(2);
        status = client.vt.connect(client.h(), bound, &self, limit_ms(), &client_saw, &client.connection);
        const pangea_status accept_status = accepted.get();
        expect(status == PANGEA_OK, client.instance.describe_failure("connect", status));
        expect(accept_status == PANGEA_OK, server.instance.describe_failure("accept", accept_status));
        expect(server_saw.node_id == 2 && server_saw.run_id == kRunId && server_saw.channel == 7,
               "accept reported the wrong peer hello");
        expect(client_saw.node_id == 1 && client_saw.run_id == kRunId, "connect reported the wrong peer hello");
    }
};

std::vector<uint8_t> pattern(size_t bytes, uint32_t seed) {
    std::vector<uint8_t> out(bytes);
    uint32_t x = seed * 2654435761u + 1;
    for (auto& b : out) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b = static_cast<uint8_t>(x);
    }
    return out;
}

// A plain socket to `address` ("127.0.0.1:port") that sends `bytes` then closes.
void raw_client(const std::string& address, const std::vector<uint8_t>& bytes) {
    const size_t colon = address.rfind(':');
    sockaddr_in target{};
    target.sin_family = AF_INET;
    target.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &target.sin_addr);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&target), sizeof target) == 0 && !bytes.empty())
        (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    ::close(fd);
}

// A connection between two sides that already have one each (server listening at `address`):
// writes the server's end to *accepted and the client's to *connected.
void connect_once(Side& server, Side& client, const std::string& address, pangea_connection** accepted,
                  pangea_connection** connected) {
    pangea_hello server_saw{}, client_saw{};
    auto accepting = std::async(std::launch::async, [&] {
        const pangea_hello self = hello(1);
        return server.vt.accept(server.h(), server.listener, &self, limit_ms(), &server_saw, accepted);
    });
    const pangea_hello self = hello(2);
    const pangea_status status = client.vt.connect(client.h(), address.c_str(), &self, limit_ms(), &client_saw, connected);
    const pangea_status accept_status = accepting.get();
    expect(status == PANGEA_OK, client.instance.describe_failure("connect", status));
    expect(accept_status == PANGEA_OK, server.instance.describe_failure("accept", accept_status));
}

// abort() and close() of one connection at once from two threads, while a third is inside wait()
// or test() on requests of that connection (transport.h: abort() is safe from any thread; the
// mesh aborts a peer it declared dead while the connection's owner may be closing it). A plugin
// that frees the connection under a running abort() crashes here now and then; under
// ThreadSanitizer (scripts/test-sanitizers) it is reported every time the race is lost.
void race_abort_and_close(const Subject& subject) {
    constexpr int kRounds = 24;
    constexpr int kReceives = 8;
    Side server(subject), client(subject);
    char bound[128] = {};
    const pangea_status status = server.vt.listen(server.h(), "127.0.0.1:0", &server.listener, bound, sizeof bound);
    expect(status == PANGEA_OK, server.instance.describe_failure("listen", status));
    for (int round = 0; round < kRounds; ++round) {
        pangea_connection* ends[2] = {};  // the server's, the client's
        connect_once(server, client, bound, &ends[0], &ends[1]);
        // The side that races alternates; the other end is closed in order afterwards.
        Side& racer = round % 2 == 0 ? client : server;
        Side& other = round % 2 == 0 ? server : client;
        pangea_connection* racing = ends[round % 2 == 0 ? 1 : 0];
        pangea_connection* quiet = ends[round % 2 == 0 ? 0 : 1];

        // Receives nobody answers, and a send that may or may not complete before the abort.
        std::vector<uint8_t> in(size_t{kReceives} * 1024), out = pattern(size_t{1} << 16, uint32_t(round));
        std::vector<pangea_request*> requests;
        for (int i = 0; i < kReceives; ++i) {
            pangea_request* r = nullptr;
            const pangea_status posted = racer.vt.irecv(racer.h(), racing, in.data() + i * 1024, 1024, &r);
            expect(posted == PANGEA_OK, racer.instance.describe_failure("irecv", posted));
            requests.push_back(r);
        }
        pangea_request* send = nullptr;
        const pangea_status sent = racer.vt.isend(racer.h(), racing, out.data(), out.size(), &send);
        expect(sent == PANGEA_OK, racer.instance.describe_failure("isend", sent));
        requests.push_back(send);

        // The third thread: wait() on each request in turn, or test() them all until done.
        const bool polling = round % 4 >= 2;
        auto completer = std::async(std::launch::async, [&] {
            std::vector<pangea_status> final(requests.size(), PANGEA_ERR_AGAIN);
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms());
            for (size_t left = requests.size(); left > 0 && std::chrono::steady_clock::now() < deadline;) {
                for (size_t i = 0; i < requests.size(); ++i) {
                    if (final[i] != PANGEA_ERR_AGAIN) continue;
                    const pangea_status s = polling ? racer.vt.test(racer.h(), requests[i])
                                                    : racer.vt.wait(racer.h(), requests[i], limit_ms());
                    if (s == PANGEA_ERR_AGAIN || s == PANGEA_ERR_TIMEOUT) continue;
                    final[i] = s;
                    --left;
                }
                if (polling) std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            return final;
        });

        // abort() and close() released together; abort() called a few times (idempotent).
        std::atomic<int> ready{0};
        std::atomic<bool> go{false};
        auto start = [&] {
            ready.fetch_add(1);
            while (!go.load()) std::this_thread::yield();
        };
        std::thread aborter([&] {
            start();
            for (int i = 0; i < 3; ++i) racer.vt.abort(racer.h(), racing);
        });
        std::thread closer([&] {
            start();
            if (round % 3 == 1) std::this_thread::yield();  // now and then let abort() start first
            racer.vt.close(racer.h(), racing);
        });
        while (ready.load() < 2) std::this_thread::yield();
        if (!polling) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the waiter is inside wait()
        go.store(true);
        aborter.join();
        closer.join();

        expect(completer.wait_for(std::chrono::milliseconds(limit_ms() + 5000)) == std::future_status::ready,
               "wait()/test() never returned after abort() and close()");
        const std::vector<pangea_status> final = completer.get();
        other.vt.close(other.h(), quiet);
        const std::string where = "round " + std::to_string(round) + (polling ? " (test)" : " (wait)") + ": ";
        for (int i = 0; i < kReceives; ++i)
            expect(final[i] == PANGEA_ERR_ABORTED,
                   where + "a receive on the aborted and closed connection ended with " + status_name(final[i]));
        expect(final.back() == PANGEA_OK || final.back() == PANGEA_ERR_ABORTED,
               where + "the send ended with " + status_name(final.back()));
    }
}

// pangea_hello is size-led (transport.h): a caller built against ABI 1.0 passes hellos of
// PANGEA_HELLO_SIZE_1_0 bytes. The plugin must take them, and write no byte past them into the
// peer hello; a newer caller's longer `self` is taken too.
void hello_sizes(const Subject& subject) {
    static_assert(sizeof(pangea_hello) >= PANGEA_HELLO_SIZE_1_0);
    constexpr unsigned char kSentinel = 0xA5;
    constexpr size_t kAfter = 64;
    // A 1.0 caller's hello with bytes of its own after it.
    struct Buffer {
        alignas(pangea_hello) unsigned char bytes[PANGEA_HELLO_SIZE_1_0 + kAfter];
        explicit Buffer(const pangea_hello* fields) {
            std::memset(bytes, kSentinel, sizeof bytes);
            if (fields != nullptr) std::memcpy(bytes, fields, PANGEA_HELLO_SIZE_1_0);
            const uint32_t size = PANGEA_HELLO_SIZE_1_0;
            std::memcpy(bytes, &size, sizeof size);
        }
        pangea_hello* get() { return reinterpret_cast<pangea_hello*>(bytes); }
        bool tail_intact() const {
            for (size_t i = PANGEA_HELLO_SIZE_1_0; i < sizeof bytes; ++i)
                if (bytes[i] != kSentinel) return false;
            return true;
        }
        pangea_hello fields() const {  // what lies within the 1.0 size
            pangea_hello h{};
            std::memcpy(&h, bytes, PANGEA_HELLO_SIZE_1_0);
            return h;
        }
    };
    Side server(subject), client(subject);
    char bound[128] = {};
    pangea_status status = server.vt.listen(server.h(), "127.0.0.1:0", &server.listener, bound, sizeof bound);
    expect(status == PANGEA_OK, server.instance.describe_failure("listen", status));

    // A newer caller's self: longer than this header's struct, with bytes the plugin must ignore.
    struct Longer {
        pangea_hello hello;
        unsigned char later[32];
    } newer{};
    newer.hello = hello(1);
    newer.hello.struct_size = sizeof newer;
    std::memset(newer.later, 0x5A, sizeof newer.later);

    const pangea_hello client_fields = hello(2);
    Buffer client_self(&client_fields), server_saw(nullptr), client_saw(nullptr);
    auto accepted = std::async(std::launch::async, [&] {
        return server.vt.accept(server.h(), server.listener, &newer.hello, limit_ms(), server_saw.get(), &server.connection);
    });
    status = client.vt.connect(client.h(), bound, client_self.get(), limit_ms(), client_saw.get(), &client.connection);
    const pangea_status accept_status = accepted.get();
    expect(status == PANGEA_OK, client.instance.describe_failure("connect with a hello of ABI 1.0's size", status));
    expect(accept_status == PANGEA_OK, server.instance.describe_failure("accept with a longer hello", accept_status));
    for (const Buffer* seen : {&server_saw, &client_saw}) {
        expect(seen->tail_intact(), "the plugin wrote past the struct_size of the caller's peer hello");
        expect(seen->fields().struct_size == PANGEA_HELLO_SIZE_1_0,
               "the peer hello's struct_size is " + std::to_string(seen->fields().struct_size) + ", not the " +
                   std::to_string(PANGEA_HELLO_SIZE_1_0) + " bytes written");
    }
    expect(server_saw.fields().node_id == 2 && server_saw.fields().run_id == kRunId && server_saw.fields().channel == 7,
           "accept reported the wrong peer hello");
    expect(client_saw.fields().node_id == 1 && client_saw.fields().run_id == kRunId && client_saw.fields().channel == 7,
           "connect reported the wrong peer hello");

    // Less than ABI 1.0's size is the caller's mistake, refused before anything is sent.
    pangea_hello short_self = hello(3);
    short_self.struct_size = PANGEA_HELLO_SIZE_1_0 - 4;
    pangea_hello peer{};
    pangea_connection* never = nullptr;
    status = client.vt.connect(client.h(), bound, &short_self, 2000, &peer, &never);
    if (status == PANGEA_OK) client.vt.close(client.h(), never);
    expect(status == PANGEA_ERR_INVALID_ARGUMENT,
           std::string("connect with a hello shorter than ABI 1.0's ended with ") + status_name(status));
}

}  // namespace

void check_transport(Report& report, const Subject& subject) {
    report.run(subject.check_name("listen, accept and connect exchange hellos"), [&] { Pair pair(subject); });

    report.run(subject.check_name("ping-pong of small messages in both directions"), [&] {
        std::vector<uint8_t> in, back;  // before the pair: see "a 1 GiB message arrives intact"
        Pair pair(subject);
        for (uint32_t round = 0; round < 200; ++round) {
            const size_t bytes = 1 + (round * 37) % 1000;
            const auto out = pattern(bytes, round);
            in.assign(bytes, 0);
            back.assign(bytes, 0);
            auto* r = pair.server.receive(in.data(), bytes);
            pair.client.complete(pair.client.send(out.data(), bytes), "ping send");
            pair.server.complete(r, "ping receive");
            auto* r2 = pair.client.receive(back.data(), bytes);
            pair.server.complete(pair.server.send(in.data(), bytes), "pong send");
            pair.client.complete(r2, "pong receive");
            expect(back == out, "round " + std::to_string(round) + ": the bytes came back different");
        }
    });

    report.run(subject.check_name("a 1 GiB message arrives intact"), [&] {
        // The buffers outlive the pair: a failed step closes the connections (~Pair) before the
        // memory their transfers may still touch goes away.
        const size_t bytes = size_t{1} << 30;
        std::vector<uint8_t> out = pattern(bytes, 99), in(bytes, 0);
        Pair pair(subject);
        auto* r = pair.server.receive(in.data(), bytes);
        auto* s = pair.client.send(out.data(), bytes);
        pair.client.complete(s, "send of 1 GiB");
        pair.server.complete(r, "receive of 1 GiB");
        expect(in == out, "the received gigabyte differs from what was sent");
    });

    report.run(subject.check_name("many concurrent sends of mixed sizes arrive in order"), [&] {
        const int count = 64;
        std::vector<std::vector<uint8_t>> out, in;
        Pair pair(subject);
        for (int i = 0; i < count; ++i) {
            const size_t bytes = i % 8 == 0 ? 0 : (size_t{1} << (i % 21)) + size_t(i);
            out.push_back(pattern(bytes, uint32_t(i)));
            in.emplace_back(bytes);
        }
        std::vector<pangea_request*> sends, receives;
        for (int i = 0; i < count; ++i) sends.push_back(pair.client.send(out[i].data(), out[i].size()));
        for (int i = 0; i < count; ++i) receives.push_back(pair.server.receive(in[i].data(), in[i].size()));
        for (auto* r : receives) pair.server.complete(r, "receive");
        for (auto* s : sends) pair.client.complete(s, "send");
        for (int i = 0; i < count; ++i) expect(in[i] == out[i], "message " + std::to_string(i) + " differs");
    });

    report.run(subject.check_name("requests may be completed in any order"), [&] {
        std::vector<std::vector<uint8_t>> out, in;
        Pair pair(subject);
        std::vector<pangea_request*> receives;
        for (int i = 0; i < 8; ++i) {
            out.push_back(pattern(4096 * (i + 1), uint32_t(i)));
            in.emplace_back(out.back().size());
            receives.push_back(pair.server.receive(in[i].data(), in[i].size()));
        }
        std::vector<pangea_request*> sends;
        for (int i = 0; i < 8; ++i) sends.push_back(pair.client.send(out[i].data(), out[i].size()));
        for (int i = 7; i >= 0; --i) pair.server.complete(receives[i], "receive (last first)");
        for (int i = 7; i >= 0; --i) pair.client.complete(sends[i], "send (last first)");
        for (int i = 0; i < 8; ++i) expect(in[i] == out[i], "message " + std::to_string(i) + " differs");
    });

    report.run(subject.check_name("wait times out and leaves the request valid; test says AGAIN"), [&] {
        std::vector<uint8_t> in(100), out = pattern(100, 5);
        Pair pair(subject);
        auto* r = pair.server.receive(in.data(), in.size());
        const auto start = std::chrono::steady_clock::now();
        expect(pair.server.wait(r, 100) == PANGEA_ERR_TIMEOUT, "wait with nothing sent did not time out");
        const auto waited = std::chrono::steady_clock::now() - start;
        expect(waited >= std::chrono::milliseconds(90) && waited < std::chrono::seconds(5),
               "wait(100 ms) returned after " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()) + " ms");
        expect(pair.server.vt.test(pair.server.h(), r) == PANGEA_ERR_AGAIN, "test of a pending request is not AGAIN");
        pair.client.complete(pair.client.send(out.data(), out.size()), "send");
        pair.server.complete(r, "receive after a timeout");
        expect(in == out, "the bytes differ");
    });

    report.run(subject.check_name("a message sent just before the peer closes still arrives whole"), [&] {
        for (int round = 0; round < 5; ++round) {
            const auto out = pattern(size_t{24} << 20, uint32_t(round));
            std::vector<uint8_t> in(out.size());
            Pair pair(subject);
            auto* r = pair.server.receive(in.data(), in.size());
            pair.client.complete(pair.client.send(out.data(), out.size()), "send");
            // A finished node closes at once; its last bytes may still be on the way.
            pair.client.vt.close(pair.client.h(), pair.client.connection);
            pair.client.connection = nullptr;
            pair.server.complete(r, "receive after the sender closed");
            expect(in == out, "the bytes differ");
        }
    });

    report.run(subject.check_name("a closed peer fails pending and new requests with PANGEA_ERR_PEER_LOST"), [&] {
        std::vector<uint8_t> in(1 << 20), out(1000);
        Pair pair(subject);
        auto* r = pair.client.receive(in.data(), in.size());
        pair.server.vt.close(pair.server.h(), pair.server.connection);  // as when its process dies
        pair.server.connection = nullptr;
        const pangea_status status = pair.client.wait(r);
        expect(status == PANGEA_ERR_PEER_LOST, std::string("the pending receive ended with ") + status_name(status));
        expect(!pair.client.instance.last_error().empty(), "no last_error() text after the failure");
        pangea_request* s = nullptr;
        const pangea_status send_status = pair.client.vt.isend(pair.client.h(), pair.client.connection, out.data(), out.size(), &s);
        if (send_status == PANGEA_OK) {
            const pangea_status done = pair.client.wait(s);
            expect(done != PANGEA_OK && done != PANGEA_ERR_TIMEOUT,
                   std::string("a send to a dead peer ended with ") + status_name(done));
        }
    });

    report.run(subject.check_name("abort wakes a blocked wait with PANGEA_ERR_ABORTED"), [&] {
        std::vector<uint8_t> in(1000);
        Pair pair(subject);
        auto* r = pair.client.receive(in.data(), in.size());
        auto waiter = std::async(std::launch::async, [&] { return pair.client.wait(r, -1); });
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        pair.client.vt.abort(pair.client.h(), pair.client.connection);
        pair.client.vt.abort(pair.client.h(), pair.client.connection);  // idempotent
        expect(waiter.wait_for(std::chrono::seconds(5)) == std::future_status::ready, "abort did not wake the waiter");
        const pangea_status status = waiter.get();
        expect(status == PANGEA_ERR_ABORTED, std::string("the aborted receive ended with ") + status_name(status));
    });

    report.run(subject.check_name("abort and close race from two threads, with a wait or test in flight"),
               [&] { race_abort_and_close(subject); });

    report.run(subject.check_name("a hello of ABI 1.0's size is taken, and nothing past it written"),
               [&] { hello_sizes(subject); });

    report.run(subject.check_name("a message longer than the posted receive fails it"), [&] {
        std::vector<uint8_t> out = pattern(4096, 1), in(1024);
        Pair pair(subject);
        auto* r = pair.server.receive(in.data(), in.size());
        auto* s = pair.client.send(out.data(), out.size());
        const pangea_status status = pair.server.wait(r);
        expect(status != PANGEA_OK && status != PANGEA_ERR_TIMEOUT,
               std::string("an oversized message ended the receive with ") + status_name(status));
        pair.client.wait(s, 5000);
    });

    report.run(subject.check_name("garbage and silence on the listening socket are dropped"), [&] {
        Side server(subject), client(subject);
        char bound[128] = {};
        pangea_status status = server.vt.listen(server.h(), "127.0.0.1:0", &server.listener, bound, sizeof bound);
        expect(status == PANGEA_OK, server.instance.describe_failure("listen", status));
        raw_client(bound, pattern(4096, 3));  // random bytes
        raw_client(bound, {});                // connects and leaves
        raw_client(bound, std::vector<uint8_t>(40, 0));  // zeros, as long as a handshake
        pangea_hello seen{};
        // The failure text is per thread: read it on the accepting thread.
        auto accepted = std::async(std::launch::async, [&] {
            const pangea_hello self = hello(1);
            const pangea_status s = server.vt.accept(server.h(), server.listener, &self, limit_ms(), &seen, &server.connection);
            return s == PANGEA_OK ? std::string() : server.instance.describe_failure("accept after garbage", s);
        });
        const pangea_hello self = hello(2);
        pangea_hello peer{};
        status = client.vt.connect(client.h(), bound, &self, limit_ms(), &peer, &client.connection);
        expect(status == PANGEA_OK, client.instance.describe_failure("connect after garbage", status));
        const std::string accept_failure = accepted.get();
        expect(accept_failure.empty(), accept_failure);
        expect(seen.node_id == 2, "accept returned something other than the real client");
    });

    report.run(subject.check_name("a connection from another run is refused"), [&] {
        Side server(subject), client(subject);
        char bound[128] = {};
        pangea_status status = server.vt.listen(server.h(), "127.0.0.1:0", &server.listener, bound, sizeof bound);
        expect(status == PANGEA_OK, server.instance.describe_failure("listen", status));
        pangea_hello seen{};
        auto accepted = std::async(std::launch::async, [&] {
            const pangea_hello self = hello(1);
            return server.vt.accept(server.h(), server.listener, &self, 1500, &seen, &server.connection);
        });
        const pangea_hello stranger = hello(9, kRunId + 1);
        pangea_hello peer{};
        status = client.vt.connect(client.h(), bound, &stranger, 5000, &peer, &client.connection);
        expect(status != PANGEA_OK, "a client of another run was connected");
        expect(accepted.get() == PANGEA_ERR_TIMEOUT, "accept returned a connection from another run");
    });

    // The optional slot (ABI 1.0 + allreduce_sum_f32): a transport that offers its own all-reduce
    // must sum exactly and leave every rank with the same bits; one that answers UNSUPPORTED must
    // leave the data alone (the core then runs its own ring).
    report.run(subject.check_name("allreduce_sum_f32, where offered, sums bit-identically on 2 ranks"), [&] {
        Side rank0(subject), rank1(subject);
        Side* ranks[2] = {&rank0, &rank1};
        constexpr size_t kSlotEnd = offsetof(pangea_transport_vtable, allreduce_sum_f32) + sizeof(void*);
        if (rank0.vt.header.struct_size < kSlotEnd || rank0.vt.allreduce_sum_f32 == nullptr) return;  // not offered
        // Each rank listens; each connects to the other: its `next`, and the other's `previous`.
        std::string bound[2];
        for (int r = 0; r < 2; ++r) {
            char text[128] = {};
            const pangea_status status = ranks[r]->vt.listen(ranks[r]->h(), "127.0.0.1:0", &ranks[r]->listener, text, sizeof text);
            expect(status == PANGEA_OK, ranks[r]->instance.describe_failure("listen", status));
            bound[r] = text;
        }
        pangea_connection* next[2] = {};
        pangea_connection* previous[2] = {};
        for (int r = 0; r < 2; ++r) {
            Side& me = *ranks[r];
            Side& other = *ranks[1 - r];
            pangea_hello seen{};
            auto accepted = std::async(std::launch::async, [&] {
                const pangea_hello self = hello(static_cast<uint32_t>(1 - r));
                const pangea_status s = other.vt.accept(other.h(), other.listener, &self, limit_ms(), &seen, &previous[1 - r]);
                return s == PANGEA_OK ? std::string() : other.instance.describe_failure("accept", s);
            });
            const pangea_hello self = hello(static_cast<uint32_t>(r));
            pangea_hello peer{};
            const pangea_status status = me.vt.connect(me.h(), bound[1 - r].c_str(), &self, limit_ms(), &peer, &next[r]);
            const std::string accept_failure = accepted.get();
            expect(accept_failure.empty(), accept_failure);
            expect(status == PANGEA_OK, me.instance.describe_failure("connect", status));
        }
        constexpr size_t kCount = 100003;  // not a multiple of anything a ring cuts by
        std::vector<float> data[2];
        for (int r = 0; r < 2; ++r) {
            data[r].resize(kCount);
            for (size_t i = 0; i < kCount; ++i) data[r][i] = static_cast<float>((i * 7 + r * 13) % 1000) * 0.25f;
        }
        const std::vector<float> before = data[0];
        std::future<pangea_status> results[2];
        for (int r = 0; r < 2; ++r)
            results[r] = std::async(std::launch::async, [&, r] {
                return ranks[r]->vt.allreduce_sum_f32(ranks[r]->h(), next[r], previous[r], static_cast<uint32_t>(r), 2,
                                                       data[r].data(), kCount, limit_ms());
            });
        const pangea_status status[2] = {results[0].get(), results[1].get()};
        for (int r = 0; r < 2; ++r) {
            ranks[r]->vt.close(ranks[r]->h(), next[r]);
            ranks[r]->vt.close(ranks[r]->h(), previous[r]);
        }
        if (status[0] == PANGEA_ERR_UNSUPPORTED && status[1] == PANGEA_ERR_UNSUPPORTED) {
            expect(data[0] == before, "allreduce_sum_f32 answered UNSUPPORTED but changed the data");
            return;
        }
        expect(status[0] == PANGEA_OK && status[1] == PANGEA_OK,
               rank0.instance.describe_failure("allreduce_sum_f32", status[0] != PANGEA_OK ? status[0] : status[1]));
        expect(std::memcmp(data[0].data(), data[1].data(), kCount * sizeof(float)) == 0,
               "the two ranks hold different bits after allreduce_sum_f32");
        for (size_t i = 0; i < kCount; ++i)  // small multiples of 0.25: every sum is exact in fp32
            if (data[0][i] != static_cast<float>((i * 7) % 1000) * 0.25f + static_cast<float>((i * 7 + 13) % 1000) * 0.25f)
                expect(false, "allreduce_sum_f32 gave a wrong sum at element " + std::to_string(i));
    });
}

}  // namespace pangea::conformance
