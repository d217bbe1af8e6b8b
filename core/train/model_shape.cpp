#include "train/model_shape.hpp"

#include <cstdio>

#include "manifest/manifest.hpp"

namespace pangea {
namespace {

struct Preset {
    const char* name;
    int64_t layers, d_model, heads, kv_heads, ffn, vocab;
    bool tied;
};

// vocab 0: the data's vocabulary (the built-in byte tokenizer has 257 tokens). 1b is the shape of
// Llama-3.2-1B; 10b is INTELLECT-1's.
constexpr Preset kPresets[] = {
    {"tiny", 4, 128, 4, 2, 384, 0, true},
    {"small", 8, 512, 8, 4, 1536, 0, false},
    {"1b", 16, 2048, 32, 8, 8192, 128256, true},
    {"10b", 42, 4096, 32, 8, 14336, 128256, false},
};

}  // namespace

std::vector<ParameterSlot> parameter_layout(const ModelShape& s) {
    std::vector<ParameterSlot> slots;
    size_t offset = 0;
    auto add = [&](std::string name, std::vector<int64_t> shape) {
        size_t count = 1;
        for (int64_t d : shape) count *= static_cast<size_t>(d);
        slots.push_back({std::move(name), std::move(shape), offset, count});
        offset += count;
    };
    const int64_t hd = s.head_dim();
    add("tok_embeddings", {s.vocab, s.d_model});
    for (int64_t l = 0; l < s.layers; ++l) {
        const std::string p = "layers." + std::to_string(l) + ".";
        add(p + "attention_norm", {s.d_model});
        add(p + "attention.wq", {s.heads * hd, s.d_model});
        add(p + "attention.wk", {s.kv_heads * hd, s.d_model});
        add(p + "attention.wv", {s.kv_heads * hd, s.d_model});
        add(p + "attention.wo", {s.d_model, s.heads * hd});
        add(p + "ffn_norm", {s.d_model});
        add(p + "feed_forward.w1", {s.ffn, s.d_model});
        add(p + "feed_forward.w3", {s.ffn, s.d_model});
        add(p + "feed_forward.w2", {s.d_model, s.ffn});
    }
    add("norm", {s.d_model});
    if (!s.tied_embeddings) add("output", {s.vocab, s.d_model});
    return slots;
}

size_t parameter_count(const ModelShape& shape) {
    const auto slots = parameter_layout(shape);
    return slots.empty() ? 0 : slots.back().offset + slots.back().count;
}

ModelShape resolve_model_shape(const Manifest& m, int64_t data_vocab) {
    ModelShape s;
    s.preset = m.get_string("model", "preset");
    for (const auto& p : kPresets)
        if (s.preset == p.name) {
            s.layers = p.layers, s.d_model = p.d_model, s.heads = p.heads, s.kv_heads = p.kv_heads;
            s.ffn = p.ffn, s.vocab = p.vocab, s.tied_embeddings = p.tied;
        }
    const auto& section = m.core.at("model");
    auto explicit_size = [&](const char* key, int64_t* field) {
        if (const int64_t v = m.get_int("model", key); v > 0) *field = v;
    };
    explicit_size("layers", &s.layers);
    explicit_size("d_model", &s.d_model);
    explicit_size("heads", &s.heads);
    explicit_size("kv_heads", &s.kv_heads);
    explicit_size("ffn", &s.ffn);
    explicit_size("vocab", &s.vocab);
    const std::string tied = m.get_string("model", "tied_embeddings");
    if (tied != "preset") s.tied_embeddings = tied == "true";
    s.rope_theta = m.get_float("model", "rope_theta");
    if (s.vocab == 0) s.vocab = data_vocab;

    std::vector<std::string> errors;
    auto origin = [&](const char* key) { return section.at(key).origin; };
    const std::string label = "[model] (preset " + s.preset + ")";
    if (s.d_model % s.heads != 0)
        errors.push_back(origin("heads") + ": " + label + " d_model " + std::to_string(s.d_model) +
                         " is not divisible by heads " + std::to_string(s.heads));
    else if (s.head_dim() % 2 != 0)
        errors.push_back(origin("heads") + ": " + label + " head dimension d_model / heads = " +
                         std::to_string(s.head_dim()) + " is odd; rotary embeddings need it even");
    if (s.heads % s.kv_heads != 0)
        errors.push_back(origin("kv_heads") + ": " + label + " heads " + std::to_string(s.heads) +
                         " is not divisible by kv_heads " + std::to_string(s.kv_heads) +
                         " (grouped-query attention shares each KV head among heads / kv_heads heads)");
    if (!errors.empty()) throw ManifestError(std::move(errors));
    return s;
}

std::string format_count(double count) {
    char text[32];
    if (count >= 1e9) std::snprintf(text, sizeof text, "%.2fB", count / 1e9);
    else if (count >= 1e6) std::snprintf(text, sizeof text, "%.2fM", count / 1e6);
    else if (count >= 1e3) std::snprintf(text, sizeof text, "%.1fk", count / 1e3);
    else std::snprintf(text, sizeof text, "%.0f", count);
    return text;
}

}  // namespace pangea
