#include "checkpoint/checkpoint.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>

#include "common/json.hpp"

namespace pangea {
namespace {

constexpr const char* kFormat = "pangea-checkpoint";
constexpr int64_t kVersion = 2;
constexpr const char* kResidual = "error_feedback.bin";  // a node's own part, when its codec keeps one
constexpr const char* kLocal = "local_parameters.bin";   // a node's own part, with fragments
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

std::string node_name(int node) { return "node-" + std::to_string(node); }

std::string piece_name(const std::string& object, size_t k, size_t n) {
    return "shared/" + object + "." + std::to_string(k) + "-of-" + std::to_string(n);
}

std::string node_list(const std::vector<int>& nodes) {
    std::string out;
    for (int node : nodes) out += (out.empty() ? "" : ", ") + std::to_string(node);
    return out;
}

// The part of `pieces` (one object's bytes, in order) from byte `begin` to byte `end`.
std::vector<std::span<const uint8_t>> slice(const std::vector<std::span<const uint8_t>>& pieces, uint64_t begin,
                                            uint64_t end) {
    std::vector<std::span<const uint8_t>> out;
    uint64_t at = 0;
    for (std::span<const uint8_t> piece : pieces) {
        const uint64_t from = std::max(begin, at), to = std::min(end, at + piece.size());
        if (from < to) out.push_back(piece.subspan(from - at, to - from));
        at += piece.size();
    }
    return out;
}

// One node's header (node-<i>.json) of a step.
struct NodeHeader {
    std::string key;
    int node = 0;
    std::string run;
    std::vector<int> members;
    uint64_t sampler_position = 0;
    std::vector<std::pair<std::string, uint64_t>> shared;  // the shared objects' names and whole sizes
    std::vector<CheckpointPart> parts;                     // the objects it wrote
    Json json;
    std::string text;
};

NodeHeader parse_header(const std::vector<uint8_t>& bytes, const std::string& key, int64_t step) {
    NodeHeader h;
    h.key = key;
    h.text.assign(bytes.begin(), bytes.end());
    try {
        h.json = parse_json(h.text);
    } catch (const JsonError& e) {
        throw CheckpointError(key + ": not valid JSON: " + e.what());
    }
    if (!h.json.is_object()) throw CheckpointError(key + ": not a JSON object");
    if (json_string(h.json, "format") != kFormat) throw CheckpointError(key + ": not a pangea checkpoint header");
    if (integer_field(h.json, "version", key) != kVersion)
        throw CheckpointError(key + ": format version " + std::to_string(integer_field(h.json, "version", key)) +
                              ", this pangea reads version " + std::to_string(kVersion));
    if (integer_field(h.json, "step", key) != step)
        throw CheckpointError(key + ": says step " + std::to_string(integer_field(h.json, "step", key)));
    h.node = static_cast<int>(integer_field(h.json, "node", key));
    h.run = text_field(h.json, "run", key);
    h.sampler_position = static_cast<uint64_t>(integer_field(h.json, "sampler_position", key));
    for (int64_t member : integers(h.json, "members")) {
        if (member < 0 || member > std::numeric_limits<int>::max() || (!h.members.empty() && member <= h.members.back()))
            throw CheckpointError(key + ": the member list is not ascending node ids");
        h.members.push_back(static_cast<int>(member));
    }
    if (std::find(h.members.begin(), h.members.end(), h.node) == h.members.end())
        throw CheckpointError(key + ": node " + std::to_string(h.node) + " is not among its members");
    const auto shared = h.json.find("shared");
    if (shared == h.json.end() || !shared->is_array()) throw CheckpointError(key + ": no shared object list");
    for (const Json& s : *shared)
        h.shared.emplace_back(text_field(s, "name", key), static_cast<uint64_t>(integer_field(s, "bytes", key)));
    const auto parts = h.json.find("parts");
    if (parts == h.json.end() || !parts->is_array()) throw CheckpointError(key + ": no part list");
    for (const Json& p : *parts)
        h.parts.push_back({text_field(p, "name", key), static_cast<uint64_t>(integer_field(p, "bytes", key)),
                           text_field(p, "sha256", key)});
    return h;
}

// What the store holds of one step: the headers that read, and what keeps it from being whole.
struct StepView {
    int64_t step = 0;
    std::map<int, NodeHeader> headers;
    std::vector<int> members;
    std::vector<int> missing;            // members without a header
    std::vector<std::string> problems;   // unreadable or disagreeing headers

