// The `pangea` command line.
#include <CLI/CLI.hpp>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>

#include "bench/allreduce_bench.hpp"
#include "bench/compress_bench.hpp"
#include "bench/storage_bench.hpp"
#include "bench/train_bench.hpp"
#include "checkpoint/checkpoint.hpp"
#include "common/log.hpp"
#include "data/prepare.hpp"
#include "data/token_shard.hpp"
#include "report/run_report.hpp"
#include "manifest/manifest.hpp"
#include "topology/auth.hpp"
#include "membership/coordinator.hpp"
#include "membership/etcd_run_state.hpp"
#include "train/launch.hpp"
#include "train/model_shape.hpp"
#include "train/node.hpp"
#include "train/run_setup.hpp"
#include "plugin_host/kinds.hpp"
#include "plugin_host/plugin_registry.hpp"

#ifndef PANGEA_VERSION
#define PANGEA_VERSION "0.0.0"
#endif

namespace {

using namespace pangea;

std::string abi_text(uint32_t version) {
    return std::to_string(PANGEA_ABI_VERSION_MAJOR(version)) + "." +
           std::to_string(PANGEA_ABI_VERSION_MINOR(version));
}

std::string padded(std::string text, size_t width) {
    if (text.size() < width) text.resize(width, ' ');
    return text;
}

void print_rejections(const PluginRegistry& registry) {
    if (registry.rejections().empty()) return;
    std::cerr << "rejected libraries:\n";
    for (const auto& rejection : registry.rejections())
        std::cerr << "  " << rejection.path.string() << ": " << rejection.reason << "\n";
}

int plugins_list() {
    const PluginRegistry registry(default_search_path());
    std::cout << padded("KIND", 10) << padded("NAME", 16) << padded("VERSION", 10)
              << padded("ABI", 6) << "LIBRARY\n";
    for (const auto& kind : all_kinds())
        for (const auto& plugin : registry.plugins())
            if (plugin->kind == kind.kind)
                std::cout << padded(kind.name, 10) << padded(plugin->name, 16)
                          << padded(plugin->version, 10) << padded(abi_text(plugin->abi_version), 6)
                          << plugin->library_path.string() << "\n";
    if (registry.plugins().empty()) {
        std::cerr << "no plugins found; searched:\n";
        for (const auto& entry : registry.search_path())
            std::cerr << "  " << entry.directory.string() << "  (" << entry.why << ")\n";
    }
    print_rejections(registry);
    return 0;
}

int plugins_show(const std::string& kind_text, const std::string& name) {
    const KindInfo* kind = find_kind(kind_text);
    if (kind == nullptr) {
        std::cerr << "error: unknown plugin kind '" << kind_text
                  << "'; kinds are: transport, compress, optim, storage\n";
        return 1;
    }
    const PluginRegistry registry(default_search_path());
    const PluginDescriptor& plugin = registry.get(kind->kind, name);
    std::cout << plugin.id() << " " << plugin.version << " (plugin ABI "
              << abi_text(plugin.abi_version) << ")\n"
              << "  " << plugin.description << "\n"
              << "  library: " << plugin.library_path.string() << "\n"
              << "  speaks plugin ABI " << abi_text(plugin.spoken_abi_version) << " with this host (ABI "
              << abi_text(PANGEA_ABI_VERSION) << ")\n\n";
    if (plugin.settings.empty()) {
        std::cout << "settings: none\n";
        return 0;
    }
    std::cout << "settings ([" << kind->name << "] section of the manifest):\n";
    for (const auto& setting : plugin.settings) {
        std::string line = "  " + padded(setting.name, 18) +
                           padded(setting_type_name(setting.type), 9) + "default ";
        line += setting.default_value ? std::string(setting.default_value) : "(required)";
        if (const std::string bounds = describe_setting_bounds(setting); !bounds.empty())
            line += "  " + bounds;
        std::cout << line << "\n      " << setting.help << "\n";
    }
    return 0;
}

std::vector<Override> collect_overrides(const std::vector<std::string>& set_arguments) {
    std::vector<Override> overrides = environment_overrides(process_environment());
    for (const auto& argument : set_arguments) overrides.push_back(parse_set_argument(argument));
    return overrides;  // later entries win: file < environment < --set
}

int manifest_check(const std::string& file, const std::vector<std::string>& set_arguments) {
    PluginRegistry registry(default_search_path());
    const Manifest manifest = load_manifest(file, collect_overrides(set_arguments), registry);
    std::cout << manifest.to_toml();
    const ModelShape shape = check_training_inputs(manifest);
    std::cerr << file << ": OK (model " << shape.preset << ": " << format_count(double(parameter_count(shape)))
              << " parameters)\n";
    return 0;
}

// A whole number from the environment variable NAME, in [0, limit). Throws ManifestError naming it.
int environment_index(const char* name, const char* value, int64_t limit) {
    int64_t number = -1;
    const std::string_view text(value);
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (error != std::errc() || end != text.data() + text.size() || number < 0 || number >= limit)
        throw ManifestError({std::string("environment ") + name + "=" + std::string(text) +
                             ": expected a whole number from 0 to " + std::to_string(limit - 1)});
    return static_cast<int>(number);
}

constexpr const char* kMasterOrigin = "environment MASTER_ADDR, MASTER_PORT + 1";

// A node started without --node-id takes its id from RANK, [mesh] nodes from WORLD_SIZE and
// [mesh] coordinator from MASTER_ADDR:MASTER_PORT + 1 (MASTER_PORT is torchrun's own store), as
// torchrun (and launchers like it) set them for each process they start; PANGEA_MESH_* and --set
// still win over them.
int node_id_from_launcher(std::vector<Override>& overrides) {
    const char* rank = std::getenv("RANK");
    if (rank == nullptr)
        throw ManifestError({"no --node-id: give one (0 .. [mesh] nodes - 1), or start the node under torchrun, "
                             "which sets RANK and WORLD_SIZE"});
    if (const char* world_size = std::getenv("WORLD_SIZE"))
        overrides.insert(overrides.begin(), {"mesh", "nodes", world_size, "environment WORLD_SIZE"});
    const char* master_address = std::getenv("MASTER_ADDR");
    const char* master_port = std::getenv("MASTER_PORT");
    if (master_address != nullptr && master_port != nullptr && *master_address != '\0') {
        const int port = environment_index("MASTER_PORT", master_port, 65535) + 1;
        overrides.insert(overrides.begin(),
                         {"mesh", "coordinator", std::string(master_address) + ":" + std::to_string(port), kMasterOrigin});
    }
    return environment_index("RANK", rank, 4096);
}

int run_node(const std::string& file, const std::vector<std::string>& set_arguments, const NodeOptions& options,
             bool node_id_given) {
    PluginRegistry registry(default_search_path());
    std::vector<Override> overrides = collect_overrides(set_arguments);
    NodeOptions with_source = options;
    if (!node_id_given) with_source.node_id = node_id_from_launcher(overrides);
    const Manifest manifest = load_manifest(file, overrides, registry);
    // Rank 0 serves the coordinator that MASTER_ADDR named for the run (the builtin backend).
    with_source.host_coordinator = !node_id_given && with_source.node_id == 0 &&
                                   manifest.get_string("mesh", "backend") == "builtin" &&
                                   manifest.core.at("mesh").at("coordinator").origin == kMasterOrigin;
    const int64_t nodes = manifest.get_int("mesh", "nodes");
    const std::string id_origin = node_id_given ? "--node-id " : "environment RANK=";
    if (with_source.node_id >= nodes)
        throw ManifestError({id_origin + std::to_string(with_source.node_id) + " is not below [mesh] nodes = " +
                             std::to_string(nodes) + " (from " + manifest.core.at("mesh").at("nodes").origin + ")"});
    with_source.manifest_path = file;
    with_source.set_arguments = set_arguments;
    return run_training_node(manifest, registry, with_source);
}

struct CoordinatorCommand {
    std::string manifest;
    std::vector<std::string> set_arguments;
    std::string listen = "127.0.0.1:7070";
    std::string address_file;
    uint64_t run_id = 0;
};

int coordinator(const CoordinatorCommand& command) {
    PluginRegistry registry(default_search_path());
    const Manifest manifest = load_manifest(command.manifest, collect_overrides(command.set_arguments), registry);
    pangea_log_level level = PANGEA_LOG_INFO;
    parse_log_level(manifest.get_string("run", "log_level"), &level);
    set_log_level(level);
    const CoordinatorOptions options = coordinator_options(manifest, run_id_of(manifest, command.run_id));
    if (options.secret.empty())
        log(PANGEA_LOG_WARN, "coordinator", "the run has no secret ([mesh] secret_file or secret_env): any node that "
                                            "can reach this coordinator may join");
    return run_coordinator(command.listen, options, command.address_file);
}

struct EtcdCommand {
    std::string manifest;
    std::vector<std::string> set_arguments;
    uint64_t run_id = 0;
    bool force = false;
};

// `pangea etcd show|runs|clear`: what etcd holds of the manifest's run (or of every run), through
// the manifest's [mesh] etcd settings (endpoints, TLS, user).
int etcd_command(const std::string& action, const EtcdCommand& command) {
    PluginRegistry registry(default_search_path());
    const Manifest manifest = load_manifest(command.manifest, collect_overrides(command.set_arguments), registry);
    EtcdClient etcd(etcd_access(manifest));
    const std::string run = run_id_text(run_id_of(manifest, command.run_id));
    if (action == "runs") {
        list_etcd_runs(etcd, std::cout);
    } else if (action == "show") {
        show_etcd_run(etcd, run, std::cout);
    } else {
        const int64_t deleted = clear_etcd_run(etcd, run, command.force);
        std::cout << "deleted " << deleted << " key" << (deleted == 1 ? "" : "s") << " of run " << run << " ("
                  << manifest.get_string("run", "name") << ") from etcd at " << etcd.endpoint() << "\n";
    }
    return 0;
}

int launch(LaunchOptions options) {
    PluginRegistry registry(default_search_path());
    std::vector<std::string> with_nodes = options.set_arguments;
    if (options.nodes > 0) with_nodes.push_back("mesh.nodes=" + std::to_string(options.nodes));
    // Validate once here, so a bad manifest fails before any node starts.
    const Manifest manifest = load_manifest(options.manifest_path, collect_overrides(with_nodes), registry);
    check_training_inputs(manifest);
    return launch_local(manifest, options);
}

struct CheckpointCommand {
    std::string manifest;
    std::vector<std::string> set_arguments;
    std::string which = "latest";
    std::string out;
};

int checkpoint_command(const std::string& action, const CheckpointCommand& command) {
    PluginRegistry registry(default_search_path());
    const Manifest manifest = load_manifest(command.manifest, collect_overrides(command.set_arguments), registry);
    const ObjectStore store(open_storage(manifest, registry));
    const std::string prefix = checkpoint_prefix(manifest);
    if (action == "list") {
        const auto checkpoints = list_checkpoints(store, prefix, true);
        const auto latest = latest_checkpoint(store, prefix);
        if (checkpoints.empty()) {
            std::cout << "no checkpoints under " << store.name() << " " << prefix << "\n";
            return 0;
        }
        std::cout << store.name() << " " << prefix << "\n"
                  << padded("step", 10) << padded("MiB", 10) << padded("parts", 8) << "nodes\n";
        for (const CheckpointSummary& c : checkpoints) {
            char mib[32];
            std::snprintf(mib, sizeof mib, "%.1f", c.bytes() / 1048576.0);
            std::string nodes;
            for (int node : c.members) nodes += (nodes.empty() ? "" : ",") + std::to_string(node);
            std::string missing;
            for (int node : c.missing) missing += (missing.empty() ? "" : ",") + std::to_string(node);
            std::cout << padded(std::to_string(c.step), 10) << padded(mib, 10) << padded(std::to_string(c.parts.size()), 8)
                      << nodes << (missing.empty() ? "" : "  incomplete: no part of node(s) " + missing)
                      << (latest && *latest == c.step ? "  <- latest" : "") << "\n";
        }
        return 0;
    }
    const int64_t step = resolve_checkpoint(store, prefix, command.which);
    if (action == "inspect") {
        std::string header;
        read_summary(store, prefix, step, &header);
        std::cout << store.name() << " " << header;
        bool ok = true;
        for (const std::string& line : verify_checkpoint(store, prefix, step, &ok)) std::cout << "  " << line << "\n";
        std::cout << (ok ? "complete, and every part matches its SHA-256\n"
                         : "the checkpoint is damaged or incomplete: resume refuses it\n");
        return ok ? 0 : 1;
    }
    export_checkpoint(store, prefix, step, command.out);
    std::cout << "exported step " << step << " to " << command.out
              << (std::filesystem::exists(std::filesystem::path(command.out) / "config.json")
                      ? " (model.safetensors, config.json: Hugging Face LlamaForCausalLM)\n"
                      : " (model.safetensors, with the Python model's own parameter names)\n");
    return 0;
}

int data_prepare(const PrepareOptions& options) {
    const auto progress = [](const PrepareProgress& p) {
        std::cerr << "  " << std::fixed << std::setprecision(1) << p.text_bytes / 1e6 << " MB of text, " << p.tokens
                  << " tokens, " << p.seconds << " s\n";
    };
    const PrepareReport report = prepare_shards(options, progress);
    std::cout << "wrote " << report.shards.size() << " shard" << (report.shards.size() == 1 ? "" : "s") << " ("
              << report.tokens << " tokens, " << report.tokenizer << ") to " << options.output.string() << "\n";
    if (report.text_bytes > 0 && report.encode_seconds > 0)
        std::cout << std::fixed << std::setprecision(1) << report.text_bytes / 1e6 << " MB of text in " << report.seconds
                  << " s: " << report.text_bytes / 1e6 / report.seconds << " MB/s on " << report.threads << " thread"
                  << (report.threads == 1 ? "" : "s") << ", " << report.text_bytes / 1e6 / report.encode_seconds
                  << " MB/s per core\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Pangea: decentralized DiLoCo training with pluggable transports, compression, "
                 "outer optimizers and checkpoint storage"};
    app.require_subcommand(1);

