// The `pangea` command line.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "bench/allreduce_bench.hpp"
#include "bench/compress_bench.hpp"
#include "common/log.hpp"
#include "manifest/manifest.hpp"
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
              << "  library: " << plugin.library_path.string() << "\n\n";
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
    std::cerr << file << ": OK\n";
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
                                "address node r binds; {r} becomes r + 1 (e.g. 10.77.0.{r})")->capture_default_str();
    bench_allreduce->add_option("--netns", allreduce_options.netns_prefix,
                                "run node r in network namespace <prefix><r + 1> (see bench/wan.sh)");
    bench_allreduce->add_option("--link-mbit", allreduce_options.link_mbit, "link rate, for the 'of link' column");
    bench_allreduce->add_option("--baseline", allreduce_options.baseline,
                                "path to pangea-bench-c10d: also run LibTorch's Gloo all-reduce");
    bench_allreduce->add_option("--baseline-device", allreduce_options.baseline_device,
                                "Gloo device for the baseline: if:NAME or host:ADDR (default: host:<node address>)");
    bench_allreduce->add_option("--rank", allreduce_options.rank)->group("");  // node processes only
    bench_allreduce->add_option("--rendezvous", allreduce_options.rendezvous)->group("");
    bench_allreduce->add_option("--run-id", allreduce_options.run_id)->group("");

    auto* run = app.add_subcommand("run", "run one node of a training run");
    run->allow_extras();

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
        if (*bench_compress) {
            PluginRegistry registry(default_search_path());
            run_compress_bench(registry, compress_options);
            return 0;
        }
        if (*run) {
            std::cerr << "error: `pangea run` is not available yet: this build has the plugin "
                         "host and manifest, but not the training layer. Use `pangea manifest "
                         "check FILE` to validate a manifest.\n";
            return 2;
        }
    } catch (const ManifestError& e) {
        for (const auto& error : e.errors()) std::cerr << "error: " << error << "\n";
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
