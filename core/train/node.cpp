#include "train/node.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "checkpoint/checkpointer.hpp"
#include "collective/ring_allreduce.hpp"
#include "common/log.hpp"
#include "common/process.hpp"
#include "data/sampler.hpp"
#include "diloco/outer_loop.hpp"
#include "manifest/manifest.hpp"
#include "common/auth.hpp"
#include "membership/coordinator_client.hpp"
#include "membership/etcd_backend.hpp"
#include "collective/elastic_allreduce.hpp"
#include "topology/peers.hpp"
#include "recovery/state_transfer.hpp"
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

uint64_t run_id_of(const Manifest& m, uint64_t explicit_id) {
    if (explicit_id != 0) return explicit_id;
    uint64_t h = 1469598103934665603ull;  // FNV-1a of [run] name
    for (unsigned char c : m.get_string("run", "name")) h = (h ^ c) * 1099511628211ull;
    return h | 1;  // never 0
}

PluginInstance open_storage(const Manifest& manifest, PluginRegistry& registry) {
    const auto found = manifest.plugins.find(PANGEA_KIND_STORAGE);
    if (found != manifest.plugins.end() && found->second.plugin != nullptr)
        return PluginInstance(*found->second.plugin, found->second.settings);
    const PluginDescriptor& plugin = registry.get(PANGEA_KIND_STORAGE, "local");
    SettingMap settings = plugin.default_settings();
    settings["path"] = {(fs::path(manifest.get_string("run", "dir")) / "checkpoints").string(), "default: <run.dir>/checkpoints"};
    return PluginInstance(plugin, settings);
}

std::string checkpoint_prefix(const Manifest& m, int node) {
    const std::string& prefix = m.get_string("checkpoint", "prefix");
    return (prefix.empty() ? m.get_string("run", "name") : prefix) + "/node-" + std::to_string(node) + "/";
}

