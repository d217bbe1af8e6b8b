// The extension behind the Python package (`pangea._pangea`): one node of a run, driven from
// Python. The user's model and inner optimizer stay in PyTorch; this holds the core's part: the
// manifest, the plugins, the mesh session, the outer loop over a flat fp32 host buffer of the
// model's parameters (pangea/__init__.py copies the model into it and back), and the metrics.
// It does not link LibTorch: the buffer comes in through Python's buffer protocol.
#include <dlfcn.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <future>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "data/sampler.hpp"
#include "diloco/outer_loop.hpp"
#include "manifest/manifest.hpp"
#include "plugin_host/plugin_registry.hpp"
#include "train/checkpoints.hpp"
#include "train/live_recovery.hpp"
#include "train/mesh_session.hpp"
#include "train/metrics.hpp"
#include "train/model_shape.hpp"
#include "train/node.hpp"
#include "train/run_setup.hpp"
#include "common/float_hash.hpp"

namespace py = pybind11;
namespace fs = std::filesystem;

namespace pangea {
namespace {

// PANGEA_PLUGIN_PATH, then the plugins installed beside this module (<package>/plugins), then
// those of the build tree it was built in.
std::vector<SearchPath> python_search_path() {
    std::vector<SearchPath> out;
    for (SearchPath& entry : default_search_path())
        if (entry.why == "PANGEA_PLUGIN_PATH") out.push_back(std::move(entry));
    Dl_info self{};
    if (dladdr(reinterpret_cast<const void*>(&python_search_path), &self) != 0 && self.dli_fname != nullptr)
        out.push_back({fs::path(self.dli_fname).parent_path() / "plugins", "beside the Python module"});
    out.push_back({PANGEA_BUILD_PLUGIN_DIR, "the build tree's"});
    return out;
}

std::vector<Override> overrides_of(const std::vector<std::string>& set_arguments) {
    std::vector<Override> overrides = environment_overrides(process_environment());
    for (const auto& argument : set_arguments) overrides.push_back(parse_set_argument(argument));
    return overrides;  // later entries win: file < environment < set
}

// A Python node's state for live recovery: the outer loop's part in the core, the inner
// optimizer's in PyTorch, reached through two Python functions (pangea.DiLoCo's). Called with or
// without the GIL: each call takes it.
class PythonState final : public TransferableState {
public:
    PythonState(OuterLoop& loop, int64_t inner_steps, py::function save_inner, py::function take_up_inner)
        : TransferableState(loop),
          inner_steps_(inner_steps),
          save_inner_(std::move(save_inner)),
          take_up_inner_(std::move(take_up_inner)) {}
    ~PythonState() override {
        py::gil_scoped_acquire gil;
        save_inner_ = py::function();
        take_up_inner_ = py::function();
    }

private:
    std::vector<uint8_t> inner_state() const override {
        py::gil_scoped_acquire gil;
        const std::string bytes = py::bytes(save_inner_());
        return {bytes.begin(), bytes.end()};
    }
    void take_up_inner(std::span<const uint8_t> bytes, int64_t step) override {
        py::gil_scoped_acquire gil;
        try {
            take_up_inner_(py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size()), step);
        } catch (py::error_already_set& e) {
            throw std::runtime_error("the inner optimizer's recovered state does not load: " + std::string(e.what()));
        }
    }
    // A Python node's data position is the user's: a checkpoint records the inner steps done.
    uint64_t data_position(int64_t step) const override { return static_cast<uint64_t>(step * inner_steps_); }

