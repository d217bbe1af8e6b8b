#include "train/node_workers.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/log.hpp"
#include "data/sampler.hpp"
#include "diloco/outer_loop.hpp"
#include "manifest/manifest.hpp"
#include "train/inner_steps.hpp"
#include "train/learner.hpp"
#include "train/node.hpp"
#include "train/node_setup.hpp"
#include "train/node_state.hpp"

namespace pangea {
namespace {

using std::chrono::milliseconds;

// Meeting the workers (process start and LibTorch's load take seconds) and every collective
// among them (they compute alike, so a long wait is a stalled worker).
constexpr milliseconds kTimeout{120000};
// What the others wait for while the leader is in an outer step (which waits on the run: slow
// nodes, a recovery). A dead leader ends the wait at once (its connections close).
constexpr milliseconds kLeaderTimeout{7 * 24 * 3600 * 1000LL};

// What the leader hands over: a header, then its sections, each one broadcast. The other workers
// keep no outer state (the synced copy, the outer momentum: the leader's alone), so a state is
// the parameters and the inner optimizer's.
enum class Handover : uint32_t { kState = 1, kParams = 2, kDone = 3 };
constexpr const char* kSections[] = {"params", "inner_optimizer"};
struct Header {
    uint32_t kind = 0;
    uint32_t reserved = 0;
    int64_t step = 0;
    uint64_t sizes[2] = {0, 0};
};

std::span<uint8_t> bytes_of(Header& header) { return {reinterpret_cast<uint8_t*>(&header), sizeof header}; }

std::string tag_of(int node, int worker) { return "node-" + std::to_string(node) + "/worker-" + std::to_string(worker); }

}  // namespace

// The leader's collectives: when one fails, the error names the workers whose processes ended
// (Gloo's own says only that a connection closed).
class NodeWorkers::WatchedGroup final : public WorkerGroup {
public:
    WatchedGroup(std::unique_ptr<WorkerGroup> group, std::vector<ChildProcess>& children, int node)
        : WorkerGroup(group->rank(), group->size(), kTimeout), group_(std::move(group)), children_(children), node_(node) {}

    void all_reduce_sum(std::span<float> data) override {
        watch([&] { group_->all_reduce_sum(data); });
    }
    void broadcast(std::span<uint8_t> data, int root, std::chrono::milliseconds timeout) override {
        watch([&] { group_->broadcast(data, root, timeout); });
    }

private:
    template <class F>
    void watch(F&& call) {
        try {
            call();
        } catch (const WorkerGroupError& e) {
            // The killed ones first: the others' errors are then only the lost peer.
            std::string killed, exited;
            for (size_t k = 0; k < children_.size(); ++k) {
                const auto code = children_[k].wait_for(milliseconds(200));
                if (!code) continue;
                std::string& list = *code > 128 ? killed : exited;
                list += (list.empty() ? "" : "; ") + std::string("worker ") + std::to_string(k + 1) + " is gone (" +
                        (*code > 128 ? "killed by signal " + std::to_string(*code - 128) : "exit code " + std::to_string(*code)) + ")";
            }
            const std::string& gone = killed.empty() ? exited : killed;
            throw WorkerGroupError("node-" + std::to_string(node_) + ": " + (gone.empty() ? std::string(e.what()) : gone) +
                                   "; the node leaves the run (start it again with --join to bring it back)");
        }
    }

