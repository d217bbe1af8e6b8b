#include "train/node_workers.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <thread>

#include "collective/contribution_check.hpp"
#include "common/float_hash.hpp"
#include "common/json.hpp"
#include "common/log.hpp"
#include "data/sampler.hpp"
#include "diloco/outer_loop.hpp"
#include "manifest/manifest.hpp"
#include "membership/coordinator.hpp"
#include "topology/auth.hpp"
#include "train/inner_steps.hpp"
#include "train/mesh_session.hpp"
#include "train/learner.hpp"
#include "train/node.hpp"
#include "train/node_setup.hpp"
#include "train/node_state.hpp"
#include "train/run_setup.hpp"

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
// within an outer step: the epoch to average in (an attempt: the others report whether their
// rings connected and their contribution's norm, hear whether to run them and whose
// contributions to leave out, and report how it went), and how the epoch ended. Requests may come
// within an outer step too (the run asks this node for its state while it waits for joiners).
enum class Command : uint32_t {
    kState = 1,
    kDone = 3,
    kTrain = 4,
    kSync = 5,
    kReadSynced = 6,
    kReadOuterOptimizer = 7,
    kRestoreOuter = 8,
    kReadResidual = 9,
    kRestoreResidual = 10,
    kEpoch = 32,
    kEnded = 33,  // value: NodeRings::End; kFailed: why follows
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

// The messages of an attempt, as JSON text (a few per outer step). A worker's peer is its
// leader, and the other way round: neither is a stranger, but sizes are still bounded.
void send_json(WorkerGroup& group, int to, const Json& value, milliseconds timeout = kTimeout) {
    const std::string text = to_json(value);
    uint64_t bytes = text.size();
    group.send(raw(bytes), to, timeout);
    group.send({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, to, timeout);
}

Json receive_json(WorkerGroup& group, int from, milliseconds timeout) {
    uint64_t bytes = 0;
    group.receive(raw(bytes), from, timeout);
    if (bytes > (uint64_t{1} << 24))
        throw WorkerGroupError("worker " + std::to_string(from) + " sent a message of " + std::to_string(bytes) + " bytes");
    std::string text(bytes, '\0');
    group.receive({reinterpret_cast<uint8_t*>(text.data()), text.size()}, from, timeout);
    return parse_json(text);
}

Json encode_epoch(const Epoch& epoch) {
    return Json{{"id", epoch.id}, {"step", epoch.step}, {"members", encode_members(epoch.members)}};
}

Epoch decode_epoch(const Json& message) {
    Epoch epoch;
    epoch.id = static_cast<uint64_t>(json_int(message, "id").value_or(0));
    epoch.step = json_int(message, "step").value_or(0);
    epoch.members = decode_members(message.is_object() && message.contains("members") ? message["members"] : Json());
    return epoch;
}

// While a worker's rings run (as long as their links take: minutes over a slow one), it tells the
// leader every second that it is alive, so that the leader tells a slow all-reduce from a stopped
// or hung worker: silent past the rings' stall timeout (receive_result). The leader takes these
// (and the result) only once its own rings are done, which may be long after: they wait for it
// as long as it lives.
class Alive {
public:
    explicit Alive(WorkerGroup& group)
        : thread_([&group](std::stop_token stop) {
              std::mutex mutex;
              std::condition_variable_any wake;
              std::unique_lock lock(mutex);
              try {
                  while (!wake.wait_for(lock, stop, std::chrono::seconds(1), [&stop] { return stop.stop_requested(); }))
                      send_json(group, 0, Json{{"alive", true}}, kLeaderTimeout);
              } catch (const WorkerGroupError&) {
                  // the leader is gone: the worker finds out on its next message
              }
          }) {}

private:
    std::jthread thread_;  // stopped and joined first thing in the destructor
};

// A worker's result after its rings ran, with the alive messages before it; `silence` is the most
// the leader waits for the next one.
Json receive_result(WorkerGroup& group, int worker, milliseconds silence) {
    while (true) {
        Json message = receive_json(group, worker, silence);
        if (!json_bool(message, "alive").value_or(false)) return message;
    }
}

// A process's result, from a worker to the leader.
Json encode_result(const AllReduceResult& result) {
    return Json{{"status", static_cast<int64_t>(result.status)},
                {"error", result.error},
                {"seconds", result.seconds},
                {"sent", static_cast<int64_t>(result.bytes_sent)},
                {"received", static_cast<int64_t>(result.bytes_received)}};
}

AllReduceResult decode_result(const Json& message) {
    AllReduceResult result;
    result.status = static_cast<pangea_status>(json_int(message, "status").value_or(PANGEA_ERR_INTERNAL));
    result.error = json_string(message, "error").value_or("");
    result.seconds = json_number(message, "seconds").value_or(0);
    result.bytes_sent = static_cast<uint64_t>(json_int(message, "sent").value_or(0));
    result.bytes_received = static_cast<uint64_t>(json_int(message, "received").value_or(0));
    return result;
}

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
    void send(std::span<const uint8_t> data, int to, std::chrono::milliseconds timeout) override {
        watch([&] { group_->send(data, to, timeout); });
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
    if (m.get_int("diloco", "fragments") > 1)
        errors.push_back(where + " needs diloco.fragments = 1 (each worker's shard syncs whole; not available yet)");
    if (const int rings = outer_rings(m); m.get_int("mesh", "nodes") > 1 && rings % workers != 0)
        errors.push_back(m.core.at("mesh").at("rings").origin + ": [mesh] rings = " + std::to_string(rings) +
                         " is not a multiple of [node] workers = " + std::to_string(workers) +
                         " (each worker runs its share of the rings, over its shard): set rings = " +
                         std::to_string(workers) + ", or a common multiple of the workers of every node of the run");
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
        if (options.run_id != 0) argv.insert(argv.end(), {"--run-id", std::to_string(options.run_id)});  // (their rings')
        for (const std::string& setting : options.set_arguments) argv.insert(argv.end(), {"--set", setting});
        if (on_gpus_) argv.insert(argv.end(), {"--set", "train.device=cuda:" + std::to_string(k)});
        children_.emplace_back(argv);
    }
    log(PANGEA_LOG_INFO, "train", "node-" + std::to_string(options.node_id) + ": started workers 1.." + std::to_string(workers - 1) +
                                      "; they meet in " + rendezvous_.path().string());
    group_ = std::make_unique<WatchedGroup>(join_worker_group(rendezvous_.path(), 0, workers, kTimeout, on_gpus_), children_,
                                            options.node_id);
    ring_count_ = outer_rings(m);
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

void NodeWorkers::lead(Learner& learner, size_t parameters) {
    parameters_ = parameters;
    learner.set_announcer([this](WorkerRequest request) { announce(static_cast<uint32_t>(request)); });
}

std::vector<std::string> NodeWorkers::ring_addresses(const std::string& own) {
    std::vector<std::string> listening{own};
    for (int k = 1; k < group_->size(); ++k)
        listening.push_back(json_string(receive_json(*group_, k, kTimeout), "address").value_or(""));
    const int rings = static_cast<int>(ring_count_);
    std::vector<std::string> addresses;
    for (int r = 0; r < rings; ++r) addresses.push_back(listening[static_cast<size_t>(r / (rings / group_->size()))]);
    return addresses;
}

void NodeWorkers::sync() { announce(static_cast<uint32_t>(Command::kSync)); }

void NodeWorkers::hand_over(int64_t step) { announce(static_cast<uint32_t>(Command::kState), step); }

void NodeWorkers::train(int64_t outer) { announce(static_cast<uint32_t>(Command::kTrain), outer); }

// The node's rings: the leader's share here, the others' through them. Each attempt, everybody
// connects; the leader gathers whether the others could and their contributions' norms (the
// node's norm is the root of the sum of their squares), decides with the other nodes over ring 0
// (the leader's), tells the others, runs its own rings and collects their results. Their rings
// can take long (a slow link): a worker says it is alive every second meanwhile, and one silent
// past the rings' stall timeout is taken for stalled (the node leaves the run).
class NodeWorkers::LeaderRings final : public NodeRings {
public:
    LeaderRings(NodeWorkers& workers, RingLanes& own) : workers_(workers), own_(own) {}

    AllReduceResult attempt(const Epoch& epoch, std::span<float> data, std::span<float> residual,
                            const std::function<void(std::span<float>)>& contribution) override {
        const int workers = group().size();
        const Json told = encode_epoch(epoch);
        for (int k = 1; k < workers; ++k) {
            workers_.tell(k, static_cast<uint32_t>(Command::kEpoch), 0);
            send_json(group(), k, told);
        }
        contribution(data);
        if (epoch.members.size() < 2) {  // the average is the node's own, nothing lost
            std::fill(residual.begin(), residual.end(), 0.0f);
            return {};
        }
        std::string error = own_.connect(epoch);
        const double norm = contribution_norm(data);
        double norm_squared = norm * norm;
        // (Connecting is bounded by each ring's connect and accept timeouts: a worker silent past
        // them is stalled, and the node leaves the run.)
        const auto connecting = 2 * own_.options().connect_timeout * own_.options().count + kTimeout;
        for (int k = 1; k < workers; ++k) {
            const Json report = receive_json(group(), k, connecting);
            const std::string failed = json_string(report, "error").value_or("");
            if (error.empty() && !failed.empty()) error = failed;
            norm_squared += json_number(report, "norm_squared").value_or(std::nan(""));  // (JSON's NaN is null)
        }
        const LaneDecision decision =
            error.empty() ? own_.decide(epoch, std::sqrt(norm_squared)) : LaneDecision{PANGEA_ERR_IO, error, {}};
        const Json decided{{"status", static_cast<int64_t>(decision.status)},
                           {"error", decision.error},
                           {"left_out", decision.left_out}};
        for (int k = 1; k < workers; ++k) send_json(group(), k, decided);
        AllReduceResult result = own_.run(epoch, decision, data, residual, 0, workers_.parameters_);
        const milliseconds silence{own_.options().ring.stall_timeout_ms};  // (a live worker speaks every second)
        for (int k = 1; k < workers; ++k) {
            const AllReduceResult theirs = decode_result(receive_result(group(), k, silence));
            result.seconds = std::max(result.seconds, theirs.seconds);
            result.bytes_sent += theirs.bytes_sent;
            result.bytes_received += theirs.bytes_received;
            if (result.status == PANGEA_OK && theirs.status != PANGEA_OK) {
                result.status = theirs.status;
                result.error = "worker " + std::to_string(k) + ": " + theirs.error;
            }
        }
        return result;
    }

    void ended(End end, const std::string& why) override {
        if (end != End::kCommitted) own_.disconnect();
        for (int k = 1; k < group().size(); ++k) {
            workers_.tell(k, static_cast<uint32_t>(Command::kEnded), static_cast<int64_t>(end));
            if (end == End::kFailed) send_json(group(), k, Json{{"why", why}});
        }
    }
    void abort() override { own_.abort(); }  // (the others' rings fail through their neighbours)
    void disconnect() override { own_.disconnect(); }

private:
    WorkerGroup& group() { return *workers_.group_; }

    NodeWorkers& workers_;
    RingLanes& own_;
};

std::unique_ptr<NodeRings> NodeWorkers::rings(RingLanes& own) { return std::make_unique<LeaderRings>(*this, own); }

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

    // Every worker compresses with the same codec: all keep a residual of their shard, or none does.
    size_t residual_count() const override { return own_.residual_count() > 0 ? count_ : 0; }

    void read_residual(std::span<float> out) const override {
        if (out.size() != residual_count())
            throw OuterLoopError("read_residual: " + std::to_string(out.size()) + " values asked, there are " +
                                 std::to_string(residual_count()));
        workers_.announce(static_cast<uint32_t>(Command::kReadResidual));
        own_.read_residual(out.subspan(0, shard(0).size()));
        for (int k = 1; k < group().size(); ++k) group().receive(raw(out.subspan(shard(k).begin, shard(k).size())), k);
    }

    void restore_residual(std::span<const float> residual) override {
        if (residual.size() != residual_count())
            throw OuterLoopError("the error feedback residual to take up is " + std::to_string(residual.size()) +
                                 " values, this node keeps " + std::to_string(residual_count()));
        workers_.announce(static_cast<uint32_t>(Command::kRestoreResidual));
        for (int k = 1; k < group().size(); ++k) {
            const auto values = residual.subspan(shard(k).begin, shard(k).size());
            group().send({reinterpret_cast<const uint8_t*>(values.data()), values.size_bytes()}, k);
        }
        own_.restore_residual(residual.subspan(0, shard(0).size()));
    }

    // (Workers sync their shards whole: check_workers() refuses fragments.)
    size_t local_count() const override { return 0; }
    void read_local(std::span<float>) const override { throw OuterLoopError("a node of workers keeps no local parameters"); }
    void restore_local(std::span<const float>) override {
        throw OuterLoopError("a node of workers keeps no local parameters ([diloco] fragments = 1)");
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

std::unique_ptr<OuterState> NodeWorkers::outer_state(OuterLoop& own) {
    return std::make_unique<ShardedOuterState>(*this, own, parameters_);
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
                [this](std::span<float> own, std::span<float> residual, const ContributionFn& contribution) {
                    return average(own, residual, contribution);
                },
                OuterLoopOptions{.overlap = false, .error_feedback = wants_error_feedback(setup_.codec)}),
          parameters_(parameter_count(setup_.shape)),
          shard_(shard_range(parameters_, group.size(), group.rank())) {
        if (setup_.nodes < 2) return;
        // Its rings: it listens, and tells the leader where (for the run's member list).
        const uint64_t run_id = run_id_of(m, options.run_id);
        listener_ = std::make_unique<OwnedListener>(setup_.transport, worker_address(m, group.rank()));
        acceptor_ = std::make_unique<PeerAcceptor>(setup_.transport, *listener_, setup_.node, run_id, load_run_secret(m),
                                                   [](OwnedConnection, const pangea_hello&) {});  // (the leader serves joiners)
        lanes_ = std::make_unique<RingLanes>(setup_.transport, *acceptor_, setup_.codec, setup_.node, run_id,
                                             lane_options(m, group.rank(), group.size()));
        // (The leader takes it once it meets the run: after reading the checkpoint it resumes
        // from, which may take long.)
        send_json(group_, 0, Json{{"address", listener_->address()}}, kLeaderTimeout);
    }

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
            loop_.sync(0);  // (fragments = 1: any round. A dropped node's next commands take up the state it recovers)
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
        case static_cast<uint32_t>(Command::kReadResidual): {
            const auto residual = loop_.residual();
            group_.send({reinterpret_cast<const uint8_t*>(residual.data()), residual.size_bytes()}, 0);
            return;
        }
        case static_cast<uint32_t>(Command::kRestoreResidual): {
            std::vector<float> residual(loop_.residual_count());
            group_.receive(raw(std::span<float>(residual)), 0);
            loop_.restore_residual(residual);
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

    // The outer loop's all-reduce: in each epoch the leader names, this worker's shard over its
    // rings, as the leader decides, until the leader says how the step ended. Other commands may
    // come between (the run asking for the node's state).
    AllReduceResult average(std::span<float> own, std::span<float> residual, const ContributionFn& contribution) {
        AllReduceResult result;
        if (!lanes_) {  // one node: the average is its own, nothing lost
            contribution(own);
            std::fill(residual.begin(), residual.end(), 0.0f);
            return result;
        }
        while (true) {
            const Header header = next();
            if (header.kind == static_cast<uint32_t>(Command::kEpoch)) {
                const Epoch epoch = decode_epoch(receive_json(group_, 0, kLeaderTimeout));
                contribution(own);
                if (epoch.members.size() < 2) {
                    std::fill(residual.begin(), residual.end(), 0.0f);
                    continue;
                }
                const std::string error = lanes_->connect(epoch);
                const double norm = contribution_norm(own);
                send_json(group_, 0, Json{{"error", error}, {"norm_squared", norm * norm}});
                const Json decided = receive_json(group_, 0, kLeaderTimeout);
                LaneDecision decision;
                decision.status = static_cast<pangea_status>(json_int(decided, "status").value_or(PANGEA_ERR_INTERNAL));
                decision.error = json_string(decided, "error").value_or("");
                if (decided.is_object() && decided.contains("left_out") && decided["left_out"].is_array())
                    for (const Json& position : decided["left_out"])
                        if (position.is_number_integer()) decision.left_out.push_back(position.get<int>());
                AllReduceResult ran;
                {
                    const Alive alive(group_);
                    ran = lanes_->run(epoch, decision, own, residual, shard_.begin, parameters_);
                }
                send_json(group_, 0, encode_result(ran), kLeaderTimeout);
                continue;
            }
            if (header.kind != static_cast<uint32_t>(Command::kEnded)) {
                do_command(header);
                continue;
            }
            switch (static_cast<NodeRings::End>(header.value)) {
            case NodeRings::End::kCommitted:
                return result;
            case NodeRings::End::kRetried:
                lanes_->disconnect();
                continue;
            case NodeRings::End::kDropped:
                lanes_->disconnect();
                result.status = PANGEA_ERR_ABORTED;
                result.dropped = true;
                result.error = "the node was dropped from the run";
                return result;
            case NodeRings::End::kFailed:
                lanes_->disconnect();
                result.status = PANGEA_ERR_IO;
                result.error = json_string(receive_json(group_, 0, kLeaderTimeout), "why").value_or("");
                return result;
            }
            throw WorkerGroupError(tag_ + ": the leader ended an epoch as " + std::to_string(header.value));
        }
    }

    std::string tag_;
    WorkerGroup& group_;
    NodeSetup setup_;
    InnerSteps inner_;
    OuterLoop loop_;  // this worker's shard of the outer state: the synced copy and the optimizer's
    size_t parameters_;  // the model's
    ShardRange shard_;   // this worker's of them
    // Its rings, in a run of several nodes.
    std::unique_ptr<OwnedListener> listener_;
    std::unique_ptr<PeerAcceptor> acceptor_;
    std::unique_ptr<RingLanes> lanes_;
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
