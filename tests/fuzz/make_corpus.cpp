// Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/) from the real code:
// checkpoints written by write_checkpoint, shards by write_token_shard, frames by the compression
// plugins' encoders, coordinator sessions from the messages CoordinatorClient sends. Small
// inputs only. Run by hand after a format changes (the corpus is committed):
//   cmake --build build --target fuzz-make-corpus && build/bin/fuzz-make-corpus tests/fuzz/corpus
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "../../plugins/transport/tcp/frames.hpp"
#include "checkpoint/checkpoint.hpp"
#include "common/json.hpp"
#include "common/log.hpp"
#include "data/token_shard.hpp"
#include "memory_storage.hpp"
#include "scripted_transport.hpp"
#include "membership/coordinator.hpp"
#include "recovery/state_transfer.hpp"
#include "pangea/compress.h"
#include "train/model_shape.hpp"

namespace fs = std::filesystem;
using namespace pangea;

namespace {

fs::path root;

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
    fs::create_directories(root / target);
    std::ofstream out(root / target / name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + (root / target / name).string());
}

std::string text_of(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }

ModelShape tiny(bool tied) {  // as checkpoint_fuzz.cpp's
    ModelShape s;
    s.preset = "custom";
    s.layers = 1, s.d_model = 4, s.heads = 2, s.kv_heads = 1, s.ffn = 8, s.vocab = 5;
    s.tied_embeddings = tied;
    return s;
}

void checkpoints() {
    for (const bool tied : {true, false}) {
        const ObjectStore store(fuzz::memory_storage());
        TrainingState state;
        state.step = 1;
        state.params.resize(parameter_count(tiny(tied)));
        for (size_t i = 0; i < state.params.size(); ++i) state.params[i] = static_cast<float>(i) * 0.25f - 3.0f;
        state.outer_optimizer = {1, 2, 3, 4};
        state.inner_optimizer = {5, 6};
        state.sampler_position = 42;
        state.manifest = "[run]\nname = \"fuzz\"\n";
        write_checkpoint(store, "run/", state, llama_checkpoint_context("fuzz", 0, tiny(tied), 16));
        const std::string dir = checkpoint_dir("run/", 1);
        std::string sections;
        for (const auto& [key, size] : store.list("run/")) {
            const std::string name = key.starts_with(dir) ? key.substr(dir.size()) : "/" + key.substr(4);
            sections += "--- " + name + "\n" + text_of(store.get(key)) + "\n";
        }
        const char mode = tied ? 2 : 0;
        seed("checkpoint", tied ? "written-tied" : "written-untied", std::string(1, mode) + sections);
        seed("checkpoint", tied ? "safetensors-tied" : "safetensors-untied",
             std::string(1, static_cast<char>(mode | 1)) + text_of(store.get(dir + "shared/model.safetensors.0-of-1")));
        if (tied) {
            seed("json", "checkpoint-header", text_of(store.get(dir + "node-0.json")));
            seed("json", "config.json", text_of(store.get(dir + "node-0/config.json")));
            const auto model = store.get(dir + "shared/model.safetensors.0-of-1");
            uint64_t header = 0;
            std::memcpy(&header, model.data(), 8);
            seed("json", "safetensors-header", std::string(model.begin() + 8, model.begin() + 8 + static_cast<long>(header)));
        }
    }
    seed("checkpoint", "latest-only", std::string(1, '\0') + "--- /latest\nstep-00000001\n");
}

