// The shape of a Llama-3 style model and the layout of its parameters in one flat fp32 buffer.
// Plain arithmetic, no LibTorch: the manifest check reports parameter counts and bad shapes
// without loading the training layer, and the model (model/llama.cpp) views the flat buffer
// through this same layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pangea {

struct Manifest;

struct ModelShape {
    std::string preset;  // "tiny", ... or "custom"
    int64_t layers = 0;
    int64_t d_model = 0;
    int64_t heads = 0;
    int64_t kv_heads = 0;
    int64_t ffn = 0;
    int64_t vocab = 0;  // 0 until known: presets tiny and small take the data's vocabulary
    bool tied_embeddings = false;
    double rope_theta = 500000.0;
    double norm_eps = 1e-5;

    int64_t head_dim() const { return d_model / heads; }
};

// One tensor of the model inside the flat buffer.
struct ParameterSlot {
    std::string name;  // "layers.3.attention.wq", as in Meta's Llama checkpoints
    std::vector<int64_t> shape;
    size_t offset = 0;  // in values
    size_t count = 0;
};

// Every tensor in buffer order, and the total count.
std::vector<ParameterSlot> parameter_layout(const ModelShape& shape);
size_t parameter_count(const ModelShape& shape);

// The shape from [model]: the preset, then any explicit sizes over it. Throws ManifestError
// naming the key (and where it was set) for shapes that cannot work: d_model not divisible by
// heads, heads not divisible by kv_heads, an odd head dimension (rotary embeddings pair values).
// `data_vocab` is the vocabulary of the training data (0 if unknown).
ModelShape resolve_model_shape(const Manifest& manifest, int64_t data_vocab);

// "0.82M", "25.2M", "10.2B".
std::string format_count(double count);

}  // namespace pangea
