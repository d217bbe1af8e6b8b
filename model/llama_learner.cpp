// The Llama model as a Learner: AdamW inner steps with micro-batch accumulation, gradient
// clipping and optional z-loss, on the CPU or a CUDA device, in fp32 or bf16.
#include <ATen/Version.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <thread>

#include "blas.hpp"
#include "llama.hpp"
#include "sharded.hpp"
#include "manifest/manifest.hpp"
#include "train/learner.hpp"
#include "workers/worker_group.hpp"

namespace F = torch::nn::functional;

namespace pangea {
namespace {

// [train] device: "cpu", "cuda" or "cuda:N", present in this process.
torch::Device parse_device(const Manifest& m) {
    const std::string text = m.get_string("train", "device");
    const auto fail = [&](const std::string& why) {
        throw ManifestError({m.core.at("train").at("device").origin + ": [train] device = \"" + text + "\": " + why});
    };
    if (text == "cpu") return torch::kCPU;
    int64_t index = 0;
    if (text != "cuda") {
        const std::string digits = text.rfind("cuda:", 0) == 0 ? text.substr(5) : "";
        if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos)
            fail("expected cpu, cuda or cuda:N");
        index = std::stoll(digits);
    }
    if (!torch::cuda::is_available()) {
        const bool built_with_cuda = at::show_config().find("USE_CUDA=ON") != std::string::npos;
        fail(std::string("this LibTorch (") + TORCH_VERSION + ") " +
             (built_with_cuda ? "sees no CUDA device (no GPU or driver visible to this process)"
                              : "was built without CUDA; build Pangea against a CUDA LibTorch (cmake "
                                "-DCMAKE_PREFIX_PATH=\"$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')\") "
                                "or set device = \"cpu\""));
    }
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (index >= count)
        fail("this machine has " + std::to_string(count) + " CUDA device(s): cuda:0 .. cuda:" + std::to_string(count - 1));
    return {torch::kCUDA, static_cast<c10::DeviceIndex>(index)};
}

ComputeOptions compute_options(const Manifest& m) {
    ComputeOptions options;
    options.device = parse_device(m);
    options.compute = m.get_string("train", "precision") == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    options.activation_checkpointing = m.get_bool("train", "activation_checkpointing");
    return options;
}

// The model's flat parameter tensor on a GPU as the outer loop sees it: each outer step moves
// the parameters across PCIe once each way, down as the pseudo-gradient, up as the synced copy.
// (On the CPU the loop works in the tensor's memory directly: HostParameters.)
class DeviceParameters final : public ModelParameters {
public:
    explicit DeviceParameters(torch::Tensor flat) : flat_(std::move(flat)) {}
    size_t size() const override { return static_cast<size_t>(flat_.numel()); }
    void subtract_from(size_t begin, std::span<const float> base, std::span<float> out) const override {
        read(begin, out);
        for (size_t i = 0; i < out.size(); ++i) out[i] = base[i] - out[i];
    }
    void assign(size_t begin, std::span<const float> values) override {
        torch::NoGradGuard no_grad;
        part(begin, values.size()).copy_(host_view(values));
    }
    void read(size_t begin, std::span<float> out) const override {
        torch::NoGradGuard no_grad;
        host_view(out).copy_(part(begin, out.size()));
    }

private:
    torch::Tensor part(size_t begin, size_t size) const {
        return flat_.narrow(0, static_cast<int64_t>(begin), static_cast<int64_t>(size));
    }
    static torch::Tensor host_view(std::span<const float> values) {
        return torch::from_blob(const_cast<float*>(values.data()), {static_cast<int64_t>(values.size())}, torch::kFloat32);
    }
    torch::Tensor flat_;
};

std::unique_ptr<ModelParameters> parameters_of(const torch::Tensor& flat) {
    if (!flat.is_cpu()) return std::make_unique<DeviceParameters>(flat);
    return std::make_unique<HostParameters>(std::span<float>(flat.data_ptr<float>(), static_cast<size_t>(flat.numel())));
}

// The inner optimizer's state as bytes: a header, then the first and second AdamW moments of
// every parameter in parameter_layout() order (fp32). The same for any number of workers.
struct OptimizerStateHeader {
    char magic[8] = {'P', 'G', 'A', 'D', 'A', 'M', 'W', '1'};
    int64_t step = 0;      // AdamW steps taken
    uint64_t count = 0;    // parameters
};

std::span<uint8_t> bytes_of(void* data, size_t size) { return {static_cast<uint8_t*>(data), size}; }
std::span<uint8_t> bytes_of(const torch::Tensor& host) {
    return bytes_of(host.data_ptr<float>(), static_cast<size_t>(host.numel()) * sizeof(float));
}

class LlamaLearner final : public Learner {
public:
    LlamaLearner(const Manifest& m, const ModelShape& shape, WorkerGroup* workers)
        : workers_(workers && workers->size() > 1 ? workers : nullptr),
          count_(static_cast<int64_t>(parameter_count(shape))),
          model_(shape, m.get_int("data", "seq_len"), static_cast<uint64_t>(m.get_int("run", "seed")), compute_options(m),
                 workers_ ? std::optional(shard_of(count_, workers_->size(), workers_->rank())) : std::nullopt),
          grad_(torch::zeros_like(model_.flat())),
          exp_avg_(torch::zeros_like(model_.flat())),
          exp_avg_sq_(torch::zeros_like(model_.flat())),
          beta1_(m.get_float("train", "beta1")),
          beta2_(m.get_float("train", "beta2")),
          weight_decay_(m.get_float("train", "weight_decay")),
          grad_clip_(m.get_float("train", "grad_clip")),
          z_loss_(m.get_float("train", "z_loss")),
          vocab_(shape.vocab) {
        const int64_t threads = m.get_int("train", "threads");
        const unsigned share = std::thread::hardware_concurrency() / (workers_ ? workers_->size() : 1);
        const int compute_threads = static_cast<int>(threads > 0 ? threads : std::max(1u, share));
        torch::set_num_threads(compute_threads);
        set_blas_threads(compute_threads);
        // Weight decay on the matrices, not on the norm gains: their ranges within what is held.
        for (const auto& slot : parameter_layout(shape)) {
            const FlatRange part = FlatRange{static_cast<int64_t>(slot.offset), static_cast<int64_t>(slot.offset + slot.count)}
                                       .intersect(model_.held());
            if (slot.shape.size() > 1 && part.size() > 0) decayed_.push_back({part.begin - model_.held().begin, part.end - model_.held().begin});
        }
        if (workers_) {
            sharded_.emplace(model_, grad_, *workers_);
        } else {
            // The parameters' gradients are views of grad_: backward accumulates into it in place.
            const float* base = model_.flat().data_ptr<float>();
            for (auto& p : model_.parameters())
                p.mutable_grad() = grad_.narrow(0, p.data_ptr<float>() - base, p.numel()).view(p.sizes());
        }
        parameters_ = parameters_of(model_.flat());
    }

