#include "manifest/schema.hpp"

#include <string>

#include "plugin_host/kinds.hpp"

namespace pangea {
namespace {

constexpr double kNoRange[2] = {1.0, 0.0};  // min > max: no range

constexpr pangea_setting text(const char* name, const char* def, const char* help,
                              const char* choices = nullptr) {
    return {name, PANGEA_SETTING_STRING, def, help, kNoRange[0], kNoRange[1], choices};
}
constexpr pangea_setting integer(const char* name, const char* def, const char* help, double lo,
                                 double hi) {
    return {name, PANGEA_SETTING_INT, def, help, lo, hi, nullptr};
}
constexpr pangea_setting number(const char* name, const char* def, const char* help, double lo,
                                double hi) {
    return {name, PANGEA_SETTING_FLOAT, def, help, lo, hi, nullptr};
}
constexpr pangea_setting flag(const char* name, const char* def, const char* help) {
    return {name, PANGEA_SETTING_BOOL, def, help, kNoRange[0], kNoRange[1], nullptr};
}

constexpr double kMaxInt = 9007199254740992.0;  // 2^53: exact in a double

constexpr pangea_setting kRun[] = {
    text("name", "pangea", "name of the run; nodes of one run must agree on it"),
    text("dir", "runs", "directory for the run's logs, metrics and local state"),
    integer("seed", "0", "seed for initialization and data order", 0, kMaxInt),
    text("log_level", "info", "least severe log level printed", "debug|info|warn|error"),
    text("entry", "", "what `pangea launch` starts for each node instead of `pangea run`: a shell command, "
                      "e.g. \"python3 train.py\" for Python nodes (docs/python.md); empty: the built-in C++ node"),
};
constexpr pangea_setting kModel[] = {
    text("preset", "tiny", "model shape by name: tiny (~0.8M), small (~25M), 1b (Llama-3.2-1B), 10b (INTELLECT-1)",
         "tiny|small|1b|10b"),
    integer("layers", "0", "transformer blocks (0: the preset's)", 0, 1024),
    integer("d_model", "0", "hidden size (0: the preset's)", 0, 1048576),
    integer("heads", "0", "attention heads (0: the preset's)", 0, 4096),
    integer("kv_heads", "0", "key/value heads for grouped-query attention (0: the preset's)", 0, 4096),
    integer("ffn", "0", "SwiGLU hidden size (0: the preset's)", 0, 4194304),
    integer("vocab", "0", "vocabulary size (0: the preset's; tiny and small take the data's)", 0, 16777216),
    text("tied_embeddings", "preset", "share the input embedding with the output projection", "preset|true|false"),
    number("rope_theta", "500000", "base of the rotary embedding frequencies", 1.0, 1e12),
};
constexpr pangea_setting kData[] = {
    integer("seq_len", "128", "tokens per training sequence", 8, 1048576),
    integer("eval_sequences", "64", "held-out sequences in each evaluation", 1, 1e9),
};
constexpr pangea_setting kTrain[] = {
    number("lr", "0.001", "peak learning rate of the inner AdamW", 0.0, 10.0),
    number("beta1", "0.9", "AdamW beta1", 0.0, 0.999999),
    number("beta2", "0.95", "AdamW beta2", 0.0, 0.999999),
    number("weight_decay", "0.1", "AdamW weight decay", 0.0, 10.0),
    number("grad_clip", "1.0", "clip the gradient norm to this (0: off)", 0.0, 1e6),
    integer("micro_batch", "8", "sequences per forward/backward pass", 1, 65536),
    integer("grad_accum", "1", "micro-batches per inner step", 1, 65536),
    integer("warmup_steps", "0", "linear warmup length in inner steps", 0, kMaxInt),
    number("decay_fraction", "0.2", "share of all inner steps spent decaying the learning rate at the end "
           "(warmup-stable-decay)", 0.0, 1.0),
    text("decay", "linear", "shape of the decay to min_lr_ratio x lr", "linear|sqrt"),
    number("min_lr_ratio", "0.1", "learning rate at the end, as a fraction of lr", 0.0, 1.0),
    number("z_loss", "0", "weight of the z-loss (mean squared log-partition; 0: off)", 0.0, 1.0),
    integer("eval_interval", "1", "outer steps between held-out evaluations (0: only at the end)", 0, 1e9),
    integer("threads", "0", "compute threads per node (0: all cores)", 0, 4096),
    text("device", "cpu", "where the model, its gradients and the AdamW moments live: cpu, cuda or cuda:N (the "
         "synced copy and the outer optimizer's state stay in host memory)"),
    text("precision", "fp32", "type of the matrix products: fp32, or bf16 (parameters, gradients and AdamW "
         "moments stay fp32)", "fp32|bf16"),
    flag("activation_checkpointing", "false", "keep only each block's input in the forward pass and recompute "
         "the rest in the backward pass: activation memory of one block instead of all, ~1/3 more compute"),
};
constexpr pangea_setting kDiloco[] = {
    integer("inner_steps", "100", "inner steps (H) between outer steps", 1, 1e9),
    integer("outer_steps", "10", "outer steps to run", 1, 1e9),
    integer("fragments", "1", "Streaming DiLoCo: the parameters are cut into this many fragments, synced in turn, "
            "one every inner_steps / fragments inner steps (each every inner_steps)", 1, 4096),
    flag("overlap", "false", "each sync's all-reduce runs while the next round's inner steps do; its average lands "
         "at the end of that round"),
    number("overlap_alpha", "0.5", "overlap: when a fragment's average lands, its local values become alpha x local + "
           "(1 - alpha) x synced", 0.0, 1.0),
    number("outlier_factor", "10",
           "a member's pseudo-gradient with a norm over this many times the members' median is left out of the "
           "outer step, as is one with NaN/Inf (0: check NaN/Inf only)",
           0, 1e12),
    integer("quorum", "0", "stragglers: once this many members are ready for an outer step and grace_ms has passed, "
            "the others end the inner step they are in and join it; each member's pseudo-gradient is weighed by the "
            "inner steps it trained (0: off, every step waits for every member)", 0, 4096),
    integer("grace_ms", "1000", "quorum: how long the members still training get after the quorum is ready", 0,
            86400000),
};
constexpr pangea_setting kMesh[] = {
    integer("nodes", "4", "node ids in the run (0 .. nodes-1), each reading its own part of the data", 1, 4096),
    text("backend", "builtin", "membership store: the builtin coordinator, or etcd (the nodes elect a coordinator)",
         "builtin|etcd"),
    text("etcd", "http://127.0.0.1:2379", "etcd endpoints, for backend = etcd: http(s)://host:port, several of one "
         "cluster separated by commas (tried in turn)"),
    text("etcd_ca_file", "", "etcd over TLS: PEM file of the CA that signed etcd's certificate (empty: the system's CAs)"),
    text("etcd_cert_file", "", "etcd over TLS with client certificates (etcd --client-cert-auth): this node's PEM "
         "certificate"),
    text("etcd_key_file", "", "and its PEM key"),
    text("etcd_user", "", "etcd with auth enabled (etcdctl auth enable): the user the nodes act as"),
    text("etcd_password_file", "", "file holding etcd_user's password (never the manifest itself)"),
    integer("coordinator_port", "0", "backend = etcd: the port the elected node's coordinator listens on, on the host "
            "of its address (0: any; give one when a firewall sits between the nodes)", 0, 65535),
    text("coordinator", "", "host:port of the builtin coordinator (pangea launch starts one and sets it)"),
    text("secret_file", "", "file holding the run's shared secret (nodes and coordinator prove they know it)"),
    text("secret_env", "", "environment variable holding the run's shared secret, when secret_file is not set"),
    text("address", "127.0.0.1:0", "address this node listens on (port 0: any)"),
    integer("heartbeat_ms", "1000", "interval between heartbeats", 10, 600000),
    integer("timeout_ms", "3000", "silence after which a peer is declared dead", 50, 3600000),
    integer("min_members", "1", "fewest nodes that may run an outer step; fewer wait for joiners", 1, 4096),
    integer("coordinator_wait_ms", "60000", "how long a node keeps trying to reach a coordinator that went away",
            1000, 86400000),
    integer("recovery_timeout_ms", "600000", "how long a joining node may take to fetch the state from its peers",
            1000, 86400000),
    text("ring_order", "measured", "order of the all-reduce ring: by rank, or by bandwidth probes at setup",
         "rank|measured"),
    integer("probe_bytes", "4194304", "size of each bandwidth probe for ring_order = measured (per pair of nodes and "
            "direction, once for each new member set)", 4096, 1073741824),
    integer("rings", "0", "rings the outer all-reduce runs at once, each over its own share of the buffer and its own "
            "connections: on links where one flow gets less than the link, R rings move up to R times as much; "
            "every node of the run must agree; with [node] workers = W, a multiple of W (each worker runs R/W); "
            "0: one per worker (for a coordinator: the first node's)", 0, 64),
    text("aggregation", "codec", "how the nodes' compressed contributions combine: ring (every hop decodes, adds and "
         "re-encodes partial sums), gather (each node's contribution encoded once, all-gathered, and decoded and "
         "added in node order by every node), or codec: as the compress plugin asks (docs/plugins/compress.md); "
         "every node of the run must agree", "codec|ring|gather"),
};
constexpr pangea_setting kCheckpoint[] = {
    integer("interval", "0", "outer steps between checkpoints (0: none)", 0, 1e9),
    flag("async", "true", "write checkpoints in the background while training continues"),
    integer("keep", "3", "complete checkpoints of the run kept (older ones are deleted)", 1, 1000000),
    text("when_busy", "wait", "a checkpoint due while the previous one is still being written: wait for it, or skip this one",
         "wait|skip"),
    text("prefix", "", "where in the storage the run's checkpoints go: <prefix>/step-<n>/ (empty: the run's name)"),
};
constexpr pangea_setting kNode[] = {
    integer("workers", "1", "local processes of each node, sharing one replica of the model: each inner step "
            "splits the node's batch among them (micro_batch / workers sequences each) and sums their gradients; "
            "[train] threads counts per worker (0: the cores split among them)", 1, 1024),
};

constexpr CoreSection kCoreSections[] = {
    {"run", "the run as a whole", kRun},
    {"model", "the model's architecture", kModel},
    {"data", "training data", kData},
    {"train", "the inner optimization on each node", kTrain},
    {"diloco", "the outer loop", kDiloco},
    {"mesh", "membership and addresses of the nodes", kMesh},
    {"checkpoint", "when and how to save state", kCheckpoint},
    {"node", "the processes of one node", kNode},
};

}  // namespace

std::span<const CoreSection> core_sections() { return kCoreSections; }

const CoreSection* find_core_section(std::string_view name) {
    for (const auto& section : kCoreSections)
        if (name == section.name) return &section;
    return nullptr;
}

std::string all_section_names() {
    std::string out;
    for (const auto& section : kCoreSections) out += (out.empty() ? "" : ", ") + std::string(section.name);
    for (const auto& kind : all_kinds()) out += ", " + std::string(kind.name);
    return out;
}

}  // namespace pangea
