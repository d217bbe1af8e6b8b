// The Llama model as a Learner: AdamW inner steps with micro-batch accumulation, gradient
// clipping and optional z-loss, on the CPU or a CUDA device, in fp32 or bf16.
#include <ATen/Version.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <sstream>
#include <thread>

#include "blas.hpp"
#include "llama.hpp"
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
    void subtract_from(std::span<const float> base, std::span<float> out) const override {
        read(out);
        for (size_t i = 0; i < out.size(); ++i) out[i] = base[i] - out[i];
    }
    void assign(std::span<const float> values) override {
        torch::NoGradGuard no_grad;
        flat_.copy_(host_view(values));
    }
    void read(std::span<float> out) const override {
        torch::NoGradGuard no_grad;
        host_view(out).copy_(flat_);
    }

private:
    static torch::Tensor host_view(std::span<const float> values) {
        return torch::from_blob(const_cast<float*>(values.data()), {static_cast<int64_t>(values.size())}, torch::kFloat32);
    }
    torch::Tensor flat_;
};

std::unique_ptr<ModelParameters> parameters_of(const torch::Tensor& flat) {
    if (!flat.is_cpu()) return std::make_unique<DeviceParameters>(flat);
    return std::make_unique<HostParameters>(std::span<float>(flat.data_ptr<float>(), static_cast<size_t>(flat.numel())));
}

class LlamaLearner final : public Learner {
public:
    LlamaLearner(const Manifest& m, const ModelShape& shape, WorkerGroup* workers)
        : workers_(workers && workers->size() > 1 ? workers : nullptr),
          model_(shape, m.get_int("data", "seq_len"), static_cast<uint64_t>(m.get_int("run", "seed")), compute_options(m)),
          parameters_(parameters_of(model_.flat())),
          optimizer_(make_optimizer(m)),
          grad_clip_(m.get_float("train", "grad_clip")),
          z_loss_(m.get_float("train", "z_loss")),
          vocab_(shape.vocab) {}

    ModelParameters& parameters() override { return *parameters_; }

    uint64_t state_bytes() const override {
        return static_cast<uint64_t>(model_.flat().numel()) * (4 + 4 + 8);  // parameters, gradients, two moments
    }

    std::string describe() const override {
        const ComputeOptions& c = model_.compute();
        return c.device.str() + ", " + (c.compute == torch::kBFloat16 ? "bf16" : "fp32") +
               (c.activation_checkpointing ? ", activation checkpointing" : "") + ", LibTorch " + TORCH_VERSION +
               (c.device.is_cpu() ? ", BLAS: " + blas_.name : "");
    }

    std::vector<std::string> warnings() const override {
        if (model_.compute().device.is_cpu() && blas_.reference) return {blas_.warning};
        return {};
    }

    InnerStepResult step(std::span<const TokenBatch> micro_batches, double lr) override {
        for (auto& group : optimizer_.param_groups())
            static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
        optimizer_.zero_grad();
        double loss_sum = 0;
        for (const auto& whole : micro_batches) {
            const TokenBatch batch = share_of(whole);
            const auto [inputs, targets] = split(batch);
            const auto logits = model_.forward(inputs);
            const auto flat_logits = logits.view({-1, vocab_});
            auto loss = F::cross_entropy(flat_logits, targets.reshape({-1}));
            loss_sum += loss.item<double>();
            if (z_loss_ > 0) loss = loss + z_loss_ * torch::logsumexp(flat_logits, -1).pow(2).mean();
            (loss / double(micro_batches.size())).backward();
        }
        if (workers_) sum_over_workers(&loss_sum);
        const auto params = model_.parameters();
        const double norm = torch::nn::utils::clip_grad_norm_(
            params, grad_clip_ > 0 ? grad_clip_ : std::numeric_limits<double>::infinity());
        optimizer_.step();
        return {loss_sum / double(micro_batches.size()), norm};
    }

