#include "train/node.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "collective/ring_allreduce.hpp"
#include "common/log.hpp"
#include "data/sampler.hpp"
#include "diloco/outer_loop.hpp"
#include "manifest/manifest.hpp"
#include "mesh/ring.hpp"
#include "plugin_host/plugin_instance.hpp"
#include "train/learner.hpp"
#include "train/metrics.hpp"
#include "train/model_shape.hpp"
#include "train/schedule.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

void info(const std::string& message) { log(PANGEA_LOG_INFO, "train", message); }

// The manifest's choice for a plugin kind, or the named default with default settings.
PluginInstance instantiate(const Manifest& manifest, PluginRegistry& registry, pangea_plugin_kind kind,
                           const char* default_name) {
    const auto found = manifest.plugins.find(kind);
    if (found != manifest.plugins.end() && found->second.plugin != nullptr)
        return PluginInstance(*found->second.plugin, found->second.settings);
    const PluginDescriptor& plugin = registry.get(kind, default_name);
    return PluginInstance(plugin, plugin.default_settings());
}

uint64_t derive_run_id(const std::string& name) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
    return h | 1;  // never 0
}

// The sampler's windows for one inner step, cut into micro-batches.
struct StepBatches {
    std::vector<int32_t> tokens;
    std::vector<TokenBatch> micro;
};

// Mean cross-entropy on the held-out set.
double evaluate(Learner& learner, const Sampler& sampler, int64_t sequences, int64_t micro_batch) {
    const int64_t window = sampler.seq_len() + 1;
    std::vector<int32_t> tokens;
    LossSum total;
    for (int64_t first = 0; first < sequences; first += micro_batch) {
        const int64_t count = std::min(micro_batch, sequences - first);
        tokens.resize(static_cast<size_t>(count * window));
        for (int64_t i = 0; i < count; ++i)
            sampler.held_out(static_cast<uint64_t>(first + i), std::span<int32_t>(tokens).subspan(i * window, window));
        const LossSum part = learner.evaluate({tokens, count, sampler.seq_len()});
        total.sum += part.sum;
        total.tokens += part.tokens;
    }
    return total.tokens > 0 ? total.sum / double(total.tokens) : 0.0;
}

}  // namespace

