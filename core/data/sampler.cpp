#include "data/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "data/corpus.hpp"

namespace fs = std::filesystem;

namespace pangea {
namespace {

__extension__ typedef unsigned __int128 Wide;  // a * position without overflow

constexpr uint64_t kHeldOutEvery = 20;  // window w is held out when w % 20 == 19
constexpr size_t kBuiltinBytes = size_t{1} << 20;

uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
uint64_t hash3(uint64_t a, uint64_t b, uint64_t c) { return mix(mix(mix(a) ^ b) ^ c); }

}  // namespace

// One source: its shards (or generated tokens) seen as one token stream.
struct Sampler::Source {
    std::string label;
    double weight = 0;
    std::vector<TokenShard> shards;
    std::vector<uint64_t> starts;  // first token of each shard in the stream
    std::vector<int32_t> generated;  // the tokens of a built-in source
    uint64_t tokens = 0;
    uint64_t windows = 0;          // whole windows of seq_len + 1 tokens
    uint64_t train_windows = 0;    // those not held out
    uint64_t held_out_windows = 0;
    uint32_t vocab = 0;

    void read(uint64_t first, std::span<int32_t> out) const {
        if (!generated.empty()) {
            std::copy_n(generated.begin() + static_cast<std::ptrdiff_t>(first), out.size(), out.begin());
            return;
        }
        size_t done = 0;
        while (done < out.size()) {
            const uint64_t at = first + done;
            const size_t s = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), at) - starts.begin() - 1);
            const uint64_t in_shard = at - starts[s];
            const size_t take = static_cast<size_t>(std::min<uint64_t>(out.size() - done, shards[s].size() - in_shard));
            shards[s].read(in_shard, out.subspan(done, take));
            done += take;
        }
    }
};

std::vector<DataSource> default_data_sources() {
    const double weights[] = {0.55, 0.20, 0.20, 0.05};
    std::vector<DataSource> out;
    for (size_t i = 0; i < builtin_source_names().size(); ++i)
        out.push_back({"builtin:" + builtin_source_names()[i], weights[i], "default"});
    return out;
}

Sampler::Sampler(const std::vector<DataSource>& sources, int64_t seq_len, uint64_t seed, int node, int nodes)
    : seq_len_(seq_len), seed_(seed), node_(node), nodes_(nodes) {
    if (sources.empty()) throw DataError("[data] has no sources");
    const uint64_t window = static_cast<uint64_t>(seq_len) + 1;
    double total_weight = 0;
    for (const auto& spec : sources) {
        auto source = std::make_unique<Source>();
        source->label = spec.path;
        source->weight = spec.weight;
        const std::string where = spec.origin + ": [[data.sources]] path \"" + spec.path + "\"";
        if (!(spec.weight >= 0) || !std::isfinite(spec.weight))
            throw DataError(spec.origin + ": [[data.sources]] weight " + std::to_string(spec.weight) +
                            " must be a finite number >= 0");
        total_weight += spec.weight;
        if (spec.path.rfind("builtin:", 0) == 0) {
            const std::string text = builtin_text(spec.path.substr(8), kBuiltinBytes);
            std::vector<uint32_t> tokens;
            size_t begin = 0;
            while (begin < text.size()) {
                size_t end = text.find("\n\n", begin);
                if (end == std::string::npos) end = text.size();
                byte_tokenize(std::string_view(text).substr(begin, end + 1 - begin), &tokens);
                begin = end + 2;
            }
            source->generated.assign(tokens.begin(), tokens.end());
            source->tokens = tokens.size();
            source->vocab = kByteVocab;
        } else {
            const fs::path path = spec.path;
            std::error_code error;
            if (!fs::exists(path, error))
                throw DataError(where + ": no such file or directory");
            std::vector<fs::path> files;
            if (fs::is_directory(path, error)) {
                for (const auto& entry : fs::directory_iterator(path))
                    if (entry.path().extension() == ".tok") files.push_back(entry.path());
                std::sort(files.begin(), files.end());
                if (files.empty())
                    throw DataError(where + ": the directory holds no *.tok shards; make them with `pangea data prepare`");
            } else {
                files.push_back(path);
            }
            for (const auto& file : files) {
                source->starts.push_back(source->tokens);
                source->shards.emplace_back(file);
                source->tokens += source->shards.back().size();
                // A shard without a recorded vocabulary is trusted to fit the model's (checked there).
                source->vocab = std::max<uint32_t>(source->vocab, source->shards.back().vocab());
            }
        }
        source->windows = source->tokens / window;
        source->held_out_windows = source->windows / kHeldOutEvery;
        source->train_windows = source->windows - source->held_out_windows;
        if (source->held_out_windows == 0)
            throw DataError(where + ": " + std::to_string(source->tokens) + " tokens is too little for seq_len " +
                            std::to_string(seq_len) + ": a source needs at least " +
                            std::to_string(kHeldOutEvery * window) + " (20 windows, one held out)");
        vocab_ = std::max(vocab_, source->vocab);
        sources_.push_back(std::move(source));
    }
    if (!(total_weight > 0))
        throw DataError(sources.front().origin + ": the weights of [[data.sources]] sum to " +
                        std::to_string(total_weight) + "; they must sum to more than 0");
    double running = 0;
    for (const auto& source : sources_) cumulative_.push_back(running += source->weight / total_weight);
    cumulative_.back() = 1.0;
    state_.per_source.assign(sources_.size(), 0);
}

