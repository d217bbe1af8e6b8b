// The checkpoint format. A checkpoint of outer step S is a set of objects under
// <prefix>step-<S, 8 digits>/ in a storage plugin:
//   model.safetensors    the synced parameters, safetensors layout: Hugging Face Llama names for
//                        the built-in model, the PyTorch module's own for a Python node's
//   config.json          the built-in model in Hugging Face's LlamaConfig form (not written for
//                        a Python node's model)
//   outer_optimizer.bin  the outer optimizer plugin's state (its own bytes)
//   inner_optimizer.bin  this node's inner optimizer state (a torch archive)
//   manifest.toml        the manifest the run used
//   checkpoint.json      written last: step, data position, model shape, and each part's size
//                        and SHA-256. A checkpoint without it is incomplete and never used.
// and <prefix>latest names the newest complete one; it moves only after checkpoint.json is
// committed. docs/checkpoints.md describes the format for other tools.
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
    std::string manifest;                   // the manifest text
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

struct CheckpointSummary {
    int64_t step = 0;
    std::string key;  // of its checkpoint.json
    std::string run;
    int node = 0;
    std::vector<CheckpointPart> parts;
    uint64_t bytes() const;
};

std::string checkpoint_dir(const std::string& prefix, int64_t step);  // "<prefix>step-00000012/"

// Writes a checkpoint and moves `latest` to it. `progress` (may be empty) hears bytes written so
// far. Throws CheckpointError; what it wrote before failing stays invisible to readers.
void write_checkpoint(const ObjectStore& store, const std::string& prefix, const TrainingState& state,
                      const CheckpointContext& context, const std::function<void(uint64_t)>& progress = {});

// The complete checkpoints under `prefix`, oldest first.
std::vector<CheckpointSummary> list_checkpoints(const ObjectStore& store, const std::string& prefix);
// The step `latest` names, if any.
std::optional<int64_t> latest_checkpoint(const ObjectStore& store, const std::string& prefix);
// "latest" or a step number: the step to read. Throws CheckpointError naming what is there.
int64_t resolve_checkpoint(const ObjectStore& store, const std::string& prefix, const std::string& which);

// Reads and verifies a checkpoint: every part's size and SHA-256, the model's tensors against
// `expected` (names, shapes, in buffer order). Throws CheckpointError naming the part and what
// is wrong.
TrainingState read_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                              const std::vector<ParameterSlot>& expected);
// The built-in Llama's.
TrainingState read_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                              const ModelShape& expected);
// Reads the header only (for `pangea checkpoint inspect`).
CheckpointSummary read_summary(const ObjectStore& store, const std::string& prefix, int64_t step,
                               std::string* header_text = nullptr);

// Checks every part's size and SHA-256 against the header: one line per part ("model.safetensors:
// ok", or what is wrong). Throws CheckpointError when the header itself cannot be read.
std::vector<std::string> verify_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                                           bool* all_ok);

// Verifies, then copies model.safetensors and config.json (when there is one) into `directory`
// (for Hugging Face tools).
void export_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                       const std::filesystem::path& directory);

// Deletes all but the newest `keep` complete checkpoints, and incomplete ones older than the
// newest complete one (left by a crash mid-save). Returns the steps deleted.
std::vector<int64_t> prune_checkpoints(const ObjectStore& store, const std::string& prefix, int keep);

// The model as Hugging Face's LlamaForCausalLM names it: "model.layers.3.self_attn.q_proj.weight".
std::string hugging_face_name(const std::string& name);
std::string hugging_face_config(const ModelShape& shape, int64_t context);

}  // namespace pangea
