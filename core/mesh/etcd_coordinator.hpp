// The etcd membership backend. There is no coordinator process to run: the nodes elect one of
// themselves through etcd (a key created only if absent, attached to the winner's lease, kept
// alive at the heartbeat interval), and the winner serves the coordinator from a thread. When
// it dies or stalls, its lease expires, etcd deletes the key, and the next node that looks for
// the coordinator elects itself; the new coordinator carries on from what the nodes hold, as
// after a restart of `pangea coordinator`. The nodes speak the same protocol either way.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "mesh/coordinator.hpp"
#include "mesh/etcd.hpp"

namespace pangea {

class EtcdCoordinatorElection {
public:
    // `host`: the address this node's coordinator would listen on (port chosen by the system).
    // Throws MeshError when etcd cannot be reached.
    EtcdCoordinatorElection(const std::string& endpoint, int node, const std::string& host,
                            CoordinatorOptions options, std::chrono::milliseconds heartbeat);
    ~EtcdCoordinatorElection();  // stops a coordinator served here, gives up the lease
    EtcdCoordinatorElection(const EtcdCoordinatorElection&) = delete;
    EtcdCoordinatorElection& operator=(const EtcdCoordinatorElection&) = delete;

    // The coordinator's address: the elected one, or this node's after it won the election.
    // For CoordinatorClientOptions::locate; "" when etcd cannot be reached right now.
    std::string locate();

private:
    void keep_lease();     // the keeper thread
    void stop_serving();   // under mutex_

    std::string endpoint_;
    int node_;
    std::string host_;
    CoordinatorOptions options_;
    std::string key_;
    int ttl_seconds_;
    std::chrono::milliseconds heartbeat_;
    std::mutex mutex_;
    EtcdClient etcd_;  // used under mutex_
    int64_t lease_ = 0;
    std::unique_ptr<CoordinatorServer> server_;
    std::atomic<bool> stop_server_ = false;
    std::thread server_thread_;
    std::atomic<bool> stop_ = false;
    std::thread keeper_;
};

}  // namespace pangea