    int64_t inner_steps_;
    py::function save_inner_, take_up_inner_;
};

class PythonNode {
public:
    PythonNode(const std::string& manifest_path, int node_id, bool join, const std::vector<std::string>& set,
               uint64_t run_id, const std::string& resume, bool fresh)
        : registry_(python_search_path()),
          manifest_(load_manifest(manifest_path, overrides_of(set), registry_)),
          optimizer_(instantiate(manifest_, registry_, PANGEA_KIND_OPTIM, "nesterov")),
          transport_(instantiate(manifest_, registry_, PANGEA_KIND_TRANSPORT, "tcp")),
          codec_(instantiate(manifest_, registry_, PANGEA_KIND_COMPRESS, "none")),
          nodes_(static_cast<int>(manifest_.get_int("mesh", "nodes"))),
          quorum_(manifest_.get_int("diloco", "quorum") > 0) {
        pangea_log_level level = PANGEA_LOG_INFO;
        parse_log_level(manifest_.get_string("run", "log_level"), &level);
        set_log_level(level);
        if (node_id < 0 || node_id >= nodes_)
            throw std::invalid_argument("node_id " + std::to_string(node_id) + " is outside the run's [mesh] nodes = " +
                                        std::to_string(nodes_) + " (0.." + std::to_string(nodes_ - 1) + ")");
        if (manifest_.get_int("node", "workers") != 1)
            throw ManifestError({manifest_.core.at("node").at("workers").origin + ": [node] workers = " +
                                 std::to_string(manifest_.get_int("node", "workers")) +
                                 " is for the built-in node (pangea run); a Python node is one process: start one per "
                                 "device, or split the batch in your own code (torch.distributed) and keep workers = 1"});
        options_.node_id = node_id;
        options_.join = join;
        options_.run_id = run_id;
        options_.resume = resume;
        options_.fresh = fresh;
        // Before the mesh hears of this node: the checkpoint it resumes, or its refusal to start
        // afresh over the run's checkpoints (--fresh deletes them now).
        const std::optional<int64_t> resumed_step =
            NodeCheckpoints::prepare_start(manifest_, registry_, options_);
        log(PANGEA_LOG_INFO, "python", tag() + " of " + std::to_string(nodes_) + ": plugins " + transport_.plugin().id() +
                                           ", " + codec_.plugin().id() + ", " + optimizer_.plugin().id());
        if (nodes_ > 1) {
            py::gil_scoped_release release;  // joining waits on the other nodes
            mesh_.emplace(manifest_, transport_, codec_, options_, resumed_step);
        }
    }

    // The flat fp32 host buffer the outer loop works on (the model's parameters, copied in by
    // the caller before each sync() and out after), kept alive while the node lives; the inner
    // optimizer's state for live recovery and checkpoints: save_inner() -> bytes,
    // take_up_inner(bytes, outer_step), which also copies the buffer into the model; and the
    // parameters' names and shapes in buffer order, as checkpoints name them. A node started
    // with `resume` takes up its checkpoint here.
    void attach(const py::buffer& buffer, py::function save_inner, py::function take_up_inner,
                const std::vector<std::string>& names, const std::vector<std::vector<int64_t>>& shapes) {
        if (loop_) throw std::logic_error("a model is attached to this node already");
        const py::buffer_info info = buffer.request(/*writable=*/true);
        if (info.format != py::format_descriptor<float>::format() || info.ndim != 1 || info.strides[0] != sizeof(float))
            throw std::invalid_argument("the parameter buffer must be a contiguous 1-D float32 buffer (got format '" +
                                        info.format + "', " + std::to_string(info.ndim) + " dimensions)");
        buffer_ = buffer;
        params_ = std::make_unique<HostParameters>(std::span<float>(static_cast<float*>(info.ptr), static_cast<size_t>(info.size)));
        AverageFn average = [this](std::span<float> data, std::span<float> residual, const ContributionFn& contribution) {
            if (mesh_) return mesh_->average(data, residual, contribution);
            contribution(data);  // one node: the average is its own, nothing lost
            std::fill(residual.begin(), residual.end(), 0.0f);
            return AllReduceResult{};
        };
        // (Overlap needs fragments: rounds_of() refuses it without.)
        if (rounds_of(manifest_).fragments > 1)
            throw std::invalid_argument(manifest_.core.at("diloco").at("fragments").origin +
                                        ": [diloco] fragments (and overlap, which needs them) run in the C++ node "
                                        "(pangea launch) only for now: the Python node syncs all parameters after "
                                        "each outer step");
        loop_ = std::make_unique<OuterLoop>(
            *params_, optimizer_, std::move(average),
            OuterLoopOptions{.error_feedback = wants_error_feedback(codec_)});
        state_ = std::make_unique<PythonState>(*loop_, inner_steps(), std::move(save_inner), std::move(take_up_inner));
        if (mesh_) recovery_.emplace(*mesh_, *state_, /*overlap=*/false);
        checkpoints_.emplace(manifest_, registry_, options_,
                             checkpoint_context(names, shapes, static_cast<size_t>(info.size)));
        std::optional<TrainingState> resumed = checkpoints_->read_resume_point();
        if (resumed) {
            state_->take_up(*resumed);
            outer_step_ = resumed->step;
        }
        metrics_ = std::make_unique<NodeMetrics>(manifest_.get_string("run", "dir"), options_.node_id, outer_steps(),
                                                 inner_steps(), /*append=*/resumed.has_value());
        metrics_->begin();
        log(PANGEA_LOG_INFO, "python", tag() + ": model of " + format_count(double(info.size)) + " parameters attached");
    }

