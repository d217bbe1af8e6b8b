#include "checkpoint/checkpoint.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>

#include "common/json.hpp"

namespace pangea {
namespace {

constexpr const char* kFormat = "pangea-checkpoint";
constexpr int64_t kVersion = 1;
constexpr size_t kChunk = 8u << 20;

class Sha256 {
public:
    Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
            throw CheckpointError("SHA-256 is not available (OpenSSL)");
    }
    void update(std::span<const uint8_t> bytes) { EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size()); }
    std::string hex() {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int length = 0;
        EVP_DigestFinal_ex(ctx_.get(), digest, &length);
        static const char* digits = "0123456789abcdef";
        std::string out;
        for (unsigned i = 0; i < length; ++i) out += digits[digest[i] >> 4], out += digits[digest[i] & 15];
        return out;
    }

private:
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

std::span<const uint8_t> bytes_of(const std::string& text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// Writes one part from `pieces` (in order), hashing as it goes.
CheckpointPart write_part(const ObjectStore& store, const std::string& dir, const std::string& name,
                          const std::vector<std::span<const uint8_t>>& pieces, uint64_t* written,
                          const std::function<void(uint64_t)>& progress) {
    CheckpointPart part{name, 0, ""};
    Sha256 hash;
    ObjectStore::Writer writer = store.open(dir + name);
    for (std::span<const uint8_t> piece : pieces) {
        for (size_t at = 0; at < piece.size(); at += kChunk) {
            const auto chunk = piece.subspan(at, std::min(kChunk, piece.size() - at));
            writer.write(chunk);
            hash.update(chunk);
            part.bytes += chunk.size();
            *written += chunk.size();
            if (progress) progress(*written);
        }
    }
    writer.commit();
    part.sha256 = hash.hex();
    return part;
}

std::string safetensors_header(const std::vector<ParameterSlot>& tensors) {
    Json json{{"__metadata__", {{"format", "pt"}, {"writer", "pangea"}}}};
    for (const ParameterSlot& slot : tensors)
        json[slot.name] = {{"dtype", "F32"},
                                              {"shape", slot.shape},
                                              {"data_offsets", {slot.offset * 4, (slot.offset + slot.count) * 4}}};
    std::string header = to_json(json);
    header.append((8 - header.size() % 8) % 8, ' ');  // the tensors start 8-byte aligned
    return header;
}

std::string step_name(int64_t step) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
    return name;
}

int64_t integer_field(const Json& object, const char* key, const std::string& where) {
    const auto v = json_int(object, key);
    if (!v) throw CheckpointError(where + ": the header has no integer '" + key + "'");
    return *v;
}

std::string text_field(const Json& object, const char* key, const std::string& where) {
    const auto v = json_string(object, key);
    if (!v) throw CheckpointError(where + ": the header has no text '" + key + "'");
    return *v;
}

// The integers of a list field (-1 for an item that is none: reading a float, or one out of
// range, as an integer would be undefined behaviour); empty when there is no such list.
std::vector<int64_t> integers(const Json& object, const char* key) {
    std::vector<int64_t> out;
    const auto list = object.is_object() ? object.find(key) : object.end();
    if (list == object.end() || !list->is_array()) return out;
    for (const Json& item : *list) out.push_back(json_int(Json{{"v", item}}, "v").value_or(-1));
    return out;
}

struct Header {
    CheckpointSummary summary;
    Json json;
};

Header read_header(const ObjectStore& store, const std::string& prefix, int64_t step, std::string* text_out) {
    const std::string key = checkpoint_dir(prefix, step) + "checkpoint.json";
    if (!store.size(key))
        throw CheckpointError(store.name() + ": checkpoint " + step_name(step) + " under '" + prefix +
                              "' is incomplete or absent (no " + key + ")");
    const auto bytes = store.get(key);
    const std::string text(bytes.begin(), bytes.end());
    if (text_out) *text_out = text;
    Header h;
    try {
        h.json = parse_json(text);
    } catch (const JsonError& e) {
        throw CheckpointError(key + ": not valid JSON: " + e.what());
    }
    if (!h.json.is_object()) throw CheckpointError(key + ": not a JSON object");
    if (json_string(h.json, "format") != kFormat) throw CheckpointError(key + ": not a pangea checkpoint header");
    if (integer_field(h.json, "version", key) != kVersion)
        throw CheckpointError(key + ": format version " + std::to_string(integer_field(h.json, "version", key)) +
                              ", this pangea reads version " + std::to_string(kVersion));
    h.summary.step = integer_field(h.json, "step", key);
    h.summary.key = key;
    h.summary.run = text_field(h.json, "run", key);
    h.summary.node = static_cast<int>(integer_field(h.json, "node", key));
    const auto parts = h.json.find("parts");
    if (parts == h.json.end() || !parts->is_array()) throw CheckpointError(key + ": no part list");
    for (const Json& p : *parts)
        h.summary.parts.push_back({text_field(p, "name", key), static_cast<uint64_t>(integer_field(p, "bytes", key)),
                                   text_field(p, "sha256", key)});
    return h;
}

// Reads a part whole and checks it against the header.
std::vector<uint8_t> read_part(const ObjectStore& store, const std::string& dir, const CheckpointSummary& summary,
                               const std::string& name) {
    const auto found = std::find_if(summary.parts.begin(), summary.parts.end(),
                                    [&](const CheckpointPart& p) { return p.name == name; });
    if (found == summary.parts.end()) throw CheckpointError(summary.key + ": lists no part '" + name + "'");
    const std::string key = dir + name;
    const auto size = store.size(key);
    if (!size) throw CheckpointError("checkpoint part " + key + " is missing");
    if (*size != found->bytes)
        throw CheckpointError("checkpoint part " + key + " is " + std::to_string(*size) + " bytes, the header says " +
                              std::to_string(found->bytes) + " (truncated or replaced)");
    std::vector<uint8_t> bytes = store.get(key);
    Sha256 hash;
    hash.update(bytes);
    if (hash.hex() != found->sha256)
        throw CheckpointError("checkpoint part " + key + " is corrupt: its SHA-256 does not match the header's");
    return bytes;
}

// The parameters from a safetensors file this format wrote, checked against the model's layout.
std::vector<float> params_from_safetensors(const std::vector<uint8_t>& file, const std::vector<ParameterSlot>& tensors,
                                           const std::string& key) {
    if (file.size() < 8) throw CheckpointError(key + ": too short for safetensors");
    uint64_t header_bytes = 0;
    std::memcpy(&header_bytes, file.data(), 8);
    if (header_bytes > file.size() - 8) throw CheckpointError(key + ": the header length runs past the end");
    Json header;
    try {
        header = parse_json(std::string_view(reinterpret_cast<const char*>(file.data() + 8), header_bytes));
    } catch (const JsonError& e) {
        throw CheckpointError(key + ": bad safetensors header: " + e.what());
    }
    const size_t data_start = 8 + header_bytes;
    size_t count = 0;
    for (const ParameterSlot& slot : tensors) count = std::max(count, slot.offset + slot.count);
    std::vector<float> params(count);
    for (const ParameterSlot& slot : tensors) {
        const std::string& name = slot.name;
        const auto tensor = header.is_object() ? header.find(name) : header.end();
        if (tensor == header.end())
            throw CheckpointError(key + ": no tensor " + name + ": the checkpoint is of another model");
        if (integers(*tensor, "shape") != slot.shape || text_field(*tensor, "dtype", key) != "F32")
            throw CheckpointError(key + ": tensor " + name + " has another shape or dtype than this model's");
        const std::vector<int64_t> offsets = integers(*tensor, "data_offsets");
        if (offsets.size() != 2 || offsets[0] < 0 || offsets[1] < 0)
            throw CheckpointError(key + ": tensor " + name + " has no data_offsets");
        const auto begin = static_cast<uint64_t>(offsets[0]);
        const auto end = static_cast<uint64_t>(offsets[1]);
        if (end < begin || end - begin != slot.count * 4 || end > file.size() - data_start)
            throw CheckpointError(key + ": tensor " + name + " has bad data_offsets");
        std::memcpy(params.data() + slot.offset, file.data() + data_start + begin, slot.count * 4);
    }
    return params;
}

}  // namespace

