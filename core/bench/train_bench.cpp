#include "bench/train_bench.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/process.hpp"
#include "data/sampler.hpp"
#include "manifest/manifest.hpp"
#include "train/learner.hpp"
#include "train/model_shape.hpp"
#include "train/node.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

// The reference's one JSON line: {"tokens_per_s": X, ...}.
double tokens_per_s_of(const std::string& line) {
    const auto at = line.find("\"tokens_per_s\":");
    if (at == std::string::npos) throw std::runtime_error("the reference printed no tokens_per_s: " + line);
    return std::stod(line.substr(at + 15));
}

}  // namespace

int run_train_bench(const Manifest& m, const TrainBenchOptions& options) {
    using Clock = std::chrono::steady_clock;
    use_training_allocator();  // as a node does
    const int64_t seq_len = m.get_int("data", "seq_len"), micro_batch = m.get_int("train", "micro_batch"),
                  grad_accum = m.get_int("train", "grad_accum"), threads = m.get_int("train", "threads");
    Sampler sampler(m.data_sources, seq_len, static_cast<uint64_t>(m.get_int("run", "seed")), 0, 1);
    const ModelShape shape = check_training_inputs(m, sampler);
    const auto learner = make_llama_learner(m, shape);
    std::vector<int32_t> tokens(static_cast<size_t>(grad_accum * micro_batch * (seq_len + 1)));
    std::vector<TokenBatch> micro;
    for (int64_t i = 0; i < grad_accum; ++i)
        micro.push_back({std::span<const int32_t>(tokens).subspan(i * micro_batch * (seq_len + 1), micro_batch * (seq_len + 1)),
                         micro_batch, seq_len});
    const double step_tokens = double(grad_accum * micro_batch * seq_len);
    std::printf("model %s: %s parameters (%lld layers, d_model %lld, vocab %lld); %lld x %lld tokens x %lld "
                "micro-batches per step; %s\n",
                shape.preset.c_str(), format_count(double(parameter_count(shape))).c_str(), (long long)shape.layers,
                (long long)shape.d_model, (long long)shape.vocab, (long long)micro_batch, (long long)seq_len,
                (long long)grad_accum, learner->describe().c_str());
    for (const std::string& warning : learner->warnings()) std::printf("warning: %s\n", warning.c_str());
    std::fflush(stdout);

    // Ours: warm-up steps, then the timed ones.
    int warmup = options.warmup;
    const auto measure_ours = [&] {
        double seconds = 0;
        for (int i = 0; i < warmup + options.steps; ++i) {
            sampler.next(tokens);
            const auto start = Clock::now();
            learner->step(micro, m.get_float("train", "lr"));
            if (i >= warmup) seconds += std::chrono::duration<double>(Clock::now() - start).count();
        }
        warmup = 0;  // once is enough in this process
        return step_tokens * options.steps / seconds;
    };

    std::vector<std::string> argv = {options.python, options.reference};
    const auto arg = [&](const char* name, const std::string& value) {
        argv.push_back(name);
        argv.push_back(value);
    };
    arg("--layers", std::to_string(shape.layers)), arg("--d-model", std::to_string(shape.d_model));
    arg("--heads", std::to_string(shape.heads)), arg("--kv-heads", std::to_string(shape.kv_heads));
    arg("--ffn", std::to_string(shape.ffn)), arg("--vocab", std::to_string(shape.vocab));
    arg("--tied", shape.tied_embeddings ? "1" : "0"), arg("--seq-len", std::to_string(seq_len));
    arg("--micro-batch", std::to_string(micro_batch)), arg("--grad-accum", std::to_string(grad_accum));
    arg("--threads", std::to_string(threads)), arg("--steps", std::to_string(options.steps));
    arg("--warmup", std::to_string(options.warmup)), arg("--rope-theta", std::to_string(shape.rope_theta));
    arg("--precision", m.get_string("train", "precision")), arg("--device", m.get_string("train", "device"));
    const fs::path output = fs::temp_directory_path() / ("pangea-bench-train-" + std::to_string(::getpid()) + ".out");
    const auto measure_reference = [&]() -> double {
        std::optional<int> status;
        {
            ChildProcess child(argv, output.string());
            while (!(status = child.wait_for(std::chrono::seconds(1)))) {
            }
        }
        std::ifstream in(output);
        std::stringstream text;
        text << in.rdbuf();
        fs::remove(output);
        std::string last, line;
        while (std::getline(text, line))
            if (!line.empty()) last = line;
        if (*status != 0)
            throw std::runtime_error("the reference (" + options.python + " " + options.reference + ") exited with status " +
                                     std::to_string(*status) + ":\n" + text.str());
        return tokens_per_s_of(last);
    };

    double ours = 0, reference = 0;
    for (int round = 0; round < std::max(1, options.rounds); ++round) {
        const double a = measure_ours();
        std::printf("round %d: pangea %.1f tokens/s", round + 1, a);
        std::fflush(stdout);
        ours = std::max(ours, a);
        if (options.reference.empty()) {
            std::printf("\n");
            continue;
        }
        const double b = measure_reference();
        std::printf(", PyTorch eager %.1f tokens/s\n", b);
        reference = std::max(reference, b);
    }
    std::printf("%-28s %12.1f tokens/s %10.3f s/step (best of %d rounds of %d steps)\n", "pangea", ours,
                step_tokens / ours, std::max(1, options.rounds), options.steps);
    if (options.reference.empty()) return 0;
    std::printf("%-28s %12.1f tokens/s %10.3f s/step\n", "PyTorch eager (reference)", reference, step_tokens / reference);
    std::printf("ratio pangea / PyTorch: %.2f\n", ours / reference);
    return 0;
}

}  // namespace pangea
