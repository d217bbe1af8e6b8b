// The etcd backend against a real etcd on loopback, started here with a temporary data
// directory (skipped where etcd is not installed): the client's calls, lease expiry, and the
// election of the node that hosts the coordinator, with failover.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include "common/process.hpp"
#include "mesh/etcd.hpp"
#include "mesh/etcd_coordinator.hpp"

namespace pangea {
namespace {

namespace fs = std::filesystem;

class Etcd : public ::testing::Test {
protected:
    void SetUp() override {
        if (!fs::exists("/usr/bin/etcd")) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
        std::random_device random;
        const int port = 20000 + static_cast<int>(random() % 20000);
        dir = fs::temp_directory_path() / ("pangea-etcd-test-" + std::to_string(port));
        fs::remove_all(dir);
        endpoint = "http://127.0.0.1:" + std::to_string(port);
        etcd.emplace(std::vector<std::string>{"/usr/bin/etcd", "--data-dir", dir.string(), "--listen-client-urls",
                                              endpoint, "--advertise-client-urls", endpoint, "--listen-peer-urls",
                                              "http://127.0.0.1:" + std::to_string(port + 1)},
                     (dir.string() + ".log"));
        for (int i = 0; i < 100; ++i) {
            try {
                EtcdClient(endpoint, 500).get("/ping");
                return;
            } catch (const MeshError&) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        }
        FAIL() << "etcd did not start; see " << dir.string() << ".log";
    }
    void TearDown() override {
        etcd.reset();
        fs::remove_all(dir);
        fs::remove(dir.string() + ".log");
    }
    fs::path dir;
    std::string endpoint;
    std::optional<ChildProcess> etcd;
};

TEST_F(Etcd, CreateOnlyIfAbsentAndKeysDieWithTheirLease) {
    EtcdClient client(endpoint);
    const int64_t lease = client.grant_lease(2);
    EXPECT_TRUE(client.create("/k", "first", lease));
    EXPECT_FALSE(client.create("/k", "second", lease)) << "a second create must lose";
    EXPECT_EQ(client.get("/k").value_or(""), "first");
    EXPECT_FALSE(client.get("/missing").has_value());
    EXPECT_TRUE(client.keep_alive(lease));
    client.revoke_lease(lease);
    EXPECT_FALSE(client.get("/k").has_value()) << "revoking the lease deletes its keys";
    EXPECT_FALSE(client.keep_alive(lease));
}

TEST_F(Etcd, AnUnreachableEndpointIsAnErrorNamingIt) {
    try {
        EtcdClient("http://127.0.0.1:1", 500).grant_lease(2);
        FAIL() << "no error";
    } catch (const MeshError& e) {
        EXPECT_NE(std::string(e.what()).find("etcd at http://127.0.0.1:1"), std::string::npos) << e.what();
    }
}

TEST_F(Etcd, OneNodeIsElectedAndAnotherTakesOverWhenItGoes) {
    CoordinatorOptions options{"00000000000000aa", std::chrono::milliseconds(2000), 1, ""};
    auto first = std::make_unique<EtcdCoordinatorElection>(endpoint, 0, "127.0.0.1", options, std::chrono::milliseconds(300));
    EtcdCoordinatorElection second(endpoint, 1, "127.0.0.1", options, std::chrono::milliseconds(300));
    const std::string elected = first->locate();
    ASSERT_FALSE(elected.empty());
    EXPECT_EQ(second.locate(), elected) << "the second node finds the first one's coordinator";
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // past the TTL: the keeper keeps it
    EXPECT_EQ(second.locate(), elected);
    first.reset();  // the node goes: its lease is revoked
    const std::string successor = second.locate();
    EXPECT_FALSE(successor.empty());
    EXPECT_NE(successor, elected);
}

}  // namespace
}  // namespace pangea
