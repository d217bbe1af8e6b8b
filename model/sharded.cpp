#include "sharded.hpp"

#include <algorithm>
#include <map>

#include "workers/worker_group.hpp"

namespace pangea {
namespace {

std::span<float> span_of(const torch::Tensor& t, int64_t offset, int64_t count) {
    return {t.data_ptr<float>() + offset, static_cast<size_t>(count)};
}

// One unit as an autograd function: the forward pass keeps only the unit's input; the backward
// pass gathers the weights again, recomputes the unit and differentiates it, then hands the
// weights' gradient to reduce_scatter.
struct GatheredUnit : public torch::autograd::Function<GatheredUnit> {
    static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor /*requires_grad*/,
                                 ShardedModel* model, int64_t unit) {
        ctx->save_for_backward({x});
        ctx->saved_data["model"] = reinterpret_cast<int64_t>(model);
        ctx->saved_data["unit"] = unit;
        torch::NoGradGuard no_grad;
        return model->run(static_cast<size_t>(unit), x, model->gather(model->units()[static_cast<size_t>(unit)]));
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grad_output) {
        auto* model = reinterpret_cast<ShardedModel*>(ctx->saved_data["model"].toInt());
        const auto unit = static_cast<size_t>(ctx->saved_data["unit"].toInt());
        const torch::Tensor x = ctx->get_saved_variables()[0];
        const bool x_needs_grad = x.is_floating_point();  // (the embedding's input is tokens)
        torch::Tensor input = x.detach();
        if (x_needs_grad) input.requires_grad_(true);
        const torch::Tensor weights = model->gather(model->units()[unit]).requires_grad_(true);
        torch::Tensor y;
        {
            torch::AutoGradMode enable(true);
            y = model->run(unit, input, weights);
        }
        std::vector<torch::Tensor> inputs{weights};
        if (x_needs_grad) inputs.push_back(input);
        const auto grads = torch::autograd::grad({y}, inputs, {grad_output[0]});
        model->reduce_scatter(model->units()[unit], grads[0].contiguous());
        // forward's arguments: x, requires_grad, the model and the unit (no gradient).
        return {x_needs_grad ? grads[1] : torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    }
};

}  // namespace

FlatRange shard_of(int64_t count, int workers, int worker) {
    const ShardRange range = shard_range(static_cast<size_t>(count), workers, worker);
    return {static_cast<int64_t>(range.begin), static_cast<int64_t>(range.end)};
}

ShardedModel::ShardedModel(const LlamaModel& model, torch::Tensor grad, WorkerGroup& group)
    : model_(model), grad_(std::move(grad)), group_(group), layout_(parameter_layout(model.shape())) {
    const int64_t count = static_cast<int64_t>(parameter_count(model.shape()));
    for (int k = 0; k < group.size(); ++k) shards_.push_back(shard_of(count, group.size(), k));
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < layout_.size(); ++i) index[layout_[i].name] = i;
    // The units, each a list of slots: the embedding, the blocks, the head (whose output
    // projection is the embedding when tied).
    std::vector<std::vector<size_t>> slots{{index.at("tok_embeddings")}};
    for (int64_t l = 0; l < model.shape().layers; ++l) {
        const std::string p = "layers." + std::to_string(l) + ".";
        slots.push_back({});
        for (const char* name : {"attention_norm", "attention.wq", "attention.wk", "attention.wv", "attention.wo",
                                 "ffn_norm", "feed_forward.w1", "feed_forward.w3", "feed_forward.w2"})
            slots.back().push_back(index.at(p + name));
    }
    slots.push_back({index.at("norm"), index.at(model.shape().tied_embeddings ? "tok_embeddings" : "output")});
    for (const auto& unit_slots : slots) {
        Unit unit;
        unit.slots = unit_slots;
        std::vector<FlatRange> ranges;
        for (const size_t s : unit_slots)
            ranges.push_back({static_cast<int64_t>(layout_[s].offset), static_cast<int64_t>(layout_[s].offset + layout_[s].count)});
        std::sort(ranges.begin(), ranges.end(), [](const FlatRange& a, const FlatRange& b) { return a.begin < b.begin; });
        for (const FlatRange& r : ranges) {
            if (!unit.ranges.empty() && unit.ranges.back().end == r.begin) unit.ranges.back().end = r.end;
            else unit.ranges.push_back(r);
        }
        units_.push_back(std::move(unit));
    }
    requires_grad_ = torch::zeros({}, model.flat().options()).requires_grad_(true);
}

std::vector<size_t> ShardedModel::counts(const FlatRange& range) const {
    std::vector<size_t> parts;
    for (const FlatRange& shard : shards_) parts.push_back(static_cast<size_t>(range.intersect(shard).size()));
    return parts;
}

torch::Tensor ShardedModel::gather(const Unit& unit) const {
    int64_t total = 0;
    for (const FlatRange& r : unit.ranges) total += r.size();
    torch::Tensor buffer = torch::empty({total}, model_.flat().options());
    const FlatRange held = model_.held();
    int64_t at = 0;
    for (const FlatRange& range : unit.ranges) {
        const FlatRange own = range.intersect(held);
        if (own.size() > 0)
            buffer.narrow(0, at + own.begin - range.begin, own.size()).copy_(model_.flat().narrow(0, own.begin - held.begin, own.size()));
        group_.all_gather(span_of(buffer, at, range.size()), counts(range));
        at += range.size();
    }
    return buffer;
}

void ShardedModel::reduce_scatter(const Unit& unit, torch::Tensor gradient) {
    torch::NoGradGuard no_grad;
    const FlatRange held = model_.held();
    int64_t at = 0;
    for (const FlatRange& range : unit.ranges) {
        group_.reduce_scatter_sum(span_of(gradient, at, range.size()), counts(range));
        const FlatRange own = range.intersect(held);
        if (own.size() > 0)
            grad_.narrow(0, own.begin - held.begin, own.size()).add_(gradient.narrow(0, at + own.begin - range.begin, own.size()));
        at += range.size();
    }
}

torch::Tensor ShardedModel::run(size_t index, const torch::Tensor& x, const torch::Tensor& gathered) const {
    const Unit& unit = units_[index];
    // Each slot's view of the gathered ranges.
    auto weight = [&](size_t i) {
        const ParameterSlot& slot = layout_[unit.slots[i]];
        int64_t at = 0;
        for (const FlatRange& range : unit.ranges) {
            if (static_cast<int64_t>(slot.offset) < range.end)
                return gathered.narrow(0, at + static_cast<int64_t>(slot.offset) - range.begin, static_cast<int64_t>(slot.count))
                    .view(slot.shape);
            at += range.size();
        }
        TORCH_CHECK(false, "slot ", slot.name, " is not in its unit");
    };
    if (index == 0) return model_.embed(x, weight(0));
    if (index == units_.size() - 1) return model_.head(x, weight(0), weight(1));
    return model_.block(BlockWeights{weight(0), weight(1), weight(2), weight(3), weight(4), weight(5), weight(6),
                                     weight(7), weight(8)},
                        x);
}

torch::Tensor ShardedModel::forward(const torch::Tensor& tokens) {
    torch::Tensor x = tokens;
    for (size_t u = 0; u < units_.size(); ++u)
        x = GatheredUnit::apply(x, requires_grad_, this, static_cast<int64_t>(u));
    return x;
}

}  // namespace pangea