    bool complete() const { return !headers.empty() && missing.empty() && problems.empty(); }
    std::string why_incomplete(const std::string& where) const {
        std::string why;
        if (!missing.empty()) why = "node(s) " + node_list(missing) + " of its members (" + node_list(members) +
                                    ") did not finish writing their part (no node-<i>.json)";
        for (const std::string& problem : problems) why += (why.empty() ? "" : "; ") + problem;
        return where + " is incomplete: " + why;
    }
    CheckpointSummary summary() const {
        CheckpointSummary s;
        s.step = step;
        s.members = members;
        s.missing = missing;
        for (const auto& [node, h] : headers) {
            s.run = h.run;
            s.parts.insert(s.parts.end(), h.parts.begin(), h.parts.end());
        }
        return s;
    }
};

// The step's headers among `keys` (a listing of its directory, or more).
StepView read_step(const ObjectStore& store, const std::string& prefix, int64_t step,
                   const std::vector<std::pair<std::string, uint64_t>>& keys) {
    StepView view;
    view.step = step;
    const std::string dir = checkpoint_dir(prefix, step);
    for (const auto& [key, size] : keys) {
        if (!key.starts_with(dir + "node-") || !key.ends_with(".json") || key.find('/', dir.size()) != std::string::npos)
            continue;
        // Listed but gone when read: its node withdrew it (an incomplete step it left behind) or a
        // member pruned the step meanwhile. Either way it is not there. (A storage that fails is
        // an error, not a damaged header.)
        const auto text = store.get_if_present(key);
        if (!text) continue;
        try {
            NodeHeader h = parse_header(*text, key, step);
            if (key != dir + node_name(h.node) + ".json") throw CheckpointError(key + ": says node " + std::to_string(h.node));
            view.headers.emplace(h.node, std::move(h));
        } catch (const CheckpointError& e) {
            view.problems.push_back(e.what());
        }
    }
    if (view.headers.empty()) return view;
    const NodeHeader& first = view.headers.begin()->second;
    view.members = first.members;
    for (const auto& [node, h] : view.headers)
        if (h.members != first.members || h.shared != first.shared || h.run != first.run)
            view.problems.push_back(h.key + " disagrees with " + first.key + " on the run, the members or the shared objects");
    for (int member : view.members)
        if (!view.headers.count(member)) view.missing.push_back(member);
    return view;
}

StepView read_step(const ObjectStore& store, const std::string& prefix, int64_t step) {
    return read_step(store, prefix, step, store.list(checkpoint_dir(prefix, step)));
}

// The step of each key under `prefix` that lies in a step's directory, with its keys.
std::map<int64_t, std::vector<std::pair<std::string, uint64_t>>> keys_by_step(const ObjectStore& store,
                                                                              const std::string& prefix) {
    std::map<int64_t, std::vector<std::pair<std::string, uint64_t>>> out;
    for (auto& entry : store.list(prefix + "step-")) {
        const std::string tail = entry.first.substr(prefix.size());
        if (tail.size() < 14 || tail[13] != '/' ||
            !std::all_of(tail.begin() + 5, tail.begin() + 13, [](char c) { return c >= '0' && c <= '9'; }))
            continue;
        out[std::stoll(tail.substr(5, 8))].push_back(std::move(entry));
    }
    return out;
}

// Reads an object whole and checks it against its writer's header.
std::vector<uint8_t> read_part(const ObjectStore& store, const std::string& dir, const NodeHeader& header,
                               const std::string& name) {
    const auto found = std::find_if(header.parts.begin(), header.parts.end(),
                                    [&](const CheckpointPart& p) { return p.name == name; });
    if (found == header.parts.end()) throw CheckpointError(header.key + ": lists no part '" + name + "'");
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

// A shared object put back together from its members' pieces, each checked.
std::vector<uint8_t> read_shared(const ObjectStore& store, const StepView& view, const std::string& dir,
                                 const std::string& object) {
    const NodeHeader& first = view.headers.begin()->second;
    const auto declared = std::find_if(first.shared.begin(), first.shared.end(),
                                       [&](const auto& s) { return s.first == object; });
    if (declared == first.shared.end()) throw CheckpointError(first.key + ": lists no shared object '" + object + "'");
    std::vector<uint8_t> bytes;
    bytes.reserve(declared->second);
    for (size_t k = 0; k < view.members.size(); ++k) {
        const auto piece = read_part(store, dir, view.headers.at(view.members[k]), piece_name(object, k, view.members.size()));
        bytes.insert(bytes.end(), piece.begin(), piece.end());
    }
    if (bytes.size() != declared->second)
        throw CheckpointError(dir + "shared/" + object + ": its pieces add up to " + std::to_string(bytes.size()) +
                              " bytes, the headers say " + std::to_string(declared->second));
    return bytes;
}

// A complete step, or CheckpointError saying what is missing.
StepView read_complete_step(const ObjectStore& store, const std::string& prefix, int64_t step) {
    StepView view = read_step(store, prefix, step);
    const std::string where = store.name() + ": checkpoint " + step_name(step) + " under '" + prefix + "'";
    if (view.headers.empty() && view.problems.empty()) throw CheckpointError(where + " is absent");
    if (!view.complete()) throw CheckpointError(view.why_incomplete(where));
    return view;
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


bool write_checkpoint(const ObjectStore& store, const std::string& prefix, const TrainingState& state,
                      const CheckpointContext& context, const std::function<void(uint64_t)>& progress) {
    size_t count = 0;
    for (const ParameterSlot& slot : context.tensors) count = std::max(count, slot.offset + slot.count);
    if (state.params.size() != count)
        throw CheckpointError("checkpoint of step " + std::to_string(state.step) + ": " +
                              std::to_string(state.params.size()) + " parameters, the model has " + std::to_string(count));
    const std::vector<int> members = state.members.empty() ? std::vector<int>{context.node} : state.members;
    const auto position = std::find(members.begin(), members.end(), context.node);
    if (position == members.end() || !std::is_sorted(members.begin(), members.end()) ||
        std::adjacent_find(members.begin(), members.end()) != members.end())
        throw CheckpointError("checkpoint of step " + std::to_string(state.step) + ": node " +
                              std::to_string(context.node) + " is not one of the ascending members " + node_list(members));
    const size_t k = static_cast<size_t>(position - members.begin()), n = members.size();
    const std::string dir = checkpoint_dir(prefix, state.step);
    const std::string own = node_name(context.node) + "/";

    const std::string header = safetensors_header(context.tensors);
    const uint64_t header_bytes = header.size();
    uint8_t length[8];
    std::memcpy(length, &header_bytes, 8);
    const std::vector<std::pair<std::string, std::vector<std::span<const uint8_t>>>> shared = {
        {"model.safetensors",
         {std::span<const uint8_t>(length, 8), bytes_of(header),
          {reinterpret_cast<const uint8_t*>(state.params.data()), state.params.size() * 4}}},
        {"outer_optimizer.bin", {state.outer_optimizer}},
    };
    uint64_t written = 0;
    std::vector<CheckpointPart> parts;
    Json shared_list = Json::array();
    for (const auto& [object, pieces] : shared) {
        uint64_t total = 0;
        for (const auto& piece : pieces) total += piece.size();
        shared_list.push_back({{"name", object}, {"bytes", total}});
        parts.push_back(write_part(store, dir, piece_name(object, k, n), slice(pieces, total * k / n, total * (k + 1) / n),
                                   &written, progress));
    }
    const std::vector<uint8_t> inner = state.inner_optimizer_later ? state.inner_optimizer_later() : state.inner_optimizer;
    parts.push_back(write_part(store, dir, own + "inner_optimizer.bin", {inner}, &written, progress));
    // The node's own vectors of parameter length, when it has them.
    for (const auto& [name, values, what] : {std::tuple{kResidual, &state.residual, "an error-feedback residual"},
                                             std::tuple{kLocal, &state.local, "local parameters"}}) {
        if (values->empty()) continue;
        if (values->size() != count)
            throw CheckpointError("checkpoint of step " + std::to_string(state.step) + ": " + what + " of " +
                                  std::to_string(values->size()) + " values, the model has " + std::to_string(count));
        parts.push_back(write_part(store, dir, own + name,
                                   {{reinterpret_cast<const uint8_t*>(values->data()), values->size() * 4}}, &written,
                                   progress));
    }
    parts.push_back(write_part(store, dir, own + "manifest.toml", {bytes_of(state.manifest)}, &written, progress));
    if (!context.config.empty())
        parts.push_back(write_part(store, dir, own + "config.json", {bytes_of(context.config)}, &written, progress));
    Json list = Json::array();
    for (const CheckpointPart& p : parts) list.push_back({{"name", p.name}, {"bytes", p.bytes}, {"sha256", p.sha256}});
    Json model = context.model.is_object() ? context.model : Json::object();
    model["parameters"] = static_cast<int64_t>(state.params.size());
    store.put(dir + node_name(context.node) + ".json", to_json(Json{{"format", kFormat},
                                                                    {"version", kVersion},
                                                                    {"run", context.run},
                                                                    {"node", context.node},
                                                                    {"step", state.step},
                                                                    {"members", members},
                                                                    {"sampler_position", state.sampler_position},
                                                                    {"model", model},
                                                                    {"shared", shared_list},
                                                                    {"parts", list}}) +
                                                           "\n");
    // The last member in moves `latest` (never back: a slow member may finish an older step late).
    if (!read_step(store, prefix, state.step).complete()) return false;
    std::optional<int64_t> latest;
    try {
        latest = latest_checkpoint(store, prefix);
    } catch (const CheckpointError&) {
    }
    if (!latest || *latest < state.step) store.put(prefix + "latest", step_name(state.step) + "\n");
    return true;
}

std::vector<CheckpointSummary> list_checkpoints(const ObjectStore& store, const std::string& prefix,
                                                bool with_incomplete) {
    std::vector<CheckpointSummary> out;
    for (const auto& [step, keys] : keys_by_step(store, prefix)) {
        const StepView view = read_step(store, prefix, step, keys);
        if (view.complete() || (with_incomplete && !view.headers.empty())) out.push_back(view.summary());
    }
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
        const auto steps = keys_by_step(store, prefix);
        std::string incomplete;
        for (auto it = steps.rbegin(); it != steps.rend(); ++it) {  // newest first
            const StepView view = read_step(store, prefix, it->first, it->second);
            if (view.complete()) return it->first;
            incomplete += (incomplete.empty() ? "" : ", ") + std::to_string(it->first);
        }
        throw CheckpointError(store.name() + ": no complete checkpoint under '" + prefix + "'" +
                              (incomplete.empty() ? "" : " (incomplete: step(s) " + incomplete + ")"));
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
    const StepView view = read_step(store, prefix, step);
    if (view.headers.empty())
        throw CheckpointError(store.name() + ": checkpoint " + step_name(step) + " under '" + prefix + "' is absent" +
                              (view.problems.empty() ? "" : ": " + view.problems.front()));
    if (header_text) {
        header_text->clear();
        for (const auto& [node, h] : view.headers) *header_text += h.key + ":\n" + h.text;
    }
    return view.summary();
}

TrainingState read_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step, int node,
                              const ModelShape& expected) {
    return read_checkpoint(store, prefix, step, node, llama_checkpoint_tensors(expected));
}

TrainingState read_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step, int node,
                              const std::vector<ParameterSlot>& expected) {
    const StepView view = read_complete_step(store, prefix, step);
    const auto own = view.headers.find(node);
    if (own == view.headers.end())
        throw CheckpointError(store.name() + ": checkpoint " + step_name(step) + " under '" + prefix + "' has no part of node " +
                              std::to_string(node) + ": the nodes that committed that step were " +
                              node_list(view.members) + " (a node that was not among them joins with --join instead)");
    const std::string dir = checkpoint_dir(prefix, step);
    const NodeHeader& h = own->second;
    TrainingState state;
    state.step = step;
    state.members = view.members;
    state.sampler_position = h.sampler_position;
    state.params = params_from_safetensors(read_shared(store, view, dir, "model.safetensors"), expected,
                                           dir + "shared/model.safetensors");
    state.outer_optimizer = read_shared(store, view, dir, "outer_optimizer.bin");
    state.inner_optimizer = read_part(store, dir, h, node_name(node) + "/inner_optimizer.bin");
    for (const auto& [name, values] : {std::pair{kResidual, &state.residual}, std::pair{kLocal, &state.local}}) {
        const std::string part = node_name(node) + "/" + name;
        if (std::none_of(h.parts.begin(), h.parts.end(), [&](const CheckpointPart& p) { return p.name == part; }))
            continue;
        const std::vector<uint8_t> bytes = read_part(store, dir, h, part);
        if (bytes.size() != state.params.size() * 4)
            throw CheckpointError(store.name() + ": " + dir + part + " is " + std::to_string(bytes.size()) +
                                  " bytes; the model's " + std::to_string(state.params.size()) +
                                  " parameters make " + std::to_string(state.params.size() * 4));
        values->resize(state.params.size());
        std::memcpy(values->data(), bytes.data(), bytes.size());
    }
    const auto manifest = read_part(store, dir, h, node_name(node) + "/manifest.toml");
    state.manifest.assign(manifest.begin(), manifest.end());
    for (const CheckpointPart& part : h.parts)
        if (part.name.ends_with("/config.json")) read_part(store, dir, h, part.name);  // verified too
    return state;
}

std::vector<std::string> verify_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step,
                                           bool* all_ok) {
    const StepView view = read_step(store, prefix, step);
    if (view.headers.empty())
        throw CheckpointError(store.name() + ": checkpoint " + step_name(step) + " under '" + prefix + "' is absent" +
                              (view.problems.empty() ? "" : ": " + view.problems.front()));
    const std::string dir = checkpoint_dir(prefix, step);
    std::vector<std::string> lines;
    *all_ok = view.complete();
    for (int node : view.missing) lines.push_back(node_name(node) + ".json: MISSING (node " + std::to_string(node) +
                                                  " did not finish writing its part: the step is incomplete)");
    for (const std::string& problem : view.problems) lines.push_back("BAD: " + problem);
    for (const auto& [node, h] : view.headers)
        for (const CheckpointPart& part : h.parts) {
            try {
                read_part(store, dir, h, part.name);
                lines.push_back(part.name + ": ok (" + std::to_string(part.bytes) + " bytes, sha256 " +
                                part.sha256.substr(0, 16) + "...)");
            } catch (const CheckpointError& e) {
                *all_ok = false;
                lines.push_back(part.name + ": BAD: " + e.what());
            }
        }
    return lines;
}

void export_checkpoint(const ObjectStore& store, const std::string& prefix, int64_t step, const std::filesystem::path& directory) {
    const StepView view = read_complete_step(store, prefix, step);
    const std::string dir = checkpoint_dir(prefix, step);
    std::vector<std::pair<std::string, std::vector<uint8_t>>> files{
        {"model.safetensors", read_shared(store, view, dir, "model.safetensors")}};
    for (const auto& [node, h] : view.headers) {
        const std::string config = node_name(node) + "/config.json";
        const bool present = std::any_of(h.parts.begin(), h.parts.end(), [&](const auto& p) { return p.name == config; });
        if (!present) continue;  // a Python node's model has no config.json
        files.emplace_back("config.json", read_part(store, dir, h, config));
        break;
    }
    std::filesystem::create_directories(directory);
    for (const auto& [name, bytes] : files) {
        std::ofstream out(directory / name, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!out) throw CheckpointError("cannot write " + (directory / name).string());
    }
}

std::vector<int64_t> withdraw_parts_after(const ObjectStore& store, const std::string& prefix, int node, int64_t step) {
    std::vector<int64_t> withdrawn;
    for (const auto& [later, keys] : keys_by_step(store, prefix)) {
        const std::string header = checkpoint_dir(prefix, later) + node_name(node) + ".json";
        if (later <= step || std::none_of(keys.begin(), keys.end(), [&](const auto& k) { return k.first == header; }))
            continue;
        store.remove(header);
        withdrawn.push_back(later);
    }
    return withdrawn;
}

std::vector<int64_t> prune_checkpoints(const ObjectStore& store, const std::string& prefix, int keep) {
    const auto steps = keys_by_step(store, prefix);
    std::vector<int64_t> complete;
    for (const auto& [step, keys] : steps)
        if (read_step(store, prefix, step, keys).complete()) complete.push_back(step);
    std::set<int64_t> kept(complete.size() > static_cast<size_t>(keep) ? complete.end() - keep : complete.begin(),
                           complete.end());
    if (const auto latest = latest_checkpoint(store, prefix)) kept.insert(*latest);
    const int64_t newest = complete.empty() ? -1 : complete.back();
    std::vector<int64_t> doomed;
    std::vector<std::string> keys;
    for (const auto& [step, step_keys] : steps) {
        // Incomplete checkpoints newer than the newest complete one may be saves in progress.
        if (kept.count(step) || step > newest) continue;
        doomed.push_back(step);
        for (const auto& [key, bytes] : step_keys) keys.push_back(key);
    }
    // Headers go first: a checkpoint half deleted is incomplete, never mistaken for whole.
    std::stable_partition(keys.begin(), keys.end(), [&](const std::string& k) {
        return k.ends_with(".json") && k.find('/', prefix.size() + 14) == std::string::npos;
    });
    for (const std::string& key : keys) store.remove(key);
    return doomed;
}

}  // namespace pangea