std::string run_id_text(uint64_t id) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
    return text;
}

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
    const std::string tag = "node-" + std::to_string(node);
    const uint64_t seed = static_cast<uint64_t>(m.get_int("run", "seed"));

    // Data, model, plugins: everything that can be wrong in the manifest fails here, before any
    // node waits for another.
    const int64_t seq_len = m.get_int("data", "seq_len");
    Sampler sampler(m.data_sources, seq_len, seed, node, nodes);
    const ModelShape shape = check_training_inputs(m, sampler);
    use_training_allocator();
    const MemoryUse baseline = memory_use();  // the process, LibTorch and the data, before the model
    std::unique_ptr<Learner> learner = make_llama_learner(m, shape);
    ModelParameters& params = learner->parameters();
    const PluginInstance optimizer = instantiate(m, registry, PANGEA_KIND_OPTIM, "nesterov");
    const PluginInstance transport = instantiate(m, registry, PANGEA_KIND_TRANSPORT, "tcp");
    const PluginInstance codec = instantiate(m, registry, PANGEA_KIND_COMPRESS, "none");
    info(tag + " of " + std::to_string(nodes) + ": model " + shape.preset + ", " + format_count(double(params.size())) +
         " parameters (" + std::to_string(shape.layers) + " layers, d_model " + std::to_string(shape.d_model) +
         ", vocab " + std::to_string(shape.vocab) + "); data: " + sampler.describe());
    info(tag + ": plugins " + transport.plugin().id() + ", " + codec.plugin().id() + ", " + optimizer.plugin().id());
    info(tag + ": compute on " + learner->describe());
    for (const std::string& warning : learner->warnings()) log(PANGEA_LOG_WARN, "train", tag + ": " + warning);

    // Checkpoints: read the one to resume from now, so that the mesh hears which step this node holds.
    const bool overlap = m.get_bool("diloco", "overlap");
    const int64_t checkpoint_interval = m.get_int("checkpoint", "interval");
    if (overlap && (checkpoint_interval > 0 || !options.resume.empty()))
        throw std::runtime_error(tag + ": checkpoints need diloco.overlap = false (not available with overlap yet)");
    std::unique_ptr<ObjectStore> store;
    std::optional<TrainingState> resumed;
    const std::string prefix = checkpoint_prefix(m, node);
    if (checkpoint_interval > 0 || !options.resume.empty()) store = std::make_unique<ObjectStore>(open_storage(m, registry));
    if (!options.resume.empty()) {
        const int64_t step = resolve_checkpoint(*store, prefix, options.resume);
        resumed = read_checkpoint(*store, prefix, step, shape);
        info(tag + ": resuming from " + store->name() + " " + checkpoint_dir(prefix, step) + " (outer step " +
             std::to_string(step) + ", every part's SHA-256 verified)");
    }

    // The mesh: a listener for peers, the coordinator, and the all-reduce over the members of
    // each outer step.
    std::unique_ptr<OwnedListener> listener;
    StateServer state_server;
    std::unique_ptr<PeerAcceptor> acceptor;
    std::unique_ptr<EtcdBackend> etcd;  // backend = etcd: registers this node, may host the coordinator
    std::unique_ptr<CoordinatorClient> membership;
    std::unique_ptr<ElasticAllReduce> elastic;
    JoinResult joined;
    uint64_t run_id = 0;
    std::string secret;
    AverageFn average = [](std::span<float> data, const ContributionFn& contribution) {  // one node: its own
        contribution(data);
        return AllReduceResult{};
    };
    if (nodes > 1) {
        const bool use_etcd = m.get_string("mesh", "backend") == "etcd";
        const std::string coordinator = m.get_string("mesh", "coordinator");
        if (coordinator.empty() && !use_etcd)
            throw std::runtime_error(tag + ": [mesh] coordinator is not set: start `pangea coordinator` and set "
                                           "mesh.coordinator to its host:port, or start the run with `pangea launch`");
        run_id = run_id_of(m, options.run_id);
        secret = load_run_secret(m);
        if (secret.empty())
            log(PANGEA_LOG_WARN, "mesh", tag + ": the run has no secret ([mesh] secret_file or secret_env): anyone who can "
                                               "reach the coordinator and the nodes can join it");
        listener = std::make_unique<OwnedListener>(transport, m.get_string("mesh", "address"));
        acceptor = std::make_unique<PeerAcceptor>(
            transport, *listener, node, run_id, secret,
            [&](OwnedConnection connection, const pangea_hello& peer) { state_server.serve(transport, std::move(connection), peer); });
        CoordinatorClientOptions client;
        client.coordinator = coordinator;
        if (use_etcd) {
            CoordinatorOptions coordinator_options;
            coordinator_options.run = run_id_text(run_id);
            coordinator_options.timeout = std::chrono::milliseconds(m.get_int("mesh", "timeout_ms"));
            coordinator_options.min_members = static_cast<int>(m.get_int("mesh", "min_members"));
            coordinator_options.secret = secret;
            const std::string address = listener->address();
            etcd = std::make_unique<EtcdBackend>(m.get_string("mesh", "etcd"), node, address,
                                                 address.substr(0, address.rfind(':')), coordinator_options,
                                                 std::chrono::milliseconds(m.get_int("mesh", "heartbeat_ms")));
            client.locate = [&etcd] { return etcd->locate(); };
            client.send_beats = false;  // the etcd lease is the heartbeat
        }
        client.run = run_id_text(run_id);
        client.node = node;
        client.address = listener->address();
        client.heartbeat = std::chrono::milliseconds(m.get_int("mesh", "heartbeat_ms"));
        client.reconnect_for = std::chrono::milliseconds(m.get_int("mesh", "coordinator_wait_ms"));
        client.join = options.join;
        if (resumed) client.resumed_step = resumed->step;
        client.secret = secret;
        membership = std::make_unique<CoordinatorClient>(client);
        joined = membership->join();
        ElasticOptions elastic_options;
        elastic_options.secret = secret;
        elastic_options.outlier_factor = m.get_float("diloco", "outlier_factor");
        elastic_options.ring.stall_timeout_ms = static_cast<int>(std::max<int64_t>(30000, m.get_int("mesh", "timeout_ms")));
        elastic_options.connect_timeout = std::chrono::milliseconds(std::max<int64_t>(10000, m.get_int("mesh", "timeout_ms")));
        elastic = std::make_unique<ElasticAllReduce>(*membership, transport, *acceptor, codec, node, run_id, joined.step,
                                                     elastic_options);
        average = [&](std::span<float> data, const ContributionFn& contribution) {
            return elastic->average(data, contribution);
        };
        info(tag + ": " + (joined.role == Role::kMember ? "member" : "joining a run in progress") + " at step " +
             std::to_string(joined.step) + "; listening on " + listener->address());
    }
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
            local.resize(params.size());
            params.read(local);
            params.assign(loop.synced());
        }
        const double loss = evaluate(*learner, sampler, eval_sequences, micro_batch);
        if (overlap) params.assign(local);
        return loss;
    };

    NodeMetrics metrics(run_dir, node, outer_steps, inner_steps, /*append=*/resumed.has_value());
    const int64_t window = seq_len + 1;
    const int64_t step_sequences = micro_batch * grad_accum;
    StepBatches batches;
    batches.tokens.resize(static_cast<size_t>(step_sequences * window));
    for (int64_t i = 0; i < grad_accum; ++i)
        batches.micro.push_back({std::span<const int32_t>(batches.tokens).subspan(i * micro_batch * window,
                                                                                  micro_batch * window),
                                 micro_batch, seq_len});

    // Live recovery: take up the state of a live member, then ask to take part in the next outer
    // step; if the run moved on meanwhile, fetch again. Returns the outer steps committed.
    std::vector<Json> recoveries;
    // Training sequences a node has drawn after `step` outer steps: its data position.
    auto draws_after = [&](int64_t step) { return static_cast<uint64_t>(step * inner_steps * micro_batch * grad_accum); };
    // The parameters, the outer optimizer's state (at most 2 buffers of their size) and AdamW's
    // (2 more), with room to spare: a peer cannot make this node allocate more.
    const uint64_t max_state_bytes = 8 * params.size() * sizeof(float) + (uint64_t{64} << 20);
    auto recover = [&](std::vector<Member> sources, int64_t run_step) -> int64_t {
        if (overlap)
            throw std::runtime_error(tag + ": this node must recover its state from a peer, which needs "
                                           "diloco.overlap = false (not available with overlap yet)");
        while (true) {
            FetchReport report;
            const StateSnapshot snapshot =
                fetch_state(transport, sources, node, run_id, secret, run_step,
                            std::chrono::milliseconds(m.get_int("mesh", "recovery_timeout_ms")), max_state_bytes, &report,
                            [&](int64_t step) { membership->reserve(step + 1); });
            const std::vector<uint8_t>& synced = snapshot.at("params").bytes;
            if (synced.size() != params.size() * sizeof(float))
                throw std::runtime_error(tag + ": the recovered parameters are " + std::to_string(synced.size()) +
                                         " bytes, this model has " + std::to_string(params.size() * sizeof(float)) +
                                         "; do the nodes' manifests agree?");
            loop.restore({reinterpret_cast<const float*>(synced.data()), params.size()}, snapshot.at("outer_optimizer").bytes);
            learner->load_optimizer_state(snapshot.at("inner_optimizer").bytes);
            sampler.skip_to(draws_after(snapshot.step));
            std::string from;
            for (int source : report.sources) from += (from.empty() ? "" : ", ") + std::to_string(source);
            char line[256];
            std::snprintf(line, sizeof line,
                          "%s: recovered the state of outer step %lld from node %s: %.1f MiB in %.2f s (%.2f MB/s), "
                          "after %.1f s waiting for a snapshot",
                          tag.c_str(), static_cast<long long>(snapshot.step), from.c_str(), report.bytes / 1048576.0,
                          report.seconds, report.bytes / 1e6 / std::max(report.seconds, 1e-9), report.waited_seconds);
            info(line);
            try {
                membership->admit(snapshot.step + 1);
            } catch (const StaleNode& e) {
                info(tag + ": the run moved on while this node recovered; fetching again");
                run_step = e.run_step;
                sources = e.sources;
                continue;
            }
            elastic->set_committed_step(snapshot.step);
            recoveries.push_back(
                {{"step", snapshot.step}, {"from", report.sources}, {"bytes", report.bytes}, {"seconds", report.seconds}});
            return snapshot.step;
        }
    };
    // What a joiner fetches from this node, kept after each commit while anyone is waiting.
    auto publish_state = [&] {
        if (!membership || overlap) return;
        if (membership->joiners() == 0) return state_server.publish(nullptr);
        auto snapshot = std::make_shared<StateSnapshot>();
        snapshot->step = elastic->committed_step();
        const auto synced = loop.synced();
        const auto* bytes = reinterpret_cast<const uint8_t*>(synced.data());
        snapshot->sections.push_back({"params", {bytes, bytes + synced.size_bytes()}, true});
        snapshot->sections.push_back({"outer_optimizer", loop.optimizer_state(), true});
        snapshot->sections.push_back({"inner_optimizer", learner->snapshot_optimizer_state()(), false});
        state_server.publish(std::move(snapshot));
    };
    int64_t first_outer = 0;
    if (resumed) {
        loop.restore(resumed->params, resumed->outer_optimizer);
        learner->load_optimizer_state(resumed->inner_optimizer);
        sampler.skip_to(resumed->sampler_position);
        first_outer = resumed->step;
        resumed.reset();  // the memory goes back
    }
    if (membership && joined.role == Role::kRecover) first_outer = recover(joined.sources, joined.step);

    std::unique_ptr<Checkpointer> checkpointer;
    if (checkpoint_interval > 0) {
        CheckpointerOptions checkpoint_options;
        checkpoint_options.prefix = prefix;
        checkpoint_options.context = {m.get_string("run", "name"), node, shape, seq_len};
        checkpoint_options.keep = static_cast<int>(m.get_int("checkpoint", "keep"));
        checkpoint_options.async = m.get_bool("checkpoint", "async");
        checkpoint_options.wait_when_busy = m.get_string("checkpoint", "when_busy") == "wait";
        checkpointer = std::make_unique<Checkpointer>(*store, checkpoint_options);
    }
    // The state after `step` outer steps, copied to host memory for the checkpointer.
    const std::string manifest_text = m.to_toml();
    double checkpoint_stall = 0;  // training time lost to checkpoints: the copy, and any wait
    auto save_checkpoint = [&](int64_t step) {
        const auto start = Clock::now();
        TrainingState state = checkpointer->spare();
        state.step = step;
        state.params.assign(loop.synced().begin(), loop.synced().end());
        state.outer_optimizer = loop.optimizer_state(std::move(state.outer_optimizer));
        state.inner_optimizer_later = learner->snapshot_optimizer_state();
        state.sampler_position = draws_after(step);
        state.manifest = manifest_text;
        checkpointer->save(std::move(state));
        checkpoint_stall += seconds_since(start);
    };

    metrics.begin();
    for (int64_t outer = first_outer; outer < outer_steps; ++outer) {
        const auto round_start = Clock::now();
        double compute = 0, loss_sum = 0;
        for (int64_t h = 0; h < inner_steps; ++h) {
            const int64_t step = outer * inner_steps + h;
            sampler.next(batches.tokens);
            const auto t0 = Clock::now();
            const InnerStepResult result = learner->step(batches.micro, schedule.at(step));
            const double seconds = seconds_since(t0);
            compute += seconds;
            if (!std::isfinite(result.loss))
                throw std::runtime_error(tag + ": the loss is " + std::to_string(result.loss) + " at inner step " +
                                         std::to_string(step) + " (outer step " + std::to_string(outer) +
                                         "); lower [train] lr or set grad_clip");
            loss_sum += result.loss;
            metrics.inner_step(result.loss, seconds);
            metrics.status("training", outer, h + 1, double((h + 1) * step_sequences * seq_len) / compute, false);
        }
        metrics.status("syncing", outer, inner_steps, double(inner_steps * step_sequences * seq_len) / compute, true);
        OuterStepReport report;
        try {
            report = loop.sync();
        } catch (const StaleNode& e) {
            log(PANGEA_LOG_WARN, "train", tag + ": " + e.what() + "; recovering from a peer");
            outer = recover(e.sources, e.run_step) - 1;  // the loop's ++ makes it the next step
            continue;
        }
        publish_state();
        if (checkpointer && ((outer + 1) % checkpoint_interval == 0 || outer + 1 == outer_steps)) save_checkpoint(outer + 1);
        const bool eval_now = eval_interval > 0 && (outer + 1) % eval_interval == 0 && outer + 1 < outer_steps;
        if (eval_now) metrics.evaluated(evaluate_synced());
        const double wall = seconds_since(round_start);
        const int64_t tokens = inner_steps * step_sequences * seq_len;
        Json line{{"outer_step", outer + 1},
                  {"inner_step", (outer + 1) * inner_steps},
                  {"loss", loss_sum / double(inner_steps)},
                  {"last_loss", metrics.last_loss()}};
        if (eval_now) line["eval_loss"] = metrics.last_eval();
        line.update(Json{{"lr", schedule.at((outer + 1) * inner_steps - 1)},
                         {"tokens", tokens},
                         {"tokens_per_s", double(tokens) / wall},
                         {"synced_outer_steps", loop.applied_steps()},
                         {"members", elastic ? static_cast<int64_t>(elastic->last_epoch().members.size()) : int64_t{1}},
                         {"params_hash", hash_floats(loop.synced().data(), loop.synced().size())}});
        metrics.outer_step(std::move(line), report, compute, wall);
        metrics.status("training", outer + 1, 0, double(tokens) / wall, true);
    }
    metrics.finish(loop.finish());
    if (membership) membership->leave();
    state_server.stop();
    CheckpointStats saves;
    if (checkpointer) {
        checkpointer->wait();  // the last checkpoint is on storage before the run reports done
        saves = checkpointer->stats();
    }
    metrics.end();
    metrics.evaluated(evaluate(*learner, sampler, eval_sequences, micro_batch));
    const std::string hash = hash_floats(loop.synced().data(), loop.synced().size());  // finish(): the model's too
    // The DiLoCo state: the learner's (parameters, gradients, moments) and the outer loop's (the
    // synced copy and the optimizer plugin's state), in host or device memory.
    const uint64_t state_bytes = learner->state_bytes() + loop.synced().size_bytes() + loop.optimizer_state_size();
    const uint64_t peak_rss = memory_use().peak;
    info(tag + ": memory: peak resident " + std::to_string(peak_rss >> 20) + " MiB = baseline " +
         std::to_string(baseline.resident >> 20) + " MiB + " +
         std::to_string(double(peak_rss - std::min(peak_rss, baseline.resident)) / double(std::max<uint64_t>(1, state_bytes))) +
         " x the state (" + std::to_string(state_bytes >> 20) + " MiB)");
    info(tag + ": done: eval loss " + std::to_string(metrics.last_eval()) + ", compute utilization " +
         std::to_string(int(metrics.compute_utilization() * 1000) / 10.0) + "%, parameters " + hash);
    metrics.summary(Json{{"nodes", nodes},
                                       {"parameters", static_cast<int64_t>(params.size())},
                                       {"outer_steps", outer_steps},
                                       {"inner_steps", inner_steps},
                                       {"overlap", overlap},
                                       {"tokens", outer_steps * inner_steps * step_sequences * seq_len},
                                       {"params_hash", hash},
                                       {"recoveries", static_cast<int64_t>(recoveries.size())},
                                       {"last_recovery", recoveries.empty() ? Json() : recoveries.back()},
                                       {"state_bytes", static_cast<int64_t>(state_bytes)},
                                       {"baseline_rss_bytes", static_cast<int64_t>(baseline.resident)},
                                       {"peak_rss_bytes", static_cast<int64_t>(peak_rss)},
                                       {"checkpoints_saved", saves.saved},
                                       {"checkpoints_skipped", saves.skipped},
                                       {"checkpoints_failed", saves.failed},
                                       {"checkpoint_stall_seconds", checkpoint_stall},
                                       {"checkpoint_write_seconds", saves.write_seconds},
                                       {"checkpoint_bytes", saves.bytes},
                                       {"last_checkpoint", saves.last_step}});
    metrics.status("done", outer_steps, 0, 0, true);
    return 0;
}

}  // namespace pangea
