// core/checkpoint: the node-<i>.json header reader and the safetensors header reader, through
// the public calls (latest, list, inspect, verify, read, prune) on an in-memory store.
//
// Input: a first byte, then
//   even: a checkpoint as "--- <name>\n<bytes>" sections: <name> lands in step-00000001/ of
//         the prefix, or under the prefix itself when it starts with '/' ("/latest");
//   odd:  model.safetensors alone; the harness writes it as node 0's only piece, the other
//         parts, and a node-0.json with their true sizes and SHA-256, so that the safetensors
//         reader is reached.
// Properties: every call returns or throws CheckpointError; a checkpoint that reads has the
// model's parameter count.
#include <openssl/evp.h>

#include "checkpoint/checkpoint.hpp"
#include "common/json.hpp"
#include "fuzz_support.hpp"
#include "memory_storage.hpp"

namespace {

using namespace pangea;

const std::string kPrefix = "run/";

ModelShape shape(bool tied) {
    ModelShape s;
    s.preset = "custom";
    s.layers = 1;
    s.d_model = 4;
    s.heads = 2;
    s.kv_heads = 1;
    s.ffn = 8;
    s.vocab = 5;
    s.tied_embeddings = tied;
    return s;
}

std::string sha256_hex(const std::string& bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < length; ++i) out += digits[digest[i] >> 4], out += digits[digest[i] & 15];
    return out;
}

void put(const ObjectStore& store, const std::string& name, const std::string& bytes) {
    const std::string key = name.starts_with("/") ? kPrefix + name.substr(1) : checkpoint_dir(kPrefix, 1) + name;
    store.put(key, bytes);
}

// "--- name\n" sections.
void put_sections(const ObjectStore& store, const std::string& text) {
    size_t at = text.starts_with("--- ") ? 0 : text.find("\n--- ");
    if (at == std::string::npos) return;
    if (at != 0) ++at;
    while (at < text.size()) {
        const size_t name_end = text.find('\n', at);
        if (name_end == std::string::npos) return;
        const std::string name = text.substr(at + 4, name_end - at - 4);
        size_t next = text.find("\n--- ", name_end);
        const std::string content = text.substr(name_end + 1, next == std::string::npos ? std::string::npos : next - name_end - 1);
        if (!name.empty()) put(store, name, content);
        if (next == std::string::npos) return;
        at = next + 1;
    }
}

void put_generated(const ObjectStore& store, const std::string& model) {
    Json parts = Json::array();
    for (const auto& [name, bytes] : std::initializer_list<std::pair<const char*, std::string>>{
             {"shared/model.safetensors.0-of-1", model}, {"node-0/config.json", "{}\n"},
             {"shared/outer_optimizer.bin.0-of-1", ""}, {"node-0/inner_optimizer.bin", ""},
             {"node-0/manifest.toml", ""}}) {
        put(store, name, bytes);
        parts.push_back({{"name", name}, {"bytes", bytes.size()}, {"sha256", sha256_hex(bytes)}});
    }
    put(store, "node-0.json", to_json(Json{{"format", "pangea-checkpoint"},
                                           {"version", 2},
                                           {"run", "fuzz"},
                                           {"node", 0},
                                           {"step", 1},
                                           {"members", {0}},
                                           {"sampler_position", 0},
                                           {"shared", {{{"name", "model.safetensors"}, {"bytes", model.size()}},
                                                       {{"name", "outer_optimizer.bin"}, {"bytes", 0}}}},
                                           {"parts", parts}}));
    put(store, "/latest", "step-00000001\n");
}

template <class F>
void expect_checkpoint_error(F&& call) {
    try {
        call();
    } catch (const CheckpointError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Input input(data, size);
    const uint8_t mode = input.byte();
    const ObjectStore store(fuzz::memory_storage());
    if (mode & 1)
        put_generated(store, input.rest());
    else
        put_sections(store, input.rest());
    const ModelShape model = shape(mode & 2);

    expect_checkpoint_error([&] { (void)latest_checkpoint(store, kPrefix); });
    expect_checkpoint_error([&] { (void)resolve_checkpoint(store, kPrefix, "latest"); });
    expect_checkpoint_error([&] { (void)list_checkpoints(store, kPrefix); });
    expect_checkpoint_error([&] {
        std::string text;
        const CheckpointSummary summary = read_summary(store, kPrefix, 1, &text);
        (void)summary.bytes();
    });
    expect_checkpoint_error([&] {
        bool all_ok = false;
        (void)verify_checkpoint(store, kPrefix, 1, &all_ok);
    });
    expect_checkpoint_error([&] {
        const TrainingState state = read_checkpoint(store, kPrefix, 1, 0, model);
        FUZZ_CHECK(state.params.size() == parameter_count(model), "a checkpoint read with the wrong parameter count");
    });
    expect_checkpoint_error([&] { (void)prune_checkpoints(store, kPrefix, 0); });
    return 0;
}
