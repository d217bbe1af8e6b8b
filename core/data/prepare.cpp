#include "data/prepare.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "data/corpus.hpp"
#include "data/token_shard.hpp"

namespace fs = std::filesystem;

namespace pangea {

std::vector<fs::path> prepare_shards(const PrepareOptions& options) {
    fs::create_directories(options.output);
    std::vector<fs::path> written;
    std::vector<uint32_t> tokens;
    auto flush = [&](bool last) {
        while (tokens.size() >= options.shard_tokens || (last && !tokens.empty())) {
            const size_t take = std::min<size_t>(tokens.size(), options.shard_tokens);
            char name[32];
            std::snprintf(name, sizeof name, "shard-%05zu.tok", written.size());
            write_token_shard(options.output / name, std::span<const uint32_t>(tokens).first(take), kByteVocab, 2);
            written.push_back(options.output / name);
            tokens.erase(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(take));
        }
    };
    if (!options.builtin.empty()) {
        const std::string text = builtin_text(options.builtin, options.builtin_bytes);
        for (size_t begin = 0; begin < text.size();) {
            size_t end = text.find("\n\n", begin);
            if (end == std::string::npos) end = text.size();
            byte_tokenize(std::string_view(text).substr(begin, end + 1 - begin), &tokens);
            begin = end + 2;
            flush(false);
        }
    }
    for (const auto& input : options.inputs) {
        std::ifstream in(input, std::ios::binary);
        if (!in) throw DataError(input + ": cannot read");
        std::ostringstream text;
        text << in.rdbuf();
        byte_tokenize(text.str(), &tokens);
        flush(false);
    }
    flush(true);
    return written;
}

}  // namespace pangea