std::string hash_floats(const float* values, size_t count) {
    // Multiply-xorshift over 8-byte words: fast enough for billions of parameters.
    uint64_t h = 0x9e3779b97f4a7c15ull ^ count;
    const auto* bytes = reinterpret_cast<const unsigned char*>(values);
    const size_t total = count * sizeof(float);
    size_t i = 0;
    for (; i + 8 <= total; i += 8) {
        uint64_t word;
        std::memcpy(&word, bytes + i, 8);
        h = (h ^ word) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    for (; i < total; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
    return text;
}

ModelShape check_training_inputs(const Manifest& m) {
    return check_training_inputs(m, Sampler(m.data_sources, m.get_int("data", "seq_len"), 0, 0, 1));
}

ModelShape check_training_inputs(const Manifest& m, const Sampler& sampler) {
    ModelShape shape = resolve_model_shape(m, sampler.vocab());
    if (shape.vocab < static_cast<int64_t>(sampler.vocab()))
        throw ManifestError({m.core.at("model").at("vocab").origin + ": [model] vocabulary " +
                             std::to_string(shape.vocab) + " is smaller than the data's (" +
                             std::to_string(sampler.vocab()) + " tokens)"});
    if (shape.vocab == 0)
        throw ManifestError({m.core.at("model").at("vocab").origin +
                             ": [model] vocab is unknown: the data's shards do not record a vocabulary; set it"});
    return shape;
}

int run_training_node(const Manifest& m, PluginRegistry& registry, const NodeOptions& options) {
    const int node = options.node_id;
    const int nodes = static_cast<int>(m.get_int("mesh", "nodes"));
    pangea_log_level level = PANGEA_LOG_INFO;
    parse_log_level(m.get_string("run", "log_level"), &level);
    set_log_level(level);

    const fs::path run_dir = m.get_string("run", "dir");
    for (const char* sub : {"metrics", "status", "summary"}) fs::create_directories(run_dir / sub);
    const std::string tag = "node-" + std::to_string(node);
    const uint64_t seed = static_cast<uint64_t>(m.get_int("run", "seed"));

    // Data, model, plugins: everything that can be wrong in the manifest fails here, before any
    // node waits for another.
    const int64_t seq_len = m.get_int("data", "seq_len");
    Sampler sampler(m.data_sources, seq_len, seed, node, nodes);
    const ModelShape shape = check_training_inputs(m, sampler);
    std::unique_ptr<Learner> learner = make_llama_learner(m, shape);
    const std::span<float> params = learner->parameters();
    const PluginInstance optimizer = instantiate(m, registry, PANGEA_KIND_OPTIM, "nesterov");
    const PluginInstance transport = instantiate(m, registry, PANGEA_KIND_TRANSPORT, "tcp");
    const PluginInstance codec = instantiate(m, registry, PANGEA_KIND_COMPRESS, "none");
    info(tag + " of " + std::to_string(nodes) + ": model " + shape.preset + ", " + format_count(double(params.size())) +
         " parameters (" + std::to_string(shape.layers) + " layers, d_model " + std::to_string(shape.d_model) +
         ", vocab " + std::to_string(shape.vocab) + "); data: " + sampler.describe());
    info(tag + ": plugins " + transport.plugin().id() + ", " + codec.plugin().id() + ", " + optimizer.plugin().id());

    // The ring.
    std::unique_ptr<OwnedListener> listener;
    Ring ring;
    std::unique_ptr<Link> next, previous;
    std::unique_ptr<RingAllReduce> allreduce;
    AverageFn average = [](std::span<float>) { return AllReduceResult{}; };  // one node: nothing to average
    if (nodes > 1) {
        const uint64_t run_id = options.run_id != 0 ? options.run_id : derive_run_id(m.get_string("run", "name"));
        listener = std::make_unique<OwnedListener>(transport, m.get_string("mesh", "address"));
        const fs::path rendezvous_dir = options.rendezvous.empty() ? run_dir / "rendezvous" : options.rendezvous;
        fs::create_directories(rendezvous_dir);
        const FileRendezvous rendezvous(rendezvous_dir);
        rendezvous.publish(node, listener->address());
        const auto timeout = std::chrono::milliseconds(std::max<int64_t>(60000, 20 * m.get_int("mesh", "timeout_ms")));
        const std::vector<std::string> addresses = rendezvous.wait_all(nodes, timeout);
        ring = form_ring(transport, *listener, node, addresses, run_id, m.get_string("mesh", "ring_order"),
                         static_cast<size_t>(m.get_int("mesh", "probe_bytes")), timeout);
        next = std::make_unique<Link>(transport, ring.connections.next.handle());
        previous = std::make_unique<Link>(transport, ring.connections.previous.handle());
        RingOptions ring_options;
        ring_options.stall_timeout_ms = static_cast<int>(std::max<int64_t>(30000, m.get_int("mesh", "timeout_ms")));
        allreduce = std::make_unique<RingAllReduce>(ring.position, nodes, *next, *previous, codec, ring_options);
        average = [&](std::span<float> data) { return allreduce->run(data, ReduceOp::kAverage); };
        if (node == 0) info("ring " + ring.order_note);
    }

    const bool overlap = m.get_bool("diloco", "overlap");
    OuterLoop loop(params, optimizer, average, overlap);

    const int64_t inner_steps = m.get_int("diloco", "inner_steps");
    const int64_t outer_steps = m.get_int("diloco", "outer_steps");
    const int64_t micro_batch = m.get_int("train", "micro_batch");
    const int64_t grad_accum = m.get_int("train", "grad_accum");
    const int64_t eval_interval = m.get_int("train", "eval_interval");
    const int64_t eval_sequences = m.get_int("data", "eval_sequences");
    LearningRateSchedule schedule;
    schedule.peak = m.get_float("train", "lr");
    schedule.warmup_steps = m.get_int("train", "warmup_steps");
    schedule.total_steps = inner_steps * outer_steps;
    schedule.decay_fraction = m.get_float("train", "decay_fraction");
    schedule.sqrt_decay = m.get_string("train", "decay") == "sqrt";
    schedule.min_ratio = m.get_float("train", "min_lr_ratio");

    // Evaluates the synced parameters: in overlap mode the model holds local progress on top of
    // them, so it is swapped out for the evaluation.
    std::vector<float> local;
    auto evaluate_synced = [&] {
        if (overlap) {
            local.assign(params.begin(), params.end());
            std::copy(loop.synced().begin(), loop.synced().end(), params.begin());
        }
        const double loss = evaluate(*learner, sampler, eval_sequences, micro_batch);
        if (overlap) std::copy(local.begin(), local.end(), params.begin());
        return loss;
    };

    std::ofstream metrics(run_dir / "metrics" / (tag + ".jsonl"), std::ios::trunc);
    const fs::path status_path = run_dir / "status" / (tag + ".json");
    const int64_t window = seq_len + 1;
    const int64_t step_sequences = micro_batch * grad_accum;
    StepBatches batches;
    batches.tokens.resize(static_cast<size_t>(step_sequences * window));
    for (int64_t i = 0; i < grad_accum; ++i)
        batches.micro.push_back({std::span<const int32_t>(batches.tokens).subspan(i * micro_batch * window,
                                                                                  micro_batch * window),
                                 micro_batch, seq_len});

    const auto run_start = Clock::now();
    double compute_total = 0, blocked_total = 0, allreduce_total = 0, last_loss = 0, last_eval = -1;
    uint64_t bytes_total = 0;
    AllReduceResult last_allreduce;
    auto last_status = Clock::now() - std::chrono::seconds(10);
    auto write_status = [&](const char* state, int64_t outer, int64_t inner, double tokens_per_s, bool force) {
        if (!force && seconds_since(last_status) < 0.25) return;
        last_status = Clock::now();
        write_file_atomically(status_path, JsonObject()
                                               .add("node", node)
                                               .add("state", state)
                                               .add("outer_step", outer)
                                               .add("outer_steps", outer_steps)
                                               .add("inner_step", inner)
                                               .add("inner_steps", inner_steps)
                                               .add("loss", last_loss)
                                               .add("eval_loss", last_eval)
                                               .add("tokens_per_s", tokens_per_s)
                                               .add("allreduce_seconds", last_allreduce.seconds)
                                               .add("allreduce_bytes", last_allreduce.bytes_sent)
                                               .add("compute_utilization",
                                                    compute_total / std::max(1e-9, seconds_since(run_start)))
                                               .text());
    };

    for (int64_t outer = 0; outer < outer_steps; ++outer) {
        const auto round_start = Clock::now();
        double compute = 0, loss_sum = 0;
        for (int64_t h = 0; h < inner_steps; ++h) {
            const int64_t step = outer * inner_steps + h;
            sampler.next(batches.tokens);
            const auto t0 = Clock::now();
            const InnerStepResult result = learner->step(batches.micro, schedule.at(step));
            compute += seconds_since(t0);
            if (!std::isfinite(result.loss))
                throw std::runtime_error(tag + ": the loss is " + std::to_string(result.loss) + " at inner step " +
                                         std::to_string(step) + " (outer step " + std::to_string(outer) +
                                         "); lower [train] lr or set grad_clip");
            loss_sum += result.loss;
            last_loss = result.loss;
            write_status("training", outer, h + 1, double((h + 1) * step_sequences * seq_len) / compute, false);
        }
        write_status("syncing", outer, inner_steps, double(inner_steps * step_sequences * seq_len) / compute, true);
        const OuterStepReport report = loop.sync();
        if (report.applied) {
            last_allreduce = report.allreduce;
            allreduce_total += report.allreduce.seconds;
            bytes_total += report.allreduce.bytes_sent;
        }
        compute_total += compute;
        blocked_total += report.blocked_seconds;
        const bool eval_now = eval_interval > 0 && (outer + 1) % eval_interval == 0 && outer + 1 < outer_steps;
        if (eval_now) last_eval = evaluate_synced();
        const double wall = seconds_since(round_start);
        const int64_t tokens = inner_steps * step_sequences * seq_len;
        JsonObject line;
        line.add("outer_step", outer + 1)
            .add("inner_step", (outer + 1) * inner_steps)
            .add("loss", loss_sum / double(inner_steps))
            .add("last_loss", last_loss);
        if (eval_now) line.add("eval_loss", last_eval);
        line.add("lr", schedule.at((outer + 1) * inner_steps - 1))
            .add("tokens", tokens)
            .add("tokens_per_s", double(tokens) / wall)
            .add("inner_seconds", compute)
            .add("wall_seconds", wall)
            .add("allreduce_applied", report.applied)
            .add("allreduce_seconds", report.applied ? report.allreduce.seconds : 0.0)
            .add("allreduce_bytes_sent", report.applied ? report.allreduce.bytes_sent : 0)
            .add("blocked_seconds", report.blocked_seconds)
            .add("compute_utilization", compute / wall)
            .add("synced_outer_steps", loop.applied_steps())
            .add("params_hash", hash_floats(loop.synced().data(), loop.synced().size()));
        metrics << line.text() << "\n" << std::flush;
        write_status("training", outer + 1, 0, double(tokens) / wall, true);
    }
    const OuterStepReport final_report = loop.finish();
    if (final_report.applied) {
        allreduce_total += final_report.allreduce.seconds;
        bytes_total += final_report.allreduce.bytes_sent;
    }
    blocked_total += final_report.blocked_seconds;
    const double wall = seconds_since(run_start);
    last_eval = evaluate(*learner, sampler, eval_sequences, micro_batch);
    const std::string hash = hash_floats(params.data(), params.size());
    info(tag + ": done: eval loss " + std::to_string(last_eval) + ", compute utilization " +
         std::to_string(int(compute_total / wall * 1000) / 10.0) + "%, parameters " + hash);
    write_file_atomically(run_dir / "summary" / (tag + ".json"),
                          JsonObject()
                              .add("node", node)
                              .add("nodes", nodes)
                              .add("parameters", static_cast<int64_t>(params.size()))
                              .add("outer_steps", outer_steps)
                              .add("inner_steps", inner_steps)
                              .add("overlap", overlap)
                              .add("final_loss", last_loss)
                              .add("final_eval_loss", last_eval)
                              .add("wall_seconds", wall)
                              .add("inner_seconds", compute_total)
                              .add("compute_utilization", compute_total / wall)
                              .add("allreduce_seconds", allreduce_total)
                              .add("blocked_seconds", blocked_total)
                              .add("bytes_sent", bytes_total)
                              .add("tokens", outer_steps * inner_steps * step_sequences * seq_len)
                              .add("params_hash", hash)
                              .text());
    write_status("done", outer_steps, 0, 0, true);
    return 0;
}

}  // namespace pangea
