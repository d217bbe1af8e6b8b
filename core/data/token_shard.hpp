// Token shards: the training data on disk (docs/data.md).
//
//   offset  size  field
//        0     8  magic "PGTOKENS"
//        8     4  format version (1), little-endian like every field
//       12     4  bytes per token: 2 (uint16) or 4 (uint32)
//       16     8  token count
//       24     4  vocabulary size (every token is below it; 0: not recorded)
//       28     4  reserved, 0
//       32     -  the tokens
//
// Any tokenizer's output fits: write its token ids in this layout. Documents are separated by
// whatever token the tokenizer uses (the built-in byte tokenizer uses 256).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace pangea {

constexpr char kShardMagic[8] = {'P', 'G', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr uint32_t kShardVersion = 1;
constexpr size_t kShardHeaderBytes = 32;

class DataError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A shard mapped read-only into memory.
class TokenShard {
public:
    // Throws DataError naming the file and what is wrong (missing, bad magic, unknown version or
    // token width, size that does not match the count, a vocabulary above 2^31, a token >= the
    // recorded vocabulary or above 2^31 - 1: tokens are int32 from here on).
    explicit TokenShard(const std::filesystem::path& path);
    ~TokenShard();
    TokenShard(TokenShard&& other) noexcept;
    TokenShard(const TokenShard&) = delete;
    TokenShard& operator=(const TokenShard&) = delete;
    TokenShard& operator=(TokenShard&&) = delete;

    const std::filesystem::path& path() const { return path_; }
    uint64_t size() const { return count_; }
    uint32_t vocab() const { return vocab_; }
    uint32_t token_bytes() const { return token_bytes_; }
    // Copies tokens [first, first + out.size()) into out.
    void read(uint64_t first, std::span<int32_t> out) const;

private:
    std::filesystem::path path_;
    const uint8_t* map_ = nullptr;
    size_t map_bytes_ = 0;
    uint64_t count_ = 0;
    uint32_t vocab_ = 0;
    uint32_t token_bytes_ = 0;
};

// Writes tokens as a shard (through a temporary file renamed into place, so a crash leaves no
// half-written shard). token_bytes 2 needs every token < 65536. Throws DataError.
void write_token_shard(const std::filesystem::path& path, std::span<const uint32_t> tokens, uint32_t vocab,
                       uint32_t token_bytes);

}  // namespace pangea
