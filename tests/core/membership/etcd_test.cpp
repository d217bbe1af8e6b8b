// The etcd backend against a real etcd on loopback, started here with a temporary data
// directory (skipped where etcd is not installed): the client's calls, lease expiry, fenced
// writes, watches, node registration and the election of the node that hosts the coordinator.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "common/process.hpp"
#include "membership/etcd.hpp"
#include "membership/etcd_backend.hpp"

namespace pangea {
namespace {

namespace fs = std::filesystem;

class Etcd : public ::testing::Test {
protected:
    // A real etcd on a random port below Linux's ephemeral range (32768 and up, where the other
    // tests' client sockets sit); another port if it exits (the port was taken).
    void SetUp() override {
        if (!fs::exists("/usr/bin/etcd")) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
        std::random_device random;
        std::string why;
        for (int attempt = 0; attempt < 5; ++attempt) {
            const int port = 20000 + 2 * static_cast<int>(random() % 6000);  // and port + 1 for peers
            dir = fs::temp_directory_path() / ("pangea-etcd-test-" + std::to_string(port));
            fs::remove_all(dir);
            log = dir.string() + ".log";
            fs::remove(log);
            endpoint = "http://127.0.0.1:" + std::to_string(port);
            etcd.emplace(std::vector<std::string>{"/usr/bin/etcd", "--data-dir", dir.string(), "--listen-client-urls",
                                                  endpoint, "--advertise-client-urls", endpoint, "--listen-peer-urls",
                                                  "http://127.0.0.1:" + std::to_string(port + 1)},
                         log);
            for (int i = 0; i < 300 && !etcd->wait_for(std::chrono::milliseconds(0)).has_value(); ++i) {
                try {
                    EtcdClient({endpoint}, 500).get("/ping");
                    return;
                } catch (const MeshError& e) {
                    why = e.what();
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                }
            }
            why = "etcd on port " + std::to_string(port) + " " +
                  (etcd->wait_for(std::chrono::milliseconds(0)).has_value() ? "exited" : "did not answer within 30 s") +
                  " (last: " + why + "); its log ends:\n" + tail_of(log);
            etcd.reset();
        }
        keep_log = true;
        FAIL() << why;
    }
    static std::string tail_of(const std::string& path) {
        std::ifstream in(path);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
    }
    void TearDown() override {
        etcd.reset();
        fs::remove_all(dir);
        if (!keep_log) fs::remove(log);
    }
    fs::path dir;
    std::string log;
    bool keep_log = false;
    std::string endpoint;
    std::optional<ChildProcess> etcd;
};

TEST_F(Etcd, CreateOnlyIfAbsentAndKeysDieWithTheirLease) {
    EtcdClient client({endpoint});
    const int64_t lease = client.grant_lease(2);
    EXPECT_TRUE(client.create("/k", "first", lease).has_value());
    EXPECT_FALSE(client.create("/k", "second", lease).has_value()) << "a second create must lose";
    EXPECT_EQ(client.get("/k").value_or(""), "first");
    EXPECT_FALSE(client.get("/missing").has_value());
    EXPECT_TRUE(client.keep_alive(lease));
    client.revoke_lease(lease);
    EXPECT_FALSE(client.get("/k").has_value()) << "revoking the lease deletes its keys";
    EXPECT_FALSE(client.keep_alive(lease));
}

TEST_F(Etcd, AnUnreachableEndpointIsAnErrorNamingIt) {
    try {
        EtcdClient({"http://127.0.0.1:1"}, 500).grant_lease(2);
        FAIL() << "no error";
    } catch (const MeshError& e) {
        EXPECT_NE(std::string(e.what()).find("etcd at http://127.0.0.1:1"), std::string::npos) << e.what();
    }
}

TEST_F(Etcd, AWriteFencedByAKeysCreationFailsOnceTheKeyWasCreatedAgain) {
    EtcdClient client({endpoint});
    const int64_t lease = client.grant_lease(10);
    const auto first = client.create("/leader", "a", lease);
    ASSERT_TRUE(first.has_value());
    EXPECT_TRUE(client.put_if_created_at("/leader", *first, "/record", "1"));
    client.revoke_lease(lease);
    const auto second = client.create("/leader", "b", client.grant_lease(10));
    ASSERT_TRUE(second.has_value());
    EXPECT_FALSE(client.put_if_created_at("/leader", *first, "/record", "2")) << "the old leader is fenced off";
    EXPECT_EQ(client.get("/record").value_or(""), "1");
    EXPECT_TRUE(client.put_if_created_at("/leader", *second, "/record", "3"));
}

TEST_F(Etcd, AWatchSeesRegistrationsAndTheirExpiry) {
    EtcdClient client({endpoint});
    const int64_t lease = client.grant_lease(2);
    ASSERT_TRUE(client.create("/run/nodes/1", "a", lease).has_value());
    int64_t revision = 0;
    const auto keys = client.list("/run/nodes/", &revision);
    ASSERT_EQ(keys.size(), 1u);
    EXPECT_EQ(keys[0].key, "/run/nodes/1");
    EXPECT_EQ(keys[0].value, "a");
    std::atomic<bool> stop = false;
    std::vector<EtcdEvent> events;
    std::mutex mutex;
    std::thread watcher([&] {
        EtcdClient own({endpoint});
        own.watch("/run/nodes/", revision + 1, [&](const EtcdEvent& e) {
            std::lock_guard l(mutex);
            events.push_back(e);
        }, stop);
    });
    client.create("/run/nodes/2", "b", client.grant_lease(30));
    client.create("/run/other", "not watched", 0);
    // Node 1's lease is not kept alive: etcd deletes its registration within a few seconds.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        {
            std::lock_guard l(mutex);
            if (events.size() >= 2) break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    stop = true;
    watcher.join();
    ASSERT_EQ(events.size(), 2u);
    EXPECT_FALSE(events[0].deleted);
    EXPECT_EQ(events[0].key, "/run/nodes/2");
    EXPECT_EQ(events[0].value, "b");
    EXPECT_TRUE(events[1].deleted);
    EXPECT_EQ(events[1].key, "/run/nodes/1");
}

TEST_F(Etcd, OneNodeIsElectedAndAnotherTakesOverWhenItGoes) {
    CoordinatorOptions options{"00000000000000aa", std::chrono::milliseconds(2000), 1, ""};
    auto first = std::make_unique<EtcdBackend>(EtcdAccess{endpoint}, 0, "127.0.0.1:1000", "127.0.0.1:0", options,
                                               std::chrono::milliseconds(300));
    EtcdBackend second({endpoint}, 1, "127.0.0.1:1001", "127.0.0.1:0", options, std::chrono::milliseconds(300));
    EtcdClient client({endpoint});
    EXPECT_EQ(client.get(first->key("nodes/0")).value_or(""), "127.0.0.1:1000") << "each node registers";
    const std::string elected = first->locate();
    ASSERT_FALSE(elected.empty());
    EXPECT_EQ(second.locate(), elected) << "the second node finds the first one's coordinator";
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // past the TTL: the keeper keeps it
    EXPECT_EQ(second.locate(), elected);
    EXPECT_TRUE(client.get(first->key("nodes/0")).has_value());
    first.reset();  // the node goes: its lease is revoked
    EXPECT_FALSE(client.get(second.key("nodes/0")).has_value()) << "leaving deletes the registration at once";
    const std::string successor = second.locate();
    EXPECT_FALSE(successor.empty());
    EXPECT_NE(successor, elected);
}

TEST_F(Etcd, ASecondProcessWithALiveNodesIdIsRefused) {
    CoordinatorOptions options{"00000000000000ac", std::chrono::milliseconds(2000), 1, ""};
    EtcdBackend first({endpoint}, 3, "127.0.0.1:1000", "127.0.0.1:0", options, std::chrono::milliseconds(300));
    try {
        EtcdBackend second({endpoint}, 3, "127.0.0.1:1001", "127.0.0.1:0", options, std::chrono::milliseconds(300));
        FAIL() << "a second node 3 was let in";
    } catch (const MeshError& e) {
        EXPECT_NE(std::string(e.what()).find("node id 3 is taken: a live node at 127.0.0.1:1000"), std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace pangea
