// What etcd holds of runs (membership/etcd_backend.hpp: /pangea/<run>/nodes/<id>, coordinator,
// epoch), shown and cleared without etcdctl: `pangea etcd show|runs|clear`.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "membership/etcd.hpp"

namespace pangea {

// Prints the run's registered nodes (address, seconds left on their leases), the coordinator
// (which node hosts it), the last committed epoch, and any other key under its prefix.
void show_etcd_run(EtcdClient& etcd, const std::string& run, std::ostream& out);

// Prints each run etcd holds keys of: its id, live nodes, last committed step.
void list_etcd_runs(EtcdClient& etcd, std::ostream& out);

// Deletes every key of the run and returns how many there were. While nodes are registered (the
// run may be going on) it refuses, with MeshError naming them, unless `force`.
int64_t clear_etcd_run(EtcdClient& etcd, const std::string& run, bool force);

}  // namespace pangea
