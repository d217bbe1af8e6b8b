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
    double seconds = 0;
    for (int i = 0; i < options.warmup + options.steps; ++i) {
        sampler.next(tokens);
        const auto start = Clock::now();
        learner->step(micro, m.get_float("train", "lr"));
        if (i >= options.warmup) seconds += std::chrono::duration<double>(Clock::now() - start).count();
    }
    const double ours = step_tokens * options.steps / seconds;
    std::printf("%-28s %12.1f tokens/s %10.3f s/step\n", "pangea", ours, seconds / options.steps);
    std::fflush(stdout);
    if (options.reference.empty()) return 0;

    const std::string device = m.get_string("train", "device");
    std::vector<std::string> argv = {options.python, options.reference};
    const auto arg = [&](const char* name, int64_t value) {
        argv.push_back(name);
        argv.push_back(std::to_string(value));
    };
    arg("--layers", shape.layers), arg("--d-model", shape.d_model), arg("--heads", shape.heads);
    arg("--kv-heads", shape.kv_heads), arg("--ffn", shape.ffn), arg("--vocab", shape.vocab);
    arg("--tied", shape.tied_embeddings ? 1 : 0), arg("--seq-len", seq_len), arg("--micro-batch", micro_batch);
    arg("--grad-accum", grad_accum), arg("--threads", threads), arg("--steps", options.steps);
    arg("--warmup", options.warmup);
    for (const std::string& text : {std::string("--rope-theta"), std::to_string(shape.rope_theta), std::string("--precision"),
                                    m.get_string("train", "precision"), std::string("--device"), device})
        argv.push_back(text);
    const fs::path output = fs::temp_directory_path() / ("pangea-bench-train-" + std::to_string(::getpid()) + ".out");
    ChildProcess child(argv, output.string());
    std::optional<int> status;
    while (!(status = child.wait_for(std::chrono::seconds(1)))) {
    }
    std::ifstream in(output);
    std::stringstream text;
    text << in.rdbuf();
    fs::remove(output);
    std::string last, line;
    while (std::getline(text, line))
        if (!line.empty()) last = line;
    if (*status != 0) {
        std::fprintf(stderr, "error: the reference (%s %s) exited with status %d:\n%s", options.python.c_str(),
                     options.reference.c_str(), *status, text.str().c_str());
        return 1;
    }
    const double reference = tokens_per_s_of(last);
    std::printf("%-28s %12.1f tokens/s %10.3f s/step\n", "PyTorch eager (reference)", reference, step_tokens / reference);
    std::printf("ratio pangea / PyTorch: %.2f\n", ours / reference);
    return 0;
}

}  // namespace pangea