    LossSum evaluate(const TokenBatch& batch) override {
        torch::NoGradGuard no_grad;
        const auto [inputs, targets] = split(batch);
        const auto logits = model_.forward(inputs).view({-1, vocab_});
        const auto loss = F::cross_entropy(logits, targets.reshape({-1}),
                                           F::CrossEntropyFuncOptions().reduction(torch::kSum));
        return {loss.item<double>(), targets.numel()};
    }

    std::function<std::vector<uint8_t>()> snapshot_optimizer_state() override {
        // A second AdamW over the same parameters (the archive only uses their identities as
        // keys) holding copies of the moments: cheap now, serialized whenever asked. The copy
        // of the previous snapshot is reused once nobody holds it (its tensors are allocated).
        if (!snapshot_ || snapshot_.use_count() > 1)
            snapshot_ = std::make_shared<torch::optim::AdamW>(
                optimizer_.param_groups(), static_cast<const torch::optim::AdamWOptions&>(optimizer_.defaults()));
        auto& copies = snapshot_->state();
        for (const auto& [key, state] : optimizer_.state()) {
            const auto& s = static_cast<const torch::optim::AdamWParamState&>(*state);
            auto& slot = copies[key];
            if (!slot) slot = std::make_unique<torch::optim::AdamWParamState>();
            auto& moments = static_cast<torch::optim::AdamWParamState&>(*slot);
            // Into host memory: on a GPU the moments are what the device must hold, not the copies.
            auto copy = [](torch::Tensor into, const torch::Tensor& from) {
                return into.defined() && into.sizes() == from.sizes() ? into.copy_(from)
                                                                      : from.to(torch::kCPU, false, /*copy=*/true);
            };
            moments.step(s.step());
            moments.exp_avg(copy(moments.exp_avg(), s.exp_avg()));
            moments.exp_avg_sq(copy(moments.exp_avg_sq(), s.exp_avg_sq()));
            if (s.max_exp_avg_sq().defined()) moments.max_exp_avg_sq(copy(moments.max_exp_avg_sq(), s.max_exp_avg_sq()));
        }
        return [copy = snapshot_] {
            torch::serialize::OutputArchive archive;
            copy->save(archive);
            std::ostringstream out;
            archive.save_to(out);
            const std::string bytes = out.str();
            return std::vector<uint8_t>(bytes.begin(), bytes.end());
        };
    }

    void load_optimizer_state(std::span<const uint8_t> bytes) override {
        const std::vector<uint8_t> backup = snapshot_optimizer_state()();  // a failed load may have half-loaded
        try {
            load_archive(bytes);
        } catch (const c10::Error& e) {
            load_archive(backup);
            throw std::runtime_error(std::string("the inner optimizer state does not fit this model: ") +
                                     e.what_without_backtrace());
        }
    }

private:
    // This worker's sequences of a micro-batch (the whole of it without workers).
    TokenBatch share_of(const TokenBatch& batch) const {
        if (!workers_) return batch;
        const int64_t count = batch.sequences / workers_->size();
        const int64_t window = batch.seq_len + 1;
        return {batch.tokens.subspan(static_cast<size_t>(workers_->rank() * count * window),
                                     static_cast<size_t>(count * window)),
                count, batch.seq_len};
    }

