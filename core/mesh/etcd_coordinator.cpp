#include "mesh/etcd_coordinator.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace pangea {
namespace {

void note(pangea_log_level level, const std::string& message) { log(level, "mesh", message); }

}  // namespace

EtcdCoordinatorElection::EtcdCoordinatorElection(const std::string& endpoint, int node, const std::string& host,
                                                 CoordinatorOptions options, std::chrono::milliseconds heartbeat)
    : endpoint_(endpoint),
      node_(node),
      host_(host),
      options_(std::move(options)),
      key_("/pangea/" + options_.run + "/coordinator"),
      // etcd rounds short leases up; the coordinator's own timeout is what drops nodes.
      ttl_seconds_(static_cast<int>(std::max<int64_t>(2, (options_.timeout.count() + 999) / 1000))),
      heartbeat_(heartbeat),
      etcd_(endpoint) {
    lease_ = etcd_.grant_lease(ttl_seconds_);
    keeper_ = std::thread([this] { keep_lease(); });
}

EtcdCoordinatorElection::~EtcdCoordinatorElection() {
    stop_ = true;
    keeper_.join();
    std::lock_guard lock(mutex_);
    stop_serving();
    try {
        etcd_.revoke_lease(lease_);  // the others elect a new coordinator at once, not after the TTL
    } catch (const MeshError&) {
    }
}

void EtcdCoordinatorElection::stop_serving() {
    if (server_thread_.joinable()) {
        stop_server_ = true;
        server_thread_.join();
    }
    server_.reset();
}

void EtcdCoordinatorElection::keep_lease() {
    EtcdClient etcd(endpoint_);  // a handle of its own: libcurl handles are one thread's
    while (!stop_) {
        std::this_thread::sleep_for(std::min(heartbeat_, std::chrono::milliseconds(1000 * ttl_seconds_ / 3)));
        bool alive = true;
        int64_t lease;
        {
            std::lock_guard lock(mutex_);
            lease = lease_;
        }
        try {
            alive = etcd.keep_alive(lease);
        } catch (const MeshError& e) {
            note(PANGEA_LOG_WARN, "node " + std::to_string(node_) + ": " + e.what());
            continue;  // etcd unreachable for now; the lease may still be alive
        }
        if (alive) continue;
        // The lease expired (this process stalled, or etcd lost it): whatever it held is gone.
        std::lock_guard lock(mutex_);
        if (server_) {
            note(PANGEA_LOG_WARN, "node " + std::to_string(node_) + ": lost the coordinator's lease; stopping it");
            stop_serving();
        }
        try {
            lease_ = etcd.grant_lease(ttl_seconds_);
        } catch (const MeshError& e) {
            note(PANGEA_LOG_WARN, "node " + std::to_string(node_) + ": " + e.what());
        }
    }
}

std::string EtcdCoordinatorElection::locate() {
    std::lock_guard lock(mutex_);
    try {
        if (const auto current = etcd_.get(key_)) return *current;
        // Nobody coordinates: stand, with a server ready to take connections once elected.
        if (!server_) server_ = std::make_unique<CoordinatorServer>(host_ + ":0", options_);
        if (!etcd_.create(key_, server_->address(), lease_)) {
            server_.reset();
            return etcd_.get(key_).value_or("");
        }
        note(PANGEA_LOG_INFO, "node " + std::to_string(node_) + " was elected to coordinate the run; serving at " +
                                  server_->address());
        stop_server_ = false;
        server_thread_ = std::thread([this] { server_->serve(stop_server_); });
        return server_->address();
    } catch (const std::exception& e) {  // etcd unreachable, or no port to listen on
        note(PANGEA_LOG_WARN, "node " + std::to_string(node_) + ": looking for the coordinator: " + e.what());
        return "";
    }
}

}  // namespace pangea
