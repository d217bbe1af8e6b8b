#include "train/mesh_session.hpp"

#include <algorithm>

#include "topology/auth.hpp"
#include "common/log.hpp"
#include "manifest/manifest.hpp"
#include "train/node.hpp"
#include "train/run_setup.hpp"

namespace pangea {

LaneOptions lane_options(const Manifest& m, int worker, int workers) {
    const auto timeout = std::chrono::milliseconds(m.get_int("mesh", "timeout_ms"));
    LaneOptions lanes;
    lanes.secret = load_run_secret(m);
    lanes.outlier_factor = m.get_float("diloco", "outlier_factor");
    lanes.rings = outer_rings(m);
    lanes.count = lanes.rings / workers;  // (check_workers: a multiple)
    lanes.first = worker * lanes.count;
    lanes.ring.stall_timeout_ms = static_cast<int>(std::max<int64_t>(30000, timeout.count()));
    if (const std::string aggregation = m.get_string("mesh", "aggregation"); aggregation != "codec")
        lanes.ring.aggregation = aggregation == "gather" ? Aggregation::kGather : Aggregation::kRing;
    lanes.connect_timeout = std::max<std::chrono::milliseconds>(std::chrono::milliseconds(10000), timeout);
    return lanes;
}

std::string worker_address(const Manifest& m, int worker) {
    const std::string address = m.get_string("mesh", "address");
    const size_t colon = address.rfind(':');
    if (worker == 0 || colon == std::string::npos) return address;
    unsigned long port = 0;
    try {
        port = std::stoul(address.substr(colon + 1));
    } catch (const std::exception&) {
        return address;  // not host:port: as it is (the transport says what it makes of it)
    }
    return port > 0 ? address.substr(0, colon + 1) + std::to_string(port + static_cast<unsigned long>(worker)) : address;
}

MeshSession::MeshSession(const Manifest& m, const PluginInstance& transport, const PluginInstance& codec,
                         const NodeOptions& options, std::optional<int64_t> resumed_step, RingWorkers* workers)
    : transport_(transport),
      node_(options.node_id),
      run_id_(run_id_of(m, options.run_id)),
      secret_(load_run_secret(m)),
      recovery_timeout_(m.get_int("mesh", "recovery_timeout_ms")),
      min_members_(static_cast<int>(m.get_int("mesh", "min_members"))) {
    const std::string tag = "node-" + std::to_string(node_);
    const bool use_etcd = m.get_string("mesh", "backend") == "etcd";
    const std::string coordinator = m.get_string("mesh", "coordinator");
    if (coordinator.empty() && !use_etcd)
        throw std::runtime_error(tag + ": [mesh] coordinator is not set: start `pangea coordinator` and set "
                                       "mesh.coordinator to its host:port, or start the run with `pangea launch`");
    if (secret_.empty())
        log(PANGEA_LOG_WARN, "mesh", tag + ": the run has no secret ([mesh] secret_file or secret_env): anyone who can "
                                           "reach the coordinator and the nodes can join it");
    const auto heartbeat = std::chrono::milliseconds(m.get_int("mesh", "heartbeat_ms"));

    listener_ = std::make_unique<OwnedListener>(transport, m.get_string("mesh", "address"));
    acceptor_ = std::make_unique<PeerAcceptor>(
        transport, *listener_, node_, run_id_, secret_,
        [this](OwnedConnection connection, const pangea_hello& peer) {
            state_server_.serve(transport_, std::move(connection), peer);
        });
    const int worker_count = workers ? workers->count() : 1;
    const LaneOptions lanes = lane_options(m, 0, worker_count);
    const std::string compression = compression_of(codec, lanes.ring.aggregation);
    CoordinatorOptions hosted = coordinator_options(m, run_id_);  // for a coordinator served from this process
    hosted.rings = outer_rings(m);
    hosted.compression = compression;
    if (options.host_coordinator && !use_etcd)
        hosted_coordinator_ = std::make_unique<HostedCoordinator>("0.0.0.0:" + coordinator.substr(coordinator.rfind(':') + 1),
                                                                  hosted);
    CoordinatorClientOptions client;
    client.coordinator = coordinator;
    if (use_etcd) {  // (hosted: should this node win the election)
        const std::string address = listener_->address();
        const std::string coordinator_listen =
            address.substr(0, address.rfind(':')) + ":" + std::to_string(m.get_int("mesh", "coordinator_port"));
        etcd_ = std::make_unique<EtcdBackend>(etcd_access(m), node_, address, coordinator_listen, hosted, heartbeat);
        client.locate = [this] { return etcd_->locate(); };
        client.send_beats = false;  // the etcd lease is the heartbeat
    }
    client.run = run_id_text(run_id_);
    client.node = node_;
    client.address = listener_->address();
    client.heartbeat = heartbeat;
    client.reconnect_for = std::chrono::milliseconds(m.get_int("mesh", "coordinator_wait_ms"));
    client.join = options.join;
    client.rings = outer_rings(m);
    client.compression = compression;
    if (workers) client.ring_addresses = workers->ring_addresses(listener_->address());
    if (resumed_step) client.resumed_step = *resumed_step;
    client.secret = secret_;
    membership_ = std::make_unique<CoordinatorClient>(client);
    membership_->on_wrap_up([this](int64_t step) { wrap_up_step_ = step; });
    joined_ = membership_->join();

    lanes_ = std::make_unique<RingLanes>(transport, *acceptor_, codec, node_, run_id_, lanes);
    rings_ = workers ? workers->rings(*lanes_) : std::make_unique<LocalRings>(*lanes_);
    if (outer_rings(m) > 1)
        log(PANGEA_LOG_INFO, "mesh", tag + ": the outer all-reduce runs " + std::to_string(outer_rings(m)) +
                                         " rings at once, each over its share of the buffer" +
                                         (worker_count > 1 ? ", " + std::to_string(outer_rings(m) / worker_count) +
                                                                 " in each worker's process"
                                                           : std::string()));
    if (m.get_string("mesh", "ring_order") == "measured") {
        RingPlanOptions plan;
        plan.probe_bytes = static_cast<size_t>(m.get_int("mesh", "probe_bytes"));
        plan.secret = secret_;
        planner_ = std::make_unique<RingPlanner>(transport, *acceptor_, node_, run_id_, plan);
    }
    elastic_ = std::make_unique<ElasticAllReduce>(*membership_, *rings_, node_, joined_.step, 20, planner_.get());
}

MeshSession::~MeshSession() { state_server_.stop(); }

StateSnapshot MeshSession::fetch(const Rejoin& from, uint64_t max_bytes, FetchReport* report) {
    return fetch_state(transport_, from.sources, node_, run_id_, secret_, from.run_step, recovery_timeout_, max_bytes,
                       report, [this](int64_t step) { membership_->reserve(step + 1); });
}

std::optional<Rejoin> MeshSession::admit(int64_t step) {
    std::optional<Rejoin> moved_on = membership_->admit(step + 1);
    if (!moved_on) elastic_->set_committed_step(step);
    return moved_on;
}

void MeshSession::leave() {
    membership_->leave();
    state_server_.stop();
}

std::vector<int> MeshSession::member_nodes() const {
    std::vector<int> nodes;
    for (const Member& member : elastic_->last_epoch().members) nodes.push_back(member.node);
    return nodes;
}

}  // namespace pangea