    // The gradients (and the loss) summed over the workers and averaged: each worker's are the
    // mean over its share of the batch. One all-reduce over a flat copy on the model's device
    // (Gloo's on the CPU, NCCL's on GPUs); every worker then holds the same bits.
    void sum_over_workers(double* loss_sum) {
        const auto params = model_.parameters();
        int64_t count = 1;  // the loss rides at the end
        for (const auto& p : params) count += p.numel();
        if (flat_gradients_.numel() != count) flat_gradients_ = torch::empty({count}, model_.flat().options());
        torch::NoGradGuard no_grad;
        int64_t at = 0;
        for (const auto& p : params) {
            auto view = flat_gradients_.narrow(0, at, p.numel()).view(p.sizes());
            if (p.grad().defined()) view.copy_(p.grad());
            else view.zero_();
            at += p.numel();
        }
        flat_gradients_.narrow(0, at, 1).fill_(*loss_sum);
        workers_->all_reduce_sum({flat_gradients_.data_ptr<float>(), static_cast<size_t>(count)});
        const double share = 1.0 / workers_->size();
        at = 0;
        for (auto& p : params) {
            const auto view = flat_gradients_.narrow(0, at, p.numel()).view(p.sizes());
            if (p.grad().defined()) p.mutable_grad().copy_(view).mul_(share);
            else p.mutable_grad() = view.mul(share);
            at += p.numel();
        }
        *loss_sum = flat_gradients_[at].item<double>() * share;
    }

    void load_archive(std::span<const uint8_t> bytes) {
        std::istringstream in(std::string(bytes.begin(), bytes.end()));
        torch::serialize::InputArchive archive;
        archive.load_from(in);
        optimizer_.load(archive);
        const torch::Device device = model_.compute().device;
        if (device.is_cpu()) return;
        for (auto& [key, state] : optimizer_.state()) {  // loaded into host memory
            auto& s = static_cast<torch::optim::AdamWParamState&>(*state);
            s.exp_avg(s.exp_avg().to(device));
            s.exp_avg_sq(s.exp_avg_sq().to(device));
            if (s.max_exp_avg_sq().defined()) s.max_exp_avg_sq(s.max_exp_avg_sq().to(device));
        }
    }

    std::pair<torch::Tensor, torch::Tensor> split(const TokenBatch& batch) const {
        const auto windows = torch::from_blob(const_cast<int32_t*>(batch.tokens.data()),
                                              {batch.sequences, batch.seq_len + 1}, torch::kInt32)
                                 .to(model_.compute().device, torch::kInt64);
        return {windows.narrow(1, 0, batch.seq_len), windows.narrow(1, 1, batch.seq_len)};
    }

    torch::optim::AdamW make_optimizer(const Manifest& m) {
        const int64_t threads = m.get_int("train", "threads");
        const unsigned share = std::thread::hardware_concurrency() / (workers_ ? workers_->size() : 1);
        torch::set_num_threads(static_cast<int>(threads > 0 ? threads : std::max(1u, share)));
        auto options = [&](double weight_decay) {
            return std::make_unique<torch::optim::AdamWOptions>(
                torch::optim::AdamWOptions(m.get_float("train", "lr"))
                    .betas({m.get_float("train", "beta1"), m.get_float("train", "beta2")})
                    .eps(1e-8)
                    .weight_decay(weight_decay));
        };
        std::vector<torch::optim::OptimizerParamGroup> groups;
        groups.emplace_back(model_.matrices(), options(m.get_float("train", "weight_decay")));
        groups.emplace_back(model_.vectors(), options(0.0));  // no decay on norm gains
        return torch::optim::AdamW(groups, torch::optim::AdamWOptions(m.get_float("train", "lr")));
    }

    WorkerGroup* workers_;               // the node's workers, when it has several
    torch::Tensor flat_gradients_ = torch::empty({0});  // their sum's buffer, on the model's device
    BlasReport blas_ = check_blas();
    LlamaModel model_;
    std::unique_ptr<ModelParameters> parameters_;
    torch::optim::AdamW optimizer_;
    std::shared_ptr<torch::optim::AdamW> snapshot_;  // the last snapshot_optimizer_state() copy
    double grad_clip_;
    double z_loss_;
    int64_t vocab_;
};

}  // namespace

std::unique_ptr<Learner> make_llama_learner(const Manifest& manifest, const ModelShape& shape, WorkerGroup* workers) {
    return std::make_unique<LlamaLearner>(manifest, shape, workers);
}

}  // namespace pangea
