#include "membership/etcd_run_state.hpp"

#include <map>
#include <vector>

#include "common/json.hpp"
#include "membership/etcd_backend.hpp"
#include "topology/ring_setup.hpp"

namespace pangea {
namespace {

std::string lease_text(EtcdClient& etcd, int64_t lease) {
    if (lease == 0) return "no lease";
    const int64_t left = etcd.time_to_live(lease);
    return left < 0 ? "lease expired" : "lease " + std::to_string(lease) + ", " + std::to_string(left) + " s left";
}

// "epoch 7, step 12, members 0 1 2 3" from the record's JSON (the text itself when it is not).
std::string epoch_text(const std::string& record) {
    try {
        const Json fields = parse_json(record);
        std::string members;
        const auto list = fields.find("members");
        if (list != fields.end() && list->is_array())
            for (const Json& member : *list) members += " " + std::to_string(json_int(member, "node").value_or(-1));
        return "epoch " + std::to_string(json_int(fields, "epoch").value_or(0)) + ", step " +
               std::to_string(json_int(fields, "step").value_or(0)) + ", members" + (members.empty() ? " none" : members);
    } catch (const JsonError&) {
        return "(not JSON) " + record.substr(0, 200);
    }
}

}  // namespace

void show_etcd_run(EtcdClient& etcd, const std::string& run, std::ostream& out) {
    const std::string prefix = etcd_run_prefix(run);
    int64_t revision = 0;
    const std::vector<EtcdKey> keys = etcd.list(prefix, &revision);
    out << "run " << run << " in etcd at " << etcd.endpoint() << ", under " << prefix << " (revision " << revision << ")\n";
    if (keys.empty()) {
        out << "  nothing: no node of this run is registered and no step was committed\n";
        return;
    }
    std::map<int64_t, std::string> node_of_lease;
    for (const EtcdKey& k : keys)
        if (k.key.rfind(prefix + "nodes/", 0) == 0) node_of_lease[k.lease] = k.key.substr(prefix.size() + 6);
    for (const EtcdKey& k : keys) {
        const std::string name = k.key.substr(prefix.size());
        if (name.rfind("nodes/", 0) == 0) {
            out << "  node " << name.substr(6) << "  at " << k.value << " (" << lease_text(etcd, k.lease) << ")\n";
        } else if (name == "coordinator") {
            const auto host = node_of_lease.find(k.lease);
            out << "  coordinator  at " << k.value << ", hosted by "
                << (host != node_of_lease.end() ? "node " + host->second : std::string("no registered node")) << " ("
                << lease_text(etcd, k.lease) << ")\n";
        } else if (name == "epoch") {
            out << "  last commit  " << epoch_text(k.value) << "\n";
        } else {
            out << "  " << name << " = " << k.value.substr(0, 200) << "\n";
        }
    }
}

void list_etcd_runs(EtcdClient& etcd, std::ostream& out) {
    int64_t revision = 0;
    struct Run {
        int nodes = 0;
        std::string commit = "no commit";
    };
    std::map<std::string, Run> runs;
    for (const EtcdKey& k : etcd.list(kEtcdRoot, &revision)) {
        const std::string rest = k.key.substr(kEtcdRoot.size());
        const size_t slash = rest.find('/');
        Run& run = runs[rest.substr(0, slash)];
        const std::string name = slash == std::string::npos ? "" : rest.substr(slash + 1);
        if (name.rfind("nodes/", 0) == 0) ++run.nodes;
        if (name == "epoch") run.commit = epoch_text(k.value);
    }
    if (runs.empty()) out << "etcd at " << etcd.endpoint() << " holds no run under " << kEtcdRoot << "\n";
    for (const auto& [id, run] : runs)
        out << id << "  " << run.nodes << " node" << (run.nodes == 1 ? "" : "s") << " registered, last commit: " << run.commit
            << "\n";
}

int64_t clear_etcd_run(EtcdClient& etcd, const std::string& run, bool force) {
    const std::string prefix = etcd_run_prefix(run);
    int64_t revision = 0;
    std::string live;
    for (const EtcdKey& k : etcd.list(prefix + "nodes/", &revision)) live += " " + k.key.substr(prefix.size() + 6);
    if (!live.empty() && !force)
        throw MeshError("run " + run + " still has nodes registered in etcd (" + live.substr(1) +
                        "): is it going on? Stop them first (their registrations go with their leases), or clear "
                        "with --force");
    return etcd.remove_prefix(prefix);
}

}  // namespace pangea