    ModelParameters& parameters() override { return *parameters_; }

    uint64_t state_bytes() const override {
        return static_cast<uint64_t>(model_.flat().numel()) * (4 + 4 + 8);  // parameters, gradients, two moments
    }

    std::string describe() const override {
        const ComputeOptions& c = model_.compute();
        return c.device.str() + ", " + (c.compute == torch::kBFloat16 ? "bf16" : "fp32") +
               (c.activation_checkpointing ? ", activation checkpointing" : "") +
               (workers_ ? ", sharded over " + std::to_string(workers_->size()) + " workers (ZeRO-3)" : "") +
               ", LibTorch " + TORCH_VERSION + (c.device.is_cpu() ? ", BLAS: " + blas_.name : "");
    }

    std::vector<std::string> warnings() const override {
        if (model_.compute().device.is_cpu() && blas_.reference) return {blas_.warning};
        return {};
    }

    InnerStepResult step(std::span<const TokenBatch> micro_batches, double lr) override {
        grad_.zero_();
        double loss_sum = 0;
        for (const auto& whole : micro_batches) {
            const TokenBatch batch = share_of(whole);
            const auto [inputs, targets] = split(batch);
            const auto flat_logits = forward(inputs).view({-1, vocab_});
            auto loss = F::cross_entropy(flat_logits, targets.reshape({-1}));
            loss_sum += loss.item<double>();
            if (z_loss_ > 0) loss = loss + z_loss_ * torch::logsumexp(flat_logits, -1).pow(2).mean();
            (loss / double(micro_batches.size())).backward();
        }
        torch::NoGradGuard no_grad;
        double norm = 0;
        if (workers_) {
            // Each worker's gradient is the mean over its share: the sum over workers, over W.
            grad_.mul_(1.0 / workers_->size());
            const double own = grad_.norm().item<double>();
            const auto [loss, squares] = sum_over_workers(loss_sum, own * own);
            loss_sum = loss / workers_->size();
            norm = std::sqrt(squares);
        } else {
            norm = grad_.norm().item<double>();
        }
        if (grad_clip_ > 0 && norm > 0) {
            const double coefficient = grad_clip_ / (norm + 1e-6);
            if (coefficient < 1) grad_.mul_(coefficient);
        }
        adamw(lr);
        return {loss_sum / double(micro_batches.size()), norm};
    }

