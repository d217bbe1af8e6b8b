#include "train/node_setup.hpp"

#include "common/log.hpp"
#include "manifest/manifest.hpp"
#include "train/node.hpp"
#include "train/run_setup.hpp"

namespace pangea {
namespace {

MemoryUse baseline_before_model() {
    use_training_allocator();
    return memory_use();
}

}  // namespace

NodeSetup::NodeSetup(const Manifest& m, PluginRegistry& registry, int node_id, WorkerGroup* workers)
    : node(node_id),
      nodes(static_cast<int>(m.get_int("mesh", "nodes"))),
      tag("node-" + std::to_string(node_id)),
      sampler(m.data_sources, m.get_int("data", "seq_len"), static_cast<uint64_t>(m.get_int("run", "seed")), node_id, nodes),
      shape(check_training_inputs(m, sampler)),
      baseline(baseline_before_model()),
      learner(make_llama_learner(m, shape, workers)),
      optimizer(instantiate(m, registry, PANGEA_KIND_OPTIM, "nesterov")),
      transport(instantiate(m, registry, PANGEA_KIND_TRANSPORT, "tcp")),
      codec(instantiate(m, registry, PANGEA_KIND_COMPRESS, "none")) {
    const auto info = [](const std::string& line) { log(PANGEA_LOG_INFO, "train", line); };
    info(tag + " of " + std::to_string(nodes) + ": model " + shape.preset + ", " +
         format_count(double(parameter_count(shape))) + " parameters (" + std::to_string(shape.layers) +
         " layers, d_model " + std::to_string(shape.d_model) + ", vocab " + std::to_string(shape.vocab) +
         "); data: " + sampler.describe());
    info(tag + ": plugins " + transport.plugin().id() + ", " + codec.plugin().id() + ", " + optimizer.plugin().id());
    info(tag + ": compute on " + learner->describe());
    for (const std::string& warning : learner->warnings()) log(PANGEA_LOG_WARN, "train", tag + ": " + warning);
}

}  // namespace pangea