uint64_t CheckpointSummary::bytes() const {
    uint64_t total = 0;
    for (const auto& p : parts) total += p.bytes;
    return total;
}

std::string checkpoint_dir(const std::string& prefix, int64_t step) { return prefix + step_name(step) + "/"; }

std::string hugging_face_name(const std::string& name) {
    static const std::pair<const char*, const char*> kRenames[] = {
        {"attention_norm", "input_layernorm.weight"},   {"attention.wq", "self_attn.q_proj.weight"},
        {"attention.wk", "self_attn.k_proj.weight"},    {"attention.wv", "self_attn.v_proj.weight"},
        {"attention.wo", "self_attn.o_proj.weight"},    {"ffn_norm", "post_attention_layernorm.weight"},
        {"feed_forward.w1", "mlp.gate_proj.weight"},    {"feed_forward.w3", "mlp.up_proj.weight"},
        {"feed_forward.w2", "mlp.down_proj.weight"},
    };
    if (name == "tok_embeddings") return "model.embed_tokens.weight";
    if (name == "norm") return "model.norm.weight";
    if (name == "output") return "lm_head.weight";
    const size_t dot = name.find('.', std::string("layers.").size());
    if (name.rfind("layers.", 0) == 0 && dot != std::string::npos) {
        const std::string rest = name.substr(dot + 1);
        for (const auto& [ours, theirs] : kRenames)
            if (rest == ours) return "model." + name.substr(0, dot + 1) + theirs;
    }
    return name;
}