    auto* version = app.add_subcommand("version", "print the version and plugin ABI");

    auto* plugins = app.add_subcommand("plugins", "inspect the plugins that can be loaded");
    plugins->require_subcommand(1);
    auto* list = plugins->add_subcommand("list", "list every plugin found on the search path");
    auto* show = plugins->add_subcommand("show", "print a plugin's description and settings");
    std::string show_kind, show_name;
    show->add_option("kind", show_kind, "transport | compress | optim | storage")->required();
    show->add_option("name", show_name, "the plugin's name")->required();

    auto* manifest = app.add_subcommand("manifest", "work with run manifests");
    manifest->require_subcommand(1);
    auto* check = manifest->add_subcommand(
        "check", "validate a manifest and print the resolved configuration");
    std::string manifest_file;
    std::vector<std::string> set_arguments;
    check->add_option("file", manifest_file, "the run manifest (TOML)")->required();
    check->add_option("--set", set_arguments, "override a setting: section.key=value")
        ->allow_extra_args(false);

    auto* bench = app.add_subcommand("bench", "measure performance");
    bench->require_subcommand(1);
    auto* bench_storage = bench->add_subcommand("storage", "write and read throughput of storage plugins");
    StorageBenchOptions storage_options;
    bench_storage->add_option("--config", storage_options.configs,
                              "plugin:key=value,... (repeatable), e.g. local:path=/tmp/x or s3:endpoint=URL,bucket=B")
        ->required();
    bench_storage->add_option("--mib", storage_options.mib, "object size in MiB")->capture_default_str();
    bench_storage->add_option("--repeats", storage_options.repeats, "runs per configuration (the best is shown)")
        ->capture_default_str();
    auto* bench_compress = bench->add_subcommand(
        "compress", "throughput of compression plugins beside memcpy, with ratio and error");
    CompressBenchOptions compress_options;
    bench_compress->add_option("--sizes", compress_options.sizes_mib, "buffer sizes in MiB")
        ->capture_default_str();
    bench_compress->add_option("--config", compress_options.configs,
                               "plugin[:key=value,...] to measure (repeatable)")
        ->capture_default_str();
    bench_compress->add_option("--seconds", compress_options.seconds_per_measurement,
                               "repeat each operation for about this long; the best time counts")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);

    auto* bench_train = bench->add_subcommand(
        "train", "tokens/s of the inner step for a manifest's model, beside a PyTorch eager reference of the same shape");
    std::string train_manifest;
    std::vector<std::string> train_set;
    TrainBenchOptions train_options;
    bench_train->add_option("manifest", train_manifest, "run manifest (its [model], [data] seq_len, [train])")->required();
    bench_train->add_option("--set", train_set, "override a setting: section.key=value")->allow_extra_args(false);
    bench_train->add_option("--steps", train_options.steps, "timed inner steps")->capture_default_str();
    bench_train->add_option("--warmup", train_options.warmup, "untimed inner steps first")->capture_default_str();
    bench_train->add_option("--rounds", train_options.rounds,
                            "measure ours and the reference in turn this many times; the best of each counts")
        ->capture_default_str();
    bench_train->add_option("--reference", train_options.reference,
                            "the PyTorch eager reference to run too: bench/train_reference.py");
    bench_train->add_option("--python", train_options.python, "the Python that runs it (one that imports torch)")
        ->capture_default_str();
    auto* bench_allreduce = bench->add_subcommand(
        "allreduce", "the ring all-reduce across node processes, with the c10d Gloo baseline");
    AllReduceBenchOptions allreduce_options;
    bench_allreduce->add_option("--nodes", allreduce_options.nodes, "node processes")
        ->capture_default_str()->check(CLI::Range(2, 64));
    bench_allreduce->add_option("--sizes", allreduce_options.sizes_mib, "buffer sizes in MiB")->capture_default_str();
    bench_allreduce->add_option("--config", allreduce_options.configs, "compressor[:key=value,...] (repeatable)")
        ->capture_default_str();
    bench_allreduce->add_option("--transport", allreduce_options.transport, "transport[:key=value,...]")
        ->capture_default_str();
    bench_allreduce->add_option("--rings", allreduce_options.rings,
                                "rings in parallel, each over its own byte range and connections (repeatable: each is measured)")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    bench_allreduce->add_option("--repeat", allreduce_options.repeat, "all-reduces per size and config")
        ->capture_default_str()->check(CLI::Range(1, 1000));
    bench_allreduce->add_option("--piece-kib", allreduce_options.piece_kib, "fp32 KiB per piece on the wire")
        ->capture_default_str()->check(CLI::Range(1, 1 << 20));
    bench_allreduce->add_option("--depth", allreduce_options.depth, "pieces in flight per direction")
        ->capture_default_str()->check(CLI::Range(1, 64));
    bench_allreduce->add_option("--ring-order", allreduce_options.ring_order,
                                "rank, or measured (by pairwise bandwidth probes at setup)")
        ->capture_default_str()->check(CLI::IsMember({"rank", "measured"}));
    bench_allreduce->add_option("--probe-kib", allreduce_options.probe_kib, "size of each bandwidth probe")
        ->capture_default_str()->check(CLI::Range(1, 1 << 20));
    bench_allreduce->add_option("--stall-timeout-ms", allreduce_options.stall_timeout_ms,
                                "a node waiting this long for a peer gives up")->capture_default_str();
    bench_allreduce->add_option("--hosts", allreduce_options.host_template,
                                "address node r binds; {r} becomes r + 1, {k} the ring (e.g. 10.77.{k}.{r})")->capture_default_str();
    bench_allreduce->add_option("--netns", allreduce_options.netns_prefix,
                                "run node r in network namespace <prefix><r + 1> (see bench/wan.sh)");
    bench_allreduce->add_option("--link-mbit", allreduce_options.link_mbit, "link rate, for the 'of link' column");
    bench_allreduce->add_option("--baseline", allreduce_options.baseline,
                                "path to pangea-bench-c10d: also run LibTorch's Gloo all-reduce");
    bench_allreduce->add_flag("--worker-group", allreduce_options.worker_group,
                              "also time the collectives among a node's workers (Gloo over loopback) on the same processes");
    bench_allreduce->add_option("--baseline-device", allreduce_options.baseline_device,
                                "Gloo device for the baseline: if:NAME or host:ADDR (default: host:<node address>)");
    bench_allreduce->add_option("--rank", allreduce_options.rank)->group("");  // node processes only
    bench_allreduce->add_option("--rendezvous", allreduce_options.rendezvous)->group("");
    bench_allreduce->add_option("--run-id", allreduce_options.run_id)->group("");

    auto* run = app.add_subcommand("run", "run one node of a training run");
    std::string run_manifest;
    NodeOptions node_options;
    std::vector<std::string> run_set;
    run->add_option("manifest", run_manifest, "the run manifest (TOML)")->required();
    auto* node_id_option =
        run->add_option("--node-id", node_options.node_id,
                        "this node's index, 0 .. [mesh] nodes - 1 (default: environment RANK, with [mesh] nodes from "
                        "WORLD_SIZE and the coordinator at MASTER_ADDR:MASTER_PORT + 1, served by rank 0, as torchrun "
                        "sets them)")
            ->check(CLI::NonNegativeNumber);
    run->add_option("--set", run_set, "override a setting: section.key=value")->allow_extra_args(false);
    run->add_option("--run-id", node_options.run_id, "shared by the nodes of one run (default: from [run] name)");
    run->add_flag("--join", node_options.join,
                  "join a run in progress: fetch the state from its members first (a node that finds the run "
                  "started does so anyway)");

    run->add_option("--worker", node_options.worker, "(started by the node: which of its [node] workers)")
        ->group("");
    run->add_option("--worker-dir", node_options.worker_dir, "(started by the node: where its workers meet)")->group("");
    run->add_option("--resume", node_options.resume,
                    "start from the run's checkpoint: latest (the newest step the whole run committed), or an "
                    "outer step number");
    run->add_flag("--fresh", node_options.fresh,
                  "start afresh although the storage holds checkpoints of the run: delete them (all nodes')")
        ->excludes("--resume");

    auto* checkpoint = app.add_subcommand("checkpoint", "a run's checkpoints in its [storage]");
    checkpoint->require_subcommand(1);
    CheckpointCommand checkpoint_options;
    std::map<std::string, CLI::App*> checkpoint_actions;
    for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
             {"list", "list the run's checkpoints (one per step for the whole run), complete or not"},
             {"inspect", "print a checkpoint's headers (one per node) and verify every part's SHA-256"},
             {"export", "write model.safetensors and config.json (Hugging Face Llama; a Python node's model: its safetensors) to a directory"}}) {
        auto* action = checkpoint->add_subcommand(name, help);
        action->add_option("manifest", checkpoint_options.manifest, "the run manifest (its [storage] and [checkpoint])")
            ->required();
        if (name != "list")
            action->add_option("step", checkpoint_options.which, "latest, or an outer step number")->capture_default_str();
        if (name == "export") action->add_option("-o,--out", checkpoint_options.out, "the directory to write")->required();
        action->add_option("--set", checkpoint_options.set_arguments, "override a setting: section.key=value")
            ->allow_extra_args(false);
        checkpoint_actions[name] = action;
    }

    auto* coordinator_command = app.add_subcommand(
        "coordinator", "the builtin membership store of a run (pangea launch starts one for local runs)");
    CoordinatorCommand coordinator_options;
    coordinator_command->add_option("manifest", coordinator_options.manifest, "the run manifest ([run] name, [mesh] timeout_ms and min_members)")
        ->required();
    coordinator_command->add_option("--set", coordinator_options.set_arguments, "override a setting: section.key=value")
        ->allow_extra_args(false);
    coordinator_command->add_option("--listen", coordinator_options.listen, "host:port to serve on (port 0: any)")
        ->capture_default_str();
    coordinator_command->add_option("--address-file", coordinator_options.address_file,
                                    "write the bound host:port here once listening");
    coordinator_command->add_option("--run-id", coordinator_options.run_id, "as given to the nodes (default: from [run] name)");

    auto* etcd = app.add_subcommand("etcd", "what etcd holds of runs ([mesh] backend = \"etcd\"): show, runs, clear");
    etcd->require_subcommand(1);
    EtcdCommand etcd_options;
    std::map<std::string, CLI::App*> etcd_actions;
    for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
             {"show", "the run's registered nodes, its coordinator and its last committed epoch"},
             {"runs", "every run etcd holds keys of"},
             {"clear", "delete the run's keys (refused while nodes are registered, unless --force)"}}) {
        auto* action = etcd->add_subcommand(name, help);
        action->add_option("manifest", etcd_options.manifest, "the run manifest ([run] name, [mesh] etcd settings)")
            ->required();
        action->add_option("--set", etcd_options.set_arguments, "override a setting: section.key=value")
            ->allow_extra_args(false);
        action->add_option("--run-id", etcd_options.run_id, "as given to the nodes (default: from [run] name)");
        if (name == "clear") action->add_flag("--force", etcd_options.force, "clear even while nodes are registered");
        etcd_actions[name] = action;
    }

    auto* launch_command = app.add_subcommand("launch", "run N local nodes of a training run and show their progress");
    LaunchOptions launch_options;
    launch_command->add_option("manifest", launch_options.manifest_path, "the run manifest (TOML)")->required();
    launch_command->add_option("-n,--nodes", launch_options.nodes, "nodes to start (default: [mesh] nodes)")
        ->check(CLI::Range(1, 256));
    launch_command->add_option("--set", launch_options.set_arguments, "override a setting: section.key=value")
        ->allow_extra_args(false);
    launch_command->add_option("--netns", launch_options.netns,
                               "run node i in network namespace <prefix><i + 1> (see bench/wan.sh)");
    launch_command->add_option("--resume", launch_options.resume,
                               "every node starts from the run's checkpoint: latest (the newest step the whole run "
                               "committed), or an outer step number");
    launch_command->add_flag("--fresh", launch_options.fresh,
                             "start afresh although the storage holds the run's checkpoints: delete them")
        ->excludes("--resume");
    launch_command->add_option("--host", launch_options.host,
                               "address node i listens on; {r} becomes i + 1 (e.g. 10.77.0.{r})");

    auto* report_command = app.add_subcommand(
        "report", "write a run's HTML report (loss, throughput, utilization, traffic, members, checkpoints)");
    std::string report_dir, report_output;
    report_command->add_option("run_dir", report_dir, "the run's directory ([run] dir)")->required();
    report_command->add_option("-o,--output", report_output, "the HTML file (default: RUN_DIR/report.html)");

    auto* data = app.add_subcommand("data", "training data");
    data->require_subcommand(1);
    auto* prepare = data->add_subcommand(
        "prepare", "tokenize text files, JSONL (plain or .gz) and token arrays (.npy, .bin) into token shards");
    PrepareOptions prepare_options;
    std::string prepare_output;
    prepare->add_option("files", prepare_options.inputs,
                        "*.jsonl[.gz] (one JSON object per line), *.npy (1-D uint16/uint32), *.bin (uint16, nanoGPT), "
                        "anything else: a text file, one document");
    prepare->add_option("-o,--output", prepare_output, "directory for the shards (holding none yet)")->required();
    prepare->add_option("--tokenizer", prepare_options.tokenizer.file,
                        "byte, a tiktoken ranks file, or a Hugging Face tokenizer.json")->capture_default_str();
    prepare->add_option("--pattern", prepare_options.tokenizer.pattern,
                        "tiktoken files: the pre-tokenizer, cl100k, o200k, llama3, gpt2 (each with its special "
                        "tokens) or a regex")->capture_default_str();
    prepare->add_option("--document-end", prepare_options.tokenizer.document_end,
                        "the special token ending each document: a name, or NAME=ID (default: <|endoftext|>, "
                        "<|end_of_text|> or </s>)");
    prepare->add_option("--field", prepare_options.field, "JSONL: the field holding each document")->capture_default_str();
    prepare->add_option("--vocab", prepare_options.vocab, ".npy/.bin: the vocabulary their ids come from")
        ->check(CLI::Range(uint32_t{1}, uint32_t{1} << 31));
    prepare->add_option("--threads", prepare_options.threads, "tokenizing threads (0: one per core)")->capture_default_str();
    prepare->add_option("--builtin", prepare_options.builtin, "a built-in corpus source instead: prose, code, arithmetic, lists");
    prepare->add_option("--builtin-bytes", prepare_options.builtin_bytes, "bytes of built-in text to generate")
        ->capture_default_str();
    prepare->add_option("--shard-tokens", prepare_options.shard_tokens, "most tokens per shard")
        ->capture_default_str()->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));

    CLI11_PARSE(app, argc, argv);

    try {
        if (*version) {
            std::cout << "pangea " << PANGEA_VERSION << " (plugin ABI "
                      << abi_text(PANGEA_ABI_VERSION) << ")\n";
            return 0;
        }
        if (*list) return plugins_list();
        if (*show) return plugins_show(show_kind, show_name);
        if (*check) return manifest_check(manifest_file, set_arguments);
        if (*bench_allreduce) return run_allreduce_bench(allreduce_options);
        if (*bench_train) {
            PluginRegistry registry(default_search_path());
            return run_train_bench(load_manifest(train_manifest, collect_overrides(train_set), registry), train_options);
        }
        if (*bench_storage) {
            PluginRegistry registry(default_search_path());
            run_storage_bench(registry, storage_options);
            return 0;
        }
        if (*bench_compress) {
            PluginRegistry registry(default_search_path());
            run_compress_bench(registry, compress_options);
            return 0;
        }
        if (*run) return run_node(run_manifest, run_set, node_options, node_id_option->count() > 0);
        if (*coordinator_command) return coordinator(coordinator_options);
        for (const auto& [name, action] : checkpoint_actions)
            if (*action) return checkpoint_command(name, checkpoint_options);
        for (const auto& [name, action] : etcd_actions)
            if (*action) return etcd_command(name, etcd_options);
        if (*launch_command) return launch(launch_options);
        if (*report_command) {
            std::cout << "wrote " << write_run_report(report_dir, report_output).string() << "\n";
            return 0;
        }
        if (*prepare) {
            if (prepare_options.inputs.empty() == prepare_options.builtin.empty()) {
                std::cerr << "error: data prepare takes input files or --builtin NAME (one of the two)\n";
                return 1;
            }
            prepare_options.output = prepare_output;
            return data_prepare(prepare_options);
        }
    } catch (const ManifestError& e) {
        for (const auto& error : e.errors()) std::cerr << "error: " << error << "\n";
        return 1;
    } catch (const DataError& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    } catch (const PluginError& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