    // A node that joins a run in progress takes up a member's state before its first inner step.
    // Returns the outer steps done (0 for a node that starts with the run).
    int64_t start() {
        attached();
        if (recovery_) outer_step_ = interruptible([&] { return recovery_->start(outer_step_); });
        return outer_step_;
    }

    // One outer step over the attached buffer: the pseudo-gradient's average through the core,
    // the outer optimizer, the buffer set to the synced parameters. The GIL is released while
    // the core waits on the network. Returns what the metrics file records for the step.
    // `trained_inner_steps`: how many this node trained for the step (fewer after a wrap-up),
    // which weighs its contribution (docs/training.md#stragglers).
    py::dict sync(double compute_seconds, double loss, int64_t trained_inner_steps) {
        const OuterLoop& loop = attached();
        const auto start = std::chrono::steady_clock::now();
        if (mesh_) mesh_->set_inner_steps(trained_inner_steps);
        const OuterStepReport report = interruptible([&] { return loop_->sync(outer_step_); });
        if (report.dropped()) {
            log(PANGEA_LOG_WARN, "python", tag() + ": " + mesh_->rejoin().why + "; recovering from a peer");
            outer_step_ = interruptible([&] { return recovery_->recover(mesh_->rejoin()); });
            py::dict out;
            out["outer_step"] = outer_step_;
            out["recovered"] = true;
            out["params_hash"] = hash_floats(loop.synced().data(), loop.synced().size());
            return out;
        }
        ++outer_step_;
        if (recovery_) recovery_->offer_state();
        checkpoints_->after_outer_step(*state_, outer_step_, outer_steps(),
                                       mesh_ ? mesh_->member_nodes() : std::vector{options_.node_id});
        metrics_->inner_step(loss, compute_seconds);
        const double sync_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const std::string hash = hash_floats(loop.synced().data(), loop.synced().size());
        Json line{{"outer_step", outer_step_},
                  {"inner_step", outer_step_ * inner_steps()},
                  {"loss", loss},
                  {"synced_outer_steps", loop.applied_steps()},
                  {"members", mesh_ ? int64_t{mesh_->members()} : int64_t{1}},
                  {"params_hash", hash}};
        int64_t step_inner_steps = 0;  // what the step's members trained together
        if (quorum()) {
            for (const auto& [node, k] : mesh_->last_epoch().inner_steps) step_inner_steps += k;
            line.update(Json{{"trained_inner_steps", trained_inner_steps}, {"step_inner_steps", step_inner_steps}});
        }
        metrics_->outer_step(line, report, compute_seconds, compute_seconds + sync_seconds);
        metrics_->status("training", outer_step_, 0, 0, true);
        py::dict out;
        out["outer_step"] = outer_step_;
        out["recovered"] = false;
        out["applied"] = report.applied;
        out["params_hash"] = hash;
        out["members"] = mesh_ ? mesh_->members() : 1;
        out["allreduce_seconds"] = report.allreduce.seconds;
        out["bytes_sent"] = report.allreduce.bytes_sent;
        out["bytes_received"] = report.allreduce.bytes_received;
        out["blocked_seconds"] = report.blocked_seconds;
        if (quorum()) {
            out["trained_inner_steps"] = trained_inner_steps;
            out["step_inner_steps"] = step_inner_steps;
        }
        return out;
    }

    // [diloco] quorum: whether the run asks this node, the straggler, to end its round now.
    // (Cheap: step() asks after every inner step.)
    bool wrap_up_requested() const { return quorum() && mesh_->wrap_up_requested(); }

    // The end of training: overlap mode's last average applied; the summary written; the run
    // left. The buffer then holds the final synced parameters.
    std::string finish() {
        attached();
        OuterStepReport report;
        {
            py::gil_scoped_release release;
            report = loop_->finish();
        }
        metrics_->landed(report);
        CheckpointStats saves;
        {
            py::gil_scoped_release release;
            saves = checkpoints_->finish();  // the last checkpoint is on storage before the run reports done
        }
        metrics_->end();
        const std::string hash = hash_floats(loop_->synced().data(), loop_->synced().size());
        metrics_->summary(Json{{"nodes", nodes_},
                               {"parameters", static_cast<int64_t>(params_->size())},
                               {"outer_steps", outer_step_},
                               {"inner_steps", inner_steps()},
                               {"params_hash", hash},
                               {"recoveries", recovery_ ? static_cast<int64_t>(recovery_->recoveries().size()) : int64_t{0}},
                               {"checkpoints_saved", saves.saved},
                               {"checkpoints_failed", saves.failed},
                               {"last_checkpoint", saves.last_step},
                               {"front_end", "python"}});
        metrics_->status("done", outer_step_, 0, 0, true);
        leave();
        return hash;
    }