std::string hugging_face_config(const ModelShape& s, int64_t context) {
    return to_json(Json{{"architectures", {"LlamaForCausalLM"}},
                        {"model_type", "llama"},
                        {"hidden_size", s.d_model},
                        {"intermediate_size", s.ffn},
                        {"num_hidden_layers", s.layers},
                        {"num_attention_heads", s.heads},
                        {"num_key_value_heads", s.kv_heads},
                        {"head_dim", s.head_dim()},
                        {"vocab_size", s.vocab},
                        {"max_position_embeddings", context},
                        {"rms_norm_eps", s.norm_eps},
                        {"rope_theta", s.rope_theta},
                        {"tie_word_embeddings", s.tied_embeddings},
                        {"hidden_act", "silu"},
                        {"attention_bias", false},
                        {"mlp_bias", false},
                        {"torch_dtype", "float32"}}) +
           "\n";
}

CheckpointContext llama_checkpoint_context(const std::string& run, int node, const ModelShape& s, int64_t context) {
    return {run,
            node,
            llama_checkpoint_tensors(s),
            hugging_face_config(s, context),
            Json{{"preset", s.preset},
                 {"layers", s.layers},
                 {"d_model", s.d_model},
                 {"heads", s.heads},
                 {"kv_heads", s.kv_heads},
                 {"ffn", s.ffn},
                 {"vocab", s.vocab}}};
}

std::vector<ParameterSlot> llama_checkpoint_tensors(const ModelShape& shape) {
    std::vector<ParameterSlot> tensors = parameter_layout(shape);
    for (ParameterSlot& slot : tensors) slot.name = hugging_face_name(slot.name);
    return tensors;
}