void shards() {
    std::vector<uint32_t> tokens;
    for (uint32_t i = 0; i < 400; ++i) tokens.push_back((i * 37 + i / 5) % 257);
    const fs::path tmp = fs::temp_directory_path() / "pangea-make-corpus.tok";
    for (const uint32_t width : {2u, 4u}) {
        write_token_shard(tmp, tokens, 257, width);
        std::ifstream in(tmp, std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        seed("token_shard", "shard-u" + std::to_string(width * 8), std::string(1, '\0') + bytes);
        if (width == 2) {  // two shards in a directory, cut at the second shard's start
            write_token_shard(tmp, std::span<const uint32_t>(tokens).first(200), 0, width);
            std::ifstream first(tmp, std::ios::binary);
            const std::string a((std::istreambuf_iterator<char>(first)), std::istreambuf_iterator<char>());
            const uint16_t cut = static_cast<uint16_t>(a.size());
            std::string input(1, '\1');
            input.append(reinterpret_cast<const char*>(&cut), 2);
            seed("token_shard", "two-shards", input + a + bytes);
        }
    }
    fs::remove(tmp);
}

std::string hello(int node, bool has_state = false, int64_t step = 0, const char* waiting = "", bool join = false) {
    return to_json(Json{{"op", "hello"},
                        {"protocol", 1},
                        {"run", "5eed"},
                        {"node", node},
                        {"address", "10.0.0." + std::to_string(node) + ":7000"},
                        {"has_state", has_state},
                        {"step", step},
                        {"epoch", step},
                        {"waiting", waiting},
                        {"pending_epoch", step},
                        {"ok", false},
                        {"join", join},
                        {"incarnation", "process-" + std::to_string(node)},
                        {"nonce", "00112233445566778899aabbccddeeff"},
                        {"proof", ""}});
}

void membership() {
    const auto msg = [](char connection, const std::string& json) { return std::string("m") + connection + json + "\n"; };
    const auto ready = [&](char c, int step) { return msg(c, to_json(Json{{"op", "ready"}, {"step", step}})); };
    const auto done = [&](char c, int epoch) { return msg(c, to_json(Json{{"op", "done"}, {"epoch", epoch}, {"ok", true}})); };
    // Two nodes through two outer steps; a third joins and recovers; one leaves.
    std::string session = "\x02\nc1\nc2\n" + msg('1', hello(0)) + msg('2', hello(1)) + "t31\n" + ready('1', 1) + ready('2', 1) +
                          done('1', 1) + done('2', 1) + "c3\n" + msg('3', hello(2, false, 0, "", true)) + ready('1', 2) +
                          ready('2', 2) + msg('3', to_json(Json{{"op", "admit"}, {"step", 2}})) + done('1', 2) +
                          done('2', 2) + msg('1', to_json(Json{{"op", "beat"}})) +
                          msg('2', to_json(Json{{"op", "leave"}})) + "x3\nt40\n";
    seed("membership", "two-steps-join-leave", session);
    // A restarted coordinator: nodes come back holding state and a pending epoch.
    seed("membership", "restart",
         std::string(1, '\0') + "\nc1\nc2\n" + msg('1', hello(0, true, 4, "done")) + msg('2', hello(1, true, 4, "ready")) + ready('2', 5) + "t31\n" +
             ready('1', 5) + done('1', 5) + done('2', 5) + "t5\n");
    // With a registry (etcd) and a commit record; min_members 2.
    seed("membership", "registry",
         std::string("\x0b\nc1\nc2\nr0,1\n") + msg('1', hello(0)) + "t31\n" + msg('2', hello(1)) + "r1,1\n" + ready('1', 1) +
             ready('2', 1) + done('1', 1) + done('2', 1) + "r1,0\nt50\n");
    // What a client reads.
    seed("membership", "client-lines",
         std::string(1, '\0') + "\nm1" +
             to_json(Json{{"op", "welcome"},
                          {"role", "recover"},
                          {"step", 3},
                          {"members", encode_members({{0, "10.0.0.1:7000"}, {2, "10.0.0.3:7000"}})}}) +
             "\n");
}

void manifests() {
    std::ifstream example(PANGEA_SOURCE_DIR "/examples/local.toml");
    const std::string local((std::istreambuf_iterator<char>(example)), std::istreambuf_iterator<char>());
    seed("manifest", "local.toml", local);
    // The same without [transport] (the target's registry has no transport plugin).
    const size_t transport = local.find("[transport]");
    const size_t next = local.find("\n[", transport + 1);
    if (transport != std::string::npos && next != std::string::npos)
        seed("manifest", "local-without-transport.toml", local.substr(0, transport) + local.substr(next + 1));
    seed("manifest", "every-section.toml",
         "[run]\nname = \"fuzz\"\ndir = \"runs/fuzz\"\nseed = 7\nlog_level = \"warn\"\n\n"
         "[model]\npreset = \"small\"\nlayers = 2\nd_model = 64\nheads = 4\nkv_heads = 2\nffn = 96\nvocab = 300\n"
         "tied_embeddings = \"true\"\nrope_theta = 10000.0\n\n"
         "[data]\nseq_len = 32\n[[data.sources]]\npath = \"builtin:prose\"\nweight = 3\n[[data.sources]]\npath = \"shards/a.tok\"\nweight = 0.5\n\n"
         "[train]\nlr = 0.01\nmicro_batch = 2\n\n[diloco]\ninner_steps = 5\nouter_steps = 2\noverlap = true\n\n"
         "[mesh]\nnodes = 2\nmin_members = 1\n\n"
         "[compress]\nplugin = \"int8\"\nscheme = \"sigma\"\nblock_size = 64\n\n"
         "[optim]\nplugin = \"nesterov\"\nlr = 0.7\nmomentum = 0.9\n\n"
         "[storage]\nplugin = \"local\"\npath = \"/tmp/ck\"\n");
    seed("manifest", "overrides.toml",
         "#set diloco.inner_steps=50\n#set compress.plugin=fp16\n#env PANGEA_RUN_NAME=from-env\n#env PANGEA_TRAIN_LR=0.5\n"
         "[diloco]\nouter_steps = 3\n[compress]\nplugin = \"none\"\n");
}

void etcd() {
    const auto b64 = [](const std::string& s) {  // small, for the seeds only
        static const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        std::string out;
        for (size_t i = 0; i < s.size(); i += 3) {
            uint32_t v = static_cast<uint8_t>(s[i]) << 16;
            if (i + 1 < s.size()) v |= static_cast<uint8_t>(s[i + 1]) << 8;
            if (i + 2 < s.size()) v |= static_cast<uint8_t>(s[i + 2]);
            out += digits[(v >> 18) & 63], out += digits[(v >> 12) & 63];
            out += i + 1 < s.size() ? digits[(v >> 6) & 63] : '=';
            out += i + 2 < s.size() ? digits[v & 63] : '=';
        }
        return out;
    };
    const std::string header = "{\"cluster_id\":\"14841639068965178418\",\"member_id\":\"10276657743932975437\",\"revision\":\"12\",\"raft_term\":\"2\"}";
    seed("etcd", "lease-grant", std::string("\x00\x01", 2) + "{\"header\":" + header + ",\"ID\":\"7587862072907250180\",\"TTL\":\"5\"}\n");
    seed("etcd", "txn", std::string("\x00\x02", 2) + "{\"header\":" + header + ",\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":{\"revision\":\"12\"}}}]}\n");
    const std::string kv = "{\"key\":\"" + b64("/pangea/run/nodes/1") + "\",\"create_revision\":\"9\",\"mod_revision\":\"9\",\"version\":\"1\",\"value\":\"" +
                           b64("{\"address\":\"10.0.0.2:7000\"}") + "\",\"lease\":\"7587862072907250180\"}";
    seed("etcd", "range", std::string("\x01\x00", 2) + "{\"header\":" + header + ",\"kvs\":[" + kv + "," + kv + "],\"count\":\"2\"}\n");
    seed("etcd", "watch",
         std::string("\x02\x10", 2) + "{\"result\":{\"header\":" + header + ",\"created\":true}}\n{\"result\":{\"header\":" + header + ",\"events\":[{\"kv\":" + kv +
             "},{\"type\":\"DELETE\",\"kv\":{\"key\":\"" + b64("/pangea/run/nodes/2") + "\",\"mod_revision\":\"13\"}}]}}\n");
    seed("etcd", "watch-error", std::string("\x02\x07", 2) + "{\"result\":{\"header\":" + header + ",\"canceled\":true,\"cancel_reason\":\"compacted\"}}\n");
}

void compress() {
    PluginRegistry registry(std::vector<SearchPath>{{PANGEA_FUZZ_PLUGIN_DIR, "fuzz plugin directory"}});
    struct Case {
        const char* plugin;
        const char* name;
        std::map<std::string, SettingValue> settings;
    };
    const std::vector<Case> cases = {
        {"none", "none", {}},
        {"int8", "minmax", {{"scheme", std::string("minmax")}, {"block_size", int64_t{16}}}},
        {"int8", "sigma", {{"scheme", std::string("sigma")}, {"block_size", int64_t{16}}}},
        {"fp16", "fp16", {{"format", std::string("fp16")}}},
        {"fp16", "bf16", {{"format", std::string("bf16")}}},
        {"fp4", "e2m1-64", {{"format", std::string("e2m1")}, {"block_size", int64_t{64}}, {"scale", std::string("fp32")}}},
        {"fp4", "e2m1-8", {{"format", std::string("e2m1")}, {"block_size", int64_t{8}}, {"scale", std::string("fp32")}}},
        {"fp4", "e3m0-64", {{"format", std::string("e3m0")}, {"block_size", int64_t{64}}, {"scale", std::string("fp32")}}},
        {"fp4", "e3m0-8", {{"format", std::string("e3m0")}, {"block_size", int64_t{8}}, {"scale", std::string("fp32")}}},
        {"fp4", "e2m1-log8-16", {{"format", std::string("e2m1")}, {"block_size", int64_t{16}}, {"scale", std::string("log8")}}},
        {"fp4", "e3m0-log8-16", {{"format", std::string("e3m0")}, {"block_size", int64_t{16}}, {"scale", std::string("log8")}}},
        {"topk", "bits2-chunk16", {{"value_bits", int64_t{2}}, {"chunk", int64_t{16}}, {"density", 0.25}}},
        {"topk", "bits2-chunk100", {{"value_bits", int64_t{2}}, {"chunk", int64_t{100}}, {"density", 0.05}}},
        {"topk", "bits2-chunk8-all", {{"value_bits", int64_t{2}}, {"chunk", int64_t{8}}, {"density", 1.0}}},
        {"topk", "bits8-chunk16", {{"value_bits", int64_t{8}}, {"chunk", int64_t{16}}, {"density", 0.25}}},
        {"topk", "bits8-chunk100", {{"value_bits", int64_t{8}}, {"chunk", int64_t{100}}, {"density", 0.05}}},
        {"topk", "bits8-chunk1", {{"value_bits", int64_t{8}}, {"chunk", int64_t{1}}}},
    };
    std::map<std::string, std::string> frames;  // "<case>-<n>": the frame, for the damaged seeds below
    for (const Case& c : cases) {
        const PluginDescriptor& plugin = registry.get(PANGEA_KIND_COMPRESS, c.plugin);
        SettingMap settings = plugin.default_settings();
        for (const auto& [key, value] : c.settings) settings[key] = {value, "corpus"};
        const PluginInstance instance(plugin, settings);
        const auto& vt = instance.vtable<pangea_compress_vtable>();
        // fp4 and topk: also several blocks of 64, chunks of 100.
        const bool blocks = std::string(c.plugin) == "fp4" || std::string(c.plugin) == "topk";
        for (const size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{40}, size_t{150}}) {
            if (n == 150 && !blocks) continue;
            std::vector<float> values(n);
            for (size_t i = 0; i < n; ++i) values[i] = std::sin(static_cast<float>(i)) * 100.0f - 1.0f / (1.0f + i);
            std::string frame(vt.max_encoded_size(instance.handle(), n), '\0');
            size_t written = 0;
            if (vt.encode(instance.handle(), values.data(), n, reinterpret_cast<uint8_t*>(frame.data()), frame.size(), &written) != PANGEA_OK)
                throw std::runtime_error(std::string("encoding failed: ") + instance.last_error());
            frame.resize(written);
            seed(std::string("compress_") + c.plugin, std::string(c.name) + "-" + std::to_string(n), std::string(1, '\0') + frame);
            frames[std::string(c.name) + "-" + std::to_string(n)] = frame;
        }
    }
    // Damaged frames, each refused for one reason (but the signed zero, which decodes to 0).
    const auto damaged = [&](const std::string& target, const std::string& name, const std::string& of,
                             size_t at, uint8_t xor_with) {
        std::string frame = frames.at(of);
        frame.at(at) = static_cast<char>(static_cast<uint8_t>(frame.at(at)) ^ xor_with);
        seed(target, name, std::string(1, '\0') + frame);
    };
    const auto truncated = [&](const std::string& target, const std::string& of) {
        const std::string& frame = frames.at(of);
        seed(target, "truncated-" + of, std::string(1, '\0') + frame.substr(0, frame.size() - 1));
    };
    // fp4, 7 values in one block of 64: absmax at 24, codes at 28..31.
    truncated("compress_fp4", "e2m1-64-40");
    truncated("compress_fp4", "e3m0-8-150");
    damaged("compress_fp4", "bad-format", "e2m1-64-7", 5, 0x07);                 // format 6
    damaged("compress_fp4", "bad-block-size", "e2m1-8-40", 8, 0x0c);             // block 4
    damaged("compress_fp4", "negative-absmax", "e2m1-64-7", 27, 0x80);           // sign bit
    damaged("compress_fp4", "odd-nibble", "e2m1-64-7", 31, 0x10);                // the unused nibble
    damaged("compress_fp4", "count-off", "e3m0-8-40", 16, 0x01);                 // n 41
    {
        std::string frame = frames.at("e2m1-64-7");
        frame[28] = static_cast<char>((frame[28] & 0xf0) | 0x08);  // value 0 as the nibble 8 (-0)
        seed("compress_fp4", "signed-zero-nibble", std::string(1, '\0') + frame);
        frame = frames.at("e3m0-64-7");
        frame[26] = static_cast<char>(0xc0), frame[27] = static_cast<char>(0x7f);  // absmax: a quiet NaN
        seed("compress_fp4", "nan-absmax", std::string(1, '\0') + frame);
    }
    // topk, 40 values in chunks of 16 (k 4; 8 bits: A at 32, then 2 index bytes, 4 code bytes),
    // or of 100 (2 bits, k 2: lo and hi at 32 and 36, then 18 bits).
    truncated("compress_topk", "bits2-chunk16-40");
    truncated("compress_topk", "bits8-chunk100-150");
    damaged("compress_topk", "bad-value-bits", "bits2-chunk16-40", 5, 0x0c);      // 14 bits
    damaged("compress_topk", "kept-last-off", "bits8-chunk16-40", 16, 0x07);      // k_last 5 (a chunk of 8)
    damaged("compress_topk", "kept-above-chunk", "bits2-chunk16-40", 12, 0x10);   // k 20
    damaged("compress_topk", "negative-scale", "bits8-chunk16-40", 35, 0x80);     // A's sign bit
    damaged("compress_topk", "lo-above-hi", "bits2-chunk100-40", 39, 0x7f);       // hi's exponent lowered
    damaged("compress_topk", "index-decreasing", "bits8-chunk16-40", 36, 0xff);   // the first two indices
    damaged("compress_topk", "padding", "bits2-chunk100-40", 42, 0x80);           // bit 23 of 18
    {
        std::string frame = frames.at("bits8-chunk16-40");
        frame[38] = static_cast<char>(0x80);  // the first code: -128
        seed("compress_topk", "code-minus-128", std::string(1, '\0') + frame);
    }
}

// What a member sends a joiner, captured from StateServer::serve answering real requests.
void state_transfer() {
    auto snapshot = std::make_shared<StateSnapshot>();
    snapshot->step = 3;
    snapshot->sections.push_back({"params", std::vector<uint8_t>(100, 7), true});
    snapshot->sections.push_back({"inner", std::vector<uint8_t>(10, 1), false});
    snapshot->sections.push_back({"empty", {}, true});
    const auto request = [](int64_t min_step, uint32_t section, uint64_t offset) {
        std::string r(40, '\0');
        const uint32_t magic = 0x51524750, version = 1;  // "PGRQ"
        const uint64_t wait = 0;
        std::memcpy(r.data(), &magic, 4), std::memcpy(r.data() + 4, &version, 4), std::memcpy(r.data() + 8, &min_step, 8);
        std::memcpy(r.data() + 16, &section, 4), std::memcpy(r.data() + 24, &offset, 8), std::memcpy(r.data() + 32, &wait, 8);
        return r;
    };
    const auto answer = [&](const std::string& asked) {
        const PluginInstance transport = fuzz::scripted_transport();
        fuzz::script_of(transport).play(asked);
        StateServer server;
        server.publish(snapshot);
        server.stop();
        const auto& vt = transport.vtable<pangea_transport_vtable>();
        pangea_hello self{sizeof(pangea_hello), 0, 1, kRecoveryChannel}, peer{};
        pangea_connection* handle = nullptr;
        if (vt.connect(transport.handle(), "joiner:1", &self, 0, &peer, &handle) != PANGEA_OK)
            throw std::runtime_error("the scripted transport does not connect");
        server.serve(transport, OwnedConnection(&transport, handle), peer);
        return fuzz::script_of(transport).sent();
    };
    const std::string whole = answer(request(1, 0, 0));
    seed("state_transfer", "joiner-whole", std::string(1, '\0') + whole);
    // The first source sends section 0, then a damaged chunk of section 1; the second source
    // sends section 1 on (it is per-node: it starts over).
    std::string damaged(8, '\0');
    const uint32_t length = 10, crc = 0xdeadbeef;
    std::memcpy(damaged.data(), &length, 4), std::memcpy(damaged.data() + 4, &crc, 4);
    damaged += std::string(10, '\1');
    seed("state_transfer", "joiner-resumes",
         std::string(1, '\2') + whole.substr(0, 16 + 3 * 48 + 8 + 100) + damaged + answer(request(3, 1, 0)));
    seed("state_transfer", "joiner-none-yet", std::string(1, '\0') + answer(request(9, 0, 0)) + whole);
    seed("state_transfer", "member-request", std::string(1, '\1') + request(1, 0, 0));
    seed("state_transfer", "member-request-resume", std::string(1, '\1') + request(3, 1, 5));
}

// transport/tcp's wire format (frames.hpp) in transport_tcp_fuzz.cpp's input layout: Hellos and
// frames as the plugin's connect() and stream threads write them.
void transport_tcp() {
    using pangea::tcp::DataHeader;
    using pangea::tcp::Hello;
    constexpr uint64_t run = 0x5eed;  // as transport_tcp_fuzz.cpp's
    const auto raw = [](const auto& value) { return std::string(reinterpret_cast<const char*>(&value), sizeof value); };
    const auto u16 = [&](uint16_t v) { return raw(v); };
    const auto hello = [&](uint16_t index, uint16_t count, uint32_t status, uint64_t run_id, uint64_t nonce) {
        Hello h{};
        std::memcpy(h.magic, "PGTH", 4);
        h.version = pangea::tcp::kProtocolVersion;
        h.stream_index = index, h.stream_count = count, h.node_id = 9, h.channel = 3, h.status = status;
        h.run_id = run_id, h.nonce = nonce;
        return raw(h);
    };
    const auto frame = [&](uint16_t stream, uint64_t sequence, uint64_t message, uint64_t offset, const std::string& part, bool checksum) {
        DataHeader h{};
        std::memcpy(h.magic, "PGTD", 4);
        h.version = pangea::tcp::kProtocolVersion;
        h.stream_index = stream, h.sequence = sequence, h.message_bytes = message, h.offset = offset, h.part_bytes = part.size();
        if (checksum) h.flags = pangea::tcp::kFlagChecksum, h.checksum = pangea::tcp::crc32c(part.data(), part.size());
        return raw(h) + part;
    };
    const std::string sized(1, static_cast<char>(sizeof(Hello)));  // a raw Hello's length byte: all 40 bytes
    const std::string one = hello(0, 1, pangea::tcp::kHelloRequest, run, 1);
    // accept: mode, receive count (1 + b % 3), sizes, Hellos, data.
    seed("transport_tcp", "accept-one-message",
         std::string(1, '\0') + '\0' + u16(16) + sized + one + frame(0, 0, 16, 0, "sixteen bytes!!!", false));
    // (Every chunk but a message's last holds at least kMinChunk bytes.)
    const uint64_t min_chunk = pangea::tcp::kMinChunk;
    const std::string full(min_chunk, 'c');
    seed("transport_tcp", "accept-chunks-checksum",
         std::string(1, '\1') + '\1' + u16(min_chunk + 6) + u16(0) + frame(0, 0, min_chunk + 6, 0, full, true) +
             frame(0, 0, min_chunk + 6, min_chunk, "456789", true) + frame(0, 1, 0, 0, "", true));
    seed("transport_tcp", "accept-three-messages",
         std::string(1, '\0') + '\2' + u16(3) + u16(5) + u16(1) + sized + one + frame(0, 0, 3, 0, "abc", false) +
             frame(0, 1, 5, 0, "defgh", false) + frame(0, 2, 1, 0, "i", true));
    seed("transport_tcp", "accept-complete-message-again",
         std::string(1, '\1') + '\0' + u16(4) + frame(0, 0, 4, 0, "ping", false) + frame(0, 0, 4, 0, "pong", false));
    // Two chunks over the same bytes: PANGEA_ERR_CORRUPT (counted twice, they would complete the
    // message with a hole); a chunk shorter than kMinChunk that is not the last: the same.
    seed("transport_tcp", "accept-overlapping-chunks",
         std::string(1, '\1') + '\0' + u16(2 * min_chunk) + frame(0, 0, 2 * min_chunk, 0, full, false) +
             frame(0, 0, 2 * min_chunk, 0, full, false));
    seed("transport_tcp", "accept-short-chunk",
         std::string(1, '\1') + '\0' + u16(8) + frame(0, 0, 8, 0, "abcd", false) + frame(0, 0, 8, 4, "efgh", false));
    seed("transport_tcp", "accept-message-not-posted", std::string(1, '\1') + '\0' + u16(4) + frame(0, 3, 4, 0, "ping", false));
    seed("transport_tcp", "accept-silent-mid-chunk", std::string(1, '\1') + '\0' + u16(64) + frame(0, 0, 64, 0, std::string(64, 'h'), false).substr(0, 52));
    seed("transport_tcp", "accept-wrong-run", std::string(1, '\0') + '\0' + u16(4) + sized + hello(0, 1, 0, 0xbad, 1));
    seed("transport_tcp", "accept-garbage", std::string(1, '\0') + '\0' + u16(4) + sized + "GET / HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n");
    // Two sockets of one connection (their Hellos raw), the message striped over both.
    const std::string stream0 = frame(0, 0, min_chunk + 4, 0, full, false),
                      stream1 = frame(1, 0, min_chunk + 4, min_chunk, "efgh", false);
    seed("transport_tcp", "accept-two-streams",
         std::string(1, '\2') + '\0' + u16(min_chunk + 4) + sized + hello(0, 2, 0, run, 7) + sized + hello(1, 2, 0, run, 7) +
             u16(static_cast<uint16_t>(stream0.size())) + stream0 + stream1);
    // A correct sender's frames (written by the target): chunk size, stream picks, payload.
    seed("transport_tcp", "accept-sender", std::string(1, '\4') + '\1' + u16(300) + u16(7) + u16(64) + raw(uint64_t{0}) + "payload");
    seed("transport_tcp", "accept-sender-two-streams-checksum",
         std::string(1, '\x0e') + '\2' + u16(1000) + u16(0) + u16(33) + u16(100) + raw(uint64_t{0xa5a5a5a5a5a5a5a5}) + "stripes");
    // connect: mode, receive count, sizes, answers (a length byte and the bytes, or a status byte),
    // data; then the raw side closes.
    const std::string accepted = hello(0, 1, pangea::tcp::kHelloAccepted, run, 1);
    seed("transport_tcp", "connect-accepted", std::string(1, '\x10') + '\0' + u16(4) + sized + accepted + frame(0, 0, 4, 0, "ping", false));
    seed("transport_tcp", "connect-closed-mid-chunk",
         std::string(1, '\x11') + '\0' + u16(64) + '\1' + frame(0, 0, 64, 0, std::string(64, 'h'), true).substr(0, 60));
    seed("transport_tcp", "connect-two-streams-wrong-run", std::string(1, '\x13') + '\0' + u16(4) + '\1' + '\2');
    seed("transport_tcp", "connect-short-answer",
         std::string(1, '\x12') + '\0' + u16(4) + sized + hello(0, 2, 1, run, 1) + '\x14' + hello(1, 2, 1, run, 1));
    seed("transport_tcp", "connect-two-streams",
         std::string(1, '\x13') + '\0' + u16(min_chunk + 4) + '\1' + '\1' + u16(static_cast<uint16_t>(stream0.size())) + stream0 +
             stream1);
    seed("transport_tcp", "connect-sender-two-streams",
         std::string(1, '\x16') + '\2' + u16(500) + u16(3) + u16(0) + u16(64) + raw(uint64_t{0x0123456789abcdef}) + "stripes");
    // unit: a Hello, a DataHeader, the stream, max_message.
    seed("transport_tcp", "unit", std::string(1, '\x20') + hello(1, 2, 0, run, 1) + frame(1, 0, 100, 40, std::string(60, 'x'), true).substr(0, 48) +
                                      u16(1) + raw(uint64_t{1} << 20));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: fuzz-make-corpus <tests/fuzz/corpus>\n";
        return 2;
    }
    root = argv[1];
    set_log_level(PANGEA_LOG_WARN);
    checkpoints();
    shards();
    membership();
    manifests();
    etcd();
    compress();
    state_transfer();
    transport_tcp();
    seed("json", "message",
         to_json(Json{{"op", "epoch"}, {"epoch", 3}, {"step", 7}, {"members", encode_members({{0, "a:1"}, {1, "b:2"}})}}));
    seed("json", "nested", "{\"a\":[1,-2.5e3,true,false,null,{\"b\":\"\\u00e9\\n\\\"\"}],\"c\":{}}");
    seed("json", "escapes", to_json(Json{{"text", std::string("a\nb\"c\\d\x01\x1f caf\xc3\xa9 \xf0\x9f\x98\x80")}}));
    std::cout << "wrote the seed corpus under " << root << "\n";
    return 0;
}