Sampler::~Sampler() = default;

size_t Sampler::pick_source(uint64_t hash) const {
    const double u = double(hash >> 11) * 0x1.0p-53;  // uniform in [0, 1)
    const auto found = std::upper_bound(cumulative_.begin(), cumulative_.end(), u);
    return std::min<size_t>(static_cast<size_t>(found - cumulative_.begin()), sources_.size() - 1);
}

void Sampler::next(std::span<int32_t> out) {
    const uint64_t window = static_cast<uint64_t>(seq_len_) + 1;
    for (size_t at = 0; at + window <= out.size(); at += window) {
        const size_t s = pick_source(hash3(seed_, static_cast<uint64_t>(node_), state_.draws));
        const Source& source = *sources_[s];
        // Slot c*N + k of an endless sequence of permutations of the training windows.
        const uint64_t slot = state_.per_source[s] * static_cast<uint64_t>(nodes_) + static_cast<uint64_t>(node_);
        const uint64_t n = source.train_windows;
        const uint64_t epoch = slot / n, position = slot % n;
        uint64_t a = hash3(seed_, s, epoch) % n;  // an affine permutation: a coprime with n
        if (a == 0) a = 1;
        while (std::gcd(a, n) != 1) a = a + 1 == n ? 1 : a + 1;
        const uint64_t b = hash3(seed_ ^ 0x5bd1e995, s, epoch) % n;
        const uint64_t train_index = static_cast<uint64_t>((static_cast<Wide>(a) * position + b) % n);
        const uint64_t w = train_index / (kHeldOutEvery - 1) * kHeldOutEvery + train_index % (kHeldOutEvery - 1);
        source.read(w * window, out.subspan(at, window));
        ++state_.per_source[s];
        ++state_.draws;
    }
}

void Sampler::held_out(uint64_t index, std::span<int32_t> out) const {
    const uint64_t window = static_cast<uint64_t>(seq_len_) + 1;
    const Source& source = *sources_[pick_source(hash3(seed_, 0xe7a1, index))];
    const uint64_t w = (index % source.held_out_windows) * kHeldOutEvery + (kHeldOutEvery - 1);
    source.read(w * window, out.first(window));
}

void Sampler::restore(const SamplerState& state) {
    if (state.per_source.size() != sources_.size())
        throw DataError("the saved read position has " + std::to_string(state.per_source.size()) +
                        " sources, the manifest " + std::to_string(sources_.size()));
    state_ = state;
}

void Sampler::skip_to(uint64_t draws) {
    state_.draws = 0;
    std::fill(state_.per_source.begin(), state_.per_source.end(), 0);
    for (; state_.draws < draws; ++state_.draws) ++state_.per_source[pick_source(hash3(seed_, static_cast<uint64_t>(node_), state_.draws))];
}

std::string Sampler::describe() const {
    std::string out;
    double previous = 0;
    for (size_t i = 0; i < sources_.size(); ++i) {
        const double share = cumulative_[i] - previous;
        previous = cumulative_[i];
        char text[160];
        std::snprintf(text, sizeof text, "%s%s %.0f%% (%.2fM tokens)", out.empty() ? "" : ", ",
                      sources_[i]->label.c_str(), share * 100, double(sources_[i]->tokens) / 1e6);
        out += text;
    }
    return out;
}

}  // namespace pangea