void write_checkpoint(const ObjectStore& store, const std::string& prefix, const TrainingState& state,
                      const CheckpointContext& context, const std::function<void(uint64_t)>& progress) {
    size_t count = 0;
    for (const ParameterSlot& slot : context.tensors) count = std::max(count, slot.offset + slot.count);
    if (state.params.size() != count)
        throw CheckpointError("checkpoint of step " + std::to_string(state.step) + ": " +
                              std::to_string(state.params.size()) + " parameters, the model has " + std::to_string(count));
    const std::string dir = checkpoint_dir(prefix, state.step);
    const std::string header = safetensors_header(context.tensors);
    const uint64_t header_bytes = header.size();
    uint8_t length[8];
    std::memcpy(length, &header_bytes, 8);
    uint64_t written = 0;
    std::vector<CheckpointPart> parts;
    parts.push_back(write_part(store, dir, "model.safetensors",
                               {std::span<const uint8_t>(length, 8), bytes_of(header),
                                {reinterpret_cast<const uint8_t*>(state.params.data()), state.params.size() * 4}},
                               &written, progress));
    if (!context.config.empty())
        parts.push_back(write_part(store, dir, "config.json", {bytes_of(context.config)}, &written, progress));
    parts.push_back(write_part(store, dir, "outer_optimizer.bin", {state.outer_optimizer}, &written, progress));
    const std::vector<uint8_t> inner = state.inner_optimizer_later ? state.inner_optimizer_later() : state.inner_optimizer;
    parts.push_back(write_part(store, dir, "inner_optimizer.bin", {inner}, &written, progress));
    parts.push_back(write_part(store, dir, "manifest.toml", {bytes_of(state.manifest)}, &written, progress));
    Json list = Json::array();
    for (const CheckpointPart& p : parts) list.push_back({{"name", p.name}, {"bytes", p.bytes}, {"sha256", p.sha256}});
    Json model = context.model.is_object() ? context.model : Json::object();
    model["parameters"] = static_cast<int64_t>(state.params.size());
    const std::string checkpoint = to_json(Json{{"format", kFormat},
                                                {"version", kVersion},
                                                {"run", context.run},
                                                {"node", context.node},
                                                {"step", state.step},
                                                {"sampler_position", state.sampler_position},
                                                {"model", model},
                                                {"parts", list}}) +
                                   "\n";
    store.put(dir + "checkpoint.json", checkpoint);
    store.put(prefix + "latest", step_name(state.step) + "\n");
}

std::vector<CheckpointSummary> list_checkpoints(const ObjectStore& store, const std::string& prefix) {
    std::vector<CheckpointSummary> out;
    for (const auto& [key, bytes] : store.list(prefix + "step-")) {
        const std::string tail = key.substr(prefix.size());
        if (tail.size() != std::string("step-00000000/checkpoint.json").size() || tail.substr(13) != "/checkpoint.json")
            continue;
        try {
            out.push_back(read_header(store, prefix, std::stoll(tail.substr(5, 8)), nullptr).summary);
        } catch (const std::exception&) {
            continue;  // unreadable: not listed as complete (inspect it to see why)
        }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
    return out;
}

std::optional<int64_t> latest_checkpoint(const ObjectStore& store, const std::string& prefix) {
    if (!store.size(prefix + "latest")) return std::nullopt;
    const auto bytes = store.get(prefix + "latest");
    const std::string text(bytes.begin(), bytes.end());
    if (text.rfind("step-", 0) != 0 || text.size() < 13)
        throw CheckpointError(store.name() + ": " + prefix + "latest does not name a checkpoint: '" + text.substr(0, 40) + "'");
    try {
        return std::stoll(text.substr(5, 8));
    } catch (const std::exception&) {
        throw CheckpointError(store.name() + ": " + prefix + "latest does not name a checkpoint: '" + text.substr(0, 40) + "'");
    }
}

int64_t resolve_checkpoint(const ObjectStore& store, const std::string& prefix, const std::string& which) {
    if (which == "latest") {
        const auto step = latest_checkpoint(store, prefix);
        if (!step) throw CheckpointError(store.name() + ": no checkpoint under '" + prefix + "' (no " + prefix + "latest)");
        return *step;
    }
    try {
        size_t used = 0;
        const int64_t step = std::stoll(which, &used);
        if (used == which.size() && step >= 0) return step;
    } catch (const std::exception&) {
    }
    throw CheckpointError("'" + which + "' is neither 'latest' nor an outer step number");
}

CheckpointSummary read_summary(const ObjectStore& store, const std::string& prefix, int64_t step, std::string* header_text) {
    return read_header(store, prefix, step, header_text).summary;
}

TrainingState read_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step, const ModelShape& expected) {
    return read_checkpoint(store, prefix, step, llama_checkpoint_tensors(expected));
}

