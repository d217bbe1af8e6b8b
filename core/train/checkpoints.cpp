#include "train/checkpoints.hpp"

#include <chrono>
#include <stdexcept>

#include "common/log.hpp"
#include "manifest/manifest.hpp"
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
        const auto latest = latest_checkpoint(store, prefix);
        throw std::runtime_error(
            tag + ": " + store.name() + " already holds this node's checkpoints of run '" + run + "' under " + prefix +
            " (" + std::to_string(existing.size()) + " objects" +
            (latest ? ", latest outer step " + std::to_string(*latest) : std::string()) +
            "); starting afresh would overwrite them. Resume the run with --resume latest, or start over with --fresh "
            "(which deletes them), or name the run differently ([run] name or [checkpoint] prefix)");
    }
    for (const auto& [key, bytes] : existing) store.remove(key);
    log(PANGEA_LOG_WARN, "train", tag + ": --fresh: deleted " + std::to_string(existing.size()) + " objects under " +
                                      store.name() + " " + prefix + " (the checkpoints of an earlier run)");
}

}  // namespace

NodeCheckpoints::NodeCheckpoints(const Manifest& m, PluginRegistry& registry, int node, CheckpointContext context,
                                 const std::string& resume, bool fresh)
    : tag_("node-" + std::to_string(node)),
      resume_(resume),
      prefix_(checkpoint_prefix(m, node)),
      interval_(m.get_int("checkpoint", "interval")),
      context_(std::move(context)),
      manifest_text_(m.to_toml()) {
    if (interval_ <= 0 && resume_.empty()) return;
    if (m.get_bool("diloco", "overlap"))
        throw std::runtime_error(tag_ + ": checkpoints need diloco.overlap = false (not available with overlap yet)");
    store_ = std::make_unique<ObjectStore>(open_storage(m, registry));
    if (interval_ <= 0) return;
    if (resume_.empty()) start_afresh(*store_, prefix_, context_.run, tag_, fresh);
    CheckpointerOptions options;
    options.prefix = prefix_;
    options.context = context_;
    options.keep = static_cast<int>(m.get_int("checkpoint", "keep"));
    options.async = m.get_bool("checkpoint", "async");
    options.wait_when_busy = m.get_string("checkpoint", "when_busy") == "wait";
    checkpointer_ = std::make_unique<Checkpointer>(*store_, options);
}

std::optional<int64_t> NodeCheckpoints::prepare_start(const Manifest& m, PluginRegistry& registry, int node,
                                                      const std::string& resume, bool fresh) {
    if (resume.empty() && m.get_int("checkpoint", "interval") <= 0) return std::nullopt;
    const ObjectStore store(open_storage(m, registry));
    const std::string prefix = checkpoint_prefix(m, node);
    if (!resume.empty()) return resolve_checkpoint(store, prefix, resume);
    start_afresh(store, prefix, m.get_string("run", "name"), "node-" + std::to_string(node), fresh);
    return std::nullopt;
}

std::optional<TrainingState> NodeCheckpoints::read_resume_point() {
    if (resume_.empty()) return std::nullopt;
    const int64_t step = resolve_checkpoint(*store_, prefix_, resume_);
    TrainingState state = read_checkpoint(*store_, prefix_, step, context_.tensors);
    log(PANGEA_LOG_INFO, "train", tag_ + ": resuming from " + store_->name() + " " + checkpoint_dir(prefix_, step) +
                                      " (outer step " + std::to_string(step) + ", every part's SHA-256 verified)");
    return state;
}

void NodeCheckpoints::after_outer_step(const TransferableState& state, int64_t steps, int64_t total) {
    if (!checkpointer_ || (steps % interval_ != 0 && steps != total)) return;
    const auto start = std::chrono::steady_clock::now();
    TrainingState saved = state.checkpoint(steps, checkpointer_->spare());
    saved.manifest = manifest_text_;
    checkpointer_->save(std::move(saved));
    stall_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

CheckpointStats NodeCheckpoints::finish() {
    if (!checkpointer_) return {};
    checkpointer_->wait();
    return checkpointer_->stats();
}

}  // namespace pangea