    LossSum evaluate(const TokenBatch& batch) override {
        if (!workers_) return loss_on(batch);
        announce(WorkerRequest::kEvaluate);
        std::array<int64_t, 2> shape{batch.sequences, batch.seq_len};
        workers_->broadcast(bytes_of(shape.data(), sizeof shape), 0);
        std::vector<int32_t> tokens(batch.tokens.begin(), batch.tokens.end());
        workers_->broadcast(bytes_of(tokens.data(), tokens.size() * sizeof(int32_t)), 0);
        return evaluate_share({tokens, batch.sequences, batch.seq_len});
    }

    std::function<std::vector<uint8_t>()> snapshot_optimizer_state() override {
        if (workers_ && workers_->rank() > 0) {  // (serve(): its shard to worker 0)
            workers_->send(bytes_of(host(exp_avg_)), 0);
            workers_->send(bytes_of(host(exp_avg_sq_)), 0);
            return [] { return std::vector<uint8_t>(); };
        }
        announce(WorkerRequest::kSnapshotOptimizerState);
        OptimizerStateHeader header;
        header.step = step_;
        header.count = static_cast<uint64_t>(count_);
        // Into the previous snapshot's buffer once nobody holds it (no fresh pages to fault in on
        // the training thread); the function copies it out later, on the caller's thread.
        if (!snapshot_ || snapshot_.use_count() > 1) snapshot_ = std::make_shared<std::vector<uint8_t>>();
        const auto bytes = snapshot_;
        bytes->resize(sizeof header + 2 * static_cast<size_t>(count_) * sizeof(float));
        std::memcpy(bytes->data(), &header, sizeof header);
        float* first = reinterpret_cast<float*>(bytes->data() + sizeof header);
        for (const auto& [moments, out] : {std::pair{exp_avg_, first}, std::pair{exp_avg_sq_, first + count_}}) {
            for (int k = 0; k < group_size(); ++k) {
                const FlatRange part = shard(k);
                if (k == 0) host_view(out + part.begin, part.size()).copy_(moments);
                else workers_->receive(bytes_of(out + part.begin, static_cast<size_t>(part.size()) * sizeof(float)), k);
            }
        }
        return [bytes] { return *bytes; };
    }

    void load_optimizer_state(std::span<const uint8_t> bytes) override {
        if (workers_ && workers_->rank() > 0) {  // (serve(): its shard from worker 0)
            workers_->receive(bytes_of(&step_, sizeof step_), 0);
            for (torch::Tensor* moments : {&exp_avg_, &exp_avg_sq_}) {
                torch::Tensor values = host(*moments).clone();
                workers_->receive(bytes_of(values), 0);
                moments->copy_(values);
            }
            return;
        }
        OptimizerStateHeader header;
        const OptimizerStateHeader expected;
        const size_t size = sizeof header + 2 * static_cast<size_t>(count_) * sizeof(float);
        if (bytes.size() >= sizeof header) std::memcpy(&header, bytes.data(), sizeof header);
        if (bytes.size() < sizeof header || std::memcmp(header.magic, expected.magic, sizeof header.magic) != 0)
            throw std::runtime_error("the inner optimizer state is not Pangea's AdamW state (" + std::to_string(bytes.size()) +
                                     " bytes; saved by an older version?)");
        if (header.count != static_cast<uint64_t>(count_) || bytes.size() != size)
            throw std::runtime_error("the inner optimizer state does not fit this model: it holds moments of " +
                                     std::to_string(header.count) + " parameters in " + std::to_string(bytes.size()) +
                                     " bytes, this model has " + std::to_string(count_) + " parameters");
        announce(WorkerRequest::kLoadOptimizerState);
        const float* first = reinterpret_cast<const float*>(bytes.data() + sizeof header);
        step_ = header.step;
        for (int k = 1; k < group_size(); ++k) workers_->send(bytes_of(&step_, sizeof step_), k);
        for (const auto& [moments, in] : {std::pair{exp_avg_, first}, std::pair{exp_avg_sq_, first + count_}}) {
            for (int k = 0; k < group_size(); ++k) {
                const FlatRange part = shard(k);
                if (k == 0) moments.copy_(host_view(in + part.begin, part.size()));
                else workers_->send({reinterpret_cast<const uint8_t*>(in + part.begin), static_cast<size_t>(part.size()) * sizeof(float)}, k);
            }
        }
    }

