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

// What the leader tells the others, each a header broadcast: a state to start from (the
// parameters follow, scattered), the parameters after an outer step, a round of inner steps to
// train, the end of the run; and between those, the learner's requests (WorkerRequest: the
// header's kind). Each worker holds its shard of the parameters and of the inner optimizer's
// state; the outer state is the leader's alone.
enum class Handover : uint32_t { kState = 1, kParams = 2, kDone = 3, kTrain = 4 };
struct Header {
    uint32_t kind = 0;
    uint32_t reserved = 0;
    int64_t step = 0;
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
    void all_gather(std::span<float> data, std::span<const size_t> counts) override {
        watch([&] { group_->all_gather(data, counts); });
    }
    void reduce_scatter_sum(std::span<float> data, std::span<const size_t> counts) override {
        watch([&] { group_->reduce_scatter_sum(data, counts); });
    }
    void broadcast(std::span<uint8_t> data, int root, std::chrono::milliseconds timeout) override {
        watch([&] { group_->broadcast(data, root, timeout); });
    }
    void send(std::span<const uint8_t> data, int to) override {
        watch([&] { group_->send(data, to); });
    }
    void receive(std::span<uint8_t> data, int from) override {
        watch([&] { group_->receive(data, from); });
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

void NodeWorkers::lead(Learner& learner) {
    learner_ = &learner;
    learner.set_announcer([this](WorkerRequest request) {
        Header header;
        header.kind = static_cast<uint32_t>(request);
        group_->broadcast(bytes_of(header), 0);
    });
}

void NodeWorkers::hand_over(int64_t step) {
    Header header;
    header.kind = static_cast<uint32_t>(Handover::kState);
    header.step = step;
    group_->broadcast(bytes_of(header), 0);
    learner_->scatter_parameters();
}

void NodeWorkers::train(int64_t outer) {
    Header header;
    header.kind = static_cast<uint32_t>(Handover::kTrain);
    header.step = outer;
    group_->broadcast(bytes_of(header), 0);
}

void NodeWorkers::synced(int64_t step) {
    Header header;
    header.kind = static_cast<uint32_t>(Handover::kParams);
    header.step = step;
    group_->broadcast(bytes_of(header), 0);
    learner_->scatter_parameters();
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
    InnerSteps inner(m, learner, setup.sampler, setup.node);
    while (true) {
        Header header;
        group->broadcast(bytes_of(header), 0, kLeaderTimeout);
        switch (header.kind) {
        case static_cast<uint32_t>(Handover::kDone):
            if (m.get_string("train", "device") == "cpu") gather_peaks(*group);
            log(PANGEA_LOG_INFO, "train", tag + ": done");
            return 0;
        case static_cast<uint32_t>(Handover::kState):
            setup.sampler.skip_to(static_cast<uint64_t>(header.step) * inner.sequences_per_round());
            [[fallthrough]];
        case static_cast<uint32_t>(Handover::kParams):
            learner.scatter_parameters();
            break;
        case static_cast<uint32_t>(Handover::kTrain):
            inner.run(header.step, nullptr);  // (which gathers the parameters to the leader at its end)
            break;
        case static_cast<uint32_t>(WorkerRequest::kLoadOptimizerState):
        case static_cast<uint32_t>(WorkerRequest::kSnapshotOptimizerState):
        case static_cast<uint32_t>(WorkerRequest::kEvaluate):
            learner.serve(static_cast<WorkerRequest>(header.kind));
            break;
        default:
            throw WorkerGroupError(tag + ": the leader sent an unknown hand-over (" + std::to_string(header.kind) + ")");
        }
    }
}

}  // namespace pangea
