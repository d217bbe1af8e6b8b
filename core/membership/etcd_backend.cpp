#include "membership/etcd_backend.hpp"

#include <algorithm>

#include "common/json.hpp"
#include "common/log.hpp"

namespace pangea {
namespace {

void note(pangea_log_level level, const std::string& message) { log(level, "mesh", message); }

}  // namespace

EtcdBackend::EtcdBackend(EtcdAccess access, int node, const std::string& address, const std::string& coordinator_listen,
                         CoordinatorOptions options, std::chrono::milliseconds heartbeat)
    : access_(std::move(access)),
      node_(node),
      address_(address),
      coordinator_listen_(coordinator_listen),
      options_(std::move(options)),
      // etcd leases are whole seconds, and short ones are rounded up.
      ttl_seconds_(static_cast<int>(std::max<int64_t>(2, (options_.timeout.count() + 999) / 1000))),
      heartbeat_(heartbeat),
      etcd_(access_) {
    lease_ = etcd_.grant_lease(ttl_seconds_);
    // A process that held this id a moment ago (killed, now restarted) leaves its registration
    // behind until its lease expires: wait that long before calling the id taken.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(ttl_seconds_ + 2);
    while (true) {
        try {
            if (register_node(etcd_)) break;
        } catch (const EtcdLeaseLost&) {  // this process was stopped past the TTL meanwhile
            lease_ = etcd_.grant_lease(ttl_seconds_);
            continue;
        }
        if (std::chrono::steady_clock::now() > deadline) {
            try {
                etcd_.revoke_lease(lease_);
            } catch (const MeshError&) {
            }
            throw MeshError("node id " + std::to_string(node_) + " is taken: a live node at " +
                            etcd_.get(key("nodes/" + std::to_string(node_))).value_or("?") + " is registered with it in etcd (" +
                            etcd_.endpoint() + ")");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        if (!etcd_.keep_alive(lease_)) lease_ = etcd_.grant_lease(ttl_seconds_);
    }
    keeper_ = std::thread([this] { keep_lease(); });
}

EtcdBackend::~EtcdBackend() {
    stop_ = true;
    keeper_.join();
    std::lock_guard lock(mutex_);
    stop_serving();
    try {
        etcd_.revoke_lease(lease_);  // deletes this node's keys: the others see it go at once
    } catch (const MeshError&) {
    }
}

bool EtcdBackend::register_node(EtcdClient& etcd) {
    registered_ = etcd.create(key("nodes/" + std::to_string(node_)), address_, lease_).has_value();
    return registered_;
}

void EtcdBackend::stop_serving() {
    stop_server_ = true;
    if (server_thread_.joinable()) server_thread_.join();
    if (watcher_.joinable()) watcher_.join();
    server_.reset();
    std::lock_guard lock(changes_mutex_);
    changes_.clear();
}

void EtcdBackend::keep_lease() {
    EtcdClient etcd(access_);  // a handle of its own: libcurl handles are one thread's
    while (!stop_) {
        std::this_thread::sleep_for(std::min(heartbeat_, std::chrono::milliseconds(1000 * ttl_seconds_ / 3)));
        std::lock_guard lock(mutex_);
        try {
            if (etcd.keep_alive(lease_)) {
                if (!registered_ && !register_node(etcd))
                    note(PANGEA_LOG_WARN, "node " + std::to_string(node_) + ": its id is registered by another process");
                continue;
            }
            // The lease expired (this process stalled, or etcd lost it): whatever it held is
            // gone; the coordinator this node served has been (or will be) replaced.
            note(PANGEA_LOG_WARN, "node " + std::to_string(node_) + ": its etcd lease expired; registering again");
            if (server_) stop_serving();
            lease_ = etcd.grant_lease(ttl_seconds_);
            register_node(etcd);
        } catch (const MeshError& e) {
            note(PANGEA_LOG_WARN, "node " + std::to_string(node_) + ": " + e.what());  // etcd away for now
        }
    }
}

void EtcdBackend::watch_registrations() {
    EtcdClient etcd(access_);
    const std::string prefix = key("nodes/");
    auto record = [&](const std::string& k, bool present) {
        try {
            const int node = std::stoi(k.substr(prefix.size()));
            std::lock_guard lock(changes_mutex_);
            changes_.emplace_back(node, present);
        } catch (const std::exception&) {
            note(PANGEA_LOG_WARN, "ignoring a key that is not a node's registration: " + k);
        }
    };
    int64_t revision = -1;
    while (!stop_server_) {
        try {
            if (revision < 0) {  // the registrations now, then every change after them
                for (const EtcdKey& k : etcd.list(prefix, &revision)) record(k.key, true);
            }
            revision = etcd.watch(prefix, revision + 1, [&](const EtcdEvent& e) { record(e.key, !e.deleted); }, stop_server_);
        } catch (const MeshError& e) {
            note(PANGEA_LOG_WARN, "coordinator on node " + std::to_string(node_) + ": " + e.what() + "; watching again");
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
    }
}

void EtcdBackend::start_coordinator(int64_t elected_revision) {
    CoordinatorOptions options = options_;
    options.registry = true;
    // Carry on from the last commit etcd holds.
    if (const auto record = etcd_.get(key("epoch"))) {
        Json fields;
        try {
            fields = parse_json(*record);
        } catch (const JsonError& e) {
            // The nodes say what they hold: the run carries on from that.
            note(PANGEA_LOG_WARN, "the commit record " + key("epoch") + " in etcd is not JSON (" + e.what() + "); ignored");
        }
        options.committed_step = json_int(fields, "step").value_or(0);
        options.committed_epoch = static_cast<uint64_t>(json_int(fields, "epoch").value_or(0));
    }
    auto etcd = std::make_shared<EtcdClient>(access_);  // the server thread's
    options.record_commit = [etcd, guard = key("coordinator"), epoch_key = key("epoch"),
                             elected_revision](const Epoch& epoch) {
        return etcd->put_if_created_at(guard, elected_revision, epoch_key,
                                       to_json(Json{{"epoch", epoch.id},
                                                    {"step", epoch.step},
                                                    {"members", encode_members(epoch.members)}}));
    };
    stop_server_ = false;
    server_ended_ = false;
    note(PANGEA_LOG_INFO, "node " + std::to_string(node_) + " was elected to coordinate the run (from step " +
                              std::to_string(options.committed_step) + "); serving at " + server_->address());
    watcher_ = std::thread([this] { watch_registrations(); });
    server_thread_ = std::thread([this, options] {
        server_->serve(options, stop_server_, [this] {
            std::lock_guard lock(changes_mutex_);
            return std::exchange(changes_, {});
        });
        server_ended_ = true;
    });
}

std::string EtcdBackend::locate() {
    std::lock_guard lock(mutex_);
    if (server_ended_) stop_serving();  // superseded: another node coordinates now
    try {
        if (const auto current = etcd_.get(key("coordinator"))) return *current;
        // Nobody coordinates: stand, with a server ready to take connections once elected.
        auto server = std::make_unique<CoordinatorServer>(coordinator_listen_);
        const auto elected = etcd_.create(key("coordinator"), server->address(), lease_);
        if (!elected) return etcd_.get(key("coordinator")).value_or("");
        server_ = std::move(server);
        start_coordinator(*elected);
        return server_->address();
    } catch (const std::exception& e) {  // etcd unreachable, or no port to listen on
        note(PANGEA_LOG_WARN, "node " + std::to_string(node_) + ": looking for the coordinator: " + e.what());
        return "";
    }
}

}  // namespace pangea