    std::unique_ptr<WorkerGroup> group_;
    std::vector<ChildProcess>& children_;
    int node_;
};

int check_workers(const Manifest& m, int worker) {
    const auto workers = m.get_int("node", "workers");
    if (workers == 1) return 1;
    const std::string where = m.core.at("node").at("workers").origin + ": [node] workers = " + std::to_string(workers);
    std::vector<std::string> errors;
    if (m.get_int("train", "micro_batch") % workers != 0)
        errors.push_back(where + ": [train] micro_batch = " + std::to_string(m.get_int("train", "micro_batch")) +
                         " does not split evenly among the workers (each takes micro_batch / workers sequences)");
    // On GPUs worker k takes GPU k: the leader is given "cuda", the others "cuda:k" (NodeWorkers).
    const std::string device = m.get_string("train", "device");
    const std::string own_gpu = worker > 0 ? "cuda:" + std::to_string(worker) : "cuda";
    if (device != "cpu" && device != own_gpu)
        errors.push_back(where + " takes [train] device = \"cuda\" (worker k on GPU k), not \"" + device + "\"");
    else if (device != "cpu" && !kWorkersOnGpus)
        errors.push_back(where + " with [train] device = \"" + device + "\" needs NCCL, which this build lacks (build "
                                 "where the CUDA toolkit and NCCL are, PANGEA_WITH_NCCL), or run one worker per node");
    if (m.get_bool("diloco", "overlap")) errors.push_back(where + " needs diloco.overlap = false (not available yet)");
    if (!errors.empty()) throw ManifestError(errors);
    return static_cast<int>(workers);
}

NodeWorkers::NodeWorkers(const Manifest& m, const NodeOptions& options)
    : on_gpus_(m.get_string("train", "device") != "cpu"),
      rendezvous_("pangea-node-" + std::to_string(options.node_id) + "-") {
    const int workers = check_workers(m, 0);
    const std::string exe = current_executable();
    for (int k = 1; k < workers; ++k) {
        std::vector<std::string> argv{exe, "run", options.manifest_path, "--node-id", std::to_string(options.node_id),
                                      "--worker", std::to_string(k), "--worker-dir", rendezvous_.path().string()};
        for (const std::string& setting : options.set_arguments) argv.insert(argv.end(), {"--set", setting});
        if (on_gpus_) argv.insert(argv.end(), {"--set", "train.device=cuda:" + std::to_string(k)});
        children_.emplace_back(argv);
    }
    log(PANGEA_LOG_INFO, "train", "node-" + std::to_string(options.node_id) + ": started workers 1.." + std::to_string(workers - 1) +
                                      "; they meet in " + rendezvous_.path().string());
    group_ = std::make_unique<WatchedGroup>(join_worker_group(rendezvous_.path(), 0, workers, kTimeout, on_gpus_), children_,
                                            options.node_id);
}

NodeWorkers::~NodeWorkers() {
    group_.reset();
    children_.clear();  // kills and reaps any still running, before their directory goes
}

void NodeWorkers::hand_over(const TransferableState& state, int64_t step) {
    const auto snapshot = state.snapshot(step);
    Header header;
    header.kind = static_cast<uint32_t>(Handover::kState);
    header.step = step;
    for (size_t i = 0; i < 2; ++i) header.sizes[i] = snapshot->at(kSections[i]).bytes.size();
    group_->broadcast(bytes_of(header), 0);
    for (const char* name : kSections) {
        auto bytes = snapshot->at(name).bytes;  // (broadcast's buffer is written to on receivers only)
        group_->broadcast(bytes, 0);
    }
}

void NodeWorkers::synced(const ModelParameters& params, int64_t step) {
    std::vector<float> values(params.size());
    params.read(values);
    Header header;
    header.kind = static_cast<uint32_t>(Handover::kParams);
    header.step = step;
    header.sizes[0] = values.size() * sizeof(float);
    group_->broadcast(bytes_of(header), 0);
    group_->broadcast({reinterpret_cast<uint8_t*>(values.data()), header.sizes[0]}, 0);
}

namespace {
// Each worker's peak resident memory, in MiB: worker k fills slot k, the sum gathers them.
std::vector<float> gather_peaks(WorkerGroup& group) {
    std::vector<float> peaks(static_cast<size_t>(group.size()), 0.0f);
    peaks[static_cast<size_t>(group.rank())] = static_cast<float>(double(memory_use().peak) / 1048576.0);
    group.all_reduce_sum(peaks);
    return peaks;
}
}  // namespace

std::vector<uint64_t> NodeWorkers::done() {
    Header header;
    header.kind = static_cast<uint32_t>(Handover::kDone);
    group_->broadcast(bytes_of(header), 0);
    std::vector<uint64_t> peaks;
    if (!on_gpus_)  // (NCCL sums device memory)
        for (const float mib : gather_peaks(*group_)) peaks.push_back(static_cast<uint64_t>(double(mib) * 1048576.0));
    for (ChildProcess& child : children_) child.wait_for(std::chrono::seconds(30));
    return peaks;
}

int run_node_worker(const Manifest& m, PluginRegistry& registry, const NodeOptions& options) {
    // The leader logs the node's setup and progress; a worker, what goes wrong (or everything at
    // debug level).
    pangea_log_level level = PANGEA_LOG_INFO;
    parse_log_level(m.get_string("run", "log_level"), &level);
    set_log_level(level == PANGEA_LOG_DEBUG ? level : std::max(level, PANGEA_LOG_WARN));
    const int workers = check_workers(m, options.worker);
    const std::string tag = tag_of(options.node_id, options.worker);
    const auto group = join_worker_group(options.worker_dir, options.worker, workers, kTimeout,
                                         m.get_string("train", "device") != "cpu");
    NodeSetup setup(m, registry, options.node_id, group.get());
    Learner& learner = *setup.learner;
    ModelParameters& params = learner.parameters();
    InnerSteps inner(m, learner, setup.sampler, setup.node);
    // The parameters handed over, checked against this model.
    auto take_parameters = [&](uint64_t bytes) {
        std::vector<float> values(params.size());
        if (bytes != values.size() * sizeof(float))
            throw WorkerGroupError(tag + ": the leader handed over " + std::to_string(bytes) +
                                   " bytes of parameters, this model has " + std::to_string(values.size() * 4));
        group->broadcast({reinterpret_cast<uint8_t*>(values.data()), bytes}, 0);
        params.assign(values);
    };
    const int64_t outer_steps = m.get_int("diloco", "outer_steps");
    int64_t outer = 0;
    bool started = false;  // the leader hands over a state first
    while (true) {
        if (started && outer < outer_steps) inner.run(outer, nullptr);
        Header header;
        group->broadcast(bytes_of(header), 0, kLeaderTimeout);
        switch (static_cast<Handover>(header.kind)) {
        case Handover::kDone:
            if (m.get_string("train", "device") == "cpu") gather_peaks(*group);
            log(PANGEA_LOG_INFO, "train", tag + ": done");
            return 0;
        case Handover::kParams:
            take_parameters(header.sizes[0]);
            break;
        case Handover::kState: {
            take_parameters(header.sizes[0]);
            std::vector<uint8_t> optimizer(header.sizes[1]);
            group->broadcast(optimizer, 0);
            learner.load_optimizer_state(optimizer);
            setup.sampler.skip_to(static_cast<uint64_t>(header.step) * inner.sequences_per_round());
            started = true;
            break;
        }
        default:
            throw WorkerGroupError(tag + ": the leader sent an unknown hand-over (" + std::to_string(header.kind) + ")");
        }
        outer = header.step;
    }
}

}  // namespace pangea
