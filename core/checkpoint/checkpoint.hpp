// The checkpoint format (version 2): one checkpoint per outer step for the whole run, under
// <prefix>step-<S, 8 digits>/ in a storage plugin (<prefix>: "<run name>/" or [checkpoint] prefix).
// The state every member holds alike is written once per run, split by byte range among the n
// nodes that committed step S; each node writes its own state beside it:
//   shared/model.safetensors.<k>-of-<n>    piece k of the synced parameters (safetensors layout:
//                                          Hugging Face Llama names for the built-in model, the
//                                          PyTorch module's own for a Python node's)
//   shared/outer_optimizer.bin.<k>-of-<n>  piece k of the outer optimizer plugin's state
//   node-<i>/inner_optimizer.bin           node i's inner optimizer state
//   node-<i>/error_feedback.bin            node i's error-feedback residual (fp32, host byte
//                                          order), when its codec keeps one
//   node-<i>/local_parameters.bin          node i's model parameters (fp32, host byte order), when
//                                          they are not the synced ones ([diloco] fragments)
//   node-<i>/manifest.toml                 the manifest node i ran with
//   node-<i>/config.json                   the built-in model as Hugging Face's LlamaConfig
//   node-<i>.json                          written last by node i: the step, the members, its data
//                                          position, the model, each of its objects' size and SHA-256
// Piece k is written by the k-th member in node order. A step is complete once every member's
// node-<i>.json is in; nothing reads an incomplete one. <prefix>latest names the newest complete
// step: the member whose header completes a step moves it. docs/checkpoints.md describes the
// format for other tools.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/object_store.hpp"
#include "common/json.hpp"
#include "train/model_shape.hpp"

namespace pangea {

// Everything a node needs to carry on exactly where it stopped.
struct TrainingState {
    int64_t step = 0;                       // outer steps committed
    std::vector<float> params;              // the synced parameters, in parameter_layout() order
    std::vector<uint8_t> outer_optimizer;   // the outer optimizer plugin's saved state
    std::vector<uint8_t> inner_optimizer;   // this node's inner optimizer state
    // When set (a save), makes inner_optimizer's bytes on the writer's thread: the trainer only
    // copied the tensors.
    std::function<std::vector<uint8_t>()> inner_optimizer_later;
    uint64_t sampler_position = 0;          // training sequences this node has drawn
    // This node's error-feedback residual (diloco/outer_loop.hpp), params.size() values; empty
    // when its codec keeps none.
    std::vector<float> residual;
    // This node's model parameters, params.size() values, when they are not the synced ones
    // (with [diloco] fragments the others keep local progress between their syncs); else empty.
    std::vector<float> local;
    std::string manifest;                   // the manifest text
    // The nodes that committed this step together, ascending: the shared state is split among
    // them. Empty when writing: this node alone. Read back: the members of the checkpoint.
    std::vector<int> members;
};

// What a checkpoint says about the run and the model it belongs to.
struct CheckpointContext {
    std::string run;  // [run] name
    int node = 0;
    std::vector<ParameterSlot> tensors;  // the parameters in buffer order, named as in model.safetensors
    std::string config;                  // config.json; empty: no such part
    Json model;                          // the header's "model" object
};

// The built-in Llama's: Hugging Face names and config (`context`: the sequence length trained with).
CheckpointContext llama_checkpoint_context(const std::string& run, int node, const ModelShape& shape, int64_t context);
// The built-in Llama's tensors, named as its checkpoints name them.
std::vector<ParameterSlot> llama_checkpoint_tensors(const ModelShape& shape);

struct CheckpointPart {
    std::string name;
    uint64_t bytes = 0;
    std::string sha256;  // hex
};

// One step's checkpoint, as far as it is written.
struct CheckpointSummary {
    int64_t step = 0;
    std::string run;
    std::vector<int> members;           // the nodes that committed the step
    std::vector<int> missing;           // members whose node-<i>.json is not in (yet)
    std::vector<CheckpointPart> parts;  // every object written, named relative to the step's directory
    bool complete() const { return missing.empty(); }
    uint64_t bytes() const;
};

std::string checkpoint_dir(const std::string& prefix, int64_t step);  // "<prefix>step-00000012/"

// Writes this node's (context.node's) part of a checkpoint: its pieces of the shared state and
// its own state, then its header. Returns true when that completed the step (every member's
// header is in), and then moves `latest` to it. `progress` (may be empty) hears bytes written so
// far. Throws CheckpointError; what it wrote before failing stays invisible to readers.
bool write_checkpoint(const ObjectStore& store, const std::string& prefix, const TrainingState& state,
                      const CheckpointContext& context, const std::function<void(uint64_t)>& progress = {});

// The checkpoints under `prefix`, oldest first: the complete ones, or (`with_incomplete`) every
// step some node wrote a readable header for.
std::vector<CheckpointSummary> list_checkpoints(const ObjectStore& store, const std::string& prefix,
                                                bool with_incomplete = false);
// The step `latest` names, if any.
std::optional<int64_t> latest_checkpoint(const ObjectStore& store, const std::string& prefix);
// "latest" (the newest complete step, whatever each node's own progress) or a step number: the
// step to read. Throws CheckpointError naming what is there.
int64_t resolve_checkpoint(const ObjectStore& store, const std::string& prefix, const std::string& which);

// Reads and verifies `node`'s checkpoint of a complete step: the shared state from every
// member's pieces and the node's own, every object's size and SHA-256, the model's tensors
// against `expected` (names, shapes, in buffer order). Throws CheckpointError naming the object
// and what is wrong, or the step's members when `node` is not one of them.
TrainingState read_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step, int node,
                              const std::vector<ParameterSlot>& expected);
// The built-in Llama's.
TrainingState read_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step, int node,
                              const ModelShape& expected);
// Reads the headers only (for `pangea checkpoint inspect`): `header_text` gets each one's name
// and text. Throws CheckpointError when no node wrote a readable header for the step.
CheckpointSummary read_summary(const ObjectStore& store, const std::string& prefix, int64_t step,
                               std::string* header_text = nullptr);

// Checks every object of the step against its writer's header: one line per object
// ("node-0/inner_optimizer.bin: ok", or what is wrong) and one per missing header. Throws
// CheckpointError when no node wrote a readable header for the step.
std::vector<std::string> verify_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                                           bool* all_ok);

// Verifies and assembles model.safetensors, and copies config.json (when there is one), into
// `directory` (for Hugging Face tools).
void export_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                       const std::filesystem::path& directory);

// Withdraws `node`'s parts of steps after `step` (its headers: the steps become incomplete until
// it writes them again), for a node that resumes from `step`: parts of the run's abandoned future
// must not complete a step with another trajectory's state. Returns the steps withdrawn from.
std::vector<int64_t> withdraw_parts_after(const ObjectStore& store, const std::string& prefix, int node, int64_t step);

// Deletes all but the newest `keep` complete checkpoints (and the one `latest` names), and
// incomplete ones older than the newest complete one (left by a crash mid-save), every node's
// objects. Returns the steps deleted.
std::vector<int64_t> prune_checkpoints(const ObjectStore& store, const std::string& prefix, int keep);

// The model as Hugging Face's LlamaForCausalLM names it: "model.layers.3.self_attn.q_proj.weight".
std::string hugging_face_name(const std::string& name);
std::string hugging_face_config(const ModelShape& shape, int64_t context);

}  // namespace pangea