    void set_announcer(std::function<void(WorkerRequest)> announce) override { announce_ = std::move(announce); }

    void serve(WorkerRequest request) override {
        switch (request) {
        case WorkerRequest::kLoadOptimizerState:
            return load_optimizer_state({});
        case WorkerRequest::kSnapshotOptimizerState:
            return void(snapshot_optimizer_state());
        case WorkerRequest::kEvaluate: {
            std::array<int64_t, 2> shape{};
            workers_->broadcast(bytes_of(shape.data(), sizeof shape), 0);
            if (shape[0] < 0 || shape[1] < 1 || shape[0] * (shape[1] + 1) > (int64_t{1} << 31))
                throw std::runtime_error("worker 0 asked for an evaluation of " + std::to_string(shape[0]) + " windows of " +
                                         std::to_string(shape[1]) + " tokens");
            std::vector<int32_t> tokens(static_cast<size_t>(shape[0] * (shape[1] + 1)));
            workers_->broadcast(bytes_of(tokens.data(), tokens.size() * sizeof(int32_t)), 0);
            return void(evaluate_share({tokens, shape[0], shape[1]}));
        }
        }
        throw std::runtime_error("worker 0 asked for something unknown (" + std::to_string(static_cast<uint32_t>(request)) + ")");
    }

private:
    int group_size() const { return workers_ ? workers_->size() : 1; }
    FlatRange shard(int worker) const { return shard_of(count_, group_size(), worker); }
    void announce(WorkerRequest request) const {
        if (workers_ && announce_) announce_(request);
    }

    torch::Tensor forward(const torch::Tensor& inputs) { return sharded_ ? sharded_->forward(inputs) : model_.forward(inputs); }

    // A host tensor over `count` floats at `data` (no copy).
    static torch::Tensor host_view(const float* data, int64_t count) {
        return torch::from_blob(const_cast<float*>(data), {count}, torch::kFloat32);
    }
    // `t` in host memory (itself on the CPU).
    static torch::Tensor host(const torch::Tensor& t) { return t.is_cpu() ? t : t.cpu(); }

    // AdamW on the flat values held, as torch.optim.AdamW computes it, element by element.
    void adamw(double lr) {
        ++step_;
        const double bias1 = 1 - std::pow(beta1_, double(step_)), bias2 = 1 - std::pow(beta2_, double(step_));
        const torch::Tensor& values = model_.flat();
        if (weight_decay_ != 0)
            for (const FlatRange& r : decayed_) values.narrow(0, r.begin, r.size()).mul_(1 - lr * weight_decay_);
        // In pieces: the denominator is a temporary, one piece long (a whole-buffer one would be
        // 4 bytes a parameter more at the peak).
        constexpr int64_t kPiece = int64_t{1} << 20;
        for (int64_t at = 0; at < values.numel(); at += kPiece) {
            const int64_t n = std::min(kPiece, values.numel() - at);
            const auto grad = grad_.narrow(0, at, n), exp_avg = exp_avg_.narrow(0, at, n),
                       exp_avg_sq = exp_avg_sq_.narrow(0, at, n);
            exp_avg.mul_(beta1_).add_(grad, 1 - beta1_);
            exp_avg_sq.mul_(beta2_).addcmul_(grad, grad, 1 - beta2_);
            const auto denominator = exp_avg_sq.sqrt().div_(std::sqrt(bias2)).add_(1e-8);
            values.narrow(0, at, n).addcdiv_(exp_avg, denominator, -lr / bias1);
        }
    }

