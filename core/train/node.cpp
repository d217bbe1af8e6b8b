#include "train/node.hpp"

#include <chrono>
#include <optional>

#include "common/float_hash.hpp"
#include "common/log.hpp"
#include "diloco/outer_loop.hpp"
#include "manifest/manifest.hpp"
#include "train/checkpoints.hpp"
#include "train/inner_steps.hpp"
#include "train/live_recovery.hpp"
#include "train/mesh_session.hpp"
#include "train/metrics.hpp"
#include "train/node_setup.hpp"
#include "train/node_state.hpp"
#include "train/node_workers.hpp"
#include "train/round_end.hpp"
#include "train/run_setup.hpp"

namespace pangea {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

void info(const std::string& message) { log(PANGEA_LOG_INFO, "train", message); }

}  // namespace

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

// The composition: the node's workers, setup, checkpoints, the mesh session, the outer loop over
// the inner steps, live recovery, metrics. Each part is in its own file; this is the order they
// meet in.
int run_training_node(const Manifest& m, PluginRegistry& registry, const NodeOptions& options) {
    pangea_log_level level = PANGEA_LOG_INFO;
    parse_log_level(m.get_string("run", "log_level"), &level);
    set_log_level(level);

    if (options.worker > 0) return run_node_worker(m, registry, options);
    std::optional<NodeWorkers> workers;  // (declared first: the learner sums gradients through them)
    if (check_workers(m, 0) > 1) workers.emplace(m, options);
    NodeSetup setup(m, registry, options.node_id, workers ? &workers->group() : nullptr);
    if (workers) workers->lead(*setup.learner, parameter_count(setup.shape));
    const std::string& tag = setup.tag;
    const bool overlap = m.get_bool("diloco", "overlap");
    const Rounds rounds = rounds_of(m);  // (with fragments, F per outer step)
    const int64_t eval_interval = m.get_int("train", "eval_interval");

    // The checkpoint to resume from is read now, so that the mesh hears which step this node holds.
    NodeCheckpoints::prepare_start(m, registry, options);
    NodeCheckpoints checkpoints(m, registry, options,
                                llama_checkpoint_context(m.get_string("run", "name"), setup.node, setup.shape,
                                                         m.get_int("data", "seq_len")));
    std::optional<TrainingState> resumed = checkpoints.read_resume_point();

    std::optional<MeshSession> mesh;
    if (setup.nodes > 1) {
        mesh.emplace(m, setup.transport, setup.codec, options, resumed ? std::optional(resumed->step) : std::nullopt,
                     workers ? &*workers : nullptr);
        info(tag + ": " + (mesh->joined().role == Role::kMember ? "member" : "joining a run in progress") + " at step " +
             std::to_string(mesh->joined().step) + "; listening on " + mesh->address());
    }
    const AverageFn average = [&](std::span<float> data, std::span<float> residual, const ContributionFn& contribution) {
        if (mesh) return mesh->average(data, residual, contribution);
        contribution(data);  // one node: the average is its own, nothing lost
        std::fill(residual.begin(), residual.end(), 0.0f);
        return AllReduceResult{};
    };
    // The model's parameters, and the outer loop that steps them (with workers: the leader's
    // shard of each; the node's whole outer state is then the workers' together).
    ModelParameters& params = setup.learner->parameters();
    OuterLoop loop(params, setup.optimizer, average,
                   OuterLoopOptions{.overlap = overlap,
                                    .fragments = rounds.fragments,
                                    .overlap_alpha = static_cast<float>(m.get_float("diloco", "overlap_alpha")),
                                    .error_feedback = wants_error_feedback(setup.codec)});
    const std::unique_ptr<OuterState> sharded = workers ? workers->outer_state(loop) : nullptr;
    OuterState& outer_state = sharded ? *sharded : loop;
    InnerSteps inner(m, *setup.learner, setup.sampler, setup.node);
    NodeState state(outer_state, *setup.learner, setup.sampler, inner.sequences_per_round());
    std::optional<LiveRecovery> recovery;
    if (mesh) recovery.emplace(*mesh, state, overlap);
    if (recovery && overlap) loop.while_waiting([&] { recovery->offer_when_blocked(); });
    NodeMetrics metrics(m.get_string("run", "dir"), setup.node, rounds.count, inner.per_round(), resumed.has_value());

    int64_t first_outer = 0;
    if (resumed) {
        state.take_up(*resumed);
        first_outer = resumed->step;
        resumed.reset();  // the memory goes back
    }
    if (recovery) first_outer = recovery->start(first_outer);
    if (workers) workers->hand_over(first_outer);

    // Evaluates the synced parameters: with overlap or fragments the model holds local progress
    // on top of them, so it is swapped out for the evaluation.
    std::vector<float> local;
    auto evaluate_synced = [&] {
        if (!overlap && rounds.fragments == 1) return inner.evaluate();
        local.resize(params.size());
        params.read(0, local);
        params.assign(0, loop.synced());
        const double loss = inner.evaluate();
        params.assign(0, local);
        return loss;
    };

    // [diloco] quorum: the run may ask this node to end a round early (it is the straggler).
    const bool quorum = mesh && m.get_int("diloco", "quorum") > 0;
    const std::function<bool()> wrap_up = [&] { return quorum && mesh->wrap_up_requested(); };

    metrics.begin();
    const int64_t started_at = first_outer;
    int64_t tokens_trained = 0;  // by this process, each once (a round the mesh dropped too)
    for (int64_t outer = first_outer; outer < rounds.count; ++outer) {
        const auto round_start = Clock::now();
        if (workers) workers->train(outer);
        const InnerSteps::Round round = inner.run(outer, &metrics, wrap_up);
        const int64_t tokens = round.steps * inner.tokens_per_step();
        tokens_trained += tokens;
        if (mesh) mesh->set_inner_steps(round.steps);
        metrics.status("syncing", outer, round.steps, round.steps > 0 ? double(tokens) / round.compute_seconds : 0.0,
                       true);
        if (workers) workers->sync();  // (each averages its shard over its own rings)
        OuterStepReport report = loop.sync(outer);
        // (Overlap: the averages landed so far, taken before any drain: what every node's line of
        // this step shows alike.)
        const std::string params_hash = report.dropped() ? std::string() : outer_state.synced_hash();
        if (!report.dropped())
            if (OuterStepReport drained = land_before_handing_over(loop, outer, rounds.count, checkpoints,
                                                                   recovery ? &*recovery : nullptr, metrics);
                drained.dropped())
                report = std::move(drained);
        if (report.dropped()) {
            log(PANGEA_LOG_WARN, "train", tag + ": " + mesh->rejoin().why + "; recovering from a peer");
            outer = recovery->recover(mesh->rejoin()) - 1;  // the loop's ++ makes it the next step
            if (workers) workers->hand_over(outer + 1);
            continue;
        }
        if (recovery) recovery->offer_state(/*settled=*/!loop.in_flight());
        checkpoints.after_outer_step(state, outer + 1, rounds.count, mesh ? mesh->member_nodes() : std::vector{setup.node});
        const bool eval_now = eval_interval > 0 && (outer + 1) % eval_interval == 0 && outer + 1 < rounds.count;
        if (eval_now) metrics.evaluated(evaluate_synced());
        const double wall = seconds_since(round_start);
        Json line{{"outer_step", outer + 1},
                  {"inner_step", (outer + 1) * inner.per_round()},
                  {"loss", round.steps > 0 ? Json(round.mean_loss) : Json()},
                  {"last_loss", metrics.last_loss()}};
        if (eval_now) line["eval_loss"] = metrics.last_eval();
        line.update(Json{{"lr", inner.learning_rate((outer + 1) * inner.per_round() - 1)},
                         {"tokens", tokens},
                         {"tokens_per_s", double(tokens) / wall},
                         {"synced_outer_steps", loop.applied_steps()},
                         {"members", mesh ? int64_t{mesh->members()} : int64_t{1}},
                         {"params_hash", params_hash}});
        if (quorum) {  // what this node trained, and what the step's members did together
            int64_t step_inner_steps = 0;
            for (const auto& [node, k] : mesh->last_epoch().inner_steps) step_inner_steps += k;
            line.update(Json{{"trained_inner_steps", round.steps}, {"step_inner_steps", step_inner_steps}});
        }
        // Running totals, so that a report can mark the steps where they grow.
        if (const std::optional<CheckpointStats> saves = checkpoints.so_far())
            line.update(Json{{"checkpoints_saved", saves->saved},
                             {"checkpoints_failed", saves->failed},
                             {"checkpoints_skipped", saves->skipped},
                             {"last_checkpoint", saves->last_step}});
        if (recovery) line["recoveries"] = static_cast<int64_t>(recovery->recoveries().size());
        metrics.outer_step(std::move(line), report, round.compute_seconds, wall);
        metrics.status("training", outer + 1, 0, double(tokens) / wall, true);
    }
    metrics.landed(loop.finish());
    if (mesh) mesh->leave();
    const CheckpointStats saves = checkpoints.finish();  // the last checkpoint is on storage before the run reports done
    metrics.end();
    metrics.evaluated(inner.evaluate());
    const std::string hash = outer_state.synced_hash();  // finish(): the model's too
    const std::vector<uint64_t> worker_peaks = workers ? workers->done() : std::vector<uint64_t>{};  // (last: they exit)
    // The DiLoCo state: the learner's (parameters, gradients, moments) and the outer loop's (the
    // synced copy and the optimizer plugin's state), in host or device memory.
    const uint64_t state_bytes = setup.learner->state_bytes() + loop.synced().size_bytes() + loop.optimizer_state_size();
    const uint64_t peak_rss = memory_use().peak;
    const uint64_t baseline = setup.baseline.resident;
    info(tag + ": memory: peak resident " + std::to_string(peak_rss >> 20) + " MiB = baseline " +
         std::to_string(baseline >> 20) + " MiB + " +
         std::to_string(double(peak_rss - std::min(peak_rss, baseline)) / double(std::max<uint64_t>(1, state_bytes))) +
         " x the state (" + std::to_string(state_bytes >> 20) + " MiB)");
    if (!worker_peaks.empty()) {
        std::string each;
        for (size_t k = 0; k < worker_peaks.size(); ++k)
            each += (k ? ", " : "") + std::to_string(k) + ": " + std::to_string(worker_peaks[k] >> 20) + " MiB";
        info(tag + ": peak resident memory of each worker: " + each);
    }
    info(tag + ": done: eval loss " + std::to_string(metrics.last_eval()) + ", compute utilization " +
         std::to_string(int(metrics.compute_utilization() * 1000) / 10.0) + "%, parameters " + hash);
    const std::vector<Json> no_recoveries;
    const std::vector<Json>& recoveries = recovery ? recovery->recoveries() : no_recoveries;
    metrics.summary(Json{{"nodes", setup.nodes},
                         {"parameters", static_cast<int64_t>(outer_state.parameter_count())},
                         {"outer_steps", rounds.count},
                         {"inner_steps", inner.per_round()},
                         {"fragments", rounds.fragments},
                         {"overlap", overlap},
                         {"first_outer_step", started_at},
                         {"tokens", tokens_trained},
                         {"params_hash", hash},
                         {"recoveries", static_cast<int64_t>(recoveries.size())},
                         {"last_recovery", recoveries.empty() ? Json() : recoveries.back()},
                         {"state_bytes", static_cast<int64_t>(state_bytes)},
                         {"baseline_rss_bytes", static_cast<int64_t>(baseline)},
                         {"peak_rss_bytes", static_cast<int64_t>(peak_rss)},
                         {"workers", static_cast<int64_t>(workers ? workers->group().size() : 1)},
                         {"worker_peak_rss_bytes", Json(std::vector<int64_t>(worker_peaks.begin(), worker_peaks.end()))},
                         {"checkpoints_saved", saves.saved},
                         {"checkpoints_skipped", saves.skipped},
                         {"checkpoints_failed", saves.failed},
                         {"checkpoint_stall_seconds", checkpoints.stall_seconds()},
                         {"checkpoint_write_seconds", saves.write_seconds},
                         {"checkpoint_bytes", saves.bytes},
                         {"last_checkpoint", saves.last_step}});
    metrics.status("done", rounds.count, 0, 0, true);
    return 0;
}

}  // namespace pangea