    void leave() {
        if (!mesh_ || left_) return;
        left_ = true;
        py::gil_scoped_release release;
        mesh_->leave();
    }

    // The built-in Llama of [model] (pangea/llama.py builds it in PyTorch): its shape with the
    // data's vocabulary, and its parameters in the C++ node's buffer order.
    py::dict llama() {
        const ModelShape shape = resolve_model_shape(manifest_, data().vocab());
        if (shape.vocab < static_cast<int64_t>(data().vocab()) || shape.vocab == 0)
            throw ManifestError({manifest_.core.at("model").at("vocab").origin + ": [model] vocab " +
                                 std::to_string(shape.vocab) + " does not hold the data's " +
                                 std::to_string(data().vocab()) + " tokens"});
        py::list layout;
        for (const ParameterSlot& slot : parameter_layout(shape)) layout.append(py::make_tuple(slot.name, slot.shape));
        py::dict out;
        out["preset"] = shape.preset;
        out["layers"] = shape.layers;
        out["d_model"] = shape.d_model;
        out["heads"] = shape.heads;
        out["kv_heads"] = shape.kv_heads;
        out["ffn"] = shape.ffn;
        out["vocab"] = shape.vocab;
        out["tied_embeddings"] = shape.tied_embeddings;
        out["rope_theta"] = shape.rope_theta;
        out["norm_eps"] = shape.norm_eps;
        out["seq_len"] = manifest_.get_int("data", "seq_len");
        out["seed"] = manifest_.get_int("run", "seed");
        out["layout"] = layout;
        return out;
    }

    // This node's share of [data], as the C++ node reads it: the next `sequences` training
    // windows of seq_len + 1 tokens, and a position to go on from (after a recovery or resume).
    py::array_t<int32_t> next_tokens(int64_t sequences) {
        if (sequences <= 0) throw std::invalid_argument("sequences must be positive, not " + std::to_string(sequences));
        const int64_t window = data().seq_len() + 1;
        py::array_t<int32_t> out({sequences, window});
        data().next(std::span<int32_t>(out.mutable_data(), static_cast<size_t>(sequences * window)));
        return out;
    }
    void skip_data_to(uint64_t draws) { data().skip_to(draws); }

    // A core setting of the manifest, typed as its schema declares it.
    py::object setting(const std::string& section, const std::string& key) const {
        const auto found_section = manifest_.core.find(section);
        if (found_section == manifest_.core.end() || !found_section->second.count(key))
            throw std::invalid_argument("no core setting " + section + "." + key + " (docs/manifest.md lists them)");
        return std::visit([](const auto& value) -> py::object { return py::cast(value); },
                          found_section->second.at(key).value);
    }

    int node_id() const { return options_.node_id; }
    int nodes() const { return nodes_; }
    int64_t inner_steps() const { return manifest_.get_int("diloco", "inner_steps"); }
    int64_t outer_steps() const { return manifest_.get_int("diloco", "outer_steps"); }

private:
    bool quorum() const { return mesh_ && quorum_; }
    std::string tag() const { return "node-" + std::to_string(options_.node_id); }
    Sampler& data() {
        if (!sampler_)
            sampler_ = std::make_unique<Sampler>(manifest_.data_sources, manifest_.get_int("data", "seq_len"),
                                                 static_cast<uint64_t>(manifest_.get_int("run", "seed")),
                                                 options_.node_id, nodes_);
        return *sampler_;
    }
    // The user's parameters as checkpoints name them: their module names, in buffer order.
    CheckpointContext checkpoint_context(const std::vector<std::string>& names,
                                         const std::vector<std::vector<int64_t>>& shapes, size_t count) const {
        if (names.size() != shapes.size()) throw std::invalid_argument("as many parameter names as shapes are needed");
        CheckpointContext context{manifest_.get_string("run", "name"), options_.node_id, {}, "", Json{{"front_end", "python"}}};
        size_t offset = 0;
        for (size_t i = 0; i < names.size(); ++i) {
            size_t values = 1;
            for (const int64_t extent : shapes[i]) values *= static_cast<size_t>(extent);
            context.tensors.push_back({names[i], shapes[i], offset, values});
            offset += values;
        }
        if (offset != count)
            throw std::invalid_argument("the parameters' shapes hold " + std::to_string(offset) + " values, the buffer " +
                                        std::to_string(count));
        return context;
    }
    const OuterLoop& attached() const {
        if (!loop_) throw std::logic_error("no model is attached to this node (pangea.DiLoCo attaches one)");
        if (interrupted_) throw std::logic_error("this node was interrupted and left the run; start a new one (join=True)");
        return *loop_;
    }