    LossSum loss_on(const TokenBatch& batch) {
        torch::NoGradGuard no_grad;
        const auto [inputs, targets] = split(batch);
        const auto logits = forward(inputs).view({-1, vocab_});
        const auto loss = F::cross_entropy(logits, targets.reshape({-1}), F::CrossEntropyFuncOptions().reduction(torch::kSum));
        return {loss.item<double>(), targets.numel()};
    }

    // Sharded: each worker its share of the windows (one with none still runs the model, on the
    // first window, for the gathers: it adds nothing), summed over the workers.
    LossSum evaluate_share(const TokenBatch& batch) {
        const int64_t k = workers_->rank(), w = workers_->size(), window = batch.seq_len + 1;
        const int64_t first = batch.sequences * k / w, count = batch.sequences * (k + 1) / w - first;
        const TokenBatch share{batch.tokens.subspan(static_cast<size_t>(first * window),
                                                    static_cast<size_t>(std::max<int64_t>(count, 1) * window)),
                               std::max<int64_t>(count, 1), batch.seq_len};
        const LossSum own = batch.sequences > 0 ? loss_on(share) : LossSum{};
        const auto [sum, tokens] = sum_over_workers(count > 0 ? own.sum : 0.0, count > 0 ? double(own.tokens) : 0.0);
        return {sum, static_cast<int64_t>(std::llround(tokens))};
    }

    // Two numbers summed over the workers, where the group sums (the model's device: NCCL's are
    // on the GPU).
    std::pair<double, double> sum_over_workers(double a, double b) const {
        const torch::Tensor sums = torch::tensor({static_cast<float>(a), static_cast<float>(b)}).to(model_.flat().device());
        workers_->all_reduce_sum({sums.data_ptr<float>(), 2});
        const torch::Tensor host = sums.cpu();
        return {double(host[0].item<float>()), double(host[1].item<float>())};
    }

    // This worker's sequences of a micro-batch (the whole of it without workers).
    TokenBatch share_of(const TokenBatch& batch) const {
        if (!workers_) return batch;
        const int64_t count = batch.sequences / workers_->size();
        const int64_t window = batch.seq_len + 1;
        return {batch.tokens.subspan(static_cast<size_t>(workers_->rank() * count * window),
                                     static_cast<size_t>(count * window)),
                count, batch.seq_len};
    }

    std::pair<torch::Tensor, torch::Tensor> split(const TokenBatch& batch) const {
        const auto windows = torch::from_blob(const_cast<int32_t*>(batch.tokens.data()),
                                              {batch.sequences, batch.seq_len + 1}, torch::kInt32)
                                 .to(model_.compute().device, torch::kInt64);
        return {windows.narrow(1, 0, batch.seq_len), windows.narrow(1, 1, batch.seq_len)};
    }

    WorkerGroup* workers_;  // the node's workers, when it has several: the model is sharded among them
    int64_t count_;         // parameters in all
    BlasReport blas_ = check_blas();
    LlamaModel model_;      // holds this worker's shard, or everything
    torch::Tensor grad_, exp_avg_, exp_avg_sq_;  // of what model_ holds
    std::optional<ShardedModel> sharded_;
    std::unique_ptr<ModelParameters> parameters_;  // what model_ holds
    std::function<void(WorkerRequest)> announce_;
    std::shared_ptr<std::vector<uint8_t>> snapshot_;  // the last snapshot_optimizer_state()'s bytes
    std::vector<FlatRange> decayed_;  // within what is held
    int64_t step_ = 0;                // AdamW steps taken
    double beta1_, beta2_, weight_decay_;
    double grad_clip_;
    double z_loss_;
    int64_t vocab_;
};

}  // namespace

std::unique_ptr<Learner> make_llama_learner(const Manifest& manifest, const ModelShape& shape, WorkerGroup* workers) {
    return std::make_unique<LlamaLearner>(manifest, shape, workers);
}

}  // namespace pangea
