// `pangea data prepare`: text files (one document each) or a built-in corpus source, through the
// byte tokenizer, into token shards of at most `shard_tokens` tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pangea {

struct PrepareOptions {
    std::vector<std::string> inputs;  // text files; or
    std::string builtin;              // a built-in source's name, generating builtin_bytes of text
    size_t builtin_bytes = size_t{1} << 20;
    std::filesystem::path output;     // directory for shard-00000.tok, ...
    uint64_t shard_tokens = uint64_t{1} << 27;
};

// Returns the paths written. Throws DataError naming an unreadable input.
std::vector<std::filesystem::path> prepare_shards(const PrepareOptions& options);

}  // namespace pangea
