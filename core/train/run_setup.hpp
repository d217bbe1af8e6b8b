// What the nodes of a run derive from its manifest beyond the typed values: the run's id, the
// plugin instances, where checkpoints go. Shared by the C++ node (train/node.hpp), the Python
// node (python/) and the tools; nothing here needs the model.
#pragma once

#include <cstdint>
#include <string>

#include "membership/coordinator.hpp"
#include "plugin_host/plugin_instance.hpp"

namespace pangea {

struct Manifest;
class PluginRegistry;

// The manifest's choice for a plugin kind, or the named default with its default settings.
PluginInstance instantiate(const Manifest& manifest, PluginRegistry& registry, pangea_plugin_kind kind,
                           const char* default_name);

// The storage plugin of [storage]; without one, storage/local in <run.dir>/checkpoints.
PluginInstance open_storage(const Manifest& manifest, PluginRegistry& registry);
// Where the run's checkpoints go in the storage: "<checkpoint.prefix or run name>/".
std::string checkpoint_prefix(const Manifest& manifest);

// How the run's inner steps fall into rounds, each ending in one sync of one fragment of the
// parameters ([diloco] fragments, Streaming DiLoCo): a round is inner_steps / fragments inner
// steps, and the run outer_steps x fragments rounds. Steps counted anywhere else (metrics,
// checkpoints, the mesh) count rounds. Throws ManifestError naming [diloco] fragments when
// inner_steps is not a multiple of it, or overlap when there is one fragment.
struct Rounds {
    int64_t count = 0;        // rounds (syncs) in the run
    int64_t inner_steps = 0;  // inner steps in each
    int fragments = 1;
};
Rounds rounds_of(const Manifest& manifest);

// [mesh] rings, resolved: 0 (the default) is one per worker of the node ([node] workers).
int outer_rings(const Manifest& manifest);

// The run id nodes and coordinator agree on: `explicit_id`, or one derived from [run] name.
uint64_t run_id_of(const Manifest& manifest, uint64_t explicit_id);
std::string run_id_text(uint64_t id);  // 16 hex digits, as the coordinator's messages carry it

// The run's coordinator, wherever it is served (`pangea coordinator`, a torchrun rank 0, the node
// etcd elects): [mesh] timeout_ms, min_members and rings as written, [diloco] quorum and
// grace_ms, and the run's secret (throws as load_run_secret()).
CoordinatorOptions coordinator_options(const Manifest& manifest, uint64_t run_id);

}  // namespace pangea
