#include "train/launch.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "common/process.hpp"
#include "manifest/manifest.hpp"
#include "report/run_report.hpp"
#include "topology/auth.hpp"
#include "train/metrics.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

std::atomic<int> g_interrupts{0};
extern "C" void on_interrupt(int) { g_interrupts.fetch_add(1); }

// A number of a status or summary file (0 when absent or null: a loss not measured yet).
double number(const Json& fields, const char* key) { return json_number(fields, key).value_or(0); }

// A node's status or summary file; nullopt while it is not there (or not whole JSON yet).
std::optional<Json> read_json(const fs::path& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    try {
        return parse_json(text.str());
    } catch (const JsonError&) {
        return std::nullopt;
    }
}

std::string last_lines(const fs::path& path, size_t count) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    std::string out;
    for (size_t i = lines.size() > count ? lines.size() - count : 0; i < lines.size(); ++i)
        out += "    " + lines[i] + "\n";
    return out;
}

std::string human_rate(double per_second) {
    char text[32];
    if (per_second >= 1e6) std::snprintf(text, sizeof text, "%.1fM", per_second / 1e6);
    else if (per_second >= 1e3) std::snprintf(text, sizeof text, "%.1fk", per_second / 1e3);
    else std::snprintf(text, sizeof text, "%.0f", per_second);
    return text;
}

// One line about all nodes: the slowest node's position, mean loss, summed throughput, the
// slowest last all-reduce and mean compute utilization.
struct Progress {
    int64_t outer = 0, inner = 0;
    std::string line;
};

Progress combined_progress(const fs::path& status_dir, const std::vector<bool>& shown) {
    const int nodes = static_cast<int>(std::count(shown.begin(), shown.end(), true));
    Progress p{INT64_MAX, INT64_MAX, ""};
    double loss = 0, eval = 0, rate = 0, allreduce = 0, bytes = 0, utilization = 0;
    int64_t outer_steps = 0, inner_steps = 0;
    int seen = 0;
    for (size_t i = 0; i < shown.size(); ++i) {
        if (!shown[i]) continue;
        const auto fields = read_json(status_dir / ("node-" + std::to_string(i) + ".json"));
        if (!fields) continue;
        ++seen;
        const int64_t outer = static_cast<int64_t>(number(*fields, "outer_step"));
        const int64_t inner = static_cast<int64_t>(number(*fields, "inner_step"));
        if (outer < p.outer || (outer == p.outer && inner < p.inner)) p.outer = outer, p.inner = inner;
        outer_steps = static_cast<int64_t>(number(*fields, "outer_steps"));
        inner_steps = static_cast<int64_t>(number(*fields, "inner_steps"));
        loss += number(*fields, "loss");
        eval = number(*fields, "eval_loss");
        rate += number(*fields, "tokens_per_s");
        allreduce = std::max(allreduce, number(*fields, "allreduce_seconds"));
        bytes = std::max(bytes, number(*fields, "allreduce_bytes"));
        utilization += number(*fields, "compute_utilization");
    }
    if (seen < nodes) return {-1, -1, std::to_string(seen) + "/" + std::to_string(nodes) + " nodes started"};
    // A finished outer step (inner 0) has no inner position to show.
    char inner_text[48] = "", eval_text[16] = "-", text[256];
    if (p.inner > 0)
        std::snprintf(inner_text, sizeof inner_text, "  inner %lld/%lld", static_cast<long long>(p.inner),
                      static_cast<long long>(inner_steps));
    if (eval > 0) std::snprintf(eval_text, sizeof eval_text, "%.3f", eval);
    std::snprintf(text, sizeof text, "outer %lld/%lld%s  loss %.3f  eval %s  %s tok/s  all-reduce %.2f s %.1f MiB  util %.0f%%",
                  static_cast<long long>(p.outer), static_cast<long long>(outer_steps), inner_text, loss / nodes,
                  eval_text, human_rate(rate).c_str(), allreduce, bytes / 1048576.0, 100 * utilization / nodes);
    p.line = text;
    return p;
}

}  // namespace

