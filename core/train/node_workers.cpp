#include "train/node_workers.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/float_hash.hpp"
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

// What the leader tells each of the others, in order, point to point: the data position to go on
// from, a round of inner steps to train, the outer step to take, a part of the outer state to
// hand out or take up, the end of the run; the learner's requests (WorkerRequest values); and
// within an outer step: give your pseudo-gradient (again, for a retry), here is your part of the
// average, the step failed (why follows), the node was dropped from the run. Requests may come
// within an outer step too (the run asks this node for its state while it waits for joiners).
enum class Command : uint32_t {
    kState = 1,
    kDone = 3,
    kTrain = 4,
    kSync = 5,
    kReadSynced = 6,
    kReadOuterOptimizer = 7,
    kRestoreOuter = 8,
    kContribute = 32,
    kAverage = 33,
    kFailed = 34,
    kDropped = 35,
};
struct Header {
    uint32_t kind = 0;
    uint32_t reserved = 0;
    int64_t value = 0;  // the step, or the bytes that follow
};

template <class T>
std::span<uint8_t> raw(T& value) {
    return {reinterpret_cast<uint8_t*>(&value), sizeof value};
}
template <class T>
std::span<uint8_t> raw(std::span<T> values) {
    return {reinterpret_cast<uint8_t*>(values.data()), values.size_bytes()};
}

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
    void receive(std::span<uint8_t> data, int from, std::chrono::milliseconds timeout) override {
        watch([&] { group_->receive(data, from, timeout); });
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

void NodeWorkers::announce(uint32_t kind, int64_t value) {
    Header header;
    header.kind = kind;
    header.value = value;
    for (int k = 1; k < group_->size(); ++k) group_->send(raw(header), k);
}

void NodeWorkers::tell(int worker, uint32_t kind, int64_t value) {
    Header header;
    header.kind = kind;
    header.value = value;
    group_->send(raw(header), worker);
}

void NodeWorkers::lead(Learner& learner) {
    learner.set_announcer([this](WorkerRequest request) { announce(static_cast<uint32_t>(request)); });
}

void NodeWorkers::hand_over(int64_t step) { announce(static_cast<uint32_t>(Command::kState), step); }

void NodeWorkers::train(int64_t outer) { announce(static_cast<uint32_t>(Command::kTrain), outer); }

AverageFn NodeWorkers::average(AverageFn run_average) {
    return [this, run = std::move(run_average)](std::span<float> own, const ContributionFn& contribution) {
        const int workers = group_->size();
        announce(static_cast<uint32_t>(Command::kSync));
        auto message = [&](int k, Command kind, size_t bytes) { tell(k, static_cast<uint32_t>(kind), static_cast<int64_t>(bytes)); };
        const size_t total = pseudo_gradient_.size();
        auto part = [&](int k) {
            const ShardRange r = shard_range(total, workers, k);
            return std::span<float>(pseudo_gradient_).subspan(r.begin, r.size());
        };
        // (The buffer the run averages in is pseudo_gradient_ itself.)
        AllReduceResult result = run(pseudo_gradient_, [&](std::span<float>) {
            for (int k = 1; k < workers; ++k) message(k, Command::kContribute, 0);
            contribution(part(0));
            for (int k = 1; k < workers; ++k) group_->receive(raw(part(k)), k);
        });
        if (result.status == PANGEA_OK) {
            std::copy(part(0).begin(), part(0).end(), own.begin());
            for (int k = 1; k < workers; ++k) {
                message(k, Command::kAverage, part(k).size_bytes());
                group_->send(raw(part(k)), k);
            }
        } else if (result.dropped) {
            for (int k = 1; k < workers; ++k) message(k, Command::kDropped, 0);
        } else {
            std::string why = result.error;
            for (int k = 1; k < workers; ++k) {
                message(k, Command::kFailed, why.size());
                group_->send({reinterpret_cast<const uint8_t*>(why.data()), why.size()}, k);
            }
        }
        return result;
    };
}

// The node's whole outer state, its shards gathered for reading and split for taking up. The
// outer optimizer's state moves through a scratch instance of all the parameters, made for the
// call (its memory goes with it): the leader holds all of it only while a state is carried.
class NodeWorkers::ShardedOuterState final : public OuterState {
public:
    ShardedOuterState(NodeWorkers& workers, OuterLoop& own, size_t parameters)
        : workers_(workers), own_(own), count_(parameters), optimizer_(own.optimizer()) {
        if (optimizer_.vtable<pangea_optim_vtable>().range_state_size(optimizer_.handle(), 1) == 0)
            throw std::runtime_error("[node] workers = " + std::to_string(group().size()) + " shards the outer step, which "
                                     "needs an outer optimizer that splits its state by range (plugin ABI 1.3: "
                                     "save_state_range); " + optimizer_.plugin().id() +
                                     " cannot. Run one worker per node, or use optim/nesterov");
        if (shard(0).size() != own.parameter_count())
            throw std::logic_error("the leader's outer loop does not hold its shard");
    }

    size_t parameter_count() const override { return count_; }

    void read_synced(std::span<float> out) const override {
        if (out.size() != count_)
            throw OuterLoopError("read_synced: " + std::to_string(out.size()) + " values asked, there are " +
                                 std::to_string(count_));
        workers_.announce(static_cast<uint32_t>(Command::kReadSynced));
        own_.read_synced(out.subspan(0, shard(0).size()));
        for (int k = 1; k < group().size(); ++k) group().receive(raw(out.subspan(shard(k).begin, shard(k).size())), k);
    }

    // Hashed shard by shard as they come: the leader holds one shard more, not all of them.
    std::string synced_hash() const override {
        workers_.announce(static_cast<uint32_t>(Command::kReadSynced));
        FloatHash hash(count_);
        hash.add(own_.synced());
        std::vector<float> part;
        for (int k = 1; k < group().size(); ++k) {
            part.resize(shard(k).size());
            group().receive(raw(std::span<float>(part)), k);
            hash.add(part);
        }
        return hash.hex();
    }

    std::vector<uint8_t> optimizer_state(std::vector<uint8_t> reuse) const override {
        workers_.announce(static_cast<uint32_t>(Command::kReadOuterOptimizer));
        const PluginInstance whole = scratch();
        for (int k = 0; k < group().size(); ++k) {
            std::vector<uint8_t> part;
            if (k == 0) {
                part = own_.optimizer_state();
            } else {
                uint64_t bytes = 0;
                group().receive(raw(bytes), k);
                part.resize(bytes);
                group().receive(part, k);
            }
            check(whole, "load_state_range", vt(whole).load_state_range(whole.handle(), shard(k).begin, shard(k).size(),
                                                                        part.data(), part.size()));
        }
        reuse.resize(vt(whole).state_size(whole.handle()));
        size_t written = 0;
        check(whole, "save_state", vt(whole).save_state(whole.handle(), reuse.data(), reuse.size(), &written));
        reuse.resize(written);
        return reuse;
    }

    void restore(std::span<const float> synced, std::span<const uint8_t> optimizer_state) override {
        if (synced.size() != count_)
            throw OuterLoopError("the recovered parameters are " + std::to_string(synced.size()) + " values, the model has " +
                                 std::to_string(count_));
        // Everything is checked and split before anything changes.
        const PluginInstance whole = scratch();
        check(whole, "load_state of the recovered state",
              vt(whole).load_state(whole.handle(), optimizer_state.data(), optimizer_state.size()));
        std::vector<std::vector<uint8_t>> parts;
        for (int k = 0; k < group().size(); ++k) {
            std::vector<uint8_t> part(vt(whole).range_state_size(whole.handle(), shard(k).size()));
            size_t written = 0;
            check(whole, "save_state_range", vt(whole).save_state_range(whole.handle(), shard(k).begin, shard(k).size(),
                                                                        part.data(), part.size(), &written));
            part.resize(written);
            parts.push_back(std::move(part));
        }
        workers_.announce(static_cast<uint32_t>(Command::kRestoreOuter));
        for (int k = 1; k < group().size(); ++k) {
            const auto values = synced.subspan(shard(k).begin, shard(k).size());
            group().send({reinterpret_cast<const uint8_t*>(values.data()), values.size_bytes()}, k);
            uint64_t bytes = parts[static_cast<size_t>(k)].size();
            group().send(raw(bytes), k);
            group().send(parts[static_cast<size_t>(k)], k);
        }
        own_.restore(synced.subspan(0, shard(0).size()), parts[0]);
    }

private:
    WorkerGroup& group() const { return *workers_.group_; }
    ShardRange shard(int k) const { return shard_range(count_, group().size(), k); }
    static const pangea_optim_vtable& vt(const PluginInstance& p) { return p.vtable<pangea_optim_vtable>(); }
    static void check(const PluginInstance& p, const char* call, pangea_status status) {
        if (status != PANGEA_OK) throw OuterLoopError(p.describe_failure(call, status));
    }
    // An instance of the node's optimizer for all the parameters.
    PluginInstance scratch() const {
        PluginInstance whole = optimizer_.another();
        check(whole, "init", vt(whole).init(whole.handle(), count_));
        return whole;
    }

    NodeWorkers& workers_;
    OuterLoop& own_;
    size_t count_;
    const PluginInstance& optimizer_;
};

std::unique_ptr<OuterState> NodeWorkers::outer_state(OuterLoop& own, size_t parameters) {
    pseudo_gradient_.assign(parameters, 0.0f);
    return std::make_unique<ShardedOuterState>(*this, own, parameters);
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
    announce(static_cast<uint32_t>(Command::kDone));
    std::vector<uint64_t> peaks;
    if (!on_gpus_)  // (NCCL sums device memory)
        for (const float mib : gather_peaks(*group_)) peaks.push_back(static_cast<uint64_t>(double(mib) * 1048576.0));
    for (ChildProcess& child : children_) child.wait_for(std::chrono::seconds(30));
    return peaks;
}

namespace {

// A worker: what the leader says, done.
class Worker {
public:
    Worker(const Manifest& m, PluginRegistry& registry, const NodeOptions& options, WorkerGroup& group)
        : tag_(tag_of(options.node_id, options.worker)), group_(group), setup_(m, registry, options.node_id, &group),
          inner_(m, *setup_.learner, setup_.sampler, setup_.node),
          loop_(setup_.learner->parameters(), setup_.optimizer,
                [this](std::span<float> own, const ContributionFn& contribution) { return average(own, contribution); },
                /*overlap=*/false) {}

    // Until the run is over.
    void run() {
        while (true) {
            const Header header = next();
            if (header.kind == static_cast<uint32_t>(Command::kDone)) return;
            do_command(header);
        }
    }

private:
    Header next() {
        Header header;
        group_.receive(raw(header), 0, kLeaderTimeout);  // (the leader may wait on the run for long)
        return header;
    }

    void do_command(const Header& header) {
        switch (header.kind) {
        case static_cast<uint32_t>(Command::kState):
            setup_.sampler.skip_to(static_cast<uint64_t>(header.value) * inner_.sequences_per_round());
            return;
        case static_cast<uint32_t>(Command::kTrain):
            inner_.run(header.value, nullptr);
            return;
        case static_cast<uint32_t>(Command::kSync):
            loop_.sync();  // (a dropped node's next commands take up the state it recovers)
            return;
        case static_cast<uint32_t>(Command::kReadSynced): {
            const auto synced = loop_.synced();
            group_.send({reinterpret_cast<const uint8_t*>(synced.data()), synced.size_bytes()}, 0);
            return;
        }
        case static_cast<uint32_t>(Command::kReadOuterOptimizer): {
            const std::vector<uint8_t> state = loop_.optimizer_state();
            uint64_t bytes = state.size();
            group_.send(raw(bytes), 0);
            group_.send(state, 0);
            return;
        }
        case static_cast<uint32_t>(Command::kRestoreOuter): {
            std::vector<float> synced(loop_.parameter_count());
            group_.receive(raw(std::span<float>(synced)), 0);
            uint64_t bytes = 0;
            group_.receive(raw(bytes), 0);
            if (bytes > (uint64_t{1} << 40))
                throw WorkerGroupError(tag_ + ": the leader sent an outer state of " + std::to_string(bytes) + " bytes");
            std::vector<uint8_t> state(bytes);
            group_.receive(state, 0);
            loop_.restore(synced, state);
            return;
        }
        case static_cast<uint32_t>(WorkerRequest::kLoadOptimizerState):
        case static_cast<uint32_t>(WorkerRequest::kSnapshotOptimizerState):
        case static_cast<uint32_t>(WorkerRequest::kEvaluate):
            setup_.learner->serve(static_cast<WorkerRequest>(header.kind));
            return;
        }
        throw WorkerGroupError(tag_ + ": the leader sent an unknown command (" + std::to_string(header.kind) + ")");
    }

    // The outer loop's all-reduce, through the leader: this worker's pseudo-gradient when asked
    // (again for a retry), then its part of the average, or why there is none. Other commands
    // may come between (the run asking for the node's state).
    AllReduceResult average(std::span<float> own, const ContributionFn& contribution) {
        while (true) {
            const Header header = next();
            AllReduceResult result;
            switch (header.kind) {
            case static_cast<uint32_t>(Command::kContribute):
                contribution(own);
                group_.send(raw(own), 0);
                continue;
            case static_cast<uint32_t>(Command::kAverage):
                if (header.value != static_cast<int64_t>(own.size_bytes()))
                    throw WorkerGroupError(tag_ + ": the leader sent " + std::to_string(header.value) +
                                           " bytes of average for a shard of " + std::to_string(own.size_bytes()));
                group_.receive(raw(own), 0);
                return result;
            case static_cast<uint32_t>(Command::kDropped):
                result.status = PANGEA_ERR_ABORTED;
                result.dropped = true;
                result.error = "the node was dropped from the run";
                return result;
            case static_cast<uint32_t>(Command::kFailed): {
                std::string why(static_cast<size_t>(std::clamp<int64_t>(header.value, 0, 1 << 20)), '\0');
                group_.receive({reinterpret_cast<uint8_t*>(why.data()), why.size()}, 0);
                result.status = PANGEA_ERR_IO;
                result.error = why;
                return result;
            }
            default:
                do_command(header);
            }
        }
    }

    std::string tag_;
    WorkerGroup& group_;
    NodeSetup setup_;
    InnerSteps inner_;
    OuterLoop loop_;  // this worker's shard of the outer state: the synced copy and the optimizer's
};

}  // namespace

int run_node_worker(const Manifest& m, PluginRegistry& registry, const NodeOptions& options) {
    // The leader logs the node's setup and progress; a worker, what goes wrong (or everything at
    // debug level).
    pangea_log_level level = PANGEA_LOG_INFO;
    parse_log_level(m.get_string("run", "log_level"), &level);
    set_log_level(level == PANGEA_LOG_DEBUG ? level : std::max(level, PANGEA_LOG_WARN));
    const int workers = check_workers(m, options.worker);
    const auto group = join_worker_group(options.worker_dir, options.worker, workers, kTimeout,
                                         m.get_string("train", "device") != "cpu");
    Worker(m, registry, options, *group).run();
    if (m.get_string("train", "device") == "cpu") gather_peaks(*group);
    log(PANGEA_LOG_INFO, "train", tag_of(options.node_id, options.worker) + ": done");
    return 0;
}

}  // namespace pangea