    // Runs `work` (which waits on the network) on another thread without the GIL, checking for
    // Ctrl-C meanwhile: on a signal the node leaves the run, which ends the waits (the members
    // drop it at once), and the signal's exception (KeyboardInterrupt) is raised.
    template <class Work>
    auto interruptible(Work work) -> decltype(work()) {
        auto pending = std::async(std::launch::async, std::move(work));
        bool signalled = false;
        {
            py::gil_scoped_release release;
            while (pending.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
                py::gil_scoped_acquire gil;
                if (PyErr_CheckSignals() != 0) {
                    signalled = true;
                    break;
                }
            }
            if (signalled) {
                interrupted_ = true;
                left_ = true;
                if (mesh_) mesh_->leave();
                try {
                    pending.get();  // ends once the waits fail; its objects must not go before
                } catch (const std::exception&) {
                }
            }
        }
        if (signalled) throw py::error_already_set();  // the KeyboardInterrupt PyErr_CheckSignals set
        return pending.get();
    }

    PluginRegistry registry_;
    Manifest manifest_;
    PluginInstance optimizer_, transport_, codec_;
    int nodes_;
    bool quorum_;  // [diloco] quorum is on (asked after every inner step)
    NodeOptions options_;
    std::optional<MeshSession> mesh_;
    std::unique_ptr<Sampler> sampler_;  // [data], opened on first use
    py::buffer buffer_;  // keeps the parameters' memory alive
    std::unique_ptr<HostParameters> params_;
    std::unique_ptr<OuterLoop> loop_;
    std::unique_ptr<PythonState> state_;
    std::optional<LiveRecovery> recovery_;
    std::optional<NodeCheckpoints> checkpoints_;
    std::unique_ptr<NodeMetrics> metrics_;
    int64_t outer_step_ = 0;
    bool left_ = false;
    bool interrupted_ = false;  // by a signal (Ctrl-C) during a wait: the node left the run
};

}  // namespace
}  // namespace pangea

PYBIND11_MODULE(_pangea, m) {
    using pangea::PythonNode;
    m.doc() = "Pangea's core for Python: one node of a DiLoCo run (use the pangea package, not this module)";
    // The core's errors (a bad manifest, a plugin, the mesh) arrive as pangea.Error with the core's text.
    static py::exception<std::runtime_error> error(m, "Error");
    py::register_exception_translator([](std::exception_ptr failure) {
        try {
            if (failure) std::rethrow_exception(failure);
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const std::logic_error& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        } catch (const std::runtime_error& e) {
            error(e.what());
        }
    });
    py::class_<PythonNode>(m, "Node")
        .def(py::init<const std::string&, int, bool, const std::vector<std::string>&, uint64_t, const std::string&, bool>(),
             py::arg("manifest"), py::arg("node_id"), py::arg("join") = false,
             py::arg("set") = std::vector<std::string>{}, py::arg("run_id") = 0, py::arg("resume") = "",
             py::arg("fresh") = false)
        .def("attach", &PythonNode::attach, py::arg("buffer"), py::arg("save_inner"), py::arg("take_up_inner"),
             py::arg("names"), py::arg("shapes"))
        .def("start", &PythonNode::start)
        .def("sync", &PythonNode::sync, py::arg("compute_seconds"), py::arg("loss"), py::arg("trained_inner_steps"))
        .def("wrap_up_requested", &PythonNode::wrap_up_requested)
        .def("finish", &PythonNode::finish)
        .def("leave", &PythonNode::leave)
        .def_property_readonly("node_id", &PythonNode::node_id)
        .def_property_readonly("nodes", &PythonNode::nodes)
        .def_property_readonly("inner_steps", &PythonNode::inner_steps)
        .def_property_readonly("outer_steps", &PythonNode::outer_steps)
        .def("llama", &PythonNode::llama)
        .def("next_tokens", &PythonNode::next_tokens, py::arg("sequences"))
        .def("skip_data_to", &PythonNode::skip_data_to, py::arg("draws"))
        .def("setting", &PythonNode::setting, py::arg("section"), py::arg("key"));
}
