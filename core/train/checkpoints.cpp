#include "train/checkpoints.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "common/log.hpp"
#include "manifest/manifest.hpp"
#include "train/node.hpp"
#include "train/run_setup.hpp"

namespace pangea {

namespace {

// Saving afresh where `prefix` holds objects: refused (std::runtime_error, nothing changed) unless
// `fresh`, which deletes them.
void start_afresh(const ObjectStore& store, const std::string& prefix, const std::string& run, const std::string& tag,
                  bool fresh) {
    const auto existing = store.list(prefix);
    if (existing.empty()) return;
    if (!fresh) {
        const auto complete = list_checkpoints(store, prefix);
        throw std::runtime_error(
            tag + ": " + store.name() + " already holds checkpoints of run '" + run + "' under " + prefix + " (" +
            std::to_string(existing.size()) + " objects" +
            (complete.empty() ? std::string() : ", newest complete outer step " + std::to_string(complete.back().step)) +
            "); starting afresh would overwrite them. Resume the run with --resume latest, or start over with --fresh "
            "(which deletes them), or name the run differently ([run] name or [checkpoint] prefix)");
    }
    for (const auto& [key, bytes] : existing) store.remove(key);
    log(PANGEA_LOG_WARN, "train", tag + ": --fresh: deleted " + std::to_string(existing.size()) + " objects under " +
                                      store.name() + " " + prefix + " (the checkpoints of an earlier run)");
}

}  // namespace

std::optional<int64_t> NodeCheckpoints::prepare_start(const Manifest& m, PluginRegistry& registry,
                                                      const NodeOptions& options) {
    if (options.resume.empty() && (options.join || m.get_int("checkpoint", "interval") <= 0)) return std::nullopt;
    const ObjectStore store(open_storage(m, registry));
    const std::string prefix = checkpoint_prefix(m);
    if (!options.resume.empty()) return resolve_checkpoint(store, prefix, options.resume);
    // (A joiner carries the run in progress on: its checkpoints are the run's.)
    start_afresh(store, prefix, m.get_string("run", "name"), "node-" + std::to_string(options.node_id), options.fresh);
    return std::nullopt;
}

NodeCheckpoints::NodeCheckpoints(const Manifest& m, PluginRegistry& registry, const NodeOptions& options,
                                 CheckpointContext context)
    : tag_("node-" + std::to_string(options.node_id)),
      node_(options.node_id),
      resume_(options.resume),
      prefix_(checkpoint_prefix(m)),
      // (in rounds: with fragments, every interval outer steps is every interval x fragments rounds)
      interval_(m.get_int("checkpoint", "interval") * m.get_int("diloco", "fragments")),
      context_(std::move(context)),
      manifest_text_(m.to_toml()) {
    if (interval_ <= 0 && resume_.empty()) return;
    store_ = std::make_unique<ObjectStore>(open_storage(m, registry));
    if (interval_ <= 0) return;
    CheckpointerOptions saving;
    saving.prefix = prefix_;
    saving.context = context_;
    saving.keep = static_cast<int>(m.get_int("checkpoint", "keep"));
    saving.async = m.get_bool("checkpoint", "async");
    saving.wait_when_busy = m.get_string("checkpoint", "when_busy") == "wait";
    checkpointer_ = std::make_unique<Checkpointer>(*store_, saving);
}

std::optional<TrainingState> NodeCheckpoints::read_resume_point() {
    if (resume_.empty()) return std::nullopt;
    const int64_t step = resolve_checkpoint(*store_, prefix_, resume_);
    TrainingState state = read_checkpoint(*store_, prefix_, step, node_, context_.tensors);
    std::string withdrawn;
    for (int64_t later : withdraw_parts_after(*store_, prefix_, node_, step))
        withdrawn += (withdrawn.empty() ? "" : ", ") + std::to_string(later);
    if (!withdrawn.empty())
        log(PANGEA_LOG_INFO, "train", tag_ + ": withdrew its parts of the incomplete step(s) " + withdrawn +
                                          " (the run trains them again from step " + std::to_string(step) + ")");
    log(PANGEA_LOG_INFO, "train", tag_ + ": resuming from " + store_->name() + " " + checkpoint_dir(prefix_, step) +
                                      " (outer step " + std::to_string(step) +
                                      (resume_ == "latest" ? ": the newest the whole run committed" : "") +
                                      "; every part's SHA-256 verified)");
    return state;
}

bool NodeCheckpoints::due(int64_t steps, int64_t total) const {
    return checkpointer_ && (steps % interval_ == 0 || steps == total);
}

void NodeCheckpoints::after_outer_step(const TransferableState& state, int64_t steps, int64_t total,
                                       std::vector<int> members) {
    if (!due(steps, total)) return;
    const auto start = std::chrono::steady_clock::now();
    TrainingState saved = state.checkpoint(steps, checkpointer_->spare());
    saved.manifest = manifest_text_;
    std::sort(members.begin(), members.end());
    saved.members = std::move(members);
    checkpointer_->save(std::move(saved));
    stall_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::optional<CheckpointStats> NodeCheckpoints::so_far() const {
    if (!checkpointer_) return std::nullopt;
    return checkpointer_->stats();
}

CheckpointStats NodeCheckpoints::finish() {
    if (!checkpointer_) return {};
    checkpointer_->wait();
    return checkpointer_->stats();
}

}  // namespace pangea