int launch_local(const Manifest& manifest, const LaunchOptions& options) {
    const int nodes = options.nodes > 0 ? options.nodes : static_cast<int>(manifest.get_int("mesh", "nodes"));
    const fs::path run_dir = manifest.get_string("run", "dir");
    for (const char* stale : {"status", "summary", "metrics", "logs"}) fs::remove_all(run_dir / stale);
    fs::create_directories(run_dir / "logs");
    fs::create_directories(run_dir / "status");

    const std::string exe = current_executable();
    const uint64_t run_id = (uint64_t(std::random_device{}()) << 32) | std::random_device{}() | 1;
    auto host_of = [&](int i) {
        std::string host = options.host;
        if (const size_t at = host.find("{r}"); at != std::string::npos) host.replace(at, 3, std::to_string(i + 1));
        return host;
    };
    auto in_netns = [&](std::vector<std::string> argv, int i) {
        if (!options.netns.empty())
            argv.insert(argv.begin(), {"/usr/bin/env", "ip", "netns", "exec", options.netns + std::to_string(i + 1)});
        return argv;
    };
    // A run without a secret of its own gets a fresh one, passed down in the environment, so
    // that nothing else on this machine can join it.
    std::vector<std::string> settings = options.set_arguments;
    if (manifest.get_string("mesh", "secret_file").empty() && manifest.get_string("mesh", "secret_env").empty()) {
        ::setenv("PANGEA_LAUNCH_SECRET", random_nonce().c_str(), 1);
        settings.push_back("mesh.secret_env=PANGEA_LAUNCH_SECRET");
    }
    // The coordinator (several nodes, none named in the manifest): in node 0's network namespace
    // when there are namespaces, so that every node can reach it.
    std::optional<ChildProcess> coordinator;
    std::string coordinator_address = manifest.get_string("mesh", "coordinator");
    if (nodes > 1 && coordinator_address.empty() && manifest.get_string("mesh", "backend") == "builtin") {
        const fs::path address_file = run_dir / "coordinator.addr";
        fs::remove(address_file);
        std::vector<std::string> argv = {exe, "coordinator", options.manifest_path, "--run-id", std::to_string(run_id),
                                         "--listen", (options.host.empty() ? std::string("127.0.0.1") : host_of(0)) + ":0",
                                         "--address-file", address_file.string()};
        for (const auto& set : settings) argv.insert(argv.end(), {"--set", set});
        coordinator.emplace(in_netns(argv, 0), (run_dir / "logs" / "coordinator.log").string());
        for (int i = 0; i < 200 && coordinator_address.empty(); ++i) {
            if (const auto code = coordinator->wait_for(std::chrono::milliseconds(50)))
                throw std::runtime_error("the coordinator exited with status " + std::to_string(*code) + ":\n" +
                                         last_lines(run_dir / "logs" / "coordinator.log", 8));
            std::ifstream(address_file) >> coordinator_address;
        }
        if (coordinator_address.empty()) throw std::runtime_error("the coordinator did not start within 10 s");
    }
    // Each node: `pangea run`, or the manifest's [run] entry (a Python node, say), which gets the
    // same in the environment, as pangea.Node reads it: PANGEA_LAUNCH_MANIFEST, _NODE_ID,
    // _RUN_ID, _SET (one section.key=value per line), _RESUME and _FRESH.
    const std::string entry = manifest.get_string("run", "entry");
    std::vector<ChildProcess> children;
    for (int i = 0; i < nodes; ++i) {
        std::vector<std::string> node_settings = {"mesh.nodes=" + std::to_string(nodes)};
        node_settings.insert(node_settings.end(), settings.begin(), settings.end());
        if (!coordinator_address.empty()) node_settings.push_back("mesh.coordinator=" + coordinator_address);
        if (!options.host.empty()) node_settings.push_back("mesh.address=" + host_of(i) + ":0");
        std::vector<std::string> argv;
        if (entry.empty()) {
            argv = {exe, "run", options.manifest_path, "--node-id", std::to_string(i), "--run-id", std::to_string(run_id)};
            for (const auto& set : node_settings) argv.insert(argv.end(), {"--set", set});
            if (!options.resume.empty()) argv.insert(argv.end(), {"--resume", options.resume});
            if (options.fresh) argv.push_back("--fresh");
        } else {
            std::string lines;
            for (const auto& set : node_settings) lines += set + "\n";
            ::setenv("PANGEA_LAUNCH_MANIFEST", options.manifest_path.c_str(), 1);
            ::setenv("PANGEA_LAUNCH_NODE_ID", std::to_string(i).c_str(), 1);
            ::setenv("PANGEA_LAUNCH_RUN_ID", std::to_string(run_id).c_str(), 1);
            ::setenv("PANGEA_LAUNCH_SET", lines.c_str(), 1);
            ::setenv("PANGEA_LAUNCH_RESUME", options.resume.c_str(), 1);
            ::setenv("PANGEA_LAUNCH_FRESH", options.fresh ? "1" : "", 1);
            argv = {"/bin/sh", "-c", entry};
        }
        children.emplace_back(in_netns(argv, i), (run_dir / "logs" / ("node-" + std::to_string(i) + ".log")).string());
    }
    std::printf("launched %d nodes%s; logs in %s, metrics in %s\n", nodes,
                coordinator ? (" and a coordinator at " + coordinator_address).c_str() : "", (run_dir / "logs").c_str(),
                (run_dir / "metrics").c_str());
    std::fflush(stdout);

    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    struct sigaction previous_int {}, previous_term {};
    sigaction(SIGINT, &action, &previous_int);
    sigaction(SIGTERM, &action, &previous_term);

    const bool tty = ::isatty(STDOUT_FILENO) != 0;
    const auto grace = std::chrono::milliseconds(manifest.get_int("mesh", "timeout_ms")) + std::chrono::seconds(30);
    std::vector<std::optional<int>> codes(children.size());
    constexpr auto kNever = std::chrono::steady_clock::time_point::max();
    auto give_up = kNever;
    int forwarded = 0, failed = -1;
    const int64_t min_members = std::max<int64_t>(1, manifest.get_int("mesh", "min_members"));
    int64_t printed_outer = -1;
    size_t running = children.size();
    auto last_draw = std::chrono::steady_clock::now();
    while (running > 0) {
        if (const int interrupts = g_interrupts.load(); interrupts > forwarded) {
            forwarded = interrupts;
            for (auto& child : children) child.signal(interrupts > 1 ? SIGKILL : SIGINT);
            std::printf("%sinterrupted: %s the nodes\n", tty ? "\n" : "", interrupts > 1 ? "killing" : "stopping");
        }
        for (size_t i = 0; i < children.size(); ++i) {
            if (codes[i] || !(codes[i] = children[i].wait_for(std::chrono::milliseconds(0)))) continue;
            --running;
            if (*codes[i] != 0 && forwarded == 0) {
                if (failed < 0) failed = static_cast<int>(i);
                std::printf("%snode %zu failed (exit status %d); last lines of its log:\n%s", tty ? "\n" : "", i,
                            *codes[i], last_lines(run_dir / "logs" / ("node-" + std::to_string(i) + ".log"), 8).c_str());
                // The others carry on without it, as long as enough of them are left; below
                // min_members they would wait for joiners that a local launch does not bring.
                if (static_cast<int64_t>(running) < min_members && give_up == kNever) {
                    give_up = std::chrono::steady_clock::now() + grace;
                    std::printf("%zu nodes left, fewer than mesh.min_members = %lld: stopping the run\n", running,
                                static_cast<long long>(min_members));
                } else if (running > 0) {
                    std::printf("the other %zu nodes carry on\n", running);
                }
            }
        }
        if (std::chrono::steady_clock::now() > give_up) {
            for (size_t i = 0; i < children.size(); ++i)
                if (!codes[i]) {
                    std::printf("node %zu still running; killing it\n", i);
                    children[i].signal(SIGKILL);
                }
            give_up = kNever;
        }
        std::vector<bool> shown(children.size());  // the failed nodes' last status would hold the view back
        for (size_t i = 0; i < children.size(); ++i) shown[i] = codes[i].value_or(0) == 0;
        const Progress progress = combined_progress(run_dir / "status", shown);
        if (progress.outer > printed_outer && progress.inner == 0 && progress.outer > 0) {
            printed_outer = progress.outer;
            std::printf("%s%s\n", tty ? "\r\033[K" : "", progress.line.c_str());
        } else if (tty && std::chrono::steady_clock::now() - last_draw > std::chrono::milliseconds(250)) {
            last_draw = std::chrono::steady_clock::now();
            std::printf("\r\033[K%s", progress.line.c_str());
        }
        std::fflush(stdout);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (coordinator) {
        coordinator->signal(SIGTERM);
        coordinator->wait_for(std::chrono::seconds(5));
    }
    sigaction(SIGINT, &previous_int, nullptr);
    sigaction(SIGTERM, &previous_term, nullptr);
    if (tty) std::printf("\r\033[K");

    // The run's HTML report (`pangea report` writes it again at any time).
    const auto report = [&run_dir] {
        try {
            std::printf("report: %s\n", write_run_report(run_dir).c_str());
        } catch (const std::exception& e) {
            std::printf("no report: %s\n", e.what());
        }
    };
    if (forwarded > 0) {
        std::printf("interrupted; partial metrics are in %s\n", (run_dir / "metrics").c_str());
        report();
        return 130;
    }
    bool all_ok = true;
    for (size_t i = 0; i < codes.size(); ++i)
        if (codes[i].value_or(1) != 0) all_ok = false;

    std::vector<std::optional<Json>> summaries(static_cast<size_t>(nodes));
    bool checkpointing = false;  // a column for checkpoints when any node saved, skipped or failed one
    for (int i = 0; i < nodes; ++i) {
        if (codes[i].value_or(1) != 0) continue;
        summaries[i] = read_json(run_dir / "summary" / ("node-" + std::to_string(i) + ".json"));
        if (summaries[i])
            checkpointing = checkpointing || number(*summaries[i], "checkpoints_saved") + number(*summaries[i], "checkpoints_failed") +
                                                     number(*summaries[i], "checkpoints_skipped") > 0;
    }
    std::printf("\n%-6s %11s %11s %9s %12s %13s  %s%s\n", "node", "final loss", "eval loss", "util", "all-reduce s",
                "sent MiB", checkpointing ? "checkpoints (saved/failed/skipped, last)  " : "", "parameters");
    std::string first_hash;
    bool identical = true;
    int finished = 0;
    std::vector<std::string> checkpoint_warnings;
    for (int i = 0; i < nodes; ++i) {
        if (!summaries[i]) continue;
        const Json& fields = *summaries[i];
        const std::string hash = json_string(fields, "params_hash").value_or("?");
        if (finished++ == 0) first_hash = hash;
        identical = identical && hash == first_hash;
        char eval[32] = "-";  // a node that does not evaluate (a Python node) reports none
        if (const double loss = number(fields, "final_eval_loss"); loss >= 0) std::snprintf(eval, sizeof eval, "%.4f", loss);
        std::string saves;
        if (checkpointing) {
            const auto saved = static_cast<long long>(number(fields, "checkpoints_saved"));
            const auto failed = static_cast<long long>(number(fields, "checkpoints_failed"));
            const auto skipped = static_cast<long long>(number(fields, "checkpoints_skipped"));
            const auto last = json_number(fields, "last_checkpoint");
            const std::string last_text = last && *last >= 0 ? "step " + std::to_string(static_cast<long long>(*last)) : "none";
            char cell[96];
            std::snprintf(cell, sizeof cell, "%lld/%lld/%lld, %s", saved, failed, skipped, last_text.c_str());
            char padded[128];
            std::snprintf(padded, sizeof padded, "%-41s  ", cell);
            saves = padded;
            if (failed > 0)
                checkpoint_warnings.push_back(
                    "WARNING: node " + std::to_string(i) + " failed " + std::to_string(failed) + " of " +
                    std::to_string(saved + failed + skipped) + " checkpoint saves; its last good checkpoint is " +
                    (last && *last >= 0 ? "step " + std::to_string(static_cast<long long>(*last)) : "none") + ": see " +
                    (run_dir / "logs" / ("node-" + std::to_string(i) + ".log")).string());
        }
        std::printf("%-6d %11.4f %11s %8.1f%% %12.2f %13.1f  %s%s\n", i, number(fields, "final_loss"), eval,
                    100 * number(fields, "compute_utilization"), number(fields, "allreduce_seconds"),
                    number(fields, "bytes_sent") / 1048576.0, saves.c_str(), hash.c_str());
    }
    if (finished == 0) {
        report();
        return 1;
    }
    std::printf("%s\n", !identical ? "WARNING: the nodes' final parameters differ"
                         : all_ok   ? "all nodes hold bit-identical parameters"
                                    : "the nodes that finished hold bit-identical parameters");
    if (!all_ok)
        for (size_t i = 0; i < codes.size(); ++i)
            if (codes[i].value_or(1) != 0)
                std::printf("node %zu exited with status %d; see %s\n", i, codes[i].value_or(1),
                            (run_dir / "logs" / ("node-" + std::to_string(i) + ".log")).c_str());
    for (const std::string& warning : checkpoint_warnings) std::printf("%s\n", warning.c_str());
    report();
    // A run that trained but could not save every checkpoint asked of it is not as recoverable as
    // its manifest says: a status of its own, 3, so that scripts notice too.
    if (identical && all_ok && !checkpoint_warnings.empty()) return kCheckpointsFailed;
    return identical && all_ok ? 0 : 1;
}

}  // namespace pangea