TrainingState read_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                              const std::vector<ParameterSlot>& expected) {
    const Header header = read_header(store, prefix, step, nullptr);
    const std::string dir = checkpoint_dir(prefix, step);
    TrainingState state;
    state.step = header.summary.step;
    state.sampler_position = static_cast<uint64_t>(integer_field(header.json, "sampler_position", header.summary.key));
    state.params = params_from_safetensors(read_part(store, dir, header.summary, "model.safetensors"), expected,
                                           dir + "model.safetensors");
    state.outer_optimizer = read_part(store, dir, header.summary, "outer_optimizer.bin");
    state.inner_optimizer = read_part(store, dir, header.summary, "inner_optimizer.bin");
    const auto manifest = read_part(store, dir, header.summary, "manifest.toml");
    state.manifest.assign(manifest.begin(), manifest.end());
    for (const CheckpointPart& part : header.summary.parts)
        if (part.name == "config.json") read_part(store, dir, header.summary, part.name);  // verified too
    return state;
}

std::vector<std::string> verify_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                                           bool* all_ok) {
    const Header header = read_header(store, prefix, step, nullptr);
    const std::string dir = checkpoint_dir(prefix, step);
    std::vector<std::string> lines;
    *all_ok = true;
    for (const CheckpointPart& part : header.summary.parts) {
        try {
            read_part(store, dir, header.summary, part.name);
            lines.push_back(part.name + ": ok (" + std::to_string(part.bytes) + " bytes, sha256 " + part.sha256.substr(0, 16) + "...)");
        } catch (const CheckpointError& e) {
            *all_ok = false;
            lines.push_back(part.name + ": BAD: " + e.what());
        }
    }
    return lines;
}

void export_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step, const std::filesystem::path& directory) {
    const Header header = read_header(store, prefix, step, nullptr);
    const std::string dir = checkpoint_dir(prefix, step);
    std::filesystem::create_directories(directory);
    for (const char* name : {"model.safetensors", "config.json"}) {
        const bool present = std::any_of(header.summary.parts.begin(), header.summary.parts.end(),
                                         [&](const CheckpointPart& part) { return part.name == name; });
        if (!present) continue;  // a Python node's model has no config.json
        const auto bytes = read_part(store, dir, header.summary, name);
        std::ofstream out(directory / name, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!out) throw CheckpointError("cannot write " + (directory / name).string());
    }
}

std::vector<int64_t> prune_checkpoints(const ObjectStore& store, const std::string& prefix, int keep) {
    const auto complete = list_checkpoints(store, prefix);
    const auto latest = latest_checkpoint(store, prefix);
    std::set<int64_t> kept;
    for (size_t i = complete.size() > static_cast<size_t>(keep) ? complete.size() - keep : 0; i < complete.size(); ++i)
        kept.insert(complete[i].step);
    if (latest) kept.insert(*latest);
    const int64_t newest = complete.empty() ? -1 : complete.back().step;
    std::set<int64_t> doomed;
    std::vector<std::string> keys;
    for (const auto& [key, bytes] : store.list(prefix + "step-")) {
        const std::string tail = key.substr(prefix.size());
        int64_t step = -1;
        try {
            step = std::stoll(tail.substr(5, 8));
        } catch (const std::exception&) {
            continue;
        }
        // Incomplete checkpoints newer than the newest complete one may be a save in progress.
        if (kept.count(step) || step > newest) continue;
        doomed.insert(step);
        keys.push_back(key);
    }
    // The header goes first: a checkpoint half deleted is incomplete, never mistaken for whole.
    std::stable_partition(keys.begin(), keys.end(), [](const std::string& k) { return k.ends_with("/checkpoint.json"); });
    for (const std::string& key : keys) store.remove(key);
    return {doomed.begin(), doomed.end()};
}

}  // namespace pangea
