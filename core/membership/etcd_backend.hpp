// The etcd membership backend. etcd holds the run's membership record, under /pangea/<run>/:
//   nodes/<id>   each node's registration (value: its transport address), attached to the
//                node's lease, which it keeps alive at the heartbeat interval: the lease is the
//                node's heartbeat. Created only if absent, so one process holds an id.
//   coordinator  the address of the elected coordinator, attached to its host's lease (a
//                transaction creates it only if absent: the election).
//   epoch        the last committed epoch (id, step, members), written by a transaction that
//                checks the writer is still the elected coordinator (fencing: a coordinator
//                that stalled and came back cannot commit).
// The elected node serves the coordinator (membership/coordinator.hpp) from a thread and feeds it a
// watch of nodes/: registrations admit joiners, expiries drop the dead. When the host dies or
// stalls, its lease expires, etcd deletes its keys, and the next node that looks for the
// coordinator elects itself and carries on from the epoch record and what the nodes hold.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "membership/coordinator.hpp"
#include "membership/etcd.hpp"

namespace pangea {

// Where etcd holds the runs' keys, and one run's ("/pangea/<run>/"; `pangea etcd` reads them).
inline const std::string kEtcdRoot = "/pangea/";
inline std::string etcd_run_prefix(const std::string& run) { return kEtcdRoot + run + "/"; }

class EtcdBackend {
public:
    // Registers node `node` (transport address `address`) under its lease. `coordinator_listen`:
    // host:port where this node's coordinator would listen, should it be elected (port 0: any).
    // Throws MeshError when etcd cannot be reached or another live process holds the node id.
    EtcdBackend(EtcdAccess access, int node, const std::string& address, const std::string& coordinator_listen,
                CoordinatorOptions options, std::chrono::milliseconds heartbeat);
    ~EtcdBackend();  // stops a coordinator served here; revokes the lease (the others drop this node at once)
    EtcdBackend(const EtcdBackend&) = delete;
    EtcdBackend& operator=(const EtcdBackend&) = delete;

    // The coordinator's address: the elected one, or this node's after it won the election.
    // For CoordinatorClientOptions::locate; "" when etcd cannot be reached right now.
    std::string locate();

    std::string key(const std::string& name) const { return etcd_run_prefix(options_.run) + name; }

private:
    void keep_lease();            // the keeper thread
    bool register_node(EtcdClient& etcd);  // under mutex_; false when another process holds the id
    void start_coordinator(int64_t elected_revision);  // serves server_ from threads; under mutex_
    void watch_registrations();   // the watcher thread, while serving
    void stop_serving();          // under mutex_

    EtcdAccess access_;
    int node_;
    std::string address_;
    std::string coordinator_listen_;
    CoordinatorOptions options_;
    int ttl_seconds_;
    std::chrono::milliseconds heartbeat_;
    std::mutex mutex_;
    EtcdClient etcd_;  // used under mutex_
    int64_t lease_ = 0;
    bool registered_ = false;
    std::unique_ptr<CoordinatorServer> server_;
    std::atomic<bool> stop_server_ = false;
    std::atomic<bool> server_ended_ = false;  // it stopped by itself (superseded)
    std::thread server_thread_, watcher_;
    std::mutex changes_mutex_;
    std::vector<std::pair<int, bool>> changes_;  // registrations seen by the watcher, not yet served
    std::atomic<bool> stop_ = false;
    std::thread keeper_;
};

}  // namespace pangea
